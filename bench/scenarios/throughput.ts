/**
 * Scenario "throughput": POST /flows with batches of 100 and 1000 (method steps 2a and 2b
 * in bench/README.md). The reference target gets one measured run per batch size; every
 * other target is measured in rounds alternating with a reference server of its own.
 */
import { throughputBodies } from "../harness/data";
import { type Fail, flagRun, type TargetFigures } from "../harness/figures";
import { fmt, fmtCpu, fmtInt } from "../harness/format";
import { chosenGenerator, fmtGeneratorCpu, fmtRunGenerator, type GeneratorCpu, generatorCpu, throughputLoad } from "../harness/generator";
import { runProblem, type RunDetails } from "../harness/load";
import { metered, type MeteredProcess, perRequest, totalRss } from "../harness/procfs";
import { CONNECTIONS, DURATION_S, ROUND_S, ROUNDS, WARMUP_S } from "../harness/settings";
import { medianOf, ratio } from "../harness/stats";
import { type Running, startReferenceServer, type Target } from "../targets";

/** One paired round: the target's run between two runs of the paired reference server. */
interface PairedRound {
  round: number;
  reference_before_flows_per_s: number;
  target_flows_per_s: number;
  reference_after_flows_per_s: number;
  /** target / mean(reference before, reference after); null when both reference runs got no 2xx */
  ratio: number | null;
}

export interface PairedResult {
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
  /** The load generator's own CPU over the target runs, and over the paired reference's runs (harness/generator.ts). */
  generator_cpu: GeneratorCpu | null;
  reference_generator_cpu: GeneratorCpu | null;
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
  const load = throughputLoad(throughputBodies(batch));
  const label = `POST batch ${batch}`;
  await load.run(referenceUrl, WARMUP_S);
  await load.run(targetUrl, WARMUP_S);
  const flows = (d: RunDetails): number => d.requests_per_s * batch;
  const targetCpu = new Map<string, number>();
  const referenceCpu = new Map<string, number>();
  const reference_runs = [await metered(referenceProcs, referenceCpu, () => load.run(referenceUrl, ROUND_S))];
  const target_runs: RunDetails[] = [];
  const rounds: PairedRound[] = [];
  for (let i = 1; i <= ROUNDS; i++) {
    target_runs.push(await metered(targetProcs, targetCpu, () => load.run(targetUrl, ROUND_S)));
    reference_runs.push(await metered(referenceProcs, referenceCpu, () => load.run(referenceUrl, ROUND_S)));
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
      `    ${label} round ${i}/${ROUNDS}: reference ${fmtInt(flows(before))} (${fmtRunGenerator(before)}) | ${title} ${fmtInt(flows(run))} (${fmtRunGenerator(run)}) | ` +
        `reference ${fmtInt(flows(after))} (${fmtRunGenerator(after)}) flows/s` +
        ` -> ratio ${fmt(q, 3)}${problems.length > 0 ? `  FLAGGED: ${problems.join("; ")}` : ""}`,
    );
  }
  const ratios = rounds.flatMap((r) => (r.ratio === null ? [] : [r.ratio]));
  return {
    batch,
    warmup_s: WARMUP_S,
    round_s: ROUND_S,
    rounds,
    ratio_median: ratios.length > 0 ? medianOf(ratios) : null,
    target_flows_per_s_median: medianOf(target_runs.map(flows)),
    reference_flows_per_s_median: medianOf(reference_runs.map(flows)),
    reference_runs,
    target_runs,
    cpu_ms_per_request: perRequest(targetCpu, target_runs.reduce((a, d) => a + d.requests_2xx, 0)),
    reference_cpu_ms_per_request: perRequest(referenceCpu, reference_runs.reduce((a, d) => a + d.requests_2xx, 0)),
    generator_cpu: generatorCpu(target_runs),
    reference_generator_cpu: generatorCpu(reference_runs),
  };
}

/**
 * The throughput scenario of a non-reference target: a fresh reference server of its own, idle while
 * the target is driven, then paired rounds (measurePaired) for batch 100 and batch 1000.
 */
async function pairedThroughput(running: Running, target: Target, figures: TargetFigures, fail: Fail): Promise<void> {
  let reference: Running;
  try {
    reference = await startReferenceServer("paired reference");
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
          `(reference, ${target.title}, ..., reference; ratio = ${target.title} / mean of the reference runs before and after; ` +
          `${CONNECTIONS} connections, ${chosenGenerator().name}; gen = the load generator's CPU in % of a core)`,
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
        console.log(`    ${label}: load generator CPU while driving ${target.title}: ${fmtGeneratorCpu(p.generator_cpu)}; the paired reference: ${fmtGeneratorCpu(p.reference_generator_cpu)}`);
      } catch (err) {
        fail(label, err);
      }
    }
    figures.details.paired_reference = { rss_start_bytes: rssStart, rss_end_bytes: totalRss(reference.pids) };
  } finally {
    await reference.stop();
  }
}


/** The reference target's throughput (method step 2a): per batch size a warm-up, then one measured run. */
async function referenceThroughput(running: Running, figures: TargetFigures, fail: Fail): Promise<void> {
  for (const batch of [100, 1000] as const) {
    const label = `POST batch ${batch}`;
    console.log(`    ${label}: warm-up ${WARMUP_S} s, then ${DURATION_S} s measured (${CONNECTIONS} connections, ${chosenGenerator().name})`);
    try {
      const load = throughputLoad(throughputBodies(batch));
      await load.run(running.url, WARMUP_S);
      const d = await load.run(running.url, DURATION_S);
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
      console.log(
        `    ${label}: ${fmtInt(flowsPerS)} flows/s (${d.requests_per_s.toFixed(1)} req/s, p50 ${d.latency_ms_p50} ms, p99 ${d.latency_ms_p99} ms; ` +
          `load generator ${fmtGeneratorCpu(generatorCpu([d]))})${flag}`,
      );
    } catch (err) {
      fail(label, err);
    }
  }
}

export async function runThroughput(running: Running, target: Target, figures: TargetFigures, fail: Fail): Promise<void> {
  if (target.key === "reference") await referenceThroughput(running, figures, fail);
  else await pairedThroughput(running, target, figures, fail);
}

/**
 * A durable target's paired batch-1000 ratio over its memory twin's (both from this run):
 * each is against its own paired reference, so the machine's load cancels out of both.
 */
export function ratioVsMemoryTwin(target: Target, figures: TargetFigures, twin: TargetFigures | undefined): void {
  if (figures.flows_per_s_ratio_batch1000_vs_memory === undefined) return;
  const mine = figures.flows_per_s_ratio_batch1000_paired ?? null;
  const theirs = twin?.flows_per_s_ratio_batch1000_paired ?? null;
  figures.flows_per_s_ratio_batch1000_vs_memory = ratio(mine, theirs);
  const suspect = [figures, twin].some((f) => f?.suspect_figures.includes("flows_per_s_ratio_batch1000_paired"));
  if (suspect) figures.suspect_figures.push("flows_per_s_ratio_batch1000_vs_memory");
  if (twin === undefined) console.log(`  ${target.title}: no ratio vs memory (${target.memoryTwin} did not run)`);
  else console.log(`  ${target.title} vs ${target.memoryTwin} (memory), paired ratio at batch 1000: ${fmt(mine, 3)} / ${fmt(theirs, 3)} = ${fmt(figures.flows_per_s_ratio_batch1000_vs_memory, 3)}`);
}
