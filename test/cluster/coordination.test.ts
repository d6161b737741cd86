/**
 * Coordination that no paused, slow or cut-off node can corrupt (issue 10). Each
 * scenario runs on a fresh cluster (REPLICAS=2) under continuous load from ledger
 * writers (Idempotency-Keys, retries until 200, spread over every gateway, frozen ones
 * included). After the fault: every live gateway answers /ready 200, the writers stop,
 * and every hour read through every gateway equals the ledger exactly, with no stale
 * read on the way. A frozen node is SIGSTOPped: its sockets still accept connections
 * but it neither answers nor sends heartbeats, and when it resumes it carries on from
 * where it was, with timers long overdue and requests long given up.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { expectedHour, freshHour, request, type Flow } from "../support/api-contract";
import { LedgerWriter, ledgerDifference } from "../support/ledger-writer";
import { describeWithNats, sleep, startCluster, startNats, waitFor, type Cluster, type NodeProcess } from "../support/processes";

interface Status {
  coordinator: string;
  nodes: { nodeID: string; primaries: number }[];
  partitions: { partition: number; primary: string | null; replicas: string[] }[];
}

/** Moleculer's heartbeatTimeout in moleculer.config.ts. */
const HEARTBEAT_TIMEOUT_MS = 2500;
/** A writer gives up on a frozen gateway after this and retries the batch elsewhere. */
const REQUEST_TIMEOUT_MS = 5000;
/** Longer than a gateway retries an owner that refuses (RETRY_WINDOW_MS, 8 s): a stuck cluster answers its 503. */
const FINAL_READ_TIMEOUT_MS = 15000;
const SCENARIO_TIMEOUT_MS = 180000;

/** /cluster as the first gateway that answers sees it (a frozen one never does). */
async function status(cluster: Cluster): Promise<Status> {
  for (const url of cluster.urls()) {
    try {
      const r = await request(`${url}/cluster`, { signal: AbortSignal.timeout(3000) });
      if (r.status === 200) return r.body as Status;
    } catch {
      /* frozen or gone: ask the next */
    }
  }
  throw new Error("no gateway answers /cluster");
}

function nodeNamed(cluster: Cluster, nodeID: string): NodeProcess {
  const node = cluster.nodes.find((n) => n.nodeID === nodeID);
  if (!node) throw new Error(`no node ${nodeID}`);
  return node;
}

async function freeze(nodes: NodeProcess[], ms: number): Promise<void> {
  nodes.forEach((n) => n.pause());
  try {
    await sleep(ms);
  } finally {
    nodes.forEach((n) => n.resume());
  }
}

/** Waits until every live gateway answers /ready 200; returns those that never did. */
async function waitUntilReady(cluster: Cluster, timeoutMs = 45000): Promise<string[]> {
  const isReady = async (url: string) => (await fetch(`${url}/ready`, { signal: AbortSignal.timeout(2000) }).catch(() => null))?.ok === true;
  try {
    await waitFor("every live gateway ready", async () => (await Promise.all(cluster.urls().map(isReady))).every(Boolean), timeoutMs, 200);
    return [];
  } catch {
    const ready = await Promise.all(cluster.urls().map(isReady));
    return cluster.urls().filter((_, i) => !ready[i]);
  }
}

/** Stops the writers, each after its batch under way is acknowledged; returns what went wrong. */
async function stopWriters(writers: LedgerWriter[], timeoutMs = 30000): Promise<string[]> {
  const outcomes = Promise.allSettled(writers.map((w) => w.stop()));
  const settled = await Promise.race([outcomes, sleep(timeoutMs).then(() => null)]);
  if (settled === null) return writers.filter((w) => w.pendingKey !== null).map((w) => `batch ${w.pendingKey} still unacknowledged after ${timeoutMs} ms`);
  return settled.flatMap((o) => (o.status === "rejected" ? [`writer failed: ${(o.reason as Error).message}`] : []));
}

interface FinalRead {
  url: string;
  hour: number;
  status: number; // 0: no answer in FINAL_READ_TIMEOUT_MS
  body: Flow[];
}

async function readEveryHour(cluster: Cluster, hours: number[]): Promise<FinalRead[]> {
  const reads = cluster.urls().flatMap((url) => hours.map((hour) => ({ url, hour })));
  return Promise.all(
    reads.map(async ({ url, hour }) => {
      try {
        const r = await request(`${url}/flows?hour=${hour}`, { signal: AbortSignal.timeout(FINAL_READ_TIMEOUT_MS) });
        return { url, hour, status: r.status, body: r.status === 200 ? (r.body as Flow[]) : [] };
      } catch {
        return { url, hour, status: 0, body: [] };
      }
    }),
  );
}

/** Full node logs into the temp directory, for a scenario that went wrong (or every one with KEEP_LOGS=1). */
function keepLogs(cluster: Cluster, tag: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `flowmesh-coordination-${tag}-`));
  for (const n of cluster.nodes) fs.writeFileSync(path.join(dir, `${n.nodeID}.log`), n.output());
  return dir;
}

/**
 * The fault of a scenario, run under load. `writeThrough(node)` adds a writer that sends
 * everything through that node's gateway (all gateways once it is gone): the round-robin
 * writers reach a frozen gateway only by chance, and a frozen one must keep getting requests.
 */
type Fault = (cluster: Cluster, writeThrough: (node: NodeProcess) => void) => Promise<void>;

/**
 * Fresh cluster of `nodes` (REPLICAS=2), three ledger writers over every gateway, `fault`
 * under their load, then readiness, the final reads against the ledger, one summary line,
 * and the assertions.
 */
async function runScenario(name: string, tag: string, nodes: number, fault: Fault): Promise<void> {
  const cluster = await startCluster(nodes, { REPLICAS: "2", LOGLEVEL: "info" });
  try {
    const hours = [freshHour(), freshHour(), freshHour(), freshHour()];
    const writers: LedgerWriter[] = [];
    const addWriter = (gateways: () => string[]) => {
      const writer = new LedgerWriter(gateways, hours, `${tag}-${writers.length}`, 100, { requestTimeoutMs: REQUEST_TIMEOUT_MS });
      writers.push(writer);
      writer.start();
    };
    for (let i = 0; i < 3; i++) addWriter(() => cluster.urls());
    await sleep(2000);

    await fault(cluster, (node) => addWriter(() => (cluster.urls().includes(node.url) ? [node.url] : cluster.urls())));
    const notReady = await waitUntilReady(cluster);
    // Load on the recovered cluster too, past a failover (up to two heartbeat timeouts):
    // /ready only says every partition has a primary in the table, perhaps a dead one.
    await sleep(2 * HEARTBEAT_TIMEOUT_MS);
    const writerProblems = await stopWriters(writers);

    const ledger = writers.flatMap((w) => w.ledger);
    const reads = await readEveryHour(cluster, hours);
    // Worst gateway: every gateway must show the same (complete) data.
    const perGateway = new Map<string, { lost: number; doubled: number; keys: number }>();
    for (const r of reads) {
      if (r.status !== 200) continue;
      const d = ledgerDifference(r.body, expectedHour(ledger, r.hour));
      const total = perGateway.get(r.url) ?? { lost: 0, doubled: 0, keys: 0 };
      perGateway.set(r.url, { lost: total.lost + d.lost, doubled: total.doubled + d.doubled, keys: total.keys + d.keys });
    }
    const worst = [...perGateway.values()].reduce((a, b) => (b.lost + b.doubled > a.lost + a.doubled ? b : a), { lost: 0, doubled: 0, keys: 0 });
    const unavailable = reads.filter((r) => r.status !== 200);
    const staleReads = writers.flatMap((w) => w.staleReads);
    const sum = (f: (w: LedgerWriter) => number) => writers.reduce((a, w) => a + f(w), 0);

    console.log(
      `coordination ${name}: ${sum((w) => w.acknowledged)} records acknowledged, ${sum((w) => w.attempts)} attempts, lost ${worst.lost}, doubled ${worst.doubled}` +
        ` (bytes tx+rx at the worst gateway, ${worst.keys} flow key(s) off; ${sum((w) => w.timeouts)} attempts timed out;` +
        ` stale reads ${staleReads.length}; final reads without 200 ${unavailable.length}/${reads.length}` +
        `${notReady.length > 0 ? `; never ready: ${notReady.join(", ")}` : ""}${writerProblems.length > 0 ? `; ${writerProblems.join("; ")}` : ""})`,
    );
    const clean = notReady.length + writerProblems.length + unavailable.length + staleReads.length + worst.lost + worst.doubled + worst.keys === 0;
    if (!clean || process.env.KEEP_LOGS) console.log(`coordination ${name}: node logs in ${keepLogs(cluster, tag)}; stale reads: ${staleReads.slice(0, 5).join(" | ")}`);

    expect(notReady).toEqual([]);
    expect(writerProblems).toEqual([]);
    expect(sum((w) => w.acknowledged)).toBeGreaterThan(0);
    expect(unavailable.map((r) => `${r.url} hour ${r.hour}: ${r.status}`)).toEqual([]);
    expect(worst).toEqual({ lost: 0, doubled: 0, keys: 0 });
    for (const r of reads) expect(r.body).toEqual(expectedHour(ledger, r.hour));
    expect(staleReads).toEqual([]);
  } finally {
    await cluster.stop();
  }
}

describeWithNats("coordination under paused, slow and cut-off nodes (R = 2)", () => {
  test(
    "the coordinator frozen 10 s, then another node killed -9",
    () =>
      runScenario("coordinator frozen 10 s, then a node killed", "s1", 4, async (cluster, writeThrough) => {
        const frozen = nodeNamed(cluster, (await status(cluster)).coordinator);
        writeThrough(frozen);
        await freeze([frozen], 10000);
        await sleep(12000);
        const { coordinator } = await status(cluster);
        const victim = cluster.nodes.find((n) => n !== frozen && n.nodeID !== coordinator)!;
        await victim.stop("SIGKILL");
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "the coordinator frozen shorter than the heartbeat timeout, then a little longer",
    () =>
      runScenario("coordinator frozen 1.5 s, then 4 s", "s2", 4, async (cluster, writeThrough) => {
        const coordinator = nodeNamed(cluster, (await status(cluster)).coordinator);
        writeThrough(coordinator);
        await freeze([coordinator], HEARTBEAT_TIMEOUT_MS - 1000);
        await waitUntilReady(cluster); // the final check asserts readiness
        await sleep(3000);
        await freeze([nodeNamed(cluster, (await status(cluster)).coordinator)], HEARTBEAT_TIMEOUT_MS + 1500);
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "a primary frozen 10 s while its gateway keeps receiving requests",
    () =>
      runScenario("primary frozen 10 s", "s3", 4, async (cluster, writeThrough) => {
        const s = await status(cluster);
        const primary = nodeNamed(cluster, s.nodes.find((n) => n.nodeID !== s.coordinator && n.primaries > 0)!.nodeID);
        writeThrough(primary);
        await freeze([primary], 10000);
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "two of five nodes frozen 10 s at once, both copies of some partitions among them",
    () =>
      runScenario("two of five nodes frozen 10 s", "s4", 5, async (cluster, writeThrough) => {
        const s = await status(cluster);
        // A minority holding every copy of a partition: nobody else can serve it meanwhile.
        const shared = s.partitions.find((p) => p.primary !== s.coordinator && p.replicas.length === 1 && p.replicas[0] !== s.coordinator)!;
        const frozen = [nodeNamed(cluster, shared.primary!), nodeNamed(cluster, shared.replicas[0])];
        frozen.forEach(writeThrough);
        await freeze(frozen, 10000);
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "nats-server killed -9 under load, restarted on the same port and store after 3 s",
    () =>
      runScenario("nats-server killed and restarted", "s5", 3, async (cluster) => {
        const { port, storeDir } = cluster.nats;
        await cluster.nats.kill();
        await sleep(3000);
        cluster.nats = await startNats(port, storeDir);
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "two nodes: the coordinator killed -9, the other takes over",
    () =>
      runScenario("two nodes, coordinator killed", "s6a", 2, async (cluster) => {
        await nodeNamed(cluster, (await status(cluster)).coordinator).stop("SIGKILL");
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "two nodes: the non-coordinator killed -9, the coordinator carries on alone",
    () =>
      runScenario("two nodes, non-coordinator killed", "s6b", 2, async (cluster) => {
        const { coordinator } = await status(cluster);
        await cluster.nodes.find((n) => n.nodeID !== coordinator)!.stop("SIGKILL");
      }),
    SCENARIO_TIMEOUT_MS,
  );
});
