/**
 * Which load generator costs the servers' cores least: `npm run build && node dist/bench/compare-generators.js`.
 *
 * Drives a fresh reference server (bench/reference-server.js) with POST /flows at the
 * bench's batch sizes (100: 10 bodies cycled; 1000: one body), CONNECTIONS connections, with
 * each generator in turn: autocannon (inside this process), wrk, and wrk counting every status
 * code with a Lua response(). Per batch size: a BENCH_WARMUP s warm-up of each, then
 * BENCH_ROUNDS rounds of one BENCH_ROUND_S s run of each (the order rotated every round, so a
 * drifting machine load spreads over all three). Prints each run and the medians: the
 * generator's CPU per request and in % of a core, and the reference server's req/s and CPU
 * per request. The bench's choice of wrk (harness/generator.ts) rests on these figures.
 */
import { throughputBodies } from "./harness/data";
import { type GeneratorName, type ThroughputLoad, throughputLoad } from "./harness/generator";
import type { RunDetails } from "./harness/load";
import { cpuMs } from "./harness/procfs";
import { stopEverything } from "./harness/processes";
import { CONNECTIONS, ROUND_S, ROUNDS, WARMUP_S } from "./harness/settings";
import { medianOf } from "./harness/stats";
import { startReferenceServer } from "./targets";
import { findWrk } from "./harness/wrk";

interface Variant {
  label: string;
  generator: GeneratorName;
  countStatuses: boolean;
}

const VARIANTS: Variant[] = [
  { label: "autocannon", generator: "autocannon", countStatuses: false },
  { label: "wrk", generator: "wrk", countStatuses: false },
  { label: "wrk + response()", generator: "wrk", countStatuses: true },
];

interface Sample {
  run: RunDetails;
  serverCpuMsPerRequest: number;
}

async function main(): Promise<void> {
  const variants = findWrk() === null ? VARIANTS.filter((v) => v.generator !== "wrk") : VARIANTS;
  if (variants.length < VARIANTS.length) console.log("wrk not found: only autocannon is measured (`apt-get install -y wrk`)");
  const reference = await startReferenceServer("reference");
  const serverPid = reference.pids[0];
  console.log(`reference server ${reference.url}; ${CONNECTIONS} connections; warm-up ${WARMUP_S} s each, then ${ROUNDS} rounds of ${ROUND_S} s per generator`);
  const summary: string[] = [];
  try {
    for (const batch of [100, 1000]) {
      const bodies = throughputBodies(batch);
      const loads: ThroughputLoad[] = variants.map((v) => throughputLoad(bodies, v.generator, v.countStatuses));
      for (const load of loads) await load.run(reference.url, WARMUP_S);
      const samples: Sample[][] = variants.map(() => []);
      for (let round = 0; round < ROUNDS; round++) {
        for (let k = 0; k < variants.length; k++) {
          const i = (round + k) % variants.length;
          const serverBefore = cpuMs(serverPid);
          const run = await loads[i].run(reference.url, ROUND_S);
          const responses = run.requests_2xx + run.non2xx;
          samples[i].push({ run, serverCpuMsPerRequest: (cpuMs(serverPid) - serverBefore) / responses });
          console.log(
            `  batch ${batch} round ${round + 1} ${variants[i].label}: ${Math.round(run.requests_per_s)} req/s, generator ${run.generator_cpu_ms_per_request.toFixed(4)} ms/req ` +
              `(${Math.round(run.generator_cpu_core_pct)}% of a core), server ${samples[i].at(-1)!.serverCpuMsPerRequest.toFixed(3)} ms/req, non-2xx ${run.non2xx}, errors ${run.errors}`,
          );
        }
      }
      variants.forEach((v, i) => {
        const m = (pick: (s: Sample) => number): number => medianOf(samples[i].map(pick));
        summary.push(
          `batch ${String(batch).padStart(4)} | ${v.label.padEnd(16)} | ${m((s) => s.run.generator_cpu_ms_per_request).toFixed(4)} ms/req | ` +
            `${Math.round(m((s) => s.run.generator_cpu_core_pct))}% of a core | server ${Math.round(m((s) => s.run.requests_per_s))} req/s, ${m((s) => s.serverCpuMsPerRequest).toFixed(3)} ms/req`,
        );
      });
    }
  } finally {
    await reference.stop();
  }
  console.log(`\nmedians over ${ROUNDS} runs of ${ROUND_S} s (generator CPU = user + system; autocannon: this process's):`);
  for (const line of summary) console.log(`  ${line}`);
}

main().then(
  () => stopEverything(),
  (err: unknown) => {
    console.error("compare-generators failed:", err);
    stopEverything();
    process.exit(1);
  },
);
