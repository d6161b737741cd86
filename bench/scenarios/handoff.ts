/**
 * Scenario "handoff" (cluster-r1): with 1,000,000 flows in the cluster, start a 4th shard
 * node and time the rebalance onto it (method step 5 in bench/README.md).
 */
import { clusterStatus, describeStatus, pollCluster, settledOn, totalFlows } from "../harness/cluster-status";
import { checkLoadedHour, LOAD_BATCH, MEMORY_FLOWS, MEMORY_HOUR0, memoryBody } from "../harness/data";
import { type Fail, flagProblems, type TargetFigures } from "../harness/figures";
import { fmtInt } from "../harness/format";
import { load, loadProblems } from "../harness/load";
import { HANDOFF_TIMEOUT_MS } from "../harness/settings";
import type { Running, Target } from "../targets";

/** How often /cluster is polled while timing the handoff. */
const HANDOFF_POLL_MS = 100;

export interface HandoffResult {
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
    problems.push(...loadProblems(l, "handoff: "));
  }
  const before = await clusterStatus(running.url);
  const totalBefore = totalFlows(before);
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
  const totalAfter = totalFlows(o.status);
  if (totalAfter !== totalBefore) problems.push(`handoff: /cluster counts ${totalAfter} flows over its partitions after it, ${totalBefore} before`);
  if (o.ready_non200 > 0) problems.push(`handoff: GET /ready answered non-200 ${o.ready_non200} time(s) during it (first: ${o.samples[0] ?? "?"})`);
  // spot check: hours are spread over every partition, so these read moved partitions too
  for (const b of [0, 500, 999]) {
    problems.push(...(await checkLoadedHour(running.url, MEMORY_HOUR0 + b, LOAD_BATCH)).map((p) => `handoff: ${p}`));
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

/** Measure and record; `loaded`: the memory scenario's load is in the cluster (1M flows, nothing else). */
export async function runHandoff(running: Running, target: Target, figures: TargetFigures, fail: Fail, loaded: boolean): Promise<void> {
  console.log(`    handoff: 1,000,000 flows ${loaded ? "loaded by the memory scenario" : "to load first"}; then a 4th shard node`);
  try {
    const h = await measureHandoff(running, target.title, loaded);
    figures.details.handoff = { ...h, handoff_ms: Math.round(h.handoff_ms), first_seen_ms: Math.round(h.first_seen_ms), join_ms: h.join_ms === null ? null : Math.round(h.join_ms) };
    figures.handoff_1m_ms = h.handoff_ms;
    figures.handoff_flows_moved = h.flows_moved;
    figures.handoff_partitions_moved = h.partitions_moved;
    flagProblems(figures, h.problems, ["handoff_1m_ms", "handoff_flows_moved"]);
    console.log(
      `    handoff of 1M flows to ${h.node}: ${fmtInt(h.handoff_ms)} ms (settled state first seen at ${fmtInt(h.first_seen_ms)} ms; joined NATS at ${h.join_ms === null ? "?" : fmtInt(h.join_ms)} ms); ` +
        `${fmtInt(h.flows_moved)} flows / ${h.partitions_moved} primaries moved; epoch ${h.epoch_before} -> ${h.epoch_after}`,
    );
  } catch (err) {
    fail("handoff", err);
  }
}
