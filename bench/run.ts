/**
 * Flowmesh benchmark: `npm run bench` (builds, then runs `node dist/bench/run.js`).
 *
 * One call measures each target in turn, as child processes on free 127.0.0.1 ports,
 * with the same load generator (one autocannon instance inside this process) and the
 * same request bodies:
 *   - "reference":  bench/reference-server.js, plain node:http + Map, one process;
 *   - "embedded":   Flowmesh's embedded node (moleculer-runner, dist/moleculer.config.js,
 *                   SERVICEDIR=dist/services, LOGLEVEL=warn);
 *   - "cluster-r1": a Flowmesh cluster with REPLICAS=1: `nats-server -a 127.0.0.1 -p PORT -js -sd TMPDIR`
 *                   (free port), then three shard nodes n1, n2, n3 (SERVICES=flow-shard), started
 *                   one after another (each one's INFO packet, listing flow-shard, seen on NATS
 *                   before the next starts), then one gateway node gw (SERVICES=api,flows,cluster).
 *                   Every node is started like the embedded one, plus TRANSPORTER=nats://127.0.0.1:PORT,
 *                   NAMESPACE=bench-<random hex>, NODEID, REPLICAS, PORT (a free port; shard nodes
 *                   have no api service, so theirs is unused) and SERVICES. Ready when GET /health
 *                   = 200 on the gateway, then GET /ready = 200 and GET /cluster shows exactly
 *                   n1..n3, each with primaries > 0, no handoffs, every partition's primary one
 *                   of them, on two consecutive polls with the same epoch (at most 120 s);
 *   - "cluster-r2": the same with REPLICAS=2.
 * Every measurement of a cluster goes through the gateway's URL. A cluster's RSS is the sum
 * over its node processes (gateway + shard nodes alive at the time); nats-server's RSS is
 * reported on its own. A cluster is torn down with SIGKILL to every node (no graceful
 * handoffs), then SIGTERM to nats-server.
 *
 * Method, per target (targets run one after another, never at the same time; only the paired
 * reference server of step 2b runs beside one, and only one of the two is driven at a time):
 *   1. start it; wait for GET /health = 200 (clusters: as above);
 *   2. throughput: autocannon, CONNECTIONS connections, pipelining 1, POST /flows with batches
 *      of 100 (10 bodies cycled) and of 1000 (one body); the bodies hold 1000 distinct flow
 *      keys over 24 hours. Per batch size:
 *   2a. the "reference" target: a warm-up run (BENCH_WARMUP s), then one measured run
 *      (BENCH_DURATION s): its own column in the table;
 *   2b. every other target: paired rounds, because on a shared, noisy machine a reference
 *      measured minutes earlier makes the ratio mostly noise. A fresh bench/reference-server.js
 *      ("paired reference", its own free port) is started next to the target for this scenario
 *      and stopped after it; it sits idle while the target is driven and vice versa. Per batch
 *      size: warm-up of the paired reference, then of the target (BENCH_WARMUP s each), then
 *      BENCH_ROUNDS rounds of BENCH_ROUND_S s runs, one at a time: reference, target, reference,
 *      target, ..., target, reference (ROUNDS target runs, ROUNDS + 1 reference runs). Round i's
 *      ratio = target run i / the mean of the reference runs just before and just after it (a
 *      load that drifts across the round cancels out to first order). The target's flows/s
 *      figure is the median over its ROUNDS runs, its paired ratio the median of the per-round
 *      ratios; each round is printed as it ends. The paired reference's Map holds at most the
 *      1000 throughput keys (each key has one hour), however many rounds run;
 *   3. GET: load 100,000 distinct flows into one hour (100 POSTs of 1000), check one
 *      GET (count, hour, order), 2 more warm-up GETs, then BENCH_GET_ROUNDS timed
 *      sequential GETs on one keep-alive connection, each timed until its last byte;
 *   4. stop it; start a fresh instance for memory: RSS, load 1,000,000 distinct flows
 *      (1000 POSTs of 1000 records, one hour each), wait 2 s, RSS again (no forced GC),
 *      then spot-check one hour's GET;
 *   5. handoff (cluster-r1 only): in the memory scenario's cluster when that ran clean
 *      (it holds exactly the 1,000,000 flows; otherwise in a fresh cluster, loading them
 *      first, progress every 10%): start shard node n4 and time from its spawn until
 *      GET /cluster shows n1..n4, each with primaries > 0 (n4 included), no handoffs under
 *      way, every primary one of them, GET /ready = 200, the same epoch on two consecutive
 *      polls (polled every HANDOFF_POLL_MS = 100 ms; at most BENCH_HANDOFF_TIMEOUT). Then
 *      check the flow count over /cluster's partitions is unchanged and 3 hours read back whole;
 *   6. failover (cluster-r2 only, fresh cluster): start a 4th shard node, wait until settled
 *      with 2 copies of every partition (no under-replicated partition), load 100,000 flows
 *      into one hour; then 3 times: kill -9 a random shard node other than /cluster's
 *      `coordinator`, time from the kill until GET /ready = 200 and every partition of
 *      /cluster's `partitions[]` has a primary that is a live node (a poll = GET /ready,
 *      then GET /cluster, started every 50 ms even while earlier polls still wait, at most
 *      100 at once, since a GET /cluster can wait seconds on the dead node; the time is the
 *      arrival of the first answer meeting it; at most BENCH_FAILOVER_TIMEOUT); check the
 *      hour reads back whole (count, order, byte totals: nothing lost or doubled) and one probe
 *      POST (with an Idempotency-Key) is accepted; start a fresh shard node with a new NODEID
 *      (n5, n6, ...) and wait until settled again (4 nodes, 2 copies each, stable epoch; at most
 *      BENCH_SETTLE_TIMEOUT). Finally one kill -9 of the coordinator, timed and checked alike
 *      (no replacement).
 * Children are killed when the bench ends, fails, or gets SIGINT/SIGTERM/SIGHUP.
 * Only the reference:  BENCH_TARGETS=reference npm run bench
 * Reference + one cluster:  BENCH_TARGETS=reference,cluster-r1 npm run bench
 * Only the failovers:  BENCH_TARGETS=cluster-r2 BENCH_SCENARIOS=failover npm run bench
 *
 * Environment (all optional):
 *   BENCH_TARGETS      comma list of target keys to run (default: all,
 *                      "reference,embedded,cluster-r1,cluster-r2")
 *   BENCH_SCENARIOS    comma list of "throughput,get,memory,handoff,failover" (default: all five;
 *                      handoff only runs on cluster-r1 and failover only on cluster-r2)
 *   BENCH_DURATION     seconds of the reference target's measured throughput run (default 8)
 *   BENCH_WARMUP       seconds of warm-up before each throughput measurement (default 2; paired
 *                      rounds: of the paired reference, then of the target)
 *   BENCH_ROUNDS       paired throughput rounds of each non-reference target (default 5)
 *   BENCH_ROUND_S      seconds of each run in a paired round (default 4); per non-reference target
 *                      and batch size: 2 x BENCH_WARMUP + (2 x BENCH_ROUNDS + 1) x BENCH_ROUND_S s
 *   BENCH_CONNECTIONS  autocannon connections (default 10; pipelining is always 1)
 *   BENCH_GET_ROUNDS   timed GETs of the 100k-flow hour (default 20, after 3 warm-ups)
 *   BENCH_LOAD_CONCURRENCY  concurrent POSTs while loading data (default 4)
 *   BENCH_HANDOFF_TIMEOUT   seconds the handoff to n4 may take (default 300)
 *   BENCH_FAILOVER_TIMEOUT  seconds each failover may take (default 60)
 *   BENCH_SETTLE_TIMEOUT    seconds a cluster may take to settle after adding a node (default 180)
 *   BENCH_NATS_SERVER  nats-server binary (default /usr/sbin/nats-server, else from PATH)
 *   BENCH_NATS_GOMAXPROCS  GOMAXPROCS of the clusters' nats-server (default 1; 0 = leave it to
 *                      Go, one per CPU). On a 2-core machine shared with four node processes and
 *                      the load generator, Go's idle-processor spinning costs the nodes CPU (README,
 *                      "Benchmark").
 *   BENCH_OUT          results file (default bench/results/latest.json)
 *
 * Results: printed as a table and written to bench/results/latest.json (git-ignored):
 * {
 *   "date":      ISO-8601 time the bench finished,
 *   "machine":   { "cpus": logical CPU count, "cpu_model", "node": process.version,
 *                  "platform", "arch", "total_mem_bytes" },
 *   "settings":  { "duration_s", "warmup_s", "rounds", "round_s", "connections", "pipelining", "get_rounds",
 *                  "load_concurrency", "nats_gomaxprocs" (0: Go's default), "targets": [keys],
 *                  "scenarios": [names] },
 *   "<target key>" (one object per target run: "reference", "embedded", "cluster-r1", ...): {
 *     "flows_per_s_batch100"      flows/s through POST /flows with 100-record bodies
 *                                 (10 bodies cycled; 1000 distinct keys over 24 hours)
 *                                 = 2xx responses per second x 100; the reference target: its
 *                                 measured run (step 2a); every other target: the median of
 *                                 its BENCH_ROUNDS paired-round runs (step 2b)
 *     "flows_per_s_batch1000"     the same with one 1000-record body holding all 1000 keys
 *     Every target but the reference, when the throughput scenario ran (absent otherwise):
 *     "flows_per_s_ratio_batch100_paired", "flows_per_s_ratio_batch1000_paired"  the median of
 *                                 the per-round ratios target / paired reference (step 2b);
 *                                 the batch-1000 one is what the throughput goal is judged on
 *     "get_hour_100k_ms_median"   median ms of GET /flows?hour=H (full body read) for an
 *                                 hour holding 100,000 distinct flows, sequential requests
 *     "get_hour_100k_ms_p90"      90th percentile of the same
 *     "rss_bytes_per_flow_1m"     (RSS after loading 1,000,000 distinct flows - RSS right
 *                                 after startup) / 1e6, in a fresh process; RSS is VmRSS
 *                                 from /proc/<pid>/status summed over the target's pids
 *                                 (a cluster's node processes), read 2 s after startup and
 *                                 2 s after the last POST
 *     "rss_total_bytes_per_flow_1m"  RSS after loading / 1e6 (includes the runtime)
 *     "rss_baseline_bytes", "rss_after_1m_bytes"  the two raw RSS readings
 *     Cluster targets only (keys absent on the others):
 *     "rss_nats_baseline_bytes", "rss_nats_after_1m_bytes"  nats-server's VmRSS at the same
 *                                 two moments (not included in any figure above)
 *     cluster-r1 only (scenario "handoff"):
 *     "handoff_1m_ms"             ms from spawning shard node n4 (1,000,000 flows in the
 *                                 cluster) to the second of the two consecutive settled
 *                                 /cluster answers with the same epoch (method step 5)
 *     "handoff_flows_moved"       n4's `flows` in /cluster `nodes[]` at that moment
 *     "handoff_partitions_moved"  n4's `primaries` at that moment
 *     cluster-r2 only (scenario "failover"):
 *     "failover_ms"               [ms of each of the 3 non-coordinator kills] (method step 6)
 *     "failover_ms_median"        their median
 *     "failover_coordinator_ms"   the same for the kill of the coordinator
 *     "flagged":  list of problems (non-2xx responses, connection errors, wrong GET
 *                 result, data lost or doubled after a handoff or failover, retries needed
 *                 after a failover, failed or timed-out scenario); empty = clean run
 *     "suspect_figures": keys of the figures above that come from a flagged run (shown
 *                 with "!" in the table; their goals_met is null)
 *     "details":  per-run raw figures: "batch100" / "batch1000" (the reference target's run;
 *                 null on the others) { requests_2xx, non2xx, errors (incl. timeouts), timeouts,
 *                 duration_s, requests_per_s, latency_ms_p50, latency_ms_p99, status_codes },
 *                 every other target (throughput scenario): "batch100_paired" / "batch1000_paired"
 *                 { batch, warmup_s, round_s, rounds: [{ round, reference_before_flows_per_s,
 *                 target_flows_per_s, reference_after_flows_per_s, ratio }], ratio_median,
 *                 target_flows_per_s_median, reference_flows_per_s_median, reference_runs:
 *                 [ROUNDS + 1 runs as "batch100"], target_runs: [ROUNDS runs as "batch100"],
 *                 cpu_ms_per_request: { <process>: ms, ..., total } (user + system CPU time from
 *                 /proc/<pid>/stat over the target runs, per 2xx request; a cluster's processes
 *                 by NODEID plus "nats-server"; the load generator is not included: it is the same
 *                 for both), reference_cpu_ms_per_request: { reference, total } (the same over the
 *                 paired reference's runs) },
 *                 "paired_reference" { rss_start_bytes, rss_end_bytes } (its VmRSS at start and
 *                 after the last round), "get_hour_100k"
 *                 { flows_returned, body_bytes, samples_ms }, "load_1m" { posts, failed, seconds },
 *                 and on cluster targets:
 *                 "cluster_starts": [{ "for": scenarios it served, "start_ms": nats-server spawn
 *                   to settled, "namespace" }],
 *                 "handoff" (cluster-r1): { node, handoff_ms, first_seen_ms (first of the two
 *                   settled answers), join_ms (spawn to n4's first INFO on NATS), flows_moved,
 *                   partitions_moved, epoch_before, epoch_after, flows_total_before /
 *                   flows_total_after (sum of /cluster partitions[].flows), node_flows_after
 *                   { nodeID: flows }, polls, ready_non200 (GET /ready answers other than 200
 *                   while polling), request_errors (failed or non-200 /cluster, failed /ready),
 *                   max_poll_ms (slowest /ready + /cluster poll), samples (first distinct errors),
 *                   load_1m (null when the memory scenario's load was reused), problems },
 *                 "failover" (cluster-r2): { fourth_node_settle_ms, flows_loaded, problems,
 *                   kills: [ per kill: { killed, was_coordinator, coordinator_before,
 *                   coordinator_after, ms, ready_epoch_changed_ms (kill to the first GET /ready
 *                   whose `epoch` changed: the new placement reached the gateway; GET /cluster can
 *                   only show it later, see method step 6), epoch_before, epoch_after, polls, ready_non200,
 *                   request_errors, max_poll_ms, samples, read_tries (GETs of the hour until
 *                   200), write_tries, write_status (the probe POST), replacement (its NODEID),
 *                   replacement_settle_ms (its spawn to settled), problems } ],
 *                   coordinator_kill: the same for the coordinator (replacement null) }
 *   }  (a figure is null when its scenario did not run or failed)
 *   "ratios": { "<target key>" (every target but "reference"): {
 *     "flows_per_s_batch100_paired", "flows_per_s_batch1000_paired"  the target's paired
 *                                 median ratios (as above; higher is better): read these
 *     "flows_per_s_batch100", "flows_per_s_batch1000"   target / reference target, unpaired:
 *                                 runs minutes apart, so mostly the machine's load; kept for comparison
 *     "get_hour_100k_ms_median", "rss_bytes_per_flow_1m" target / reference (lower is better)
 *   } },
 *   "goals":   { "flows_per_s_ratio_batch1000_min": 0.85, "get_hour_100k_ms_median_max": 60,
 *                "rss_bytes_per_flow_1m_max": 160 }   (the embedded node's, from the issues)
 *   "goals_by_target": { "<target key>" (every target run that has goals): its goals, e.g.
 *                "embedded": as "goals"; "cluster-r1": { "flows_per_s_ratio_batch1000_min": 0.4,
 *                "get_hour_100k_ms_median_max": 150 }; "cluster-r2": { ..._min: 0.33,
 *                "get_hour_100k_ms_median_max": 150, "failover_ms_median_max": 5000 } }
 *   "goals_met": { "<target key>" (every target but "reference"): { "flows_per_s_ratio_batch1000"
 *                (judged on flows_per_s_ratio_batch1000_paired), "get_hour_100k_ms_median",
 *                "rss_bytes_per_flow_1m", "failover_ms_median":
 *                true | false | null (null: no such goal for the target, figure missing or suspect) } }
 * Table: a column per target, then "<target>/ref" columns. In the two flows/s rows a target's cell is
 * its paired median flows/s and its /ref cell its paired median ratio (not target / the reference
 * column); below the table, each target's per-round ratios and flows/s.
 * }
 * Exit code: 0 when every scenario of every target ran clean (goals missed or not), 1 otherwise.
 */

import { ChildProcess, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { performance } from "perf_hooks";
import autocannon = require("autocannon");
import { connect as natsConnect, type NatsConnection } from "nats";

// ---------------------------------------------------------------------------------------
// Settings

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return n;
}

function envList(name: string, all: string[]): string[] {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return all;
  const list = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const unknown = list.filter((s) => !all.includes(s));
  if (unknown.length > 0) throw new Error(`${name}: unknown ${unknown.join(", ")} (known: ${all.join(", ")})`);
  return list;
}

const DURATION_S = envNumber("BENCH_DURATION", 8);
const WARMUP_S = envNumber("BENCH_WARMUP", 2);
/** Paired throughput rounds of a non-reference target (method step 2b). */
const ROUNDS = Math.max(1, Math.round(envNumber("BENCH_ROUNDS", 5)));
const ROUND_S = envNumber("BENCH_ROUND_S", 4);
const CONNECTIONS = Math.round(envNumber("BENCH_CONNECTIONS", 10));
const PIPELINING = 1;
const GET_ROUNDS = Math.round(envNumber("BENCH_GET_ROUNDS", 20));
const GET_WARMUPS = 3;
const LOAD_CONCURRENCY = Math.round(envNumber("BENCH_LOAD_CONCURRENCY", 4));
const SETTLE_MS = 2000;
const READY_TIMEOUT_MS = 60_000;

const GOALS = {
  flows_per_s_ratio_batch1000_min: 0.85,
  get_hour_100k_ms_median_max: 60,
  rss_bytes_per_flow_1m_max: 160,
};

/** The repository root: the nearest ancestor of this file holding package.json (works from bench/ and dist/bench/). */
function findRepoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = parent;
  }
}
const ROOT = findRepoRoot();

// ---------------------------------------------------------------------------------------
// Child processes: every child is tracked and killed on exit, on signals and on errors.

const children = new Set<ChildProcess>();

function killAllChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill("SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }
  children.clear();
}

process.on("exit", killAllChildren);
for (const [signal, number] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const) {
  process.on(signal, () => {
    console.error(`\nbench: ${signal}, stopping children`);
    killAllChildren();
    process.exit(128 + number);
  });
}
process.on("uncaughtException", (err) => {
  console.error("bench: uncaught exception:", err);
  killAllChildren();
  process.exit(1);
});
process.on("unhandledRejection", (err) => {
  console.error("bench: unhandled rejection:", err);
  killAllChildren();
  process.exit(1);
});

interface Child {
  process: ChildProcess;
  /** Last lines of its stdout/stderr, for error messages. */
  tail(): string;
  exited(): boolean;
  /** SIGTERM, then SIGKILL after 5 s; resolves when it has exited. */
  stop(): Promise<void>;
  /** SIGKILL (kill -9); resolves when it has exited. */
  kill(): Promise<void>;
}

const MAX_ECHOED_LINES = 200;

/** Start `node <args>` with its output echoed (prefixed) to our stderr. */
function startNode(label: string, args: string[], env: Record<string, string>): Child {
  return startProcess(label, process.execPath, args, env, MAX_ECHOED_LINES);
}

/** Start `command <args>` (cwd: the repo root); its first `echoLines` output lines are echoed (prefixed) to our stderr. */
function startProcess(label: string, command: string, args: string[], env: Record<string, string>, echoLines: number): Child {
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const lines: string[] = [];
  let echoed = 0;
  const onLine = (line: string): void => {
    if (line.trim() !== "") {
      lines.push(line);
      if (lines.length > 40) lines.shift();
      if (echoed < echoLines) {
        echoed++;
        process.stderr.write(`  [${label}] ${line}\n`);
        if (echoed === echoLines) process.stderr.write(`  [${label}] (further output not echoed)\n`);
      }
    }
  };
  for (const stream of [child.stdout, child.stderr]) {
    let partial = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (text: string) => {
      const parts = (partial + text).split("\n");
      partial = parts.pop() ?? "";
      parts.forEach(onLine);
    });
    stream?.on("end", () => onLine(partial));
  }
  let hasExited = false;
  const exitPromise = new Promise<void>((resolve) => {
    child.on("exit", () => {
      hasExited = true;
      children.delete(child);
      resolve();
    });
    child.on("error", (err) => {
      lines.push(`spawn error: ${err.message}`);
      hasExited = true;
      children.delete(child);
      resolve();
    });
  });
  return {
    process: child,
    tail: () => lines.join("\n"),
    exited: () => hasExited,
    async stop(): Promise<void> {
      if (hasExited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (!hasExited) child.kill("SIGKILL");
      }, 5000);
      await exitPromise;
      clearTimeout(timer);
    },
    async kill(): Promise<void> {
      if (hasExited) return;
      child.kill("SIGKILL");
      await exitPromise;
    },
  };
}

/** A free TCP port on 127.0.0.1 (listen on port 0, read it, close). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("could not read the free port"));
        return;
      }
      const port = address.port;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------
// A little HTTP client (keep-alive agent per use), for loading data and timing GETs.

interface HttpResponse {
  status: number;
  body: Buffer;
}

function httpRequest(
  agent: http.Agent | false,
  url: string,
  method: string,
  pathAndQuery: string,
  body?: string,
  timeoutMs = 60_000,
  extraHeaders: Record<string, string> = {},
): Promise<HttpResponse> {
  const target = new URL(pathAndQuery, url);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...extraHeaders };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = Buffer.byteLength(body);
    }
    const req = http.request(
      { host: target.hostname, port: target.port, path: target.pathname + target.search, method, agent, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${pathAndQuery}: no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** Wait until GET /health answers 200 (or the child dies, or READY_TIMEOUT_MS passes). */
async function waitForHealth(url: string, procs: Child[], label: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    const dead = procs.find((c) => c.exited());
    if (dead !== undefined) {
      await sleep(200); // let its last output arrive
      const tail = dead.tail();
      const lastLine = tail.split("\n").pop() ?? "";
      throw new Error(`${label} exited before it was ready (exit ${dead.process.exitCode ?? dead.process.signalCode}; last output: ${lastLine || "none"})\n${tail}`);
    }
    try {
      const res = await httpRequest(false, url, "GET", "/health", undefined, 1000);
      if (res.status === 200) return;
      last = `GET /health answered ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${label} not ready within ${READY_TIMEOUT_MS} ms (${last})\n${procs.map((c) => c.tail()).join("\n")}`);
}

// ---------------------------------------------------------------------------------------
// Targets

interface Running {
  /** Base URL of the (gateway) HTTP endpoint, e.g. http://127.0.0.1:41234 */
  url: string;
  /** Every process that holds the target's state (their RSS is summed); a cluster keeps it current as nodes come and go. */
  pids: number[];
  /** Cluster targets: nats-server's pid (its RSS is reported on its own, never in the sum). */
  natsPid?: number;
  /** Cluster targets: the handle that adds and kills nodes. */
  cluster?: Cluster;
  stop(): Promise<void>;
}

/** A target's goals (from the issues); a missing goal is not judged. */
interface Goals {
  flows_per_s_ratio_batch1000_min: number;
  get_hour_100k_ms_median_max: number;
  rss_bytes_per_flow_1m_max?: number;
  failover_ms_median_max?: number;
}

interface Target {
  /** Key in results JSON and BENCH_TARGETS. */
  key: string;
  /** Column title. */
  title: string;
  /** Its goals (none for the reference). */
  goals?: Goals;
  /** Cluster targets: the cluster-only scenarios it runs ("handoff", "failover"); undefined = not a cluster. */
  clusterScenarios?: string[];
  start(): Promise<Running>;
}

/** One node process started with `args`, ready when GET /health = 200. */
async function startSingleNode(label: string, args: string[], env: Record<string, string>): Promise<Running> {
  const port = await freePort();
  const child = startNode(label, args, { ...env, PORT: String(port) });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHealth(url, [child], label);
  } catch (err) {
    await child.stop();
    throw err;
  }
  const pid = child.process.pid;
  if (pid === undefined) throw new Error(`${label}: no pid`);
  return { url, pids: [pid], stop: () => child.stop() };
}

/** `node <these> ` starts a Flowmesh node (moleculer-runner with the built config), cwd = repo root. */
function flowmeshRunnerArgs(): string[] {
  const runner = path.join(ROOT, "node_modules", "moleculer", "bin", "moleculer-runner.js");
  const config = path.join(ROOT, "dist", "moleculer.config.js");
  const services = path.join(ROOT, "dist", "services");
  for (const p of [runner, config, services]) {
    if (!fs.existsSync(p)) throw new Error(`${path.relative(ROOT, p)} is missing (run npm run build)`);
  }
  return [runner, "--config", "dist/moleculer.config.js"];
}
const FLOWMESH_ENV = { SERVICEDIR: "dist/services", LOGLEVEL: "warn" };

const referenceTarget: Target = {
  key: "reference",
  title: "reference",
  start: () => startSingleNode("reference", [path.join(ROOT, "bench", "reference-server.js")], {}),
};

const embeddedTarget: Target = {
  key: "embedded",
  title: "flowmesh",
  goals: GOALS,
  start: () => startSingleNode("flowmesh", flowmeshRunnerArgs(), FLOWMESH_ENV),
};

// ---------------------------------------------------------------------------------------
// Cluster targets: nats-server + SHARD_NODES shard nodes + one gateway node.

const NATS_SERVER = process.env.BENCH_NATS_SERVER || (fs.existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server");
const NATS_GOMAXPROCS = String(Math.max(0, Math.round(envNumber("BENCH_NATS_GOMAXPROCS", 1))));
const NATS_ENV: Record<string, string> = NATS_GOMAXPROCS === "0" ? {} : { GOMAXPROCS: NATS_GOMAXPROCS };
const SHARD_NODES = 3;
const GATEWAY_ID = "gw";
const SHARD_JOIN_TIMEOUT_MS = 30_000;
const CLUSTER_START_TIMEOUT_MS = 120_000;
const CLUSTER_SETTLE_TIMEOUT_MS = envNumber("BENCH_SETTLE_TIMEOUT", 180) * 1000;
const HANDOFF_TIMEOUT_MS = envNumber("BENCH_HANDOFF_TIMEOUT", 300) * 1000;
const FAILOVER_TIMEOUT_MS = envNumber("BENCH_FAILOVER_TIMEOUT", 60) * 1000;
const FAILOVER_KILLS = 3;
const FAILOVER_POLL_MS = 50;
/** polls of a failover that may wait at once (a GET /cluster can wait ~3 s on a node that just died) */
const FAILOVER_MAX_IN_FLIGHT = 100;
const HANDOFF_POLL_MS = 100;
const SETTLE_POLL_MS = 200;

/** GET /cluster (services/cluster.service.ts), the parts the bench reads. */
interface ClusterStatus {
  coordinator: string | null;
  epoch: number;
  partitionCount: number;
  replicas: number;
  nodes: { nodeID: string; flows: number; primaryFlows: number; primaries: number; replicas: number }[];
  partitions: { partition: number; primary: string | null; replicas: string[]; flows: number }[];
  underReplicated: number[];
  handoffs: { partition: number; from: string; to: string; progress?: number }[];
}

const now = (): number => performance.now();

/** True when something accepts TCP connections on 127.0.0.1:port. */
function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(500);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

class Cluster {
  readonly namespace = `bench-${crypto.randomBytes(4).toString("hex")}`;
  url = "";
  natsPort = 0;
  /** Node processes alive (not killed by us), by NODEID; the gateway included. */
  readonly nodes = new Map<string, Child>();
  /** NODEIDs this bench killed with SIGKILL. */
  readonly killed = new Set<string>();
  /** pids of the live node processes (the Running's pids: same array). */
  readonly pids: number[] = [];
  /** NODEID -> now() when its first INFO packet listing the flow-shard service was seen on NATS. */
  readonly joinedAt = new Map<string, number>();
  private nats: Child | null = null;
  private natsStore: string | null = null;
  private watcher: NatsConnection | null = null;
  private shardCounter = 0;

  constructor(
    readonly label: string,
    readonly replicas: number,
  ) {}

  get natsPid(): number | undefined {
    return this.nats?.process.pid;
  }

  nextShardID(): string {
    return `n${++this.shardCounter}`;
  }

  shardIDs(): string[] {
    return [...this.nodes.keys()].filter((id) => id !== GATEWAY_ID);
  }

  /** nats-server on a free port, then a passive subscriber that sees nodes announce themselves (INFO packets). */
  private async startNats(): Promise<void> {
    this.natsPort = await freePort();
    // JetStream holds the placement table (src/placement-store.ts); its store is this run's alone.
    this.natsStore = fs.mkdtempSync(path.join(os.tmpdir(), "flowmesh-bench-nats-"));
    this.nats = startProcess(`${this.label} nats`, NATS_SERVER, ["-a", "127.0.0.1", "-p", String(this.natsPort), "-js", "-sd", this.natsStore], NATS_ENV, 0);
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(this.natsPort))) {
      if (this.nats.exited()) throw new Error(`${this.label}: nats-server exited at start (${NATS_SERVER})\n${this.nats.tail()}`);
      if (Date.now() > deadline) throw new Error(`${this.label}: nats-server not listening on port ${this.natsPort} within 10 s\n${this.nats.tail()}`);
      await sleep(50);
    }
    this.watcher = await natsConnect({ servers: `127.0.0.1:${this.natsPort}`, name: "flowmesh-bench-watcher", reconnect: false });
    const decoder = new TextDecoder();
    this.watcher.subscribe(`MOL-${this.namespace}.INFO`, {
      callback: (err, msg) => {
        if (err) return;
        try {
          const info = JSON.parse(decoder.decode(msg.data)) as { sender?: string; services?: { name?: string }[] };
          if (typeof info.sender === "string" && !this.joinedAt.has(info.sender) && info.services?.some((s) => s.name === "flow-shard")) {
            this.joinedAt.set(info.sender, now());
          }
        } catch {
          /* not a JSON packet: ignore */
        }
      },
    });
  }

  private spawnNode(nodeID: string, services: string, port: number): Child {
    const child = startNode(`${this.label} ${nodeID}`, flowmeshRunnerArgs(), {
      ...FLOWMESH_ENV,
      TRANSPORTER: `nats://127.0.0.1:${this.natsPort}`,
      NAMESPACE: this.namespace,
      NODEID: nodeID,
      REPLICAS: String(this.replicas),
      PORT: String(port),
      SERVICES: services,
    });
    this.nodes.set(nodeID, child);
    if (child.process.pid !== undefined) this.pids.push(child.process.pid);
    return child;
  }

  /** Spawn a shard node (SERVICES=flow-shard) and return at once with the spawn time (now()). */
  async spawnShard(nodeID: string): Promise<number> {
    if (this.nodes.has(nodeID) || this.killed.has(nodeID)) throw new Error(`${this.label}: node ${nodeID} was started before`);
    const port = await freePort(); // unused by a shard node (no api service), but set as for any node
    const t = now();
    this.spawnNode(nodeID, "flow-shard", port);
    return t;
  }

  /** Wait until the shard node announced itself on NATS with its flow-shard service. */
  async waitJoined(nodeID: string, timeoutMs = SHARD_JOIN_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.joinedAt.has(nodeID)) {
      this.assertAlive();
      if (Date.now() > deadline) throw new Error(`${this.label}: shard ${nodeID} did not announce itself on NATS within ${timeoutMs / 1000} s\n${this.nodes.get(nodeID)?.tail() ?? ""}`);
      await sleep(50);
    }
  }

  /** NATS, then the shard nodes one after another (each announced before the next), then the gateway; until settled. */
  async start(): Promise<void> {
    await this.startNats();
    for (let i = 0; i < SHARD_NODES; i++) {
      const id = this.nextShardID();
      await this.spawnShard(id);
      await this.waitJoined(id);
    }
    const port = await freePort();
    this.spawnNode(GATEWAY_ID, "api,flows,cluster", port);
    this.url = `http://127.0.0.1:${port}`;
    await waitForHealth(this.url, [...this.nodes.values()], this.label);
    await pollCluster(this, now(), {
      what: `${this.label} start`,
      timeoutMs: CLUSTER_START_TIMEOUT_MS,
      intervalMs: SETTLE_POLL_MS,
      stableEpochPolls: 2,
      checkReady: true,
      condition: settledOn(this.shardIDs(), false),
    });
  }

  /** kill -9 a node; it leaves `nodes` and `pids` at once. */
  async kill9(nodeID: string): Promise<void> {
    const child = this.nodes.get(nodeID);
    if (child === undefined) throw new Error(`${this.label}: no live node ${nodeID}`);
    this.killed.add(nodeID);
    this.nodes.delete(nodeID);
    const i = this.pids.indexOf(child.process.pid ?? -1);
    if (i >= 0) this.pids.splice(i, 1);
    await child.kill();
  }

  /** Throws when nats-server or a node the bench did not kill has exited. */
  assertAlive(): void {
    if (this.nats?.exited()) throw new Error(`${this.label}: nats-server exited\n${this.nats.tail()}`);
    for (const [id, child] of this.nodes) {
      if (child.exited()) throw new Error(`${this.label}: node ${id} exited unexpectedly (${child.process.exitCode ?? child.process.signalCode})\n${child.tail()}`);
    }
  }

  /** SIGKILL every node at once (a SIGTERM would start graceful handoffs), then stop nats-server. */
  async stop(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((c) => c.kill()));
    this.nodes.clear();
    this.pids.length = 0;
    if (this.watcher) {
      await this.watcher.close().catch(() => undefined);
      this.watcher = null;
    }
    if (this.nats) await this.nats.stop();
    if (this.natsStore) fs.rmSync(this.natsStore, { recursive: true, force: true });
  }
}

async function startCluster(label: string, replicas: number): Promise<Running> {
  const cluster = new Cluster(label, replicas);
  try {
    await cluster.start();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return { url: cluster.url, pids: cluster.pids, natsPid: cluster.natsPid, cluster, stop: () => cluster.stop() };
}

const clusterR1Target: Target = {
  key: "cluster-r1",
  title: "cluster-r1",
  goals: { flows_per_s_ratio_batch1000_min: 0.4, get_hour_100k_ms_median_max: 150 },
  clusterScenarios: ["handoff"],
  start: () => startCluster("cluster-r1", 1),
};

const clusterR2Target: Target = {
  key: "cluster-r2",
  title: "cluster-r2",
  goals: { flows_per_s_ratio_batch1000_min: 0.33, get_hour_100k_ms_median_max: 150, failover_ms_median_max: 5000 },
  clusterScenarios: ["failover"],
  start: () => startCluster("cluster-r2", 2),
};

const TARGETS: Target[] = [referenceTarget, embeddedTarget, clusterR1Target, clusterR2Target];

// ---------------------------------------------------------------------------------------
// Watching a cluster through its gateway

interface JsonAnswer<T> {
  status: number;
  json: T | null;
  text: string;
}

async function getJson<T>(url: string, pathAndQuery: string, timeoutMs: number): Promise<JsonAnswer<T>> {
  const res = await httpRequest(false, url, "GET", pathAndQuery, undefined, timeoutMs);
  const text = res.body.toString("utf8");
  let json: T | null = null;
  try {
    json = JSON.parse(text) as T;
  } catch {
    json = null;
  }
  return { status: res.status, json, text };
}

async function clusterStatus(url: string): Promise<ClusterStatus> {
  const c = await getJson<ClusterStatus>(url, "/cluster", 10_000);
  if (c.status !== 200 || c.json === null) throw new Error(`GET /cluster answered ${c.status}: ${c.text.slice(0, 300)}`);
  return c.json;
}

/** null when the cluster status meets it, else why not. */
type Condition = (s: ClusterStatus) => string | null;

/** Exactly `expected` shard nodes, each with primaries, no handoff, every primary one of them (and, if asked, every partition with R copies). */
function settledOn(expected: string[], requireReplicated: boolean): Condition {
  const want = [...expected].sort();
  return (s) => {
    const ids = s.nodes.map((n) => n.nodeID).sort();
    if (ids.join(",") !== want.join(",")) return `nodes [${ids.join(", ")}], waiting for [${want.join(", ")}]`;
    const idle = s.nodes.filter((n) => n.primaries === 0).map((n) => n.nodeID);
    if (idle.length > 0) return `no primaries yet on ${idle.join(", ")}`;
    if (s.handoffs.length > 0) return `${s.handoffs.length} handoff(s) under way`;
    const bad = s.partitions.filter((p) => p.primary === null || !want.includes(p.primary)).length;
    if (s.partitions.length !== s.partitionCount || bad > 0) return `${bad} of ${s.partitionCount} partitions without a primary among the nodes`;
    if (requireReplicated && s.underReplicated.length > 0) return `${s.underReplicated.length} partition(s) under-replicated`;
    return null;
  };
}

/** Every partition has a primary, and it is one of `live`. */
function primariesOn(live: string[]): Condition {
  return (s) => {
    if (s.partitions.length !== s.partitionCount) return `${s.partitions.length} of ${s.partitionCount} partitions listed`;
    const bad = s.partitions.filter((p) => p.primary === null || !live.includes(p.primary));
    if (bad.length === 0) return null;
    const by = new Map<string, number>();
    for (const p of bad) by.set(p.primary ?? "none", (by.get(p.primary ?? "none") ?? 0) + 1);
    return `${bad.length} partition(s) without a live primary (${[...by].map(([n, c]) => `${c} on ${n}`).join(", ")})`;
  };
}

function describeStatus(s: ClusterStatus): string {
  const nodes = s.nodes.map((n) => `${n.nodeID} ${n.primaries}p/${n.replicas}r/${fmtInt(n.flows)}f`).join(", ");
  return `epoch ${s.epoch}, coordinator ${s.coordinator}, ${nodes}, ${s.handoffs.length} handoffs, ${s.underReplicated.length} under-replicated`;
}

interface PollOutcome {
  status: ClusterStatus;
  /** ms from t0 to the answer that completed the condition (the last of the stable polls). */
  ms: number;
  /** ms from t0 to the first answer of that final run of satisfying polls (= ms when one poll suffices). */
  first_seen_ms: number;
  polls: number;
  /** GET /ready answers other than 200 seen while polling. */
  ready_non200: number;
  /** GET /cluster or /ready requests that failed or answered non-200 (other than /ready's non-200 above). */
  request_errors: number;
  /** slowest poll (GET /ready + GET /cluster), ms */
  max_poll_ms: number;
  /** the first few distinct non-200 answers / errors seen */
  samples: string[];
  /** ms from t0 to the first GET /ready answer whose `epoch` differs from PollOptions.epochBefore (null: none, or not asked) */
  ready_epoch_changed_ms: number | null;
}

interface PollOptions {
  what: string;
  timeoutMs: number;
  intervalMs: number;
  /** consecutive satisfying polls with the same epoch required (serial polling only) */
  stableEpochPolls: number;
  /** also require GET /ready = 200 (polled first) */
  checkReady: boolean;
  condition: Condition;
  /** print a progress line every 2 s */
  progress?: boolean;
  /** > 1: start a poll every intervalMs even while earlier ones are still waiting, up to this many at once */
  maxInFlight?: number;
  /** note when GET /ready's `epoch` (the gateway's placement table) first differs from this */
  epochBefore?: number;
}

/** One poll: GET /ready (if asked; /cluster only when it is 200), then GET /cluster. */
async function pollOnce(
  url: string,
  checkReady: boolean,
  onReadyEpoch?: (epoch: number) => void,
): Promise<{ status: ClusterStatus | null; reason: string; readyNon200: boolean; error: boolean; ms: number }> {
  const start = now();
  try {
    if (checkReady) {
      const r = await getJson<{ epoch?: number }>(url, "/ready", 5000);
      if (r.status !== 200) return { status: null, reason: `GET /ready answered ${r.status}: ${r.text.slice(0, 200)}`, readyNon200: true, error: false, ms: now() - start };
      if (onReadyEpoch && typeof r.json?.epoch === "number") onReadyEpoch(r.json.epoch);
    }
    const c = await getJson<ClusterStatus>(url, "/cluster", 10_000);
    if (c.status !== 200 || c.json === null) return { status: null, reason: `GET /cluster answered ${c.status}: ${c.text.slice(0, 200)}`, readyNon200: false, error: true, ms: now() - start };
    return { status: c.json, reason: "", readyNon200: false, error: false, ms: now() - start };
  } catch (err) {
    return { status: null, reason: (err as Error).message, readyNon200: false, error: true, ms: now() - start };
  }
}

/** Poll GET /ready (if asked) and GET /cluster through the gateway until the condition holds (serial, intervalMs between polls, unless maxInFlight > 1). */
async function pollCluster(cluster: Cluster, t0: number, o: PollOptions): Promise<PollOutcome> {
  if ((o.maxInFlight ?? 1) > 1) return pollClusterOverlapping(cluster, t0, o);
  let polls = 0;
  let readyNon200 = 0;
  let requestErrors = 0;
  let maxPollMs = 0;
  let streak = 0;
  let streakEpoch = -1;
  let firstSeen = 0;
  let reason = "no answer yet";
  let last: ClusterStatus | null = null;
  let lastProgress = now();
  const samples: string[] = [];
  for (;;) {
    cluster.assertAlive();
    polls++;
    const p = await pollOnce(cluster.url, o.checkReady);
    const t = now();
    maxPollMs = Math.max(maxPollMs, p.ms);
    if (p.readyNon200) readyNon200++;
    if (p.error) requestErrors++;
    if (p.status === null) {
      reason = p.reason;
      const text = `${((t - t0) / 1000).toFixed(2)} s: ${p.reason}`;
      if (samples.length < 5) samples.push(text);
    } else {
      last = p.status;
    }
    const unmet = p.status === null ? reason : o.condition(p.status);
    if (p.status !== null && unmet === null) {
      if (streak > 0 && p.status.epoch === streakEpoch) {
        streak++;
      } else {
        streak = 1;
        streakEpoch = p.status.epoch;
        firstSeen = t;
      }
      if (streak >= o.stableEpochPolls) {
        return {
          status: p.status,
          ms: t - t0,
          first_seen_ms: firstSeen - t0,
          polls,
          ready_non200: readyNon200,
          request_errors: requestErrors,
          max_poll_ms: maxPollMs,
          samples,
          ready_epoch_changed_ms: null,
        };
      }
      reason = `epoch ${p.status.epoch}: waiting for ${o.stableEpochPolls} polls with the same epoch`;
    } else {
      streak = 0;
      reason = unmet ?? reason;
    }
    if (o.progress && t - lastProgress >= 2000) {
      lastProgress = t;
      console.log(`      ${o.what}: ${((t - t0) / 1000).toFixed(1)} s; ${last ? describeStatus(last) : "no /cluster yet"}; ${reason}`);
    }
    if (t - t0 >= o.timeoutMs) {
      throw new Error(`${o.what}: not done within ${o.timeoutMs / 1000} s (${polls} polls; last: ${reason}${last ? `; ${describeStatus(last)}` : ""})`);
    }
    await sleep(o.intervalMs);
  }
}

/**
 * A poll started every intervalMs whether or not earlier ones have answered (at most maxInFlight at
 * once): one slow GET /cluster (e.g. waiting on a dead node) does not coarsen the timing. Done at the
 * first answer meeting the condition (one poll suffices); then waits for the polls still out.
 */
function pollClusterOverlapping(cluster: Cluster, t0: number, o: PollOptions): Promise<PollOutcome> {
  const maxInFlight = o.maxInFlight ?? 1;
  let polls = 0;
  let inFlight = 0;
  let readyNon200 = 0;
  let requestErrors = 0;
  let maxPollMs = 0;
  let reason = "no answer yet";
  let last: ClusterStatus | null = null;
  let lastProgress = now();
  const samples: string[] = [];
  const pending = new Set<Promise<void>>();
  let epochChanged: number | null = null;
  const onReadyEpoch =
    o.epochBefore === undefined
      ? undefined
      : (epoch: number): void => {
          if (epochChanged === null && epoch !== o.epochBefore) epochChanged = now() - t0;
        };
  return new Promise<PollOutcome>((resolve, reject) => {
    let finished = false;
    let timer: NodeJS.Timeout | null = null;
    const finish = (outcome: PollOutcome | null, err: Error | null): void => {
      if (finished) return;
      finished = true;
      if (timer) clearTimeout(timer);
      // let the polls still out answer (or time out) before going on
      void Promise.allSettled([...pending]).then(() => (err ? reject(err) : resolve(outcome!)));
    };
    const tick = (): void => {
      if (finished) return;
      const t = now();
      try {
        cluster.assertAlive();
      } catch (err) {
        finish(null, err as Error);
        return;
      }
      if (t - t0 >= o.timeoutMs) {
        finish(null, new Error(`${o.what}: not done within ${o.timeoutMs / 1000} s (${polls} polls; last: ${reason}${last ? `; ${describeStatus(last)}` : ""})`));
        return;
      }
      if (o.progress && t - lastProgress >= 2000) {
        lastProgress = t;
        console.log(`      ${o.what}: ${((t - t0) / 1000).toFixed(1)} s; ${polls} polls, ${inFlight} waiting; ${last ? describeStatus(last) : "no /cluster yet"}; ${reason}`);
      }
      if (inFlight < maxInFlight) {
        inFlight++;
        polls++;
        const p = pollOnce(cluster.url, o.checkReady, onReadyEpoch).then((r) => {
          inFlight--;
          const at = now();
          maxPollMs = Math.max(maxPollMs, r.ms);
          if (r.readyNon200) readyNon200++;
          if (r.error) requestErrors++;
          if (r.status === null) {
            reason = r.reason;
            if (samples.length < 5) samples.push(`${((at - t0) / 1000).toFixed(2)} s: ${r.reason}`);
            return;
          }
          last = r.status;
          const unmet = o.condition(r.status);
          if (unmet !== null) {
            reason = unmet;
            return;
          }
          finish(
            {
              status: r.status,
              ms: at - t0,
              first_seen_ms: at - t0,
              polls,
              ready_non200: readyNon200,
              request_errors: requestErrors,
              max_poll_ms: maxPollMs,
              samples,
              ready_epoch_changed_ms: epochChanged,
            },
            null,
          );
        });
        pending.add(p);
        void p.finally(() => pending.delete(p));
      }
      timer = setTimeout(tick, o.intervalMs);
    };
    tick();
  });
}

// ---------------------------------------------------------------------------------------
// Data: deterministic, identical for every target.

type FlowRecord = import("../src/batching").FlowRecord;

const BASE_HOUR = 480_000; // hours since the epoch, roughly 2024
const THROUGHPUT_KEYS = 1000;
const THROUGHPUT_HOURS = 24;
const GET_HOUR = BASE_HOUR + 100;
const GET_FLOWS = 100_000;
const MEMORY_HOUR0 = BASE_HOUR + 1000;
const MEMORY_FLOWS = 1_000_000;
const LOAD_BATCH = 1000;

const pad4 = (n: number): string => String(n).padStart(4, "0");
const vpc = (n: number): string => `vpc-${(Math.imul(n + 1, 0x9e3779b1) >>> 0).toString(16).padStart(8, "0")}`;

/** Throughput key k (0..999): 1000 distinct keys, hours spread over 24 hours. */
function throughputRecord(k: number): FlowRecord {
  return {
    src_app: `app-${pad4(k % 40)}`,
    dest_app: `svc-${pad4(Math.floor(k / 40))}`,
    vpc_id: vpc(k % 3),
    hour: BASE_HOUR + (k % THROUGHPUT_HOURS),
    bytes_tx: 1000 + k,
    bytes_rx: 500 + 2 * k,
  };
}

/** The throughput bodies: batch 1000 = one body of all keys; batch 100 = 10 bodies of 100 keys. */
function throughputBodies(batch: number): string[] {
  const bodies: string[] = [];
  for (let start = 0; start < THROUGHPUT_KEYS; start += batch) {
    const records: FlowRecord[] = [];
    for (let k = start; k < start + batch; k++) records.push(throughputRecord(k));
    bodies.push(JSON.stringify(records));
  }
  return bodies;
}

/** Body b (0..99) of the 100k-flow hour: 1000 distinct keys each, in scrambled order. */
function getHourBody(b: number): string {
  const records: FlowRecord[] = [];
  for (let i = b * LOAD_BATCH; i < (b + 1) * LOAD_BATCH; i++) {
    const p = (i * 7919) % GET_FLOWS; // 7919 is prime, coprime with 100,000: a permutation
    records.push({
      src_app: `app-${pad4(p % 100)}`,
      dest_app: `svc-${pad4(Math.floor(p / 100) % 100)}`,
      vpc_id: vpc(Math.floor(p / 10_000)),
      hour: GET_HOUR,
      bytes_tx: 100 + (p % 1000),
      bytes_rx: 200 + (p % 777),
    });
  }
  return JSON.stringify(records);
}

/** Body b (0..999) of the 1M-flow load: hour MEMORY_HOUR0 + b, 1000 distinct keys. */
function memoryBody(b: number): string {
  const records: FlowRecord[] = [];
  for (let c = 0; c < LOAD_BATCH; c++) {
    records.push({
      src_app: `app-${pad4(c % 40)}`,
      dest_app: `svc-${pad4(Math.floor(c / 40))}`,
      vpc_id: vpc(c % 5),
      hour: MEMORY_HOUR0 + b,
      bytes_tx: 1 + c,
      bytes_rx: 2 + c,
    });
  }
  return JSON.stringify(records);
}

// ---------------------------------------------------------------------------------------
// Measurements (each takes the target's URL)

interface RunDetails {
  requests_2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  duration_s: number;
  requests_per_s: number;
  latency_ms_p50: number;
  latency_ms_p99: number;
  status_codes: Record<string, number>;
}

function runAutocannon(opts: autocannon.Options): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    autocannon(opts, (err, result) => (err ? reject(err) : resolve(result)));
  });
}

/** autocannon options that POST the bodies (cycled per connection) to url/flows; the caller adds the duration. */
function throughputOptions(url: string, bodies: string[]): autocannon.Options {
  const headers = { "content-type": "application/json" };
  const requests: autocannon.Request[] = bodies.map((body) => ({ method: "POST", path: "/flows", headers, body }));
  return {
    url,
    connections: CONNECTIONS,
    pipelining: PIPELINING,
    method: "POST",
    headers,
    requests,
    timeout: 30,
  };
}

/** POST the bodies (cycled per connection) for WARMUP_S, then for DURATION_S measured (the reference target's method). */
async function measureThroughput(url: string, bodies: string[]): Promise<RunDetails> {
  const base = throughputOptions(url, bodies);
  await runAutocannon({ ...base, duration: WARMUP_S });
  return throughputRun(base, DURATION_S);
}

/** One measured autocannon run of `seconds`. */
async function throughputRun(base: autocannon.Options, seconds: number): Promise<RunDetails> {
  const r = await runAutocannon({ ...base, duration: seconds });
  const status_codes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(r.statusCodeStats)) status_codes[code] = Number(count);
  return {
    requests_2xx: r["2xx"],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    duration_s: r.duration,
    requests_per_s: r["2xx"] / r.duration,
    latency_ms_p50: r.latency.p50,
    latency_ms_p99: r.latency.p99,
    status_codes,
  };
}

/** One paired round: the target's run between two runs of the paired reference server. */
interface PairedRound {
  round: number;
  reference_before_flows_per_s: number;
  target_flows_per_s: number;
  reference_after_flows_per_s: number;
  /** target / mean(reference before, reference after); null when both reference runs got no 2xx */
  ratio: number | null;
}

interface PairedResult {
  batch: number;
  warmup_s: number;
  round_s: number;
  rounds: PairedRound[];
  ratio_median: number | null;
  target_flows_per_s_median: number;
  reference_flows_per_s_median: number;
  /** ROUNDS + 1 runs, in order (reference_runs[i - 1] and [i] bracket target_runs[i - 1]) */
  reference_runs: RunDetails[];
  target_runs: RunDetails[];
  /**
   * CPU time (user + system) per 2xx request over all target runs, in ms, by process (a cluster's
   * NODEIDs and "nats-server") and "total"; the same for the paired reference over its runs. The
   * load generator (this process) is in neither.
   */
  cpu_ms_per_request: Record<string, number>;
  reference_cpu_ms_per_request: Record<string, number>;
}

/** A process whose CPU time the paired rounds account for. */
interface MeteredProcess {
  name: string;
  pid: number;
}

/** CPU time (user + system) a process has used so far, in ms, from /proc/<pid>/stat (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN; // gone
  }
}

/** Runs fn, adding each process's CPU time during it to `used`. */
async function metered<T>(procs: MeteredProcess[], used: Map<string, number>, fn: () => Promise<T>): Promise<T> {
  const before = procs.map((p) => cpuMs(p.pid));
  const result = await fn();
  procs.forEach((p, i) => used.set(p.name, (used.get(p.name) ?? 0) + (cpuMs(p.pid) - before[i])));
  return result;
}

function perRequest(used: Map<string, number>, requests: number): Record<string, number> {
  const out: Record<string, number> = {};
  let total = 0;
  for (const [name, ms] of used) {
    out[name] = requests > 0 ? ms / requests : NaN;
    total += ms;
  }
  out.total = requests > 0 ? total / requests : NaN;
  return out;
}

const fmtCpu = (x: Record<string, number>): string =>
  Object.entries(x)
    .map(([name, ms]) => `${name} ${fmt(ms, 2)}`)
    .join(", ");

/** A throughput run's problem (non-2xx answers, errors, no 2xx at all), or null when it ran clean. */
function runProblem(d: RunDetails): string | null {
  if (d.requests_2xx === 0) return `no 2xx answer at all (${JSON.stringify(d.status_codes)}, ${d.errors} errors)`;
  if (d.non2xx > 0 || d.errors > 0) return `${d.non2xx} non-2xx (${JSON.stringify(d.status_codes)}), ${d.errors} errors (${d.timeouts} timeouts)`;
  return null;
}

/**
 * Paired rounds (method step 2b): warm up the reference server, then the target (WARMUP_S each), then
 * reference, target, reference, ..., target, reference: ROUNDS target runs and ROUNDS + 1 reference
 * runs of ROUND_S each, one at a time. Round i's ratio = target run i / the mean of the reference
 * runs just before and just after it (so a load that drifts over the round cancels out).
 */
async function measurePaired(
  targetUrl: string,
  referenceUrl: string,
  batch: number,
  title: string,
  targetProcs: MeteredProcess[],
  referenceProcs: MeteredProcess[],
): Promise<PairedResult> {
  const bodies = throughputBodies(batch);
  const target = throughputOptions(targetUrl, bodies);
  const reference = throughputOptions(referenceUrl, bodies);
  const label = `POST batch ${batch}`;
  await runAutocannon({ ...reference, duration: WARMUP_S });
  await runAutocannon({ ...target, duration: WARMUP_S });
  const flows = (d: RunDetails): number => d.requests_per_s * batch;
  const targetCpu = new Map<string, number>();
  const referenceCpu = new Map<string, number>();
  const reference_runs = [await metered(referenceProcs, referenceCpu, () => throughputRun(reference, ROUND_S))];
  const target_runs: RunDetails[] = [];
  const rounds: PairedRound[] = [];
  for (let i = 1; i <= ROUNDS; i++) {
    target_runs.push(await metered(targetProcs, targetCpu, () => throughputRun(target, ROUND_S)));
    reference_runs.push(await metered(referenceProcs, referenceCpu, () => throughputRun(reference, ROUND_S)));
    const [before, run, after] = [reference_runs[i - 1], target_runs[i - 1], reference_runs[i]];
    const q = ratio(flows(run), (flows(before) + flows(after)) / 2);
    rounds.push({
      round: i,
      reference_before_flows_per_s: flows(before),
      target_flows_per_s: flows(run),
      reference_after_flows_per_s: flows(after),
      ratio: q,
    });
    const problems = [
      ...(i === 1 && runProblem(before) ? [`reference before: ${runProblem(before)}`] : []),
      ...(runProblem(run) ? [`${title}: ${runProblem(run)}`] : []),
      ...(runProblem(after) ? [`reference after: ${runProblem(after)}`] : []),
    ];
    console.log(
      `    ${label} round ${i}/${ROUNDS}: reference ${fmtInt(flows(before))} | ${title} ${fmtInt(flows(run))} | reference ${fmtInt(flows(after))} flows/s` +
        ` -> ratio ${fmt(q, 3)}${problems.length > 0 ? `  FLAGGED: ${problems.join("; ")}` : ""}`,
    );
  }
  const sortedMedian = (xs: number[]): number => median([...xs].sort((a, b) => a - b));
  const ratios = rounds.flatMap((r) => (r.ratio === null ? [] : [r.ratio]));
  return {
    batch,
    warmup_s: WARMUP_S,
    round_s: ROUND_S,
    rounds,
    ratio_median: ratios.length > 0 ? sortedMedian(ratios) : null,
    target_flows_per_s_median: sortedMedian(target_runs.map(flows)),
    reference_flows_per_s_median: sortedMedian(reference_runs.map(flows)),
    reference_runs,
    target_runs,
    cpu_ms_per_request: perRequest(targetCpu, target_runs.reduce((a, d) => a + d.requests_2xx, 0)),
    reference_cpu_ms_per_request: perRequest(referenceCpu, reference_runs.reduce((a, d) => a + d.requests_2xx, 0)),
  };
}

interface LoadResult {
  posts: number;
  failed: number;
  seconds: number;
  firstFailure: string | null;
}

/** POST makeBody(0..count-1), LOAD_CONCURRENCY at a time, printing progress every 10%. */
async function load(url: string, label: string, count: number, makeBody: (i: number) => string): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOAD_CONCURRENCY });
  const started = Date.now();
  let next = 0;
  let done = 0;
  let failed = 0;
  let firstFailure: string | null = null;
  let nextReport = 1;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      try {
        const res = await httpRequest(agent, url, "POST", "/flows", makeBody(i));
        if (res.status < 200 || res.status > 299) {
          failed++;
          firstFailure ??= `POST /flows answered ${res.status}: ${res.body.toString("utf8").slice(0, 300)}`;
        }
      } catch (err) {
        failed++;
        firstFailure ??= `POST /flows failed: ${(err as Error).message}`;
      }
      done++;
      while (done * 10 >= nextReport * count && nextReport <= 10) {
        const s = (Date.now() - started) / 1000;
        console.log(`    ${label}: ${nextReport * 10}% (${done}/${count} POSTs, ${s.toFixed(1)} s, ${failed} failed)`);
        nextReport++;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: LOAD_CONCURRENCY }, worker));
  } finally {
    agent.destroy();
  }
  return { posts: count, failed, seconds: (Date.now() - started) / 1000, firstFailure };
}

function percentile(sorted: number[], p: number): number {
  // nearest-rank on the sorted samples
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

function median(sorted: number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

interface GetHourResult {
  median_ms: number;
  p90_ms: number;
  flows_returned: number;
  body_bytes: number;
  samples_ms: number[];
  problems: string[];
}

/** Check a GET /flows answer: the expected count, every item in the hour, ordered by (src_app, dest_app, vpc_id). */
function checkHour(body: Buffer, hour: number, expected: number): { count: number; problems: string[] } {
  const problems: string[] = [];
  let flows: unknown;
  try {
    flows = JSON.parse(body.toString("utf8"));
  } catch {
    return { count: 0, problems: [`GET /flows?hour=${hour}: body is not JSON`] };
  }
  if (!Array.isArray(flows)) return { count: 0, problems: [`GET /flows?hour=${hour}: body is not an array`] };
  if (flows.length !== expected) problems.push(`GET /flows?hour=${hour}: ${flows.length} flows, expected ${expected}`);
  const key = (f: FlowRecord): [string, string, string] => [f.src_app, f.dest_app, f.vpc_id];
  for (let i = 0; i < flows.length; i++) {
    const f = flows[i] as FlowRecord;
    if (f.hour !== hour) {
      problems.push(`GET /flows?hour=${hour}: item ${i} has hour ${String(f.hour)}`);
      break;
    }
    if (i > 0) {
      const a = key(flows[i - 1] as FlowRecord);
      const b = key(f);
      const order = a[0] !== b[0] ? (a[0] < b[0] ? -1 : 1) : a[1] !== b[1] ? (a[1] < b[1] ? -1 : 1) : a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0;
      if (order >= 0) {
        problems.push(`GET /flows?hour=${hour}: items ${i - 1} and ${i} are not in (src_app, dest_app, vpc_id) order`);
        break;
      }
    }
  }
  return { count: flows.length, problems };
}

/** Load 100,000 distinct flows into GET_HOUR, check one GET, then time GET_ROUNDS sequential GETs. */
async function measureGetHour(url: string, label: string): Promise<GetHourResult> {
  const loaded = await load(url, `${label} loading ${GET_FLOWS.toLocaleString("en-US")} flows into one hour`, GET_FLOWS / LOAD_BATCH, getHourBody);
  const problems: string[] = [];
  if (loaded.failed > 0) problems.push(`${loaded.failed} of ${loaded.posts} loading POSTs failed; first: ${loaded.firstFailure}`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const query = `/flows?hour=${GET_HOUR}`;
  try {
    const first = await httpRequest(agent, url, "GET", query);
    if (first.status !== 200) throw new Error(`GET ${query} answered ${first.status}: ${first.body.toString("utf8").slice(0, 300)}`);
    const check = checkHour(first.body, GET_HOUR, GET_FLOWS);
    problems.push(...check.problems);
    for (let i = 1; i < GET_WARMUPS; i++) await httpRequest(agent, url, "GET", query);
    const samples: number[] = [];
    let bodyBytes = 0;
    for (let i = 0; i < GET_ROUNDS; i++) {
      const t0 = process.hrtime.bigint();
      const res = await httpRequest(agent, url, "GET", query);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (res.status !== 200) problems.push(`timed GET ${i} answered ${res.status}`);
      bodyBytes = res.body.length;
      samples.push(ms);
    }
    const sorted = [...samples].sort((a, b) => a - b);
    return {
      median_ms: median(sorted),
      p90_ms: percentile(sorted, 90),
      flows_returned: check.count,
      body_bytes: bodyBytes,
      samples_ms: samples.map((x) => Math.round(x * 100) / 100),
      problems,
    };
  } finally {
    agent.destroy();
  }
}

/** VmRSS of one process, in bytes (Linux /proc). */
function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (m === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}
const totalRss = (pids: number[]): number => pids.reduce((sum, pid) => sum + rssBytes(pid), 0);

interface MemoryResult {
  rss_baseline_bytes: number;
  rss_after_1m_bytes: number;
  /** cluster targets: nats-server's RSS at the same two moments (not in the sums above) */
  rss_nats_baseline_bytes: number | null;
  rss_nats_after_1m_bytes: number | null;
  load: LoadResult;
  problems: string[];
}

/** In a fresh process: RSS after startup, load 1,000,000 distinct flows (1000 hours x 1000), RSS again. */
async function measureMemory(running: Running, label: string): Promise<MemoryResult> {
  await sleep(SETTLE_MS);
  const baseline = totalRss(running.pids);
  const natsBaseline = running.natsPid === undefined ? null : rssBytes(running.natsPid);
  const natsNote = (n: number | null): string => (n === null ? "" : ` (sum over ${running.pids.length} node processes; nats-server ${(n / 1e6).toFixed(1)} MB more)`);
  console.log(`    ${label}: RSS after startup ${(baseline / 1e6).toFixed(1)} MB${natsNote(natsBaseline)}`);
  const loaded = await load(running.url, `${label} loading ${MEMORY_FLOWS.toLocaleString("en-US")} distinct flows`, MEMORY_FLOWS / LOAD_BATCH, memoryBody);
  await sleep(SETTLE_MS);
  const after = totalRss(running.pids);
  const natsAfter = running.natsPid === undefined ? null : rssBytes(running.natsPid);
  console.log(`    ${label}: RSS after 1M flows ${(after / 1e6).toFixed(1)} MB${natsNote(natsAfter)}`);
  const problems: string[] = [];
  if (loaded.failed > 0) problems.push(`${loaded.failed} of ${loaded.posts} loading POSTs failed; first: ${loaded.firstFailure}`);
  // spot check (after the RSS reading): one of the loaded hours holds its 1000 flows
  const hour = MEMORY_HOUR0 + 500;
  const res = await httpRequest(false, running.url, "GET", `/flows?hour=${hour}`);
  if (res.status !== 200) problems.push(`GET /flows?hour=${hour} answered ${res.status}`);
  else problems.push(...checkHour(res.body, hour, LOAD_BATCH).problems);
  return { rss_baseline_bytes: baseline, rss_after_1m_bytes: after, rss_nats_baseline_bytes: natsBaseline, rss_nats_after_1m_bytes: natsAfter, load: loaded, problems };
}

// ---------------------------------------------------------------------------------------
// Cluster-only measurements: handoff to a 4th node (cluster-r1), failover after kill -9 (cluster-r2)

/** Sum of bytes_tx / bytes_rx of an answer of GET /flows. */
function hourTotals(body: Buffer): { tx: number; rx: number } {
  let tx = 0;
  let rx = 0;
  for (const f of JSON.parse(body.toString("utf8")) as FlowRecord[]) {
    tx += f.bytes_tx;
    rx += f.bytes_rx;
  }
  return { tx, rx };
}

/** What getHourBody(0..99) adds up to: every key once. */
function expectedGetHourTotals(): { tx: number; rx: number } {
  let tx = 0;
  let rx = 0;
  for (let p = 0; p < GET_FLOWS; p++) {
    tx += 100 + (p % 1000);
    rx += 200 + (p % 777);
  }
  return { tx, rx };
}

interface HandoffResult {
  /** the NODEID started */
  node: string;
  /** ms from its spawn to the second of two consecutive /cluster answers with the same epoch showing the settled state */
  handoff_ms: number;
  /** ms from its spawn to the first of those two answers */
  first_seen_ms: number;
  /** ms from its spawn to its first INFO packet on NATS (services started) */
  join_ms: number | null;
  flows_moved: number;
  partitions_moved: number;
  epoch_before: number;
  epoch_after: number;
  /** sum of /cluster partitions[].flows (primary copies) before / after */
  flows_total_before: number;
  flows_total_after: number;
  /** /cluster nodes[].flows after */
  node_flows_after: Record<string, number>;
  polls: number;
  ready_non200: number;
  request_errors: number;
  max_poll_ms: number;
  samples: string[];
  /** the 1M load, when it was done for this scenario (null: the memory scenario's cluster was reused) */
  load_1m: { posts: number; failed: number; seconds: number } | null;
  problems: string[];
}

/** With 1,000,000 flows in the cluster (loaded here unless `loaded`), start one more shard node and time the rebalance. */
async function measureHandoff(running: Running, label: string, loaded: boolean): Promise<HandoffResult> {
  const cluster = running.cluster;
  if (cluster === undefined) throw new Error("handoff needs a cluster target");
  const problems: string[] = [];
  let load1m: HandoffResult["load_1m"] = null;
  if (!loaded) {
    const l = await load(running.url, `${label} loading ${MEMORY_FLOWS.toLocaleString("en-US")} distinct flows`, MEMORY_FLOWS / LOAD_BATCH, memoryBody);
    load1m = { posts: l.posts, failed: l.failed, seconds: l.seconds };
    if (l.failed > 0) problems.push(`handoff: ${l.failed} of ${l.posts} loading POSTs failed; first: ${l.firstFailure}`);
  }
  const before = await clusterStatus(running.url);
  const totalBefore = before.partitions.reduce((a, p) => a + p.flows, 0);
  if (problems.length === 0 && totalBefore !== MEMORY_FLOWS) problems.push(`handoff: before it, /cluster counts ${totalBefore} flows over its partitions, expected ${MEMORY_FLOWS}`);
  const node = cluster.nextShardID();
  console.log(`    handoff: ${fmtInt(totalBefore)} flows in the cluster (${describeStatus(before)}); starting shard node ${node}`);
  const t0 = await cluster.spawnShard(node);
  const o = await pollCluster(cluster, t0, {
    what: `handoff to ${node}`,
    timeoutMs: HANDOFF_TIMEOUT_MS,
    intervalMs: HANDOFF_POLL_MS,
    stableEpochPolls: 2,
    checkReady: true,
    condition: settledOn(cluster.shardIDs(), false),
    progress: true,
  });
  const joined = cluster.joinedAt.get(node);
  const mine = o.status.nodes.find((n) => n.nodeID === node);
  const totalAfter = o.status.partitions.reduce((a, p) => a + p.flows, 0);
  if (totalAfter !== totalBefore) problems.push(`handoff: /cluster counts ${totalAfter} flows over its partitions after it, ${totalBefore} before`);
  if (o.ready_non200 > 0) problems.push(`handoff: GET /ready answered non-200 ${o.ready_non200} time(s) during it (first: ${o.samples[0] ?? "?"})`);
  // spot check: hours are spread over every partition, so these read moved partitions too
  for (const b of [0, 500, 999]) {
    const hour = MEMORY_HOUR0 + b;
    const res = await httpRequest(false, running.url, "GET", `/flows?hour=${hour}`);
    if (res.status !== 200) problems.push(`handoff: GET /flows?hour=${hour} after it answered ${res.status}: ${res.body.toString("utf8").slice(0, 200)}`);
    else problems.push(...checkHour(res.body, hour, LOAD_BATCH).problems.map((p) => `handoff: ${p}`));
  }
  return {
    node,
    handoff_ms: o.ms,
    first_seen_ms: o.first_seen_ms,
    join_ms: joined === undefined ? null : joined - t0,
    flows_moved: mine?.flows ?? 0,
    partitions_moved: mine?.primaries ?? 0,
    epoch_before: before.epoch,
    epoch_after: o.status.epoch,
    flows_total_before: totalBefore,
    flows_total_after: totalAfter,
    node_flows_after: Object.fromEntries(o.status.nodes.map((n) => [n.nodeID, n.flows])),
    polls: o.polls,
    ready_non200: o.ready_non200,
    request_errors: o.request_errors,
    max_poll_ms: Math.round(o.max_poll_ms),
    samples: o.samples,
    load_1m: load1m,
    problems,
  };
}

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

interface FailoverResult {
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

/** cluster-r2 with a 4th shard node and 100,000 flows: FAILOVER_KILLS kills of a non-coordinator, then one of the coordinator. Fills `result` as it goes. */
async function measureFailover(running: Running, result: FailoverResult): Promise<void> {
  const added = await addShardAndSettle(running, "failover setup");
  result.fourth_node_settle_ms = Math.round(added.ms);
  const loaded = await load(running.url, `failover setup: loading ${GET_FLOWS.toLocaleString("en-US")} flows into one hour`, GET_FLOWS / LOAD_BATCH, getHourBody);
  let expect: { tx: number; rx: number } | null = expectedGetHourTotals();
  if (loaded.failed > 0) {
    result.problems.push(`failover setup: ${loaded.failed} of ${loaded.posts} loading POSTs failed (data not checked after kills); first: ${loaded.firstFailure}`);
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

// ---------------------------------------------------------------------------------------
// Running the targets

interface TargetFigures {
  flows_per_s_batch100: number | null;
  flows_per_s_batch1000: number | null;
  get_hour_100k_ms_median: number | null;
  get_hour_100k_ms_p90: number | null;
  rss_bytes_per_flow_1m: number | null;
  rss_total_bytes_per_flow_1m: number | null;
  rss_baseline_bytes: number | null;
  rss_after_1m_bytes: number | null;
  // Every target but the reference, when the throughput scenario runs (absent otherwise):
  flows_per_s_ratio_batch100_paired?: number | null;
  flows_per_s_ratio_batch1000_paired?: number | null;
  // Cluster targets only (absent on the others):
  rss_nats_baseline_bytes?: number | null;
  rss_nats_after_1m_bytes?: number | null;
  // cluster-r1 (scenario "handoff"):
  handoff_1m_ms?: number | null;
  handoff_flows_moved?: number | null;
  handoff_partitions_moved?: number | null;
  // cluster-r2 (scenario "failover"):
  failover_ms?: number[] | null;
  failover_ms_median?: number | null;
  failover_coordinator_ms?: number | null;
  flagged: string[];
  suspect_figures: FigureKey[];
  details: {
    batch100: RunDetails | null;
    batch1000: RunDetails | null;
    get_hour_100k: { flows_returned: number; body_bytes: number; samples_ms: number[] } | null;
    load_1m: { posts: number; failed: number; seconds: number } | null;
    batch100_paired?: PairedResult | null;
    batch1000_paired?: PairedResult | null;
    paired_reference?: { rss_start_bytes: number; rss_end_bytes: number } | null;
    cluster_starts?: { for: string; start_ms: number; namespace: string }[];
    handoff?: HandoffResult | null;
    failover?: FailoverResult | null;
  };
}

const SCENARIOS = ["throughput", "get", "memory", "handoff", "failover"];

/** Flag a throughput run with non-2xx answers or errors (its figure is then marked suspect). */
function flagRun(figures: TargetFigures, label: string, key: FigureKey, d: RunDetails): void {
  const problem = runProblem(d);
  if (problem === null) return;
  figures.flagged.push(`${label}: ${problem}`);
  figures.suspect_figures.push(key);
}

async function withTarget<T>(target: Target, figures: TargetFigures, purpose: string, fn: (running: Running) => Promise<T>): Promise<T> {
  console.log(`  starting ${target.title} (for ${purpose}) ...`);
  const t0 = now();
  const running = await target.start();
  const ms = now() - t0;
  if (running.cluster) {
    figures.details.cluster_starts?.push({ for: purpose, start_ms: Math.round(ms), namespace: running.cluster.namespace });
    console.log(
      `  ${target.title} ready at ${running.url} in ${(ms / 1000).toFixed(1)} s (namespace ${running.cluster.namespace}; ` +
        `nodes ${[...running.cluster.nodes].map(([id, c]) => `${id} pid ${c.process.pid}`).join(", ")}; nats-server pid ${running.natsPid} port ${running.cluster.natsPort})`,
    );
  } else {
    console.log(`  ${target.title} ready at ${running.url} (pid ${running.pids.join(", ")})`);
  }
  try {
    return await fn(running);
  } finally {
    await running.stop();
  }
}

/**
 * The throughput scenario of a non-reference target: a fresh reference server of its own, idle while
 * the target is driven, then paired rounds (measurePaired) for batch 100 and batch 1000.
 */
async function pairedThroughput(running: Running, target: Target, figures: TargetFigures, fail: (scenario: string, err: unknown) => void): Promise<void> {
  let reference: Running;
  try {
    reference = await startSingleNode("paired reference", [path.join(ROOT, "bench", "reference-server.js")], {});
  } catch (err) {
    fail("throughput: paired reference server start", err);
    return;
  }
  try {
    const rssStart = totalRss(reference.pids);
    console.log(`    paired reference server at ${reference.url} (pid ${reference.pids.join(", ")}), idle while ${target.title} is driven`);
    for (const batch of [100, 1000] as const) {
      const label = `POST batch ${batch}`;
      const flowsKey = batch === 100 ? "flows_per_s_batch100" : "flows_per_s_batch1000";
      const ratioKey = batch === 100 ? "flows_per_s_ratio_batch100_paired" : "flows_per_s_ratio_batch1000_paired";
      console.log(
        `    ${label}: warm-up ${WARMUP_S} s reference + ${WARMUP_S} s ${target.title}, then ${ROUNDS} rounds of ${ROUND_S} s each ` +
          `(reference, ${target.title}, ..., reference; ratio = ${target.title} / mean of the reference runs before and after; ${CONNECTIONS} connections)`,
      );
      try {
        const targetProcs: MeteredProcess[] = running.cluster
          ? [
              ...[...running.cluster.nodes].flatMap(([id, c]) => (c.process.pid === undefined ? [] : [{ name: id, pid: c.process.pid }])),
              ...(running.natsPid === undefined ? [] : [{ name: "nats-server", pid: running.natsPid }]),
            ]
          : running.pids.map((pid) => ({ name: target.key, pid }));
        const p = await measurePaired(running.url, reference.url, batch, target.title, targetProcs, reference.pids.map((pid) => ({ name: "reference", pid })));
        figures.details[batch === 100 ? "batch100_paired" : "batch1000_paired"] = p;
        figures[flowsKey] = p.target_flows_per_s_median;
        figures[ratioKey] = p.ratio_median;
        const problems = [
          ...p.target_runs.flatMap((d, i) => (runProblem(d) ? [`${label} round ${i + 1} ${target.title}: ${runProblem(d)}`] : [])),
          ...p.reference_runs.flatMap((d, i) => (runProblem(d) ? [`${label} paired reference run ${i} (of 0..${ROUNDS}): ${runProblem(d)}`] : [])),
        ];
        figures.flagged.push(...problems);
        if (p.target_runs.some((d) => runProblem(d) !== null)) figures.suspect_figures.push(flowsKey);
        if (problems.length > 0 || p.ratio_median === null) figures.suspect_figures.push(ratioKey);
        console.log(
          `    ${label}: ${target.title} median ${fmtInt(p.target_flows_per_s_median)} flows/s, paired reference median ${fmtInt(p.reference_flows_per_s_median)} flows/s; ` +
            `ratio median ${fmt(p.ratio_median, 3)} (rounds ${p.rounds.map((r) => fmt(r.ratio, 3)).join(", ")})`,
        );
        console.log(`    ${label}: CPU ms per request, ${target.title}: ${fmtCpu(p.cpu_ms_per_request)}; paired reference: ${fmtCpu(p.reference_cpu_ms_per_request)}`);
      } catch (err) {
        fail(label, err);
      }
    }
    figures.details.paired_reference = { rss_start_bytes: rssStart, rss_end_bytes: totalRss(reference.pids) };
  } finally {
    await reference.stop();
  }
}

async function benchTarget(target: Target, scenarios: string[]): Promise<TargetFigures> {
  const figures: TargetFigures = {
    flows_per_s_batch100: null,
    flows_per_s_batch1000: null,
    get_hour_100k_ms_median: null,
    get_hour_100k_ms_p90: null,
    rss_bytes_per_flow_1m: null,
    rss_total_bytes_per_flow_1m: null,
    rss_baseline_bytes: null,
    rss_after_1m_bytes: null,
    flagged: [],
    suspect_figures: [],
    details: { batch100: null, batch1000: null, get_hour_100k: null, load_1m: null },
  };
  const paired = target.key !== "reference" && scenarios.includes("throughput");
  if (paired) {
    figures.flows_per_s_ratio_batch100_paired = null;
    figures.flows_per_s_ratio_batch1000_paired = null;
    figures.details.batch100_paired = null;
    figures.details.batch1000_paired = null;
    figures.details.paired_reference = null;
  }
  const clusterScenarios = target.clusterScenarios;
  const wantHandoff = scenarios.includes("handoff") && (clusterScenarios?.includes("handoff") ?? false);
  const wantFailover = scenarios.includes("failover") && (clusterScenarios?.includes("failover") ?? false);
  if (clusterScenarios !== undefined) {
    figures.rss_nats_baseline_bytes = null;
    figures.rss_nats_after_1m_bytes = null;
    figures.details.cluster_starts = [];
    if (clusterScenarios.includes("handoff")) {
      figures.handoff_1m_ms = null;
      figures.handoff_flows_moved = null;
      figures.handoff_partitions_moved = null;
      figures.details.handoff = null;
    }
    if (clusterScenarios.includes("failover")) {
      figures.failover_ms = null;
      figures.failover_ms_median = null;
      figures.failover_coordinator_ms = null;
      figures.details.failover = null;
    }
  }
  const fail = (scenario: string, err: unknown): void => {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`  ${target.title}: ${scenario} failed: ${message}`);
    figures.flagged.push(`${scenario} failed: ${message.split("\n")[0]}`);
  };

  let startFailed = false;
  console.log(`\n== ${target.title} (${target.key})`);
  if (scenarios.includes("throughput") || scenarios.includes("get")) {
    try {
      await withTarget(target, figures, scenarios.filter((x) => x === "throughput" || x === "get").join(" + "), async (running) => {
        if (paired) {
          await pairedThroughput(running, target, figures, fail);
        } else if (scenarios.includes("throughput")) {
          for (const batch of [100, 1000] as const) {
            const label = `POST batch ${batch}`;
            console.log(`    ${label}: warm-up ${WARMUP_S} s, then ${DURATION_S} s measured (${CONNECTIONS} connections)`);
            try {
              const d = await measureThroughput(running.url, throughputBodies(batch));
              const flowsPerS = d.requests_per_s * batch;
              if (batch === 100) {
                figures.details.batch100 = d;
                figures.flows_per_s_batch100 = flowsPerS;
              } else {
                figures.details.batch1000 = d;
                figures.flows_per_s_batch1000 = flowsPerS;
              }
              flagRun(figures, label, batch === 100 ? "flows_per_s_batch100" : "flows_per_s_batch1000", d);
              const flag = d.non2xx > 0 || d.errors > 0 ? `  FLAGGED: ${d.non2xx} non-2xx, ${d.errors} errors` : "";
              console.log(`    ${label}: ${fmtInt(flowsPerS)} flows/s (${d.requests_per_s.toFixed(1)} req/s, p50 ${d.latency_ms_p50} ms, p99 ${d.latency_ms_p99} ms)${flag}`);
            } catch (err) {
              fail(label, err);
            }
          }
        }
        if (scenarios.includes("get")) {
          try {
            const g = await measureGetHour(running.url, target.title);
            figures.get_hour_100k_ms_median = g.median_ms;
            figures.get_hour_100k_ms_p90 = g.p90_ms;
            figures.details.get_hour_100k = { flows_returned: g.flows_returned, body_bytes: g.body_bytes, samples_ms: g.samples_ms };
            figures.flagged.push(...g.problems);
            if (g.problems.length > 0) figures.suspect_figures.push("get_hour_100k_ms_median", "get_hour_100k_ms_p90");
            console.log(`    GET hour of 100k flows: median ${g.median_ms.toFixed(1)} ms, p90 ${g.p90_ms.toFixed(1)} ms (${(g.body_bytes / 1e6).toFixed(1)} MB body)`);
          } catch (err) {
            fail("GET hour of 100k flows", err);
          }
        }
      });
    } catch (err) {
      startFailed = true;
      fail("start", err);
    }
  }
  // handoff (cluster-r1): reuses the memory scenario's cluster (1M flows loaded, nothing else) when that ran clean
  let handoffDone = false;
  const runHandoff = async (running: Running, loaded: boolean): Promise<void> => {
    handoffDone = true;
    console.log(`    handoff: 1,000,000 flows ${loaded ? "loaded by the memory scenario" : "to load first"}; then a 4th shard node`);
    try {
      const h = await measureHandoff(running, target.title, loaded);
      figures.details.handoff = { ...h, handoff_ms: Math.round(h.handoff_ms), first_seen_ms: Math.round(h.first_seen_ms), join_ms: h.join_ms === null ? null : Math.round(h.join_ms) };
      figures.handoff_1m_ms = h.handoff_ms;
      figures.handoff_flows_moved = h.flows_moved;
      figures.handoff_partitions_moved = h.partitions_moved;
      figures.flagged.push(...h.problems);
      if (h.problems.length > 0) figures.suspect_figures.push("handoff_1m_ms", "handoff_flows_moved");
      console.log(
        `    handoff of 1M flows to ${h.node}: ${fmtInt(h.handoff_ms)} ms (settled state first seen at ${fmtInt(h.first_seen_ms)} ms; joined NATS at ${h.join_ms === null ? "?" : fmtInt(h.join_ms)} ms); ` +
          `${fmtInt(h.flows_moved)} flows / ${h.partitions_moved} primaries moved; epoch ${h.epoch_before} -> ${h.epoch_after}`,
      );
    } catch (err) {
      fail("handoff", err);
    }
  };

  if (scenarios.includes("memory") && startFailed) {
    figures.flagged.push("memory skipped: the target did not start");
  } else if (scenarios.includes("memory")) {
    try {
      await withTarget(target, figures, wantHandoff ? "memory + handoff" : "memory", async (running) => {
        const m = await measureMemory(running, target.title);
        figures.rss_baseline_bytes = m.rss_baseline_bytes;
        figures.rss_after_1m_bytes = m.rss_after_1m_bytes;
        figures.rss_bytes_per_flow_1m = (m.rss_after_1m_bytes - m.rss_baseline_bytes) / MEMORY_FLOWS;
        figures.rss_total_bytes_per_flow_1m = m.rss_after_1m_bytes / MEMORY_FLOWS;
        if (clusterScenarios !== undefined) {
          figures.rss_nats_baseline_bytes = m.rss_nats_baseline_bytes;
          figures.rss_nats_after_1m_bytes = m.rss_nats_after_1m_bytes;
        }
        figures.details.load_1m = { posts: m.load.posts, failed: m.load.failed, seconds: m.load.seconds };
        figures.flagged.push(...m.problems);
        if (m.problems.length > 0) figures.suspect_figures.push("rss_bytes_per_flow_1m", "rss_total_bytes_per_flow_1m");
        console.log(`    memory: ${figures.rss_bytes_per_flow_1m.toFixed(1)} bytes/flow over baseline, ${figures.rss_total_bytes_per_flow_1m.toFixed(1)} bytes/flow total`);
        if (wantHandoff && m.problems.length === 0) await runHandoff(running, true);
      });
    } catch (err) {
      fail("memory", err);
    }
  }

  if (wantHandoff && !handoffDone) {
    if (startFailed) {
      figures.flagged.push("handoff skipped: the target did not start");
    } else {
      try {
        await withTarget(target, figures, "handoff", (running) => runHandoff(running, false));
      } catch (err) {
        fail("handoff", err);
      }
    }
  }

  if (wantFailover && startFailed) {
    figures.flagged.push("failover skipped: the target did not start");
  } else if (wantFailover) {
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
    figures.failover_ms_median = ms.length > 0 ? median([...ms].sort((a, b) => a - b)) : null;
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
  return figures;
}

// ---------------------------------------------------------------------------------------
// Report

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

const fmt = (n: number | null | undefined, digits: number): string => (n === null || n === undefined ? "-" : digits === 0 ? fmtInt(n) : n.toFixed(digits));
const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a === null || a === undefined || b === null || b === undefined || b === 0 ? null : a / b;
/** flows/s in thousands, e.g. "612k" */
const fmtK = (n: number): string => `${Math.round(n / 1000)}k`;
const mark = (ok: boolean | null): string => (ok === null ? "" : ok ? " ✓" : " ✗");

type FigureKey =
  | "flows_per_s_batch100"
  | "flows_per_s_batch1000"
  | "flows_per_s_ratio_batch100_paired"
  | "flows_per_s_ratio_batch1000_paired"
  | "get_hour_100k_ms_median"
  | "get_hour_100k_ms_p90"
  | "rss_bytes_per_flow_1m"
  | "rss_total_bytes_per_flow_1m"
  | "rss_nats_after_1m_bytes"
  | "handoff_1m_ms"
  | "handoff_flows_moved"
  | "failover_ms_median"
  | "failover_coordinator_ms";

interface GoalsMet {
  flows_per_s_ratio_batch1000: boolean | null;
  get_hour_100k_ms_median: boolean | null;
  rss_bytes_per_flow_1m: boolean | null;
  failover_ms_median: boolean | null;
}

/**
 * Goals of a non-reference target: null when it has no such goal, or a figure is missing or comes from a flagged run.
 * The batch-1000 throughput goal is judged on the paired median ratio (method step 2b), not on the reference target's figure.
 */
function goalsMet(f: TargetFigures, goals: Goals | undefined): GoalsMet {
  const usable = (x: TargetFigures | undefined, key: FigureKey): number | null =>
    x === undefined || x.suspect_figures.includes(key) ? null : (x[key] ?? null);
  const judge = (value: number | null, limit: number | undefined, ok: (v: number, l: number) => boolean): boolean | null =>
    value === null || limit === undefined ? null : ok(value, limit);
  const r1000 = usable(f, "flows_per_s_ratio_batch1000_paired");
  return {
    flows_per_s_ratio_batch1000: judge(r1000, goals?.flows_per_s_ratio_batch1000_min, (v, l) => v >= l),
    get_hour_100k_ms_median: judge(usable(f, "get_hour_100k_ms_median"), goals?.get_hour_100k_ms_median_max, (v, l) => v <= l),
    rss_bytes_per_flow_1m: judge(usable(f, "rss_bytes_per_flow_1m"), goals?.rss_bytes_per_flow_1m_max, (v, l) => v <= l),
    failover_ms_median: judge(usable(f, "failover_ms_median"), goals?.failover_ms_median_max, (v, l) => v <= l),
  };
}

interface Row {
  metric: string;
  key: FigureKey;
  digits: number;
  /** shown value = figure x scale */
  scale?: number;
  /** no target/reference ratio (cluster-only figures) */
  noRatio?: boolean;
  /** the target/ref cell shows this paired ratio (method step 2b) instead of target figure / reference figure */
  pairedRatio?: FigureKey;
  /** The goal a target has for this row, as text ("<= 60 ms"), if any; `goal` names it and `markOn` the cell that gets ✓/✗. */
  goalOf?: (g: Goals) => string | undefined;
  goal?: keyof GoalsMet;
  markOn?: "value" | "ratio";
}

const ROWS: Row[] = [
  { metric: "flows/s, POST batch 100", key: "flows_per_s_batch100", digits: 0, pairedRatio: "flows_per_s_ratio_batch100_paired" },
  {
    metric: "flows/s, POST batch 1000",
    key: "flows_per_s_batch1000",
    digits: 0,
    pairedRatio: "flows_per_s_ratio_batch1000_paired",
    goalOf: (g) => `ratio >= ${g.flows_per_s_ratio_batch1000_min}`,
    goal: "flows_per_s_ratio_batch1000",
    markOn: "ratio",
  },
  {
    metric: "GET hour of 100k flows, median ms",
    key: "get_hour_100k_ms_median",
    digits: 1,
    goalOf: (g) => `<= ${g.get_hour_100k_ms_median_max} ms`,
    goal: "get_hour_100k_ms_median",
    markOn: "value",
  },
  { metric: "GET hour of 100k flows, p90 ms", key: "get_hour_100k_ms_p90", digits: 1 },
  {
    metric: "RSS bytes/flow at 1M (over baseline)",
    key: "rss_bytes_per_flow_1m",
    digits: 1,
    goalOf: (g) => (g.rss_bytes_per_flow_1m_max === undefined ? undefined : `<= ${g.rss_bytes_per_flow_1m_max} bytes`),
    goal: "rss_bytes_per_flow_1m",
    markOn: "value",
  },
  { metric: "RSS bytes/flow at 1M (total)", key: "rss_total_bytes_per_flow_1m", digits: 1 },
  { metric: "nats-server RSS at 1M, MB (not in the above)", key: "rss_nats_after_1m_bytes", digits: 1, scale: 1e-6, noRatio: true },
  { metric: "handoff of 1M flows to a 4th node, ms", key: "handoff_1m_ms", digits: 0, noRatio: true },
  { metric: "flows moved to the 4th node", key: "handoff_flows_moved", digits: 0, noRatio: true },
  {
    metric: "failover after kill -9, median ms",
    key: "failover_ms_median",
    digits: 0,
    noRatio: true,
    goalOf: (g) => (g.failover_ms_median_max === undefined ? undefined : `<= ${g.failover_ms_median_max} ms`),
    goal: "failover_ms_median",
    markOn: "value",
  },
  { metric: "failover after kill -9 of the coordinator, ms", key: "failover_coordinator_ms", digits: 0, noRatio: true },
];

/**
 * The table: a column per target, then a target/ref column per non-reference target (shown when the reference
 * target ran or some target has paired ratios). In the two flows/s rows the target's cell is the median of its
 * paired rounds and target/ref is the median of the per-round ratios against its own paired reference server
 * (method step 2b), not target / the reference column; the other rows' target/ref is target / reference column.
 */
function printTable(targets: Target[], results: Map<string, TargetFigures>): void {
  const reference = results.get("reference");
  const others = targets.filter((t) => t.key !== "reference");
  const anyPaired = others.some((t) => results.get(t.key)?.flows_per_s_ratio_batch1000_paired !== undefined);
  const ratioColumns = reference !== undefined || anyPaired;
  const header = ["metric", ...targets.map((t) => t.title), ...(ratioColumns ? others.map((t) => `${t.title}/ref`) : []), "goal"];
  const suspect = (f: TargetFigures | undefined, key: FigureKey): boolean => f?.suspect_figures.includes(key) ?? false;
  const goalMark = (t: Target, f: TargetFigures, row: Row, cell: "value" | "ratio"): string =>
    row.goal === undefined || row.markOn !== cell ? "" : mark(goalsMet(f, t.goals)[row.goal]);
  // rows no selected target has a figure for (e.g. the cluster-only ones without a cluster target) are left out
  const rows = ROWS.filter((row) => targets.some((t) => results.get(t.key)?.[row.key] !== undefined));
  const body: string[][] = rows.map((row) => {
    const cells = [row.metric];
    for (const t of targets) {
      const f = results.get(t.key);
      const v = f?.[row.key];
      if (f === undefined || v === undefined) {
        cells.push("-");
        continue;
      }
      const flag = suspect(f, row.key) ? " !" : t.key === "reference" ? "" : goalMark(t, f, row, "value");
      cells.push(fmt(v === null ? null : v * (row.scale ?? 1), row.digits) + flag);
    }
    if (ratioColumns) {
      for (const t of others) {
        const f = results.get(t.key);
        if (f === undefined || row.noRatio) {
          cells.push("-");
          continue;
        }
        if (row.pairedRatio !== undefined) {
          const q = f[row.pairedRatio];
          cells.push(q === undefined ? "-" : fmt(q, 2) + (suspect(f, row.pairedRatio) ? " !" : goalMark(t, f, row, "ratio")));
          continue;
        }
        if (reference === undefined) {
          cells.push("-");
          continue;
        }
        const flag = suspect(f, row.key) || suspect(reference, row.key) ? " !" : goalMark(t, f, row, "ratio");
        cells.push(fmt(ratio(f[row.key], reference[row.key]), 2) + flag);
      }
    }
    const goals = row.goalOf === undefined ? [] : others.flatMap((t) => (t.goals === undefined ? [] : [[t.title, row.goalOf!(t.goals)] as const])).filter(([, g]) => g !== undefined);
    cells.push(goals.map(([title, g]) => `${title} ${g}`).join("; "));
    return cells;
  });
  const flaggedRow = ["problems flagged", ...targets.map((t) => String(results.get(t.key)?.flagged.length ?? "-"))];
  while (flaggedRow.length < header.length) flaggedRow.push("");
  body.push(flaggedRow);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ");
  console.log("");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("-|-"));
  for (const r of body) console.log(line(r));
  console.log("(✓ / ✗ goal met / missed; ! figure from a flagged run, see below)");
  if (anyPaired) {
    console.log(
      `(flows/s rows: a target's figure is the median of its ${ROUNDS} paired rounds, and its /ref cell the median of the per-round ratios ` +
        "against a reference server of its own measured alternately with it, not target / the reference column; rounds below)",
    );
    for (const t of others) {
      const d = results.get(t.key)?.details;
      for (const p of [d?.batch100_paired, d?.batch1000_paired]) {
        if (!p) continue;
        console.log(
          `  ${t.title} batch ${p.batch}: ratios ${p.rounds.map((r) => fmt(r.ratio, 2)).join(" ")} -> median ${fmt(p.ratio_median, 2)}; ` +
            `${t.title} ${p.rounds.map((r) => fmtK(r.target_flows_per_s)).join(" ")} flows/s; reference ${p.reference_runs.map((r) => fmtK(r.requests_per_s * p.batch)).join(" ")}`,
        );
        console.log(`    CPU ms per request: ${fmtCpu(p.cpu_ms_per_request)}; reference ${fmt(p.reference_cpu_ms_per_request.total, 2)}`);
      }
    }
  }
  for (const t of targets) {
    const fo = results.get(t.key)?.details.failover;
    if (fo && (fo.kills.length > 0 || fo.coordinator_kill)) {
      console.log(`\nfailovers ${t.title} (kill -9 -> /ready 200 and every primary live; then the replacement node's settle time):`);
      for (const k of [...fo.kills, ...(fo.coordinator_kill ? [fo.coordinator_kill] : [])]) {
        console.log(
          `  ${k.killed}${k.was_coordinator ? " (coordinator)" : ""}: ${fmtInt(k.ms)} ms (gateway's placement changed at ${k.ready_epoch_changed_ms === null ? "?" : fmtInt(k.ready_epoch_changed_ms)} ms), ` +
            `epoch ${k.epoch_before} -> ${k.epoch_after}, coordinator after ${k.coordinator_after}` +
            (k.replacement ? `; ${k.replacement} settled in ${fmtInt(k.replacement_settle_ms ?? 0)} ms` : "") +
            (k.problems.length > 0 ? `; ${k.problems.length} problem(s)` : ""),
        );
      }
    }
  }
  for (const t of targets) {
    const f = results.get(t.key);
    if (f && f.flagged.length > 0) {
      console.log(`\nFLAGGED ${t.title}:`);
      for (const p of f.flagged) console.log(`  - ${p}`);
    }
  }
}

function round(n: number | null, digits: number): number | null {
  if (n === null) return null;
  const k = 10 ** digits;
  return Math.round(n * k) / k;
}

function buildJson(targets: Target[], scenarios: string[], results: Map<string, TargetFigures>): Record<string, unknown> {
  const cpus = os.cpus();
  const json: Record<string, unknown> = {
    date: new Date().toISOString(),
    machine: {
      cpus: cpus.length,
      cpu_model: cpus[0]?.model ?? "unknown",
      node: process.version,
      platform: process.platform,
      arch: process.arch,
      total_mem_bytes: os.totalmem(),
    },
    settings: {
      duration_s: DURATION_S,
      warmup_s: WARMUP_S,
      rounds: ROUNDS,
      round_s: ROUND_S,
      connections: CONNECTIONS,
      pipelining: PIPELINING,
      get_rounds: GET_ROUNDS,
      load_concurrency: LOAD_CONCURRENCY,
      nats_gomaxprocs: Number(NATS_GOMAXPROCS),
      targets: targets.map((t) => t.key),
      scenarios,
    },
  };
  for (const t of targets) {
    const f = results.get(t.key);
    if (!f) continue;
    const roundRun = (d: RunDetails | null): RunDetails | null => (d === null ? null : { ...d, requests_per_s: round(d.requests_per_s, 1) ?? 0 });
    const roundPaired = (p: PairedResult | null | undefined): PairedResult | null | undefined =>
      p == null
        ? p
        : {
            ...p,
            rounds: p.rounds.map((r) => ({
              round: r.round,
              reference_before_flows_per_s: round(r.reference_before_flows_per_s, 0) ?? 0,
              target_flows_per_s: round(r.target_flows_per_s, 0) ?? 0,
              reference_after_flows_per_s: round(r.reference_after_flows_per_s, 0) ?? 0,
              ratio: round(r.ratio, 3),
            })),
            ratio_median: round(p.ratio_median, 3),
            target_flows_per_s_median: round(p.target_flows_per_s_median, 0) ?? 0,
            reference_flows_per_s_median: round(p.reference_flows_per_s_median, 0) ?? 0,
            reference_runs: p.reference_runs.map((d) => roundRun(d)!),
            target_runs: p.target_runs.map((d) => roundRun(d)!),
          };
    const details: Record<string, unknown> = { ...f.details, batch100: roundRun(f.details.batch100), batch1000: roundRun(f.details.batch1000) };
    if (f.details.batch100_paired !== undefined) details.batch100_paired = roundPaired(f.details.batch100_paired);
    if (f.details.batch1000_paired !== undefined) details.batch1000_paired = roundPaired(f.details.batch1000_paired);
    const o: Record<string, unknown> = {
      ...f,
      details,
      flows_per_s_batch100: round(f.flows_per_s_batch100, 0),
      flows_per_s_batch1000: round(f.flows_per_s_batch1000, 0),
      get_hour_100k_ms_median: round(f.get_hour_100k_ms_median, 2),
      get_hour_100k_ms_p90: round(f.get_hour_100k_ms_p90, 2),
      rss_bytes_per_flow_1m: round(f.rss_bytes_per_flow_1m, 1),
      rss_total_bytes_per_flow_1m: round(f.rss_total_bytes_per_flow_1m, 1),
    };
    if (f.flows_per_s_ratio_batch100_paired !== undefined) o.flows_per_s_ratio_batch100_paired = round(f.flows_per_s_ratio_batch100_paired, 3);
    if (f.flows_per_s_ratio_batch1000_paired !== undefined) o.flows_per_s_ratio_batch1000_paired = round(f.flows_per_s_ratio_batch1000_paired, 3);
    if (f.handoff_1m_ms !== undefined) o.handoff_1m_ms = round(f.handoff_1m_ms, 0);
    if (f.failover_ms_median !== undefined) o.failover_ms_median = round(f.failover_ms_median, 0);
    json[t.key] = o;
  }
  const reference = results.get("reference");
  const ratios: Record<string, Record<string, number | null>> = {};
  const goalsMetByTarget: Record<string, GoalsMet> = {};
  for (const t of targets) {
    const f = results.get(t.key);
    if (t.key === "reference" || !f) continue;
    const r = (pick: (x: TargetFigures) => number | null): number | null => round(reference ? ratio(pick(f), pick(reference)) : null, 3);
    ratios[t.key] = {
      flows_per_s_batch100: r((x) => x.flows_per_s_batch100),
      flows_per_s_batch1000: r((x) => x.flows_per_s_batch1000),
      get_hour_100k_ms_median: r((x) => x.get_hour_100k_ms_median),
      rss_bytes_per_flow_1m: r((x) => x.rss_bytes_per_flow_1m),
    };
    if (f.flows_per_s_ratio_batch100_paired !== undefined) {
      ratios[t.key].flows_per_s_batch100_paired = round(f.flows_per_s_ratio_batch100_paired, 3);
      ratios[t.key].flows_per_s_batch1000_paired = round(f.flows_per_s_ratio_batch1000_paired ?? null, 3);
    }
    goalsMetByTarget[t.key] = goalsMet(f, t.goals);
  }
  json.ratios = ratios;
  json.goals = GOALS;
  json.goals_by_target = Object.fromEntries(targets.filter((t) => t.goals !== undefined).map((t) => [t.key, t.goals]));
  json.goals_met = goalsMetByTarget;
  return json;
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const targetKeys = envList("BENCH_TARGETS", TARGETS.map((t) => t.key));
  const scenarios = envList("BENCH_SCENARIOS", SCENARIOS);
  const targets = TARGETS.filter((t) => targetKeys.includes(t.key));
  console.log(
    `flowmesh bench: targets ${targets.map((t) => t.key).join(", ")}; scenarios ${scenarios.join(", ")}; ` +
      `${CONNECTIONS} connections, pipelining ${PIPELINING}; throughput: reference ${WARMUP_S} s warm-up + ${DURATION_S} s, ` +
      `other targets ${WARMUP_S} s warm-up + ${ROUNDS} paired rounds of ${ROUND_S} s against a reference server of their own; ` +
      `${os.cpus().length} CPUs, node ${process.version}; clusters' nats-server GOMAXPROCS=${NATS_GOMAXPROCS === "0" ? "(Go's default)" : NATS_GOMAXPROCS}`,
  );

  for (const [scenario, key] of [["handoff", "cluster-r1"], ["failover", "cluster-r2"]]) {
    if (scenarios.includes(scenario) && !targets.some((t) => t.clusterScenarios?.includes(scenario))) {
      console.log(`note: scenario "${scenario}" runs only with target ${key}, which is not selected`);
    }
  }
  const results = new Map<string, TargetFigures>();
  for (const target of targets) results.set(target.key, await benchTarget(target, scenarios));

  printTable(targets, results);
  const json = buildJson(targets, scenarios, results);
  const outFile = path.resolve(process.env.BENCH_OUT ?? path.join(ROOT, "bench", "results", "latest.json"));
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, JSON.stringify(json, null, 2) + "\n");
  console.log(`\nwrote ${path.relative(process.cwd(), outFile) || outFile}`);
  return [...results.values()].some((f) => f.flagged.length > 0) ? 1 : 0;
}

main().then(
  (code) => {
    killAllChildren();
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error("bench failed:", err);
    killAllChildren();
    process.exit(1);
  },
);
