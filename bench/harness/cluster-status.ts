/**
 * Watching a cluster through its gateway: GET /cluster, conditions on it, and polling
 * (GET /ready, then GET /cluster) until a condition holds, serially or overlapping.
 */
import { fmtInt } from "./format";
import { getJson } from "./http";
import { now, sleep } from "./processes";

/** GET /cluster (services/cluster.service.ts), the parts the bench reads. */
export interface ClusterStatus {
  coordinator: string | null;
  epoch: number;
  partitionCount: number;
  replicas: number;
  nodes: { nodeID: string; flows: number; primaryFlows: number; primaries: number; replicas: number }[];
  partitions: { partition: number; primary: string | null; replicas: string[]; flows: number }[];
  underReplicated: number[];
  handoffs: { partition: number; from: string; to: string; progress?: number }[];
}

/** What polling needs of a cluster: its gateway's URL, and a check that none of its processes died. */
export interface Watched {
  url: string;
  /** Throws when nats-server or a node the bench did not kill has exited. */
  assertAlive(): void;
}

export async function clusterStatus(url: string): Promise<ClusterStatus> {
  const c = await getJson<ClusterStatus>(url, "/cluster", 10_000);
  if (c.status !== 200 || c.json === null) throw new Error(`GET /cluster answered ${c.status}: ${c.text.slice(0, 300)}`);
  return c.json;
}

/** Flows over the partitions (primary copies): every flow once. */
export const totalFlows = (s: ClusterStatus): number => s.partitions.reduce((a, p) => a + p.flows, 0);

/** null when the cluster status meets it, else why not. */
export type Condition = (s: ClusterStatus) => string | null;

/** Exactly `expected` shard nodes, each with primaries, no handoff, every primary one of them (and, if asked, every partition with R copies). */
export function settledOn(expected: string[], requireReplicated: boolean): Condition {
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
export function primariesOn(live: string[]): Condition {
  return (s) => {
    if (s.partitions.length !== s.partitionCount) return `${s.partitions.length} of ${s.partitionCount} partitions listed`;
    const bad = s.partitions.filter((p) => p.primary === null || !live.includes(p.primary));
    if (bad.length === 0) return null;
    const by = new Map<string, number>();
    for (const p of bad) by.set(p.primary ?? "none", (by.get(p.primary ?? "none") ?? 0) + 1);
    return `${bad.length} partition(s) without a live primary (${[...by].map(([n, c]) => `${c} on ${n}`).join(", ")})`;
  };
}

export function describeStatus(s: ClusterStatus): string {
  const nodes = s.nodes.map((n) => `${n.nodeID} ${n.primaries}p/${n.replicas}r/${fmtInt(n.flows)}f`).join(", ");
  return `epoch ${s.epoch}, coordinator ${s.coordinator}, ${nodes}, ${s.handoffs.length} handoffs, ${s.underReplicated.length} under-replicated`;
}

export interface PollOutcome {
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

export interface PollOptions {
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
export async function pollCluster(cluster: Watched, t0: number, o: PollOptions): Promise<PollOutcome> {
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
function pollClusterOverlapping(cluster: Watched, t0: number, o: PollOptions): Promise<PollOutcome> {
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

