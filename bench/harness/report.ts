/**
 * The table printed at the end: a column per target, then "<target>/ref" columns, then the
 * goals; below it each target's paired rounds, failovers, restarts and flagged problems.
 */
import { type FigureKey, type Goals, type GoalsMet, goalsMet, type TargetFigures } from "./figures";
import { fmt, fmtCpu, fmtInt, fmtK, mark } from "./format";
import { chosenGenerator, fmtGeneratorCpu, fmtGeneratorCpuCell, generatorCpuOf } from "./generator";
import { ROUNDS } from "./settings";
import { ratio } from "./stats";
import { printRestartSummary } from "../scenarios/restart";
import type { Target } from "../targets";

/** A row of the table: one figure of every target. */
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
    goalOf: (g) => (g.flows_per_s_ratio_batch1000_min === undefined ? undefined : `ratio >= ${g.flows_per_s_ratio_batch1000_min}`),
    goal: "flows_per_s_ratio_batch1000",
    markOn: "ratio",
  },
  {
    metric: "paired ratio / memory twin's, batch 1000",
    key: "flows_per_s_ratio_batch1000_vs_memory",
    digits: 2,
    noRatio: true,
    goalOf: (g) => (g.flows_per_s_ratio_batch1000_vs_memory_min === undefined ? undefined : `>= ${g.flows_per_s_ratio_batch1000_vs_memory_min} of memory`),
    goal: "flows_per_s_ratio_batch1000_vs_memory",
    markOn: "value",
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
  {
    metric: "disk bytes/flow after SIGTERM (checkpointed)",
    key: "disk_bytes_per_flow_checkpointed",
    digits: 1,
    noRatio: true,
    goalOf: (g) => (g.disk_bytes_per_flow_checkpointed_max === undefined ? undefined : `<= ${g.disk_bytes_per_flow_checkpointed_max} bytes`),
    goal: "disk_bytes_per_flow_checkpointed",
    markOn: "value",
  },
  {
    metric: "restart after SIGTERM to /ready, ms",
    key: "restart_to_ready_ms",
    digits: 0,
    noRatio: true,
    goalOf: (g) => (g.restart_to_ready_ms_max === undefined ? undefined : `<= ${g.restart_to_ready_ms_max} ms`),
    goal: "restart_to_ready_ms",
    markOn: "value",
  },
  { metric: "restart after SIGTERM to first GET, ms", key: "restart_to_first_read_ms", digits: 0, noRatio: true },
  { metric: "restart after kill -9 to /ready, ms", key: "restart_after_kill_ms", digits: 0, noRatio: true },
  {
    metric: "top-10 of an hour of 1M flows, median ms",
    key: "top10_hour_1m_ms_median",
    digits: 1,
    noRatio: true,
    goalOf: (g) => (g.top10_hour_1m_ms_median_max === undefined ? undefined : `<= ${g.top10_hour_1m_ms_median_max} ms`),
    goal: "top10_hour_1m_ms_median",
    markOn: "value",
  },
  {
    metric: "top-10 of an hour of 1M flows / embedded's",
    key: "top10_cluster_vs_embedded",
    digits: 2,
    noRatio: true,
    goalOf: (g) => (g.top10_cluster_vs_embedded_max === undefined ? undefined : `<= ${g.top10_cluster_vs_embedded_max}x`),
    goal: "top10_cluster_vs_embedded",
    markOn: "value",
  },
  {
    metric: "top-10 of 24 h x 100k flows, median ms",
    key: "top10_range_24h_ms_median",
    digits: 1,
    noRatio: true,
    goalOf: (g) => (g.top10_range_24h_ms_median_max === undefined ? undefined : `<= ${g.top10_range_24h_ms_median_max} ms`),
    goal: "top10_range_24h_ms_median",
    markOn: "value",
  },
  {
    metric: "top-10 of 24 h x 100k flows / embedded's",
    key: "top10_range_24h_cluster_vs_embedded",
    digits: 2,
    noRatio: true,
    goalOf: (g) => (g.top10_range_24h_cluster_vs_embedded_max === undefined ? undefined : `<= ${g.top10_range_24h_cluster_vs_embedded_max}x`),
    goal: "top10_range_24h_cluster_vs_embedded",
    markOn: "value",
  },
  {
    metric: "GET 24 h x 100k flows (streamed), flows/s",
    key: "range_24h_flows_per_s",
    digits: 0,
    noRatio: true,
    goalOf: (g) => (g.range_24h_flows_per_s_min === undefined ? undefined : `>= ${g.range_24h_flows_per_s_min.toLocaleString("en-US")}`),
    goal: "range_24h_flows_per_s",
    markOn: "value",
  },
  { metric: "gateway RSS growth during a 6 h read, MB", key: "range_6h_gateway_rss_growth_bytes", digits: 1, scale: 1e-6, noRatio: true },
  { metric: "gateway RSS growth during a 24 h read, MB", key: "range_24h_gateway_rss_growth_bytes", digits: 1, scale: 1e-6, noRatio: true },
  {
    metric: "gateway RSS growth, 24 h read - 6 h read, MB",
    key: "range_gateway_rss_growth_24h_minus_6h_bytes",
    digits: 1,
    scale: 1e-6,
    noRatio: true,
    goalOf: (g) => (g.range_gateway_rss_growth_24h_minus_6h_bytes_max === undefined ? undefined : `<= ${g.range_gateway_rss_growth_24h_minus_6h_bytes_max / 1e6} MB`),
    goal: "range_gateway_rss_growth_24h_minus_6h_bytes",
    markOn: "value",
  },
];

/** The row under a flows/s row: the load generator's CPU while it drove each target (and, in /ref columns, each paired reference). */
function generatorRow(batch: 100 | 1000, targets: Target[], results: Map<string, TargetFigures>, ratioColumns: boolean): string[] {
  const others = targets.filter((t) => t.key !== "reference");
  const cell = (t: Target, side: "target" | "reference"): string => fmtGeneratorCpuCell(generatorCpuOf(results.get(t.key), batch, side));
  return [`  load generator CPU, batch ${batch}`, ...targets.map((t) => cell(t, "target")), ...(ratioColumns ? others.map((t) => cell(t, "reference")) : []), ""];
}

/**
 * The table: a column per target, then a target/ref column per non-reference target (shown when the reference
 * target ran or some target has paired ratios). In the two flows/s rows the target's cell is the median of its
 * paired rounds and target/ref is the median of the per-round ratios against its own paired reference server
 * (method step 2b), not target / the reference column; the other rows' target/ref is target / reference column.
 */
export function printTable(targets: Target[], results: Map<string, TargetFigures>): void {
  const reference = results.get("reference");
  const others = targets.filter((t) => t.key !== "reference");
  const anyPaired = others.some((t) => results.get(t.key)?.flows_per_s_ratio_batch1000_paired !== undefined);
  const ratioColumns = reference !== undefined || anyPaired;
  const header = ["metric", ...targets.map((t) => t.title), ...(ratioColumns ? others.map((t) => `${t.title}/ref`) : []), "goal"];
  const suspect = (f: TargetFigures | undefined, key: FigureKey): boolean => f?.suspect_figures.includes(key) ?? false;
  const goalMark = (t: Target, f: TargetFigures, row: Row, cell: "value" | "ratio"): string =>
    row.goal === undefined || row.markOn !== cell ? "" : mark(goalsMet(f, t.goals)[row.goal] ?? null);
  // rows no selected target has a figure for (e.g. the cluster-only ones without a cluster target) are left out
  const rows = ROWS.filter((row) => targets.some((t) => results.get(t.key)?.[row.key] !== undefined));
  const generatorMeasured = (batch: 100 | 1000): boolean => targets.some((t) => generatorCpuOf(results.get(t.key), batch, "target") !== null);
  const body: string[][] = rows.flatMap((row) => {
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
    const batch = row.key === "flows_per_s_batch100" ? 100 : row.key === "flows_per_s_batch1000" ? 1000 : null;
    return batch === null || !generatorMeasured(batch) ? [cells] : [cells, generatorRow(batch, targets, results, ratioColumns)];
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
  if (generatorMeasured(100) || generatorMeasured(1000)) {
    console.log(`(load generator rows: ${chosenGenerator().name}'s own CPU, ms per request and % of a core, while it drove the target; in a /ref column, its paired reference)`);
  }
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
        console.log(
          `    CPU ms per request: ${fmtCpu(p.cpu_ms_per_request)}; reference ${fmt(p.reference_cpu_ms_per_request.total, 2)}; ` +
            `load generator ${fmtGeneratorCpu(p.generator_cpu)} (while driving the reference: ${fmtGeneratorCpu(p.reference_generator_cpu)})`,
        );
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
    const r = results.get(t.key)?.details.restart;
    if (r && r.flows_loaded > 0) printRestartSummary(t.title, r);
  }
  for (const t of targets) {
    const q = results.get(t.key)?.details.queries;
    if (!q || q.top10_hour_1m_samples_ms.length === 0) continue;
    console.log(`\nqueries ${t.title} (load of ${fmtInt(q.load.posts * 1000)} flows in ${q.load.seconds.toFixed(1)} s):`);
    console.log(`  top-10 hour of 1M, ms: ${q.top10_hour_1m_samples_ms.map((x) => fmt(x, 1)).join(" ")}; 24 h x 100k, ms: ${q.top10_range_24h_samples_ms.map((x) => fmt(x, 1)).join(" ")}`);
    for (const r of q.range_reads) {
      console.log(
        `  GET ${r.hours} h (${r.format}): ${fmtInt(r.flows)} flows in ${fmt(r.ms, 0)} ms = ${fmtK(r.flows_per_s)} flows/s; ` +
          `gateway RSS ${fmt(r.rss_before_bytes / 1e6, 1)} MB before, +${fmt(r.rss_growth_bytes / 1e6, 1)} MB peak`,
      );
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
