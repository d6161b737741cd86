/**
 * The throughput scenario's load generator. It shares the machine's two cores with the servers
 * it drives, so the bench uses the one that costs the least CPU per request here: wrk (about
 * half of autocannon's, bench/README.md "Load generator"; `node dist/bench/compare-generators.js`
 * measures both), autocannon when BENCH_GENERATOR=autocannon or wrk is not installed. Every run
 * reports the generator's own CPU beside its figures.
 */
import type { TargetFigures } from "./figures";
import { type RunDetails, throughputOptions, throughputRun } from "./load";
import { GENERATOR_REQUESTED, WRK_STATUS_CODES } from "./settings";
import { medianOf } from "./stats";
import { findWrk, wrkLoad } from "./wrk";

export type GeneratorName = RunDetails["generator"];

export interface ChosenGenerator {
  name: GeneratorName;
  /** wrk's binary (null for autocannon) */
  wrk: string | null;
  /** why the requested generator is not the one used, if it is not */
  note: string | null;
}

let chosen: ChosenGenerator | undefined;

/** The generator the bench uses (decided once): wrk unless asked for autocannon or wrk is missing. */
export function chosenGenerator(): ChosenGenerator {
  if (chosen !== undefined) return chosen;
  const requested: GeneratorName = GENERATOR_REQUESTED;
  const wrk = requested === "wrk" ? findWrk() : null;
  if (requested === "wrk" && wrk === null) {
    chosen = {
      name: "autocannon",
      wrk: null,
      note: "wrk not found (BENCH_WRK, /usr/bin/wrk, PATH): the throughput scenario falls back to autocannon, which takes more CPU per request from the servers' cores; install it with `apt-get install -y wrk`",
    };
  } else {
    chosen = { name: requested, wrk, note: null };
  }
  return chosen;
}

/** Timed POST /flows runs of one set of bodies (cycled), against any URL. */
export interface ThroughputLoad {
  generator: GeneratorName;
  run(url: string, seconds: number): Promise<RunDetails>;
}

/** A ThroughputLoad with the chosen generator (or `name`, for compare-generators.ts). */
export function throughputLoad(bodies: string[], name: GeneratorName = chosenGenerator().name, countStatuses = WRK_STATUS_CODES): ThroughputLoad {
  if (name === "wrk") {
    const binary = chosenGenerator().wrk ?? findWrk();
    if (binary === null) throw new Error("wrk not found: `apt-get install -y wrk`");
    const load = wrkLoad(binary, bodies, countStatuses);
    return { generator: name, run: (url, seconds) => load.run(url, seconds) };
  }
  return { generator: name, run: (url, seconds) => throughputRun(throughputOptions(url, bodies), seconds) };
}

/** The generator's CPU over several runs: ms per response (all runs' CPU / all runs' responses) and the median % of a core. */
export interface GeneratorCpu {
  generator: GeneratorName;
  cpu_ms_per_request: number;
  cpu_core_pct_median: number;
}

export function generatorCpu(runs: RunDetails[]): GeneratorCpu | null {
  if (runs.length === 0) return null;
  const cpuMs = runs.reduce((sum, d) => sum + d.generator_cpu_ms, 0);
  const responses = runs.reduce((sum, d) => sum + d.requests_2xx + d.non2xx, 0);
  return {
    generator: runs[0].generator,
    cpu_ms_per_request: responses > 0 ? cpuMs / responses : NaN,
    cpu_core_pct_median: medianOf(runs.map((d) => d.generator_cpu_core_pct)),
  };
}

/** "wrk 0.021 ms/req, 17% of a core" */
export const fmtGeneratorCpu = (g: Pick<GeneratorCpu, "generator" | "cpu_ms_per_request" | "cpu_core_pct_median"> | null | undefined): string =>
  g == null ? "-" : `${g.generator} ${g.cpu_ms_per_request.toFixed(3)} ms/req, ${Math.round(g.cpu_core_pct_median)}% of a core`;

/** One run's generator CPU, short: "gen 17%". */
export const fmtRunGenerator = (d: RunDetails): string => `gen ${Math.round(d.generator_cpu_core_pct)}%`;

/** A table cell: "0.014 ms 11%". */
export const fmtGeneratorCpuCell = (g: GeneratorCpu | null): string =>
  g === null || !Number.isFinite(g.cpu_ms_per_request) ? "-" : `${g.cpu_ms_per_request.toFixed(3)} ms ${Math.round(g.cpu_core_pct_median)}%`;

/**
 * The generator's CPU in a target's throughput figures at one batch size: the reference
 * target's measured run; another target's paired runs ("target"), or its paired reference's ("reference").
 */
export function generatorCpuOf(f: TargetFigures | undefined, batch: 100 | 1000, side: "target" | "reference"): GeneratorCpu | null {
  const d = f?.details;
  const run = batch === 100 ? d?.batch100 : d?.batch1000;
  if (run) return side === "target" ? generatorCpu([run]) : null;
  const paired = batch === 100 ? d?.batch100_paired : d?.batch1000_paired;
  if (!paired) return null;
  return (side === "target" ? paired.generator_cpu : paired.reference_generator_cpu) ?? null;
}
