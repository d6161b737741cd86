/**
 * Load generation: timed autocannon runs of POST /flows (one of the throughput scenario's two
 * generators, harness/generator.ts; wrk's runs are in harness/wrk.ts), and bulk loading of
 * data with a few concurrent keep-alive POSTs (the GET, memory, handoff, failover and
 * restart scenarios' data).
 */
import * as http from "http";
import autocannon = require("autocannon");
import { httpRequest } from "./http";
import { CONNECTIONS, LOAD_CONCURRENCY, PIPELINING } from "./settings";

/** One timed run's figures (autocannon's or wrk's). */
export interface RunDetails {
  requests_2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  duration_s: number;
  requests_per_s: number;
  latency_ms_p50: number;
  latency_ms_p99: number;
  status_codes: Record<string, number>;
  /** The load generator's own CPU time (user + system) during the run: it shares the cores with the servers. */
  generator: "wrk" | "autocannon";
  generator_cpu_ms: number;
  /** per response (2xx or not) */
  generator_cpu_ms_per_request: number;
  /** generator_cpu_ms over the run's wall time, in % of one core */
  generator_cpu_core_pct: number;
}

export function runAutocannon(opts: autocannon.Options): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    autocannon(opts, (err, result) => (err ? reject(err) : resolve(result)));
  });
}

/** autocannon options that POST the bodies (cycled per connection) to url/flows; the caller adds the duration. */
export function throughputOptions(url: string, bodies: string[]): autocannon.Options {
  const headers = { "content-type": "application/json" };
  const requests: autocannon.Request[] = bodies.map((body) => ({ method: "POST", path: "/flows", headers, body }));
  return {
    url,
    connections: CONNECTIONS,
    pipelining: PIPELINING,
    method: "POST",
    headers,
    requests,
    timeout: 30,
  };
}

/**
 * One measured autocannon run of `seconds`. autocannon runs inside this process, so its CPU is
 * this process's during the run (the bench does nothing else meanwhile).
 */
export async function throughputRun(base: autocannon.Options, seconds: number): Promise<RunDetails> {
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const r = await runAutocannon({ ...base, duration: seconds });
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const responses = r["2xx"] + r.non2xx;
  const status_codes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(r.statusCodeStats)) status_codes[code] = Number(count);
  return {
    requests_2xx: r["2xx"],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    duration_s: r.duration,
    requests_per_s: r["2xx"] / r.duration,
    latency_ms_p50: r.latency.p50,
    latency_ms_p99: r.latency.p99,
    status_codes,
    generator: "autocannon",
    generator_cpu_ms: cpuMs,
    generator_cpu_ms_per_request: responses > 0 ? cpuMs / responses : NaN,
    generator_cpu_core_pct: wallMs > 0 ? (100 * cpuMs) / wallMs : NaN,
  };
}

/** A throughput run's problem (non-2xx answers, errors, no 2xx at all), or null when it ran clean. */
export function runProblem(d: RunDetails): string | null {
  if (d.requests_2xx === 0) return `no 2xx answer at all (${JSON.stringify(d.status_codes)}, ${d.errors} errors)`;
  if (d.non2xx > 0 || d.errors > 0) return `${d.non2xx} non-2xx (${JSON.stringify(d.status_codes)}), ${d.errors} errors (${d.timeouts} timeouts)`;
  return null;
}

export interface LoadResult {
  posts: number;
  failed: number;
  seconds: number;
  firstFailure: string | null;
}

/** POST makeBody(0..count-1), LOAD_CONCURRENCY at a time, printing progress every 10%. */
export async function load(url: string, label: string, count: number, makeBody: (i: number) => string): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOAD_CONCURRENCY });
  const started = Date.now();
  let next = 0;
  let done = 0;
  let failed = 0;
  let firstFailure: string | null = null;
  let nextReport = 1;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      try {
        const res = await httpRequest(agent, url, "POST", "/flows", makeBody(i));
        if (res.status < 200 || res.status > 299) {
          failed++;
          firstFailure ??= `POST /flows answered ${res.status}: ${res.body.toString("utf8").slice(0, 300)}`;
        }
      } catch (err) {
        failed++;
        firstFailure ??= `POST /flows failed: ${(err as Error).message}`;
      }
      done++;
      while (done * 10 >= nextReport * count && nextReport <= 10) {
        const s = (Date.now() - started) / 1000;
        console.log(`    ${label}: ${nextReport * 10}% (${done}/${count} POSTs, ${s.toFixed(1)} s, ${failed} failed)`);
        nextReport++;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: LOAD_CONCURRENCY }, worker));
  } finally {
    agent.destroy();
  }
  return { posts: count, failed, seconds: (Date.now() - started) / 1000, firstFailure };
}

/** The problem line for a load with failed POSTs (prefixed with `what`), or none. */
export const loadProblems = (l: LoadResult, what: string, note = ""): string[] =>
  l.failed > 0 ? [`${what}${l.failed} of ${l.posts} loading POSTs failed${note}; first: ${l.firstFailure}`] : [];
