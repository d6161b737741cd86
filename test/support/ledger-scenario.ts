/**
 * What the fault scenarios under ledger load (test/cluster/coordination, test/cluster/durability,
 * test/api/durability) have in common: finding nodes through /cluster, waiting for readiness,
 * stopping the writers, reading every hour back through every gateway, comparing with the
 * ledger, one summary line, the node logs of a scenario that went wrong, and the assertions.
 * Each test keeps its own faults, its own writers and the first word of its summary line.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { expectedHour, request, type Flow } from "./api-contract";
import { ledgerDifference, type LedgerWriter } from "./ledger-writer";
import { sleep, waitFor, type Cluster, type NodeProcess } from "./processes";

/** Moleculer's heartbeatTimeout in moleculer.config.ts: how long before peers judge a silent node dead. */
export const HEARTBEAT_TIMEOUT_MS = 2500;
/**
 * A writer gives up on one attempt after this and retries the batch through the next
 * gateway: a frozen or dying gateway may accept the connection and never answer.
 */
export const REQUEST_TIMEOUT_MS = 5000;
/** Longer than a gateway retries an owner that refuses (RETRY_WINDOW_MS, 8 s): a stuck cluster answers its 503. */
export const FINAL_READ_TIMEOUT_MS = 15000;

/** The part of GET /cluster the scenarios look at. */
export interface ClusterStatus {
  coordinator: string;
  nodes: { nodeID: string; primaries: number; replicas: number }[];
  partitions: { partition: number; primary: string | null; replicas: string[] }[];
}

/** /cluster as the first gateway that answers sees it: a frozen or killed one never does, so ask the next. */
export async function status(cluster: Cluster): Promise<ClusterStatus> {
  for (const url of cluster.urls()) {
    const r = await request(`${url}/cluster`, { signal: AbortSignal.timeout(3000) }).catch(() => null);
    if (r?.status === 200) return r.body as ClusterStatus;
  }
  throw new Error("no gateway answers /cluster");
}

/** The process of node `nodeID` (/cluster names nodes; faults need their processes). */
export function nodeNamed(cluster: Cluster, nodeID: string): NodeProcess {
  const node = cluster.nodes.find((n) => n.nodeID === nodeID);
  if (!node) throw new Error(`no node ${nodeID}`);
  return node;
}

/**
 * Waits until every gateway answers /ready 200; returns those that never did, so that a
 * scenario still reads, reports and keeps its logs instead of stopping at the first failure.
 * `gateways` may be a function, asked again at each poll: a cluster's live gateways change.
 */
export async function waitUntilReady(gateways: string[] | (() => string[]), timeoutMs = 45000): Promise<string[]> {
  const urls = typeof gateways === "function" ? gateways : () => gateways;
  const isReady = async (url: string) => (await fetch(`${url}/ready`, { signal: AbortSignal.timeout(2000) }).catch(() => null))?.ok === true;
  try {
    await waitFor("every gateway ready", async () => (await Promise.all(urls().map(isReady))).every(Boolean), timeoutMs, 200);
    return [];
  } catch {
    const now = urls();
    const ready = await Promise.all(now.map(isReady));
    return now.filter((_, i) => !ready[i]);
  }
}

/**
 * Stops the writers, each after its batch under way is acknowledged; returns what went wrong
 * instead of throwing, and gives up after `timeoutMs` naming the batches still unacknowledged
 * (a writer retries forever against a cluster that never recovers).
 */
export async function stopWriters(writers: LedgerWriter[], timeoutMs = 30000): Promise<string[]> {
  const outcomes = Promise.allSettled(writers.map((w) => w.stop()));
  const settled = await Promise.race([outcomes, sleep(timeoutMs).then(() => null)]);
  if (settled === null) return writers.filter((w) => w.pendingKey !== null).map((w) => `batch ${w.pendingKey} still unacknowledged after ${timeoutMs} ms`);
  return settled.flatMap((o) => (o.status === "rejected" ? [`writer failed: ${(o.reason as Error).message}`] : []));
}

/** One hour read through one gateway after the writers stopped. */
export interface FinalRead {
  url: string;
  hour: number;
  /** 0: no answer within the timeout (or no connection). */
  status: number;
  /** Empty unless status is 200. */
  body: Flow[];
}

/** Every hour through every gateway, at once; a read that never answers counts as status 0 rather than hanging the test. */
export async function readEveryHour(gateways: string[], hours: number[], timeoutMs = FINAL_READ_TIMEOUT_MS): Promise<FinalRead[]> {
  return Promise.all(
    gateways.flatMap((url) =>
      hours.map(async (hour) => {
        const r = await request(`${url}/flows?hour=${hour}`, { signal: AbortSignal.timeout(timeoutMs) }).catch(() => null);
        return { url, hour, status: r?.status ?? 0, body: r?.status === 200 ? (r.body as Flow[]) : [] };
      }),
    ),
  );
}

/** How far reads are off the ledger: `ledgerDifference`'s bytes lost, bytes doubled, flow keys that differ. */
export interface Difference {
  lost: number;
  doubled: number;
  keys: number;
}

/** `ledgerDifference` summed over the hours read (through one gateway). */
export function differenceFromLedger(reads: { hour: number; body: Flow[] }[], ledger: Flow[]): Difference {
  const total = { lost: 0, doubled: 0, keys: 0 };
  for (const r of reads) {
    const d = ledgerDifference(r.body, expectedHour(ledger, r.hour));
    total.lost += d.lost;
    total.doubled += d.doubled;
    total.keys += d.keys;
  }
  return total;
}

/**
 * The gateway whose answered reads are furthest off the ledger (most bytes lost plus doubled):
 * every gateway must show the same complete data, so summing over gateways would only blur
 * the figure. Reads without 200 are left out here; they count as unavailable.
 */
export function worstGateway(reads: FinalRead[], ledger: Flow[]): Difference {
  const byGateway = new Map<string, FinalRead[]>();
  for (const r of reads) if (r.status === 200) byGateway.set(r.url, [...(byGateway.get(r.url) ?? []), r]);
  return [...byGateway.values()]
    .map((rs) => differenceFromLedger(rs, ledger))
    .reduce((a, b) => (b.lost + b.doubled > a.lost + a.doubled ? b : a), { lost: 0, doubled: 0, keys: 0 });
}

/** What a scenario ends with: the input of its summary line and of its assertions. */
export interface ScenarioOutcome {
  /** Gateways that never answered /ready 200. */
  notReady: string[];
  /** From stopWriters. */
  writerProblems: string[];
  writers: LedgerWriter[];
  /** Every writer's ledger together. */
  ledger: Flow[];
  reads: FinalRead[];
  worst: Difference;
}

const total = (writers: LedgerWriter[], f: (w: LedgerWriter) => number) => writers.reduce((a, w) => a + f(w), 0);
const unavailable = (o: ScenarioOutcome) => o.reads.filter((r) => r.status !== 200);
const staleReads = (o: ScenarioOutcome) => o.writers.flatMap((w) => w.staleReads);

/**
 * The scenario's one summary line, `${title}: …` (title: "coordination <name>" or "durability <name>"),
 * printed whether or not it passes: the figures are what a reader compares between runs.
 * `note` (what the fault measured) goes after the final reads.
 */
export function summaryLine(title: string, o: ScenarioOutcome, note?: string): string {
  const { worst, notReady, writerProblems } = o;
  return (
    `${title}: ${total(o.writers, (w) => w.acknowledged)} records acknowledged, ${total(o.writers, (w) => w.attempts)} attempts, lost ${worst.lost}, doubled ${worst.doubled}` +
    ` (bytes tx+rx at the worst gateway, ${worst.keys} flow key(s) off; ${total(o.writers, (w) => w.timeouts)} attempts timed out;` +
    ` stale reads ${staleReads(o).length}; final reads without 200 ${unavailable(o).length}/${o.reads.length}${note !== undefined ? `; ${note}` : ""}` +
    `${notReady.length > 0 ? `; never ready: ${notReady.join(", ")}` : ""}${writerProblems.length > 0 ? `; ${writerProblems.join("; ")}` : ""})`
  );
}

/** Nothing wrong at all: the condition under which a scenario's node logs need not be kept. */
export function isClean(o: ScenarioOutcome): boolean {
  return o.notReady.length + o.writerProblems.length + unavailable(o).length + staleReads(o).length + o.worst.lost + o.worst.doubled + o.worst.keys === 0;
}

/**
 * The final assertions, in this order so that the first failure is the most telling: readiness,
 * writers, some load at all, availability, the worst gateway's figures, then each read in full
 * and the stale reads.
 */
export function expectClean(o: ScenarioOutcome): void {
  expect(o.notReady).toEqual([]);
  expect(o.writerProblems).toEqual([]);
  expect(total(o.writers, (w) => w.acknowledged)).toBeGreaterThan(0);
  expect(unavailable(o).map((r) => `${r.url} hour ${r.hour}: ${r.status}`)).toEqual([]);
  expect(o.worst).toEqual({ lost: 0, doubled: 0, keys: 0 });
  for (const r of o.reads) expect(r.body).toEqual(expectedHour(o.ledger, r.hour));
  expect(staleReads(o)).toEqual([]);
}

/**
 * How the primaries brought recovered copies up to date, from the nodes' log lines
 * (src/shard/handoff.ts): `nodeID`'s copies, or every node's without one; and the reasons
 * given for snapshots.
 */
export function catchUpsOf(nodes: NodeProcess[], nodeID = "\\S+"): { tails: number; snapshots: number; why: string } {
  const out = nodes.map((n) => n.output()).join("\n");
  const tails = out.match(new RegExp(`${nodeID}'s recovered copy caught up from the log tail`, "g"))?.length ?? 0;
  const refused = [...out.matchAll(new RegExp(`${nodeID}'s recovered copy gets a snapshot, not the log tail \\(([^)]*)\\)`, "g"))].map((m) => m[1]);
  const reasons = [...new Set(refused)];
  return { tails, snapshots: refused.length, why: reasons.length > 0 ? ` (${reasons.join("; ")})` : "" };
}

/**
 * Full node logs into a fresh temp directory `flowmesh-<name>-…` (returned): the test output
 * keeps only the summary, and the processes' output is gone once the cluster stops.
 * `numbered` prefixes each file with its place in `nodes` (00-, 01-, …), for a list where a
 * restarted node stands twice (its old process and the new one, same node id).
 */
export function keepLogs(name: string, nodes: NodeProcess[], numbered = false): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `flowmesh-${name}-`));
  nodes.forEach((n, i) => fs.writeFileSync(path.join(dir, `${numbered ? `${String(i).padStart(2, "0")}-` : ""}${n.nodeID}.log`), n.output()));
  return dir;
}

export interface ScenarioEnd {
  /** The summary line's title, e.g. "coordination two nodes, coordinator killed". */
  title: string;
  writers: LedgerWriter[];
  hours: number[];
  /** The gateways to wait for and read through; asked again at each poll (a cluster's live ones, or a fixed list). */
  gateways: () => string[];
  readyTimeoutMs?: number;
  /** What the fault measured, for the summary line. */
  note?: string;
  /** Writes the node logs somewhere (keepLogs) and returns where: for a scenario that went wrong, or every one with KEEP_LOGS=1. */
  keepLogs: () => string;
}

/**
 * Everything after a scenario's fault, the same for every cluster scenario: every gateway
 * ready, more load past a failover, the writers stopped, every hour read through every
 * gateway and compared with the ledger, the summary line, the node logs when anything is
 * off (or KEEP_LOGS=1), then the assertions (after the logs, so that a failure has them).
 */
export async function finishScenario(end: ScenarioEnd): Promise<void> {
  const notReady = await waitUntilReady(end.gateways, end.readyTimeoutMs);
  // Load on the recovered cluster too, past a failover (up to two heartbeat timeouts):
  // /ready only says every partition has a primary in the table, perhaps a dead one.
  await sleep(2 * HEARTBEAT_TIMEOUT_MS);
  const writerProblems = await stopWriters(end.writers);

  const ledger = end.writers.flatMap((w) => w.ledger);
  const reads = await readEveryHour(end.gateways(), end.hours);
  const outcome: ScenarioOutcome = { notReady, writerProblems, writers: end.writers, ledger, reads, worst: worstGateway(reads, ledger) };

  console.log(summaryLine(end.title, outcome, end.note));
  if (!isClean(outcome) || process.env.KEEP_LOGS) console.log(`${end.title}: node logs in ${end.keepLogs()}; stale reads: ${staleReads(outcome).slice(0, 5).join(" | ")}`);
  expectClean(outcome);
}
