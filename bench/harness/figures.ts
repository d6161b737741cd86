/**
 * A target's figures (one object per target in bench/results/latest.json; every key is
 * documented in bench/README.md), its goals, and how problems are recorded.
 */
import type { FailoverResult } from "../scenarios/failover";
import type { HandoffResult } from "../scenarios/handoff";
import type { QueriesResult } from "../scenarios/queries";
import type { RestartResult } from "../scenarios/restart";
import type { PairedResult } from "../scenarios/throughput";
import type { Target } from "../targets";
import { runProblem, type RunDetails } from "./load";

/** A target's goals (from the issues and the durability brief); a missing goal is not judged. */
export interface Goals {
  flows_per_s_ratio_batch1000_min?: number;
  get_hour_100k_ms_median_max: number;
  rss_bytes_per_flow_1m_max?: number;
  failover_ms_median_max?: number;
  /** durable targets: their paired ratio over their memory twin's */
  flows_per_s_ratio_batch1000_vs_memory_min?: number;
  disk_bytes_per_flow_checkpointed_max?: number;
  restart_to_ready_ms_max?: number;
  // scenario "queries" (embedded, cluster-r2):
  top10_hour_1m_ms_median_max?: number;
  top10_range_24h_ms_median_max?: number;
  range_24h_flows_per_s_min?: number;
  range_gateway_rss_growth_24h_minus_6h_bytes_max?: number;
  /** cluster targets: their top-10 medians over embedded's in the same run */
  top10_cluster_vs_embedded_max?: number;
  top10_range_24h_cluster_vs_embedded_max?: number;
}

export interface TargetFigures {
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
  // Durable targets with a memory twin, when the throughput scenario runs:
  flows_per_s_ratio_batch1000_vs_memory?: number | null;
  // Cluster targets only (absent on the others):
  rss_nats_baseline_bytes?: number | null;
  rss_nats_after_1m_bytes?: number | null;
  // cluster-r1 (scenario "handoff"):
  handoff_1m_ms?: number | null;
  handoff_flows_moved?: number | null;
  handoff_partitions_moved?: number | null;
  // cluster-r2, cluster-r2-sync (scenario "failover"):
  failover_ms?: number[] | null;
  failover_ms_median?: number | null;
  failover_coordinator_ms?: number | null;
  // embedded-sync, when scenario "restart" was selected:
  disk_bytes_per_flow_checkpointed?: number | null;
  restart_to_ready_ms?: number | null;
  restart_to_first_read_ms?: number | null;
  restart_after_kill_ms?: number | null;
  // embedded, cluster-r2, when scenario "queries" was selected:
  top10_hour_1m_ms_median?: number | null;
  top10_range_24h_ms_median?: number | null;
  range_24h_flows_per_s?: number | null;
  range_6h_gateway_rss_growth_bytes?: number | null;
  range_24h_gateway_rss_growth_bytes?: number | null;
  range_gateway_rss_growth_24h_minus_6h_bytes?: number | null;
  // cluster-r2, when scenario "queries" was selected (null when embedded did not run it in the same call):
  top10_cluster_vs_embedded?: number | null;
  top10_range_24h_cluster_vs_embedded?: number | null;
  flagged: string[];
  suspect_figures: FigureKey[];
  details: {
    batch100: RunDetails | null;
    batch1000: RunDetails | null;
    get_hour_100k: { flows_returned: number; body_bytes: number; samples_ms: number[] } | null;
    load_1m: { posts: number; failed: number; seconds: number } | null;
    /** The memory scenario's RSS per node process (the sum's parts). */
    rss_by_process_1m?: { name: string; baseline_bytes: number; after_1m_bytes: number }[];
    batch100_paired?: PairedResult | null;
    batch1000_paired?: PairedResult | null;
    paired_reference?: { rss_start_bytes: number; rss_end_bytes: number } | null;
    cluster_starts?: { for: string; start_ms: number; namespace: string }[];
    handoff?: HandoffResult | null;
    failover?: FailoverResult | null;
    restart?: RestartResult | null;
    queries?: QueriesResult | null;
  };
}

/** The figures the table shows (and a flagged run can make suspect). */
export type FigureKey =
  | "flows_per_s_batch100"
  | "flows_per_s_batch1000"
  | "flows_per_s_ratio_batch100_paired"
  | "flows_per_s_ratio_batch1000_paired"
  | "flows_per_s_ratio_batch1000_vs_memory"
  | "get_hour_100k_ms_median"
  | "get_hour_100k_ms_p90"
  | "rss_bytes_per_flow_1m"
  | "rss_total_bytes_per_flow_1m"
  | "rss_nats_after_1m_bytes"
  | "handoff_1m_ms"
  | "handoff_flows_moved"
  | "failover_ms_median"
  | "failover_coordinator_ms"
  | "disk_bytes_per_flow_checkpointed"
  | "restart_to_ready_ms"
  | "restart_to_first_read_ms"
  | "restart_after_kill_ms"
  | "top10_hour_1m_ms_median"
  | "top10_range_24h_ms_median"
  | "range_24h_flows_per_s"
  | "range_6h_gateway_rss_growth_bytes"
  | "range_24h_gateway_rss_growth_bytes"
  | "range_gateway_rss_growth_24h_minus_6h_bytes"
  | "top10_cluster_vs_embedded"
  | "top10_range_24h_cluster_vs_embedded";

/** A target's figures before any scenario ran: every key its scenarios can fill is there, null. */
export function newFigures(target: Target, scenarios: string[]): TargetFigures {
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
  if (target.key !== "reference" && scenarios.includes("throughput")) {
    figures.flows_per_s_ratio_batch100_paired = null;
    figures.flows_per_s_ratio_batch1000_paired = null;
    if (target.memoryTwin !== undefined) figures.flows_per_s_ratio_batch1000_vs_memory = null;
    figures.details.batch100_paired = null;
    figures.details.batch1000_paired = null;
    figures.details.paired_reference = null;
  }
  if (target.isCluster) {
    figures.rss_nats_baseline_bytes = null;
    figures.rss_nats_after_1m_bytes = null;
    figures.details.cluster_starts = [];
  }
  if (target.ownScenarios.includes("handoff")) {
    figures.handoff_1m_ms = null;
    figures.handoff_flows_moved = null;
    figures.handoff_partitions_moved = null;
    figures.details.handoff = null;
  }
  if (target.ownScenarios.includes("failover")) {
    figures.failover_ms = null;
    figures.failover_ms_median = null;
    figures.failover_coordinator_ms = null;
    figures.details.failover = null;
  }
  // Opt-in and long: its keys only when it was asked for.
  if (target.ownScenarios.includes("restart") && scenarios.includes("restart")) {
    figures.disk_bytes_per_flow_checkpointed = null;
    figures.restart_to_ready_ms = null;
    figures.restart_to_first_read_ms = null;
    figures.restart_after_kill_ms = null;
    figures.details.restart = null;
  }
  // Opt-in too: its keys only when it was asked for.
  if (target.ownScenarios.includes("queries") && scenarios.includes("queries")) {
    figures.top10_hour_1m_ms_median = null;
    figures.top10_range_24h_ms_median = null;
    figures.range_24h_flows_per_s = null;
    figures.range_6h_gateway_rss_growth_bytes = null;
    figures.range_24h_gateway_rss_growth_bytes = null;
    figures.range_gateway_rss_growth_24h_minus_6h_bytes = null;
    if (target.isCluster) {
      figures.top10_cluster_vs_embedded = null;
      figures.top10_range_24h_cluster_vs_embedded = null;
    }
    figures.details.queries = null;
  }
  return figures;
}

/** Records a scenario that failed (logged, and flagged with its first line). */
export type Fail = (scenario: string, err: unknown) => void;

export function failer(target: Target, figures: TargetFigures): Fail {
  return (scenario, err) => {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`  ${target.title}: ${scenario} failed: ${message}`);
    figures.flagged.push(`${scenario} failed: ${message.split("\n")[0]}`);
  };
}

/** Flag a throughput run with non-2xx answers or errors (its figure is then marked suspect). */
export function flagRun(figures: TargetFigures, label: string, key: FigureKey, d: RunDetails): void {
  const problem = runProblem(d);
  if (problem === null) return;
  figures.flagged.push(`${label}: ${problem}`);
  figures.suspect_figures.push(key);
}

/** Add a scenario's problems; any problem makes these figures suspect. */
export function flagProblems(figures: TargetFigures, problems: string[], suspect: FigureKey[]): void {
  figures.flagged.push(...problems);
  if (problems.length > 0) figures.suspect_figures.push(...suspect);
}

/** Per goal: met, missed, or null (no such goal for the target, figure missing or suspect). The durability goals appear only where the target has them. */
export interface GoalsMet {
  flows_per_s_ratio_batch1000: boolean | null;
  get_hour_100k_ms_median: boolean | null;
  rss_bytes_per_flow_1m: boolean | null;
  failover_ms_median: boolean | null;
  flows_per_s_ratio_batch1000_vs_memory?: boolean | null;
  disk_bytes_per_flow_checkpointed?: boolean | null;
  restart_to_ready_ms?: boolean | null;
  // where the target has the goal and scenario "queries" was selected:
  top10_hour_1m_ms_median?: boolean | null;
  top10_range_24h_ms_median?: boolean | null;
  range_24h_flows_per_s?: boolean | null;
  range_gateway_rss_growth_24h_minus_6h_bytes?: boolean | null;
  top10_cluster_vs_embedded?: boolean | null;
  top10_range_24h_cluster_vs_embedded?: boolean | null;
}

/** The batch-1000 throughput goal is judged on the paired median ratio (method step 2b), not on the reference target's figure. */
export function goalsMet(f: TargetFigures, goals: Goals | undefined): GoalsMet {
  const usable = (key: FigureKey): number | null => (f.suspect_figures.includes(key) ? null : (f[key] ?? null));
  const atLeast = (key: FigureKey, limit: number | undefined): boolean | null => (usable(key) === null || limit === undefined ? null : usable(key)! >= limit);
  const atMost = (key: FigureKey, limit: number | undefined): boolean | null => (usable(key) === null || limit === undefined ? null : usable(key)! <= limit);
  const met: GoalsMet = {
    flows_per_s_ratio_batch1000: atLeast("flows_per_s_ratio_batch1000_paired", goals?.flows_per_s_ratio_batch1000_min),
    get_hour_100k_ms_median: atMost("get_hour_100k_ms_median", goals?.get_hour_100k_ms_median_max),
    rss_bytes_per_flow_1m: atMost("rss_bytes_per_flow_1m", goals?.rss_bytes_per_flow_1m_max),
    failover_ms_median: atMost("failover_ms_median", goals?.failover_ms_median_max),
  };
  if (goals?.flows_per_s_ratio_batch1000_vs_memory_min !== undefined) {
    met.flows_per_s_ratio_batch1000_vs_memory = atLeast("flows_per_s_ratio_batch1000_vs_memory", goals.flows_per_s_ratio_batch1000_vs_memory_min);
  }
  if (goals?.disk_bytes_per_flow_checkpointed_max !== undefined) {
    met.disk_bytes_per_flow_checkpointed = atMost("disk_bytes_per_flow_checkpointed", goals.disk_bytes_per_flow_checkpointed_max);
  }
  if (goals?.restart_to_ready_ms_max !== undefined) met.restart_to_ready_ms = atMost("restart_to_ready_ms", goals.restart_to_ready_ms_max);
  // The queries scenario is opt-in: its goals are judged only when its figures are there (it was selected).
  const queryGoals: [keyof GoalsMet & FigureKey, number | undefined, "min" | "max"][] = [
    ["top10_hour_1m_ms_median", goals?.top10_hour_1m_ms_median_max, "max"],
    ["top10_range_24h_ms_median", goals?.top10_range_24h_ms_median_max, "max"],
    ["range_24h_flows_per_s", goals?.range_24h_flows_per_s_min, "min"],
    ["range_gateway_rss_growth_24h_minus_6h_bytes", goals?.range_gateway_rss_growth_24h_minus_6h_bytes_max, "max"],
    ["top10_cluster_vs_embedded", goals?.top10_cluster_vs_embedded_max, "max"],
    ["top10_range_24h_cluster_vs_embedded", goals?.top10_range_24h_cluster_vs_embedded_max, "max"],
  ];
  for (const [key, limit, kind] of queryGoals) {
    if (limit !== undefined && f[key] !== undefined) met[key] = kind === "min" ? atLeast(key, limit) : atMost(key, limit);
  }
  return met;
}
