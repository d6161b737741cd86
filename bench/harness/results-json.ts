/** bench/results/latest.json: every key is documented in bench/README.md ("Results"). */
import * as os from "os";
import { EMBEDDED_GOALS, type Target } from "../targets";
import type { PairedResult } from "../scenarios/throughput";
import { type GoalsMet, goalsMet, type TargetFigures } from "./figures";
import { chosenGenerator, type GeneratorCpu, generatorCpuOf } from "./generator";
import type { RunDetails } from "./load";
import { CONNECTIONS, DURATION_S, GET_ROUNDS, LOAD_CONCURRENCY, NATS_GOMAXPROCS, PIPELINING, RESTART_FLOWS, ROUND_S, ROUNDS, WARMUP_S } from "./settings";
import { ratio, round } from "./stats";

export function buildJson(targets: Target[], scenarios: string[], results: Map<string, TargetFigures>): Record<string, unknown> {
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
      generator: chosenGenerator().name,
      ...(chosenGenerator().note ? { generator_note: chosenGenerator().note } : {}),
      pipelining: PIPELINING,
      get_rounds: GET_ROUNDS,
      load_concurrency: LOAD_CONCURRENCY,
      nats_gomaxprocs: Number(NATS_GOMAXPROCS),
      targets: targets.map((t) => t.key),
      scenarios,
      ...(scenarios.includes("restart") ? { restart_flows: RESTART_FLOWS } : {}),
    },
  };
  for (const t of targets) {
    const f = results.get(t.key);
    if (!f) continue;
    const roundRun = (d: RunDetails | null): RunDetails | null =>
      d === null
        ? null
        : {
            ...d,
            requests_per_s: round(d.requests_per_s, 1) ?? 0,
            generator_cpu_ms: round(d.generator_cpu_ms, 1) ?? 0,
            generator_cpu_ms_per_request: round(d.generator_cpu_ms_per_request, 4) ?? 0,
            generator_cpu_core_pct: round(d.generator_cpu_core_pct, 1) ?? 0,
          };
    const roundGen = (g: GeneratorCpu | null): GeneratorCpu | null =>
      g === null ? null : { ...g, cpu_ms_per_request: round(g.cpu_ms_per_request, 4) ?? 0, cpu_core_pct_median: round(g.cpu_core_pct_median, 1) ?? 0 };
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
            generator_cpu: roundGen(p.generator_cpu),
            reference_generator_cpu: roundGen(p.reference_generator_cpu),
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
    // The load generator's own CPU beside the throughput figures (the paired reference's too, on targets measured in pairs).
    for (const batch of [100, 1000] as const) {
      const own = roundGen(generatorCpuOf(f, batch, "target"));
      const reference = roundGen(generatorCpuOf(f, batch, "reference"));
      if (own !== null) o[`load_generator_cpu_batch${batch}`] = reference === null ? own : { ...own, paired_reference: reference };
    }
    if (f.flows_per_s_ratio_batch100_paired !== undefined) o.flows_per_s_ratio_batch100_paired = round(f.flows_per_s_ratio_batch100_paired, 3);
    if (f.flows_per_s_ratio_batch1000_paired !== undefined) o.flows_per_s_ratio_batch1000_paired = round(f.flows_per_s_ratio_batch1000_paired, 3);
    if (f.handoff_1m_ms !== undefined) o.handoff_1m_ms = round(f.handoff_1m_ms, 0);
    if (f.failover_ms_median !== undefined) o.failover_ms_median = round(f.failover_ms_median, 0);
    if (f.flows_per_s_ratio_batch1000_vs_memory !== undefined) o.flows_per_s_ratio_batch1000_vs_memory = round(f.flows_per_s_ratio_batch1000_vs_memory, 3);
    if (f.disk_bytes_per_flow_checkpointed !== undefined) o.disk_bytes_per_flow_checkpointed = round(f.disk_bytes_per_flow_checkpointed, 1);
    if (f.top10_hour_1m_ms_median !== undefined) o.top10_hour_1m_ms_median = round(f.top10_hour_1m_ms_median, 2);
    if (f.top10_range_24h_ms_median !== undefined) o.top10_range_24h_ms_median = round(f.top10_range_24h_ms_median, 2);
    if (f.range_24h_flows_per_s !== undefined) o.range_24h_flows_per_s = round(f.range_24h_flows_per_s, 0);
    if (f.top10_cluster_vs_embedded !== undefined) o.top10_cluster_vs_embedded = round(f.top10_cluster_vs_embedded, 3);
    if (f.top10_range_24h_cluster_vs_embedded !== undefined) o.top10_range_24h_cluster_vs_embedded = round(f.top10_range_24h_cluster_vs_embedded, 3);
    if (f.details.queries) {
      details.queries = { ...f.details.queries, range_reads: f.details.queries.range_reads.map((r) => ({ ...r, flows_per_s: round(r.flows_per_s, 0) })) };
    }
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
  json.goals = EMBEDDED_GOALS;
  json.goals_by_target = Object.fromEntries(targets.filter((t) => t.goals !== undefined).map((t) => [t.key, t.goals]));
  json.goals_met = goalsMetByTarget;
  return json;
}

