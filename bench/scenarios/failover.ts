/**
 * Scenario "failover" (cluster-r2, cluster-r2-sync): with a 4th shard node and 100,000
 * flows, kill -9 a shard node and time until every partition has a live primary again;
 * three times, each followed by a replacement node, then once the coordinator (method
 * step 6 in bench/README.md).
 */
import * as crypto from "crypto";
import { SETTLE_POLL_MS } from "../harness/cluster";
import { clusterStatus, describeStatus, pollCluster, primariesOn, settledOn } from "../harness/cluster-status";
import { BASE_HOUR, checkHour, expectedGetHourTotals, GET_FLOWS, GET_HOUR, getHourBody, hourTotals, LOAD_BATCH } from "../harness/data";
import { type Fail, type TargetFigures } from "../harness/figures";
import { fmtInt } from "../harness/format";
import { httpRequest } from "../harness/http";
import { load, loadProblems } from "../harness/load";
import { now, sleep } from "../harness/processes";
import { CLUSTER_SETTLE_TIMEOUT_MS, FAILOVER_TIMEOUT_MS } from "../harness/settings";
import { medianOf } from "../harness/stats";
import { type Running, type Target, withTarget } from "../targets";

/** Kills of a non-coordinator shard node (then one of the coordinator). */
const FAILOVER_KILLS = 3;
const FAILOVER_POLL_MS = 50;
/** polls of a failover that may wait at once (a GET /cluster can wait ~3 s on a node that just died) */
const FAILOVER_MAX_IN_FLIGHT = 100;

interface FailoverKill {
  killed: string;
  was_coordinator: boolean;
  coordinator_before: string | null;
  coordinator_after: string | null;
  /** ms from kill -9 to the first poll with GET /ready = 200 and every partition's primary a live node */
  ms: number;
  /** ms from kill -9 to the first GET /ready whose `epoch` (the gateway's placement table) changed: the promotion reached the gateway */
  ready_epoch_changed_ms: number | null;
  epoch_before: number;
  epoch_after: number;
  polls: number;
  ready_non200: number;
  request_errors: number;
  max_poll_ms: number;
  samples: string[];
  /** GET of the 100k-flow hour right after: tries until 200 (500 ms apart, at most 10), and what was wrong with it */
  read_tries: number;
  /** POST of one probe record (with an Idempotency-Key) right after: tries until 200, last status */
  write_tries: number;
  write_status: number | string;
  /** the fresh shard node started after it, and ms from its spawn until the cluster settled again (null after the coordinator kill) */
  replacement: string | null;
  replacement_settle_ms: number | null;
  problems: string[];
}

export interface FailoverResult {
  /** ms from spawning the 4th shard node until settled (4 nodes, R copies each) */
  fourth_node_settle_ms: number | null;
  flows_loaded: number;
  kills: FailoverKill[];
  coordinator_kill: FailoverKill | null;
  problems: string[];
}

/** GET the 100k-flow hour until 200 (at most 10 tries, 500 ms apart); check count, order and byte totals. */
async function checkGetHourData(url: string, expect: { tx: number; rx: number } | null, what: string): Promise<{ tries: number; problems: string[] }> {
  let last = "";
  for (let tries = 1; tries <= 10; tries++) {
    try {
      const res = await httpRequest(false, url, "GET", `/flows?hour=${GET_HOUR}`, undefined, 30_000);
      if (res.status === 200) {
        if (expect === null) return { tries, problems: [] };
        const problems = checkHour(res.body, GET_HOUR, GET_FLOWS).problems;
        const got = hourTotals(res.body);
        if (got.tx !== expect.tx || got.rx !== expect.rx) problems.push(`byte totals tx ${got.tx} rx ${got.rx}, expected tx ${expect.tx} rx ${expect.rx}`);
        if (tries > 1) problems.push(`took ${tries} tries (before: ${last})`);
        return { tries, problems: problems.map((p) => `${what}: ${p}`) };
      }
      last = `answered ${res.status}: ${res.body.toString("utf8").slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(500);
  }
  return { tries: 10, problems: [`${what}: GET /flows?hour=${GET_HOUR} never answered 200 in 10 tries (last: ${last})`] };
}

/** POST one probe record (Idempotency-Key: retries apply once) until 200 (at most 10 tries, 500 ms apart). */
async function probeWrite(url: string, n: number, what: string): Promise<{ tries: number; status: number | string; problems: string[] }> {
  const body = JSON.stringify([{ src_app: "bench-probe", dest_app: `after-kill-${n}`, vpc_id: "vpc-probe", hour: BASE_HOUR + 50_000, bytes_tx: 1, bytes_rx: 1 }]);
  const key = `bench-probe-${crypto.randomBytes(8).toString("hex")}`;
  let status: number | string = "none";
  let first = "";
  for (let tries = 1; tries <= 10; tries++) {
    try {
      const res = await httpRequest(false, url, "POST", "/flows", body, 15_000, { "idempotency-key": key });
      status = res.status;
      if (res.status === 200) return { tries, status, problems: tries > 1 ? [`${what}: the probe POST took ${tries} tries (first: ${first})`] : [] };
      first ||= `${res.status}: ${res.body.toString("utf8").slice(0, 200)}`;
    } catch (err) {
      status = (err as Error).message;
      first ||= status;
    }
    await sleep(500);
  }
  return { tries: 10, status, problems: [`${what}: the probe POST never answered 200 in 10 tries (first: ${first})`] };
}

/** kill -9 one shard node (a random non-coordinator, or the coordinator) and time until every partition has a live primary again. */
async function killOnce(running: Running, n: number, coordinator: boolean, expect: { tx: number; rx: number } | null): Promise<FailoverKill> {
  const cluster = running.cluster!;
  const before = await clusterStatus(running.url);
  const shards = cluster.shardIDs();
  let victim: string;
  if (coordinator) {
    if (before.coordinator === null || !shards.includes(before.coordinator)) throw new Error(`failover: coordinator ${before.coordinator} is not one of the live shard nodes [${shards.join(", ")}]`);
    victim = before.coordinator;
  } else {
    const candidates = shards.filter((id) => id !== before.coordinator);
    if (candidates.length === 0) throw new Error("failover: no non-coordinator shard node to kill");
    victim = candidates[crypto.randomInt(candidates.length)];
  }
  const live = shards.filter((id) => id !== victim);
  const what = `failover ${coordinator ? "(coordinator)" : n} after kill -9 ${victim}`;
  console.log(`    failover: kill -9 ${victim}${coordinator ? " (the coordinator)" : ""}; ${describeStatus(before)}`);
  const t0 = now();
  await cluster.kill9(victim);
  const o = await pollCluster(cluster, t0, {
    what,
    timeoutMs: FAILOVER_TIMEOUT_MS,
    intervalMs: FAILOVER_POLL_MS,
    stableEpochPolls: 1,
    checkReady: true,
    condition: primariesOn(live),
    progress: true,
    maxInFlight: FAILOVER_MAX_IN_FLIGHT,
    epochBefore: before.epoch,
  });
  console.log(
    `    failover after kill -9 ${victim}: ${o.ms.toFixed(0)} ms (gateway's epoch changed at ${o.ready_epoch_changed_ms === null ? "?" : o.ready_epoch_changed_ms.toFixed(0)} ms; ` +
      `${o.polls} polls, slowest ${o.max_poll_ms.toFixed(0)} ms, /ready non-200 ${o.ready_non200}x; ` +
      `epoch ${before.epoch} -> ${o.status.epoch}, coordinator ${o.status.coordinator})`,
  );
  const problems: string[] = [];
  const read = await checkGetHourData(running.url, expect, what);
  problems.push(...read.problems);
  const write = await probeWrite(running.url, n, what);
  problems.push(...write.problems);
  return {
    killed: victim,
    was_coordinator: coordinator,
    coordinator_before: before.coordinator,
    coordinator_after: o.status.coordinator,
    ms: o.ms,
    ready_epoch_changed_ms: o.ready_epoch_changed_ms === null ? null : Math.round(o.ready_epoch_changed_ms),
    epoch_before: before.epoch,
    epoch_after: o.status.epoch,
    polls: o.polls,
    ready_non200: o.ready_non200,
    request_errors: o.request_errors,
    max_poll_ms: Math.round(o.max_poll_ms),
    samples: o.samples,
    read_tries: read.tries,
    write_tries: write.tries,
    write_status: write.status,
    replacement: null,
    replacement_settle_ms: null,
    problems,
  };
}

/** Start a fresh shard node and wait until the cluster is settled with R copies of every partition. */
async function addShardAndSettle(running: Running, what: string): Promise<{ node: string; ms: number }> {
  const cluster = running.cluster!;
  const node = cluster.nextShardID();
  console.log(`    ${what}: starting shard node ${node}`);
  const t0 = await cluster.spawnShard(node);
  const o = await pollCluster(cluster, t0, {
    what: `${what}: settling with ${node}`,
    timeoutMs: CLUSTER_SETTLE_TIMEOUT_MS,
    intervalMs: SETTLE_POLL_MS,
    stableEpochPolls: 2,
    checkReady: true,
    condition: settledOn(cluster.shardIDs(), true),
    progress: true,
  });
  console.log(`    ${what}: settled with ${node} in ${(o.ms / 1000).toFixed(1)} s (${describeStatus(o.status)})`);
  return { node, ms: o.ms };
}

/** A 4th shard node and 100,000 flows: FAILOVER_KILLS kills of a non-coordinator, then one of the coordinator. Fills `result` as it goes. */
async function measureFailover(running: Running, result: FailoverResult): Promise<void> {
  const added = await addShardAndSettle(running, "failover setup");
  result.fourth_node_settle_ms = Math.round(added.ms);
  const loaded = await load(running.url, `failover setup: loading ${GET_FLOWS.toLocaleString("en-US")} flows into one hour`, GET_FLOWS / LOAD_BATCH, getHourBody);
  let expect: { tx: number; rx: number } | null = expectedGetHourTotals();
  if (loaded.failed > 0) {
    result.problems.push(...loadProblems(loaded, "failover setup: ", " (data not checked after kills)"));
    expect = null;
  } else {
    result.flows_loaded = GET_FLOWS;
  }
  result.problems.push(...(await checkGetHourData(running.url, expect, "failover setup, before any kill")).problems);
  for (let i = 1; i <= FAILOVER_KILLS; i++) {
    const k = await killOnce(running, i, false, expect);
    result.kills.push(k);
    result.problems.push(...k.problems);
    const r = await addShardAndSettle(running, `after kill ${i}`);
    k.replacement = r.node;
    k.replacement_settle_ms = Math.round(r.ms);
  }
  const c = await killOnce(running, FAILOVER_KILLS + 1, true, expect);
  result.coordinator_kill = c;
  result.problems.push(...c.problems);
}

/** Measure (in a fresh instance of the target) and record. */
export async function runFailover(target: Target, figures: TargetFigures, fail: Fail): Promise<void> {
  const result: FailoverResult = { fourth_node_settle_ms: null, flows_loaded: 0, kills: [], coordinator_kill: null, problems: [] };
  figures.details.failover = result;
  try {
    await withTarget(target, figures, "failover", (running) => measureFailover(running, result));
  } catch (err) {
    fail("failover", err);
  }
  for (const k of [...result.kills, ...(result.coordinator_kill ? [result.coordinator_kill] : [])]) k.ms = Math.round(k.ms);
  const ms = result.kills.map((k) => k.ms);
  figures.failover_ms = ms.length > 0 ? ms : null;
  figures.failover_ms_median = ms.length > 0 ? medianOf(ms) : null;
  figures.failover_coordinator_ms = result.coordinator_kill?.ms ?? null;
  figures.flagged.push(...result.problems);
  const killProblems = result.kills.some((k) => k.problems.length > 0) || result.problems.some((p) => p.startsWith("failover setup"));
  if (ms.length > 0 && (ms.length < FAILOVER_KILLS || killProblems)) figures.suspect_figures.push("failover_ms_median");
  if (result.coordinator_kill && result.coordinator_kill.problems.length > 0) figures.suspect_figures.push("failover_coordinator_ms");
  if (ms.length > 0) {
    console.log(
      `    failover after kill -9: ${result.kills.map((k) => `${k.killed} ${fmtInt(k.ms)} ms`).join(", ")}; median ${fmtInt(figures.failover_ms_median ?? 0)} ms` +
        (result.coordinator_kill ? `; coordinator ${result.coordinator_kill.killed}: ${fmtInt(result.coordinator_kill.ms)} ms` : ""),
    );
  }
}
