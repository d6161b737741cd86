/**
 * Scenario "restart" (embedded-sync; runs only when BENCH_SCENARIOS names it: it is long).
 * How much disk a cleanly stopped node's data takes, and how long the node takes to come
 * back with it (method step 7 in bench/README.md):
 *   1. a fresh node on its own DATA_DIR; load BENCH_RESTART_FLOWS distinct flows, 1000 per
 *      hour as the memory scenario spreads its 1M (POSTs of 1000, LOAD_CONCURRENCY at once);
 *   2. SIGTERM (a clean stop writes a checkpoint of every partition); sum the file sizes
 *      under the data directory;
 *   3. start it again on the directory; time spawn -> GET /ready 200 and spawn -> the first
 *      GET /flows?hour=H 200 of a loaded hour; check that hour and the total flow count;
 *   4. load KILL_EXTRA_FLOWS more, kill -9, start it again and time the same (the extra
 *      flows come back from the log); check an extra hour and the total.
 */
import * as fs from "fs";
import * as path from "path";
import { clusterStatus, totalFlows } from "../harness/cluster-status";
import { checkHour, hourBody, LOAD_BATCH, RESTART_HOUR0 } from "../harness/data";
import { type Fail, flagProblems, type TargetFigures } from "../harness/figures";
import { fmt, fmtInt } from "../harness/format";
import { httpRequest } from "../harness/http";
import { load, loadProblems } from "../harness/load";
import { type Child, freePort, GiveUp, now, removeDataDir, startFlowmeshNode, tempDataDir, waitFor, waitFor200 } from "../harness/processes";
import { RESTART_FLOWS, RESTART_TIMEOUT_MS } from "../harness/settings";
import type { Target } from "../targets";

/** Flows loaded after the first restart, before the kill -9: they are only in the log (or a checkpoint round's files). */
const KILL_EXTRA_FLOWS = 100_000;
/** How often /ready and the first read are polled while timing a start. */
const START_POLL_MS = 50;

/** Bytes under a data directory (a `du`, summing file sizes), by what holds them. */
interface DiskUsage {
  bytes: number;
  files: number;
  checkpoint_bytes: number;
  /** one a partition (src/durability/checkpoint.ts) */
  checkpoint_files: number;
  wal_bytes: number;
}

/** One start of the node on its data directory, timed from its spawn. */
interface StartTiming {
  ready_ms: number;
  /** null: no hour was read (the fresh start) */
  first_read_ms: number | null;
  /** the hour read first (checked: 1000 flows) */
  hour: number | null;
  /** sum of GET /cluster partitions[].flows once ready */
  flows_total: number;
}

export interface RestartResult {
  flows_loaded: number;
  load: { posts: number; failed: number; seconds: number } | null;
  /** spawn to GET /ready 200 of the fresh node (empty directory) */
  fresh_start_ready_ms: number | null;
  /** partitions holding flows just before the SIGTERM (GET /cluster): each should have a checkpoint after it */
  partitions_with_flows: number | null;
  /** SIGTERM to exit: the clean stop, checkpoints included */
  stop_ms: number | null;
  disk_after_stop: DiskUsage | null;
  after_stop: StartTiming | null;
  extra_flows_loaded: number;
  disk_before_kill: DiskUsage | null;
  after_kill: StartTiming | null;
  /** what went wrong up to the restart after SIGTERM, and in the kill -9 variant */
  problems: string[];
  kill_problems: string[];
}

/**
 * Sum of file sizes under `dir`; `checkpoints/` and `wal/` (src/durability) also on their own.
 * The node may be running: a file renamed or deleted meanwhile is skipped.
 */
function diskUsage(dir: string): DiskUsage {
  const usage: DiskUsage = { bytes: 0, files: 0, checkpoint_bytes: 0, checkpoint_files: 0, wal_bytes: 0 };
  const walk = (d: string, top: string): void => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) {
        walk(p, top || entry.name);
        continue;
      }
      const size = fs.statSync(p, { throwIfNoEntry: false })?.size;
      if (size === undefined) continue;
      usage.bytes += size;
      usage.files++;
      if (top === "checkpoints") {
        usage.checkpoint_bytes += size;
        usage.checkpoint_files++;
      }
      if (top === "wal") usage.wal_bytes += size;
    }
  };
  walk(dir, "");
  return usage;
}

const describeDisk = (d: DiskUsage | null): string =>
  d === null ? "not measured" : `${fmtInt(d.bytes)} bytes in ${d.files} files (${d.checkpoint_files} checkpoints ${fmtInt(d.checkpoint_bytes)}, log ${fmtInt(d.wal_bytes)})`;

const describeStart = (t: StartTiming | null): string =>
  t === null ? "not reached" : `/ready at ${fmtInt(t.ready_ms)} ms, first GET of hour ${t.hour} at ${fmt(t.first_read_ms, 0)} ms from spawn; ${fmtInt(t.flows_total)} flows`;

/** The node of this scenario: one process at a time on one data directory and port. */
class RestartedNode {
  child: Child | null = null;
  readonly url: string;

  constructor(
    private readonly label: string,
    private readonly env: Record<string, string>,
    private readonly port: number,
    readonly dataDir: string,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  /** Spawn it and time until /ready is 200 and a GET of `hour` is 200; check that hour (LOAD_BATCH flows) and the total. */
  async start(what: string, hour: number | null, expectedFlows: number, problems: string[]): Promise<StartTiming> {
    const t0 = now();
    const child = startFlowmeshNode(this.label, { ...this.env, PORT: String(this.port), DATA_DIR: this.dataDir });
    this.child = child;
    await waitFor200(this.url, "/ready", [child], `${this.label} (${what})`, RESTART_TIMEOUT_MS, START_POLL_MS);
    const ready_ms = Math.round(now() - t0);
    let first_read_ms: number | null = null;
    if (hour !== null) {
      const body = await waitFor(
        `${this.label} (${what}) GET /flows?hour=${hour} = 200`,
        async () => {
          if (child.exited()) throw new GiveUp(`${this.label} exited (${what})\n${child.tail()}`);
          const res = await httpRequest(false, this.url, "GET", `/flows?hour=${hour}`, undefined, RESTART_TIMEOUT_MS);
          if (res.status !== 200) throw new Error(`answered ${res.status}: ${res.body.toString("utf8").slice(0, 200)}`);
          return res.body;
        },
        RESTART_TIMEOUT_MS,
        START_POLL_MS,
      );
      first_read_ms = Math.round(now() - t0);
      problems.push(...checkHour(body, hour, LOAD_BATCH).problems.map((p) => `${what}: ${p}`));
    }
    const flows_total = totalFlows(await clusterStatus(this.url));
    if (flows_total !== expectedFlows) problems.push(`${what}: /cluster counts ${flows_total} flows, expected ${expectedFlows}`);
    return { ready_ms, first_read_ms, hour, flows_total };
  }

  /** SIGTERM and wait for the clean stop (SIGKILL only after RESTART_TIMEOUT_MS); its duration. */
  async stop(problems: string[]): Promise<number> {
    const child = this.child!;
    const t0 = now();
    await child.stop(RESTART_TIMEOUT_MS);
    const ms = Math.round(now() - t0);
    if (child.process.signalCode === "SIGKILL") problems.push(`SIGTERM: not stopped within ${RESTART_TIMEOUT_MS} ms, killed`);
    // The node's own stop deadline (mixins/graceful-leave.middleware.ts) may cut its checkpoint short.
    if (child.tail().includes("did not stop within")) problems.push(`SIGTERM: the node exited at its own stop deadline: ${child.tail().split("\n").find((l) => l.includes("did not stop within"))}`);
    this.child = null;
    return ms;
  }

  async kill(): Promise<void> {
    await this.child?.kill();
    this.child = null;
  }
}

/** POST `count` bodies of 1000 distinct flows, hours RESTART_HOUR0 + first, + first + 1, ... */
async function loadHours(node: RestartedNode, label: string, first: number, count: number, problems: string[]): Promise<RestartResult["load"]> {
  const l = await load(node.url, `${label} loading ${fmtInt(count * LOAD_BATCH)} distinct flows`, count, (i) => hourBody(RESTART_HOUR0 + first + i));
  problems.push(...loadProblems(l, "restart: "));
  return { posts: l.posts, failed: l.failed, seconds: l.seconds };
}

async function measureRestart(target: Target, result: RestartResult): Promise<void> {
  if (target.nodeEnv === undefined) throw new Error(`restart needs an embedded Flowmesh target, not ${target.key}`);
  const label = target.title;
  const node = new RestartedNode(label, target.nodeEnv, await freePort(), tempDataDir(`${label}-restart`));
  const { problems, kill_problems } = result;
  const posts = RESTART_FLOWS / LOAD_BATCH;
  try {
    console.log(`  starting ${label} (for restart) on ${node.dataDir} ...`);
    const fresh = await node.start("fresh start", null, 0, problems);
    result.fresh_start_ready_ms = fresh.ready_ms;
    result.load = await loadHours(node, label, 0, posts, problems);
    result.flows_loaded = RESTART_FLOWS;

    result.partitions_with_flows = (await clusterStatus(node.url)).partitions.filter((p) => p.flows > 0).length;
    result.stop_ms = await node.stop(problems);
    result.disk_after_stop = diskUsage(node.dataDir);
    if (result.disk_after_stop.checkpoint_files < result.partitions_with_flows) {
      problems.push(
        `SIGTERM: checkpoints of ${result.disk_after_stop.checkpoint_files} of the ${result.partitions_with_flows} partitions holding flows on disk after the clean stop ` +
          `(it should checkpoint every one); the log holds the rest (${fmtInt(result.disk_after_stop.wal_bytes)} bytes)`,
      );
    }
    console.log(`    restart: SIGTERM -> exit in ${fmtInt(result.stop_ms)} ms; data directory ${describeDisk(result.disk_after_stop)}, ${(result.disk_after_stop.bytes / RESTART_FLOWS).toFixed(1)} bytes/flow`);

    result.after_stop = await node.start("restart after SIGTERM", RESTART_HOUR0 + Math.floor(posts / 2), RESTART_FLOWS, problems);
    console.log(`    restart after SIGTERM: ${describeStart(result.after_stop)}`);

    const extraPosts = KILL_EXTRA_FLOWS / LOAD_BATCH;
    await loadHours(node, label, posts, extraPosts, kill_problems);
    result.extra_flows_loaded = KILL_EXTRA_FLOWS;
    result.disk_before_kill = diskUsage(node.dataDir);
    await node.kill();
    console.log(`    restart: kill -9 with ${fmtInt(RESTART_FLOWS + KILL_EXTRA_FLOWS)} flows; data directory ${describeDisk(result.disk_before_kill)}`);

    result.after_kill = await node.start("restart after kill -9", RESTART_HOUR0 + posts + extraPosts - 1, RESTART_FLOWS + KILL_EXTRA_FLOWS, kill_problems);
    console.log(`    restart after kill -9: ${describeStart(result.after_kill)}`);
  } finally {
    await node.kill();
    removeDataDir(node.dataDir);
  }
}

/** Measure (with a node of its own) and record. */
export async function runRestart(target: Target, figures: TargetFigures, fail: Fail): Promise<void> {
  const result: RestartResult = {
    flows_loaded: 0,
    load: null,
    fresh_start_ready_ms: null,
    partitions_with_flows: null,
    stop_ms: null,
    disk_after_stop: null,
    after_stop: null,
    extra_flows_loaded: 0,
    disk_before_kill: null,
    after_kill: null,
    problems: [],
    kill_problems: [],
  };
  figures.details.restart = result;
  try {
    await measureRestart(target, result);
  } catch (err) {
    fail("restart", err);
  }
  figures.disk_bytes_per_flow_checkpointed = result.disk_after_stop && result.flows_loaded > 0 ? result.disk_after_stop.bytes / result.flows_loaded : null;
  figures.restart_to_ready_ms = result.after_stop?.ready_ms ?? null;
  figures.restart_to_first_read_ms = result.after_stop?.first_read_ms ?? null;
  figures.restart_after_kill_ms = result.after_kill?.ready_ms ?? null;
  flagProblems(figures, result.problems, ["disk_bytes_per_flow_checkpointed", "restart_to_ready_ms", "restart_to_first_read_ms", "restart_after_kill_ms"]);
  flagProblems(figures, result.kill_problems, ["restart_after_kill_ms"]);
}

/** The restart's phases, printed below the table. */
export function printRestartSummary(title: string, r: RestartResult): void {
  console.log(`\nrestart ${title} (${fmtInt(r.flows_loaded)} flows loaded in ${fmt(r.load?.seconds, 1)} s):`);
  console.log(`  SIGTERM -> exit ${fmt(r.stop_ms, 0)} ms; data directory ${describeDisk(r.disk_after_stop)}`);
  console.log(`  restart after SIGTERM: ${describeStart(r.after_stop)}`);
  console.log(`  +${fmtInt(r.extra_flows_loaded)} flows, kill -9 (data directory ${describeDisk(r.disk_before_kill)}); restart: ${describeStart(r.after_kill)}`);
}
