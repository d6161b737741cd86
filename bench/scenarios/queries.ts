/**
 * Scenario "queries" (opt-in: only when BENCH_SCENARIOS names it; embedded and cluster-r2):
 * top-N and range reads (method step 8 in bench/README.md). One load of 3,400,000 distinct
 * flows: one hour of 1,000,000 and a 24-hour range of 100,000 per hour. Then:
 * - top-10 of the hour (GET /flows/top?hour=H, default by and metric): 5 warm-ups (the first checked), median of 9;
 * - top-10 of the 24 hours (GET /flows/top?from=A&to=B): the same;
 * - range reads (GET /flows?from=A&to=B, streamed JSON, flows counted as they arrive): the 24 hours
 *   once as a warm-up (the first read of an hour builds its merged view and its keys' JSON text,
 *   which the store keeps for the next reads: memory of the store, held by the shard nodes in a
 *   cluster), then 6 hours 3 times and 24 hours 3 times, with the gateway's VmRSS sampled during
 *   each read; then 24 hours as CSV once.
 * Every answer is checked against a model computed here from the same generator.
 */
import * as http from "http";
import { BASE_HOUR, type FlowRecord, LOAD_BATCH } from "../harness/data";
import { type FigureKey, flagProblems, type TargetFigures } from "../harness/figures";
import { fmtInt } from "../harness/format";
import { httpRequest } from "../harness/http";
import { load, loadProblems } from "../harness/load";
import { rssBytes } from "../harness/procfs";
import { medianOf, ratio } from "../harness/stats";
import type { Running, Target } from "../targets";

/** The hour of 1,000,000 flows: clear of every other scenario's hours (the restart scenario's end near BASE_HOUR + 110,100). */
export const QUERY_HOUR = BASE_HOUR + 200_000;
export const QUERY_HOUR_FLOWS = 1_000_000;
/** The 24-hour range (QUERY_RANGE0 .. QUERY_RANGE0 + 23), 100,000 flows in each hour. */
export const QUERY_RANGE0 = QUERY_HOUR + 1;
export const QUERY_RANGE_HOURS = 24;
export const QUERY_RANGE_FLOWS_PER_HOUR = 100_000;
/** The smaller range the 24-hour read's RSS growth is compared with. */
const SHORT_RANGE_HOURS = 6;
const TOP_N = 10;
/**
 * Top-N: untimed rounds first (the first checked), then timed ones. A query's code runs
 * unoptimized its first few times in every process it passes (V8 compiles a function
 * once it has run enough): in a cluster, the top-10 of the 1M-flow hour took 115–240 ms
 * the first five times after start and 56–120 ms after (a throwaway driver, 20 in a row).
 * The bench measures a service that has answered a few queries, as a running one has.
 */
const TOP_WARMUPS = 5;
const TOP_ROUNDS = 9;
const RANGE_ROUNDS = 3;
/** How often the gateway's VmRSS is read during a range read. */
const RSS_SAMPLE_MS = 20;

const HOUR_BODIES = QUERY_HOUR_FLOWS / LOAD_BATCH; // 1000
const RANGE_BODIES_PER_HOUR = QUERY_RANGE_FLOWS_PER_HOUR / LOAD_BATCH; // 100
const RANGE_BODIES = RANGE_BODIES_PER_HOUR * QUERY_RANGE_HOURS; // 2400

const pad4 = (n: number): string => String(n).padStart(4, "0");
const mix = (n: number, k: number): number => Math.imul(n + 1, k) >>> 0;

/**
 * Flow i (0..999,999) of the hour: src_app i % 1000, dest_app (i / 1000) % 100, vpc_id i / 100,000:
 * 1,000,000 distinct keys, 100,000 (src_app, dest_app) groups of 10 flows each. Pseudo-random bytes.
 */
function hourFlow(i: number): FlowRecord {
  return {
    src_app: `app-${pad4(i % 1000)}`,
    dest_app: `svc-${pad4(Math.floor(i / 1000) % 100)}`,
    vpc_id: `vpc-q${Math.floor(i / 100_000)}`,
    hour: QUERY_HOUR,
    bytes_tx: 100 + (mix(i, 0x9e3779b1) % 50_000),
    bytes_rx: 50 + (mix(i, 0x85ebca6b) % 20_000),
  };
}
/** The hour flow's (src_app, dest_app) group: src + 1000 x dest (group order = index order). */
const hourGroup = (i: number): number => (i % 1000) * 100 + (Math.floor(i / 1000) % 100);

/** Flow j (0..99,999) of range hour h (0..23): the same 100,000 keys every hour, 100,000 groups of 24 flows over the range. */
function rangeFlow(h: number, j: number): FlowRecord {
  const n = h * QUERY_RANGE_FLOWS_PER_HOUR + j;
  return {
    src_app: `app-${pad4(j % 1000)}`,
    dest_app: `svc-${pad4(Math.floor(j / 1000))}`,
    vpc_id: "vpc-r0",
    hour: QUERY_RANGE0 + h,
    bytes_tx: 100 + (mix(n, 0x27d4eb2f) % 50_000),
    bytes_rx: 50 + (mix(n, 0x165667b1) % 20_000),
  };
}
const rangeGroup = (j: number): number => (j % 1000) * 100 + Math.floor(j / 1000);

/** Body b of the load: 0..999 the hour's (1000 flows each), then 100 per range hour. */
export function queriesBody(b: number): string {
  const records: FlowRecord[] = [];
  if (b < HOUR_BODIES) {
    for (let i = b * LOAD_BATCH; i < (b + 1) * LOAD_BATCH; i++) records.push(hourFlow(i));
  } else {
    const r = b - HOUR_BODIES;
    const h = Math.floor(r / RANGE_BODIES_PER_HOUR);
    const start = (r % RANGE_BODIES_PER_HOUR) * LOAD_BATCH;
    for (let j = start; j < start + LOAD_BATCH; j++) records.push(rangeFlow(h, j));
  }
  return JSON.stringify(records);
}

interface Totals {
  bytes_tx: number;
  bytes_rx: number;
  bytes_total: number;
  flows: number;
}
interface TopRow extends Totals {
  src_app: string;
  dest_app: string;
}
interface TopAnswer {
  top: TopRow[];
  total: Totals & { groups: number };
}

/** The exact top-N (default by src_app,dest_app and metric bytes_total) and total of flows, as the service must answer. */
function modelTop(flows: Iterable<[group: number, f: FlowRecord]>, groups: number): TopAnswer {
  const tx = new Float64Array(groups);
  const rx = new Float64Array(groups);
  const count = new Uint32Array(groups);
  const names: [string, string][] = new Array(groups);
  for (const [g, f] of flows) {
    tx[g] += f.bytes_tx;
    rx[g] += f.bytes_rx;
    count[g]++;
    names[g] ??= [f.src_app, f.dest_app];
  }
  const total = { bytes_tx: 0, bytes_rx: 0, bytes_total: 0, flows: 0, groups: 0 };
  const used: number[] = [];
  for (let g = 0; g < groups; g++) {
    if (count[g] === 0) continue;
    used.push(g);
    total.bytes_tx += tx[g];
    total.bytes_rx += rx[g];
    total.flows += count[g];
    total.groups++;
  }
  total.bytes_total = total.bytes_tx + total.bytes_rx;
  // group index order is (src_app, dest_app) string order: ties by index ascending
  used.sort((a, b) => tx[b] + rx[b] - (tx[a] + rx[a]) || a - b);
  const top = used.slice(0, TOP_N).map((g) => ({ src_app: names[g][0], dest_app: names[g][1], bytes_tx: tx[g], bytes_rx: rx[g], bytes_total: tx[g] + rx[g], flows: count[g] }));
  return { top, total };
}

function* hourFlows(): Generator<[number, FlowRecord]> {
  for (let i = 0; i < QUERY_HOUR_FLOWS; i++) yield [hourGroup(i), hourFlow(i)];
}
function* rangeFlows(): Generator<[number, FlowRecord]> {
  for (let h = 0; h < QUERY_RANGE_HOURS; h++) for (let j = 0; j < QUERY_RANGE_FLOWS_PER_HOUR; j++) yield [rangeGroup(j), rangeFlow(h, j)];
}

/** The differences between an answer of GET /flows/top and the model (none when it is exact). */
function checkTop(what: string, body: Buffer, expected: TopAnswer): string[] {
  let got: TopAnswer;
  try {
    got = JSON.parse(body.toString("utf8")) as TopAnswer;
  } catch {
    return [`${what}: body is not JSON`];
  }
  const problems: string[] = [];
  const same = (a: object, b: object, keys: string[]): boolean => keys.every((k) => (a as Record<string, unknown>)[k] === (b as Record<string, unknown>)[k]);
  const totalKeys = ["bytes_tx", "bytes_rx", "bytes_total", "flows", "groups"];
  if (!got.total || !same(got.total, expected.total, totalKeys)) problems.push(`${what}: total ${JSON.stringify(got.total)}, expected ${JSON.stringify(expected.total)}`);
  if (!Array.isArray(got.top) || got.top.length !== expected.top.length) {
    problems.push(`${what}: ${Array.isArray(got.top) ? got.top.length : "no"} top rows, expected ${expected.top.length}`);
    return problems;
  }
  const rowKeys = ["src_app", "dest_app", "bytes_tx", "bytes_rx", "bytes_total", "flows"];
  const wrong = expected.top.findIndex((e, k) => !same(got.top[k], e, rowKeys));
  if (wrong >= 0) problems.push(`${what}: top[${wrong}] is ${JSON.stringify(got.top[wrong])}, expected ${JSON.stringify(expected.top[wrong])}`);
  return problems;
}

/** TOP_WARMUPS untimed GETs of `query` (the first checked), then TOP_ROUNDS timed ones, on one keep-alive connection (each until its last byte). */
async function timeTop(url: string, query: string, expected: TopAnswer): Promise<{ samples_ms: number[]; problems: string[] }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const first = await httpRequest(agent, url, "GET", query, undefined, 120_000);
    if (first.status !== 200) throw new Error(`GET ${query} answered ${first.status}: ${first.body.toString("utf8").slice(0, 300)}`);
    const problems = checkTop(`GET ${query}`, first.body, expected);
    for (let i = 1; i < TOP_WARMUPS; i++) await httpRequest(agent, url, "GET", query, undefined, 120_000);
    const samples: number[] = [];
    for (let i = 0; i < TOP_ROUNDS; i++) {
      const t0 = process.hrtime.bigint();
      const res = await httpRequest(agent, url, "GET", query, undefined, 120_000);
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (res.status !== 200) problems.push(`timed GET ${query} ${i} answered ${res.status}`);
    }
    return { samples_ms: samples.map((x) => Math.round(x * 100) / 100), problems };
  } finally {
    agent.destroy();
  }
}

/** One streamed range read, its flows counted as the bytes arrive (JSON: `{`, one per flow; CSV: line ends, less the header). */
export interface RangeRead {
  hours: number;
  format: "json" | "csv";
  flows: number;
  body_bytes: number;
  ms: number;
  flows_per_s: number;
  /** the gateway's VmRSS just before the request, and the highest reading while it was answered (every RSS_SAMPLE_MS and at its end) */
  rss_before_bytes: number;
  rss_peak_bytes: number;
  rss_growth_bytes: number;
  rss_samples: number;
}

function rangeRead(url: string, from: number, hours: number, format: "json" | "csv", gatewayPid: number): Promise<RangeRead> {
  const pathAndQuery = `/flows?from=${from}&to=${from + hours - 1}${format === "csv" ? "&format=csv" : ""}`;
  const target = new URL(pathAndQuery, url);
  const mark = format === "json" ? 0x7b /* { */ : 0x0a; /* \n */
  return new Promise((resolve, reject) => {
    const rssBefore = rssBytes(gatewayPid);
    let rssPeak = rssBefore;
    let samples = 0;
    const sample = (): void => {
      try {
        rssPeak = Math.max(rssPeak, rssBytes(gatewayPid));
        samples++;
      } catch {
        // gone: the read fails below
      }
    };
    const timer = setInterval(sample, RSS_SAMPLE_MS);
    let marks = 0;
    let bytes = 0;
    let firstByte = -1;
    let lastByte = -1;
    const t0 = process.hrtime.bigint();
    const fail = (err: Error): void => {
      clearInterval(timer);
      reject(err);
    };
    const req = http.get({ host: target.hostname, port: target.port, path: target.pathname + target.search, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => fail(new Error(`GET ${pathAndQuery} answered ${res.statusCode}: ${Buffer.concat(chunks).toString("utf8").slice(0, 300)}`)));
        return;
      }
      res.on("data", (c: Buffer) => {
        if (firstByte < 0 && c.length > 0) firstByte = c[0];
        if (c.length > 0) lastByte = c[c.length - 1];
        bytes += c.length;
        for (let at = c.indexOf(mark); at >= 0; at = c.indexOf(mark, at + 1)) marks++;
      });
      res.on("error", fail);
      res.on("aborted", () => fail(new Error(`GET ${pathAndQuery}: the answer was cut after ${bytes} bytes`)));
      res.on("end", () => {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        sample();
        clearInterval(timer);
        if (format === "json" && (firstByte !== 0x5b || lastByte !== 0x5d)) {
          reject(new Error(`GET ${pathAndQuery}: not a whole JSON array (first byte ${firstByte}, last ${lastByte})`));
          return;
        }
        const flows = format === "json" ? marks : marks - 1;
        resolve({
          hours,
          format,
          flows,
          body_bytes: bytes,
          ms: Math.round(ms * 100) / 100,
          flows_per_s: flows / (ms / 1000),
          rss_before_bytes: rssBefore,
          rss_peak_bytes: rssPeak,
          rss_growth_bytes: rssPeak - rssBefore,
          rss_samples: samples,
        });
      });
    });
    req.setTimeout(300_000, () => req.destroy(new Error(`GET ${pathAndQuery}: no answer within 300 s`)));
    req.on("error", fail);
  });
}

export interface QueriesResult {
  load: { posts: number; failed: number; seconds: number };
  top10_hour_1m_samples_ms: number[];
  top10_range_24h_samples_ms: number[];
  /** the 24-hour warm-up read, the 6-hour reads, the 24-hour reads, the 24-hour CSV read */
  range_reads: RangeRead[];
  gateway_pid: number;
  problems: string[];
}

/** The process that answers HTTP: the embedded node, or a cluster's gateway node. */
function gatewayPid(running: Running): number {
  const cluster = running.cluster;
  if (cluster === undefined) return running.pids[0];
  const shards = cluster.shardIDs();
  const gw = [...cluster.nodes].find(([id]) => !shards.includes(id));
  const pid = gw?.[1].process.pid;
  if (pid === undefined) throw new Error(`${cluster.label}: no gateway process`);
  return pid;
}

/** The figures this scenario fills (suspect when it was flagged). */
const QUERY_FIGURES: FigureKey[] = [
  "top10_hour_1m_ms_median",
  "top10_range_24h_ms_median",
  "range_24h_flows_per_s",
  "range_6h_gateway_rss_growth_bytes",
  "range_24h_gateway_rss_growth_bytes",
  "range_gateway_rss_growth_24h_minus_6h_bytes",
];

export async function runQueries(running: Running, target: Target, figures: TargetFigures): Promise<void> {
  const label = target.title;
  const pid = gatewayPid(running);
  const total = HOUR_BODIES + RANGE_BODIES;
  const loaded = await load(
    running.url,
    `${label} loading ${(total * LOAD_BATCH).toLocaleString("en-US")} flows (1 hour of 1M, ${QUERY_RANGE_HOURS} hours of 100k)`,
    total,
    queriesBody,
  );
  const problems = loadProblems(loaded, "queries: ");
  figures.details.queries = {
    load: { posts: loaded.posts, failed: loaded.failed, seconds: loaded.seconds },
    top10_hour_1m_samples_ms: [],
    top10_range_24h_samples_ms: [],
    range_reads: [],
    gateway_pid: pid,
    problems,
  };
  const d = figures.details.queries;
  try {
    const hourModel = modelTop(hourFlows(), 100_000);
    const rangeModel = modelTop(rangeFlows(), 100_000);

    const hour = await timeTop(running.url, `/flows/top?hour=${QUERY_HOUR}`, hourModel);
    problems.push(...hour.problems);
    d.top10_hour_1m_samples_ms = hour.samples_ms;
    figures.top10_hour_1m_ms_median = medianOf(hour.samples_ms);
    console.log(`    top-10 of an hour of 1M flows: median ${figures.top10_hour_1m_ms_median.toFixed(1)} ms (${hour.samples_ms.join(", ")})`);

    const range = await timeTop(running.url, `/flows/top?from=${QUERY_RANGE0}&to=${QUERY_RANGE0 + QUERY_RANGE_HOURS - 1}`, rangeModel);
    problems.push(...range.problems);
    d.top10_range_24h_samples_ms = range.samples_ms;
    figures.top10_range_24h_ms_median = medianOf(range.samples_ms);
    console.log(`    top-10 of 24 hours x 100k flows: median ${figures.top10_range_24h_ms_median.toFixed(1)} ms (${range.samples_ms.join(", ")})`);

    const read = async (hours: number, format: "json" | "csv" = "json"): Promise<RangeRead> => {
      const r = await rangeRead(running.url, QUERY_RANGE0, hours, format, pid);
      d.range_reads.push(r);
      const expected = hours * QUERY_RANGE_FLOWS_PER_HOUR;
      if (r.flows !== expected) problems.push(`GET /flows over ${hours} hours (${format}): ${r.flows} flows, expected ${expected}`);
      console.log(
        `    range of ${hours} h (${format}): ${fmtInt(r.flows)} flows, ${(r.body_bytes / 1e6).toFixed(1)} MB in ${r.ms.toFixed(0)} ms = ${fmtInt(r.flows_per_s)} flows/s; ` +
          `gateway RSS ${(r.rss_before_bytes / 1e6).toFixed(1)} MB before, +${(r.rss_growth_bytes / 1e6).toFixed(1)} MB at most (${r.rss_samples} samples)`,
      );
      return r;
    };
    // Warm-up: the code paths, and every hour's merged view (kept by the store), so the reads
    // after it measure what a read itself holds. Its growth is printed above, not judged.
    await read(QUERY_RANGE_HOURS);
    const short: RangeRead[] = [];
    for (let i = 0; i < RANGE_ROUNDS; i++) short.push(await read(SHORT_RANGE_HOURS));
    const long: RangeRead[] = [];
    for (let i = 0; i < RANGE_ROUNDS; i++) long.push(await read(QUERY_RANGE_HOURS));
    figures.range_24h_flows_per_s = medianOf(long.map((r) => r.flows_per_s));
    figures.range_6h_gateway_rss_growth_bytes = Math.max(...short.map((r) => r.rss_growth_bytes));
    figures.range_24h_gateway_rss_growth_bytes = Math.max(...long.map((r) => r.rss_growth_bytes));
    figures.range_gateway_rss_growth_24h_minus_6h_bytes = figures.range_24h_gateway_rss_growth_bytes - figures.range_6h_gateway_rss_growth_bytes;
    await read(QUERY_RANGE_HOURS, "csv");
    console.log(
      `    range of 24 h: median ${fmtInt(figures.range_24h_flows_per_s)} flows/s; gateway RSS growth 24 h ${(figures.range_24h_gateway_rss_growth_bytes / 1e6).toFixed(1)} MB, ` +
        `6 h ${(figures.range_6h_gateway_rss_growth_bytes / 1e6).toFixed(1)} MB`,
    );
  } finally {
    flagProblems(figures, problems, QUERY_FIGURES);
  }
}

/**
 * A cluster target's top-10 medians over embedded's in the same run (goal: within 2x), once
 * every target ran; null when embedded's figure is missing. Suspect when either figure is.
 */
export function queriesVsEmbedded(target: Target, figures: TargetFigures, embedded: TargetFigures | undefined): void {
  if (figures.top10_cluster_vs_embedded === undefined) return;
  const pairs = [
    ["top10_cluster_vs_embedded", "top10_hour_1m_ms_median"],
    ["top10_range_24h_cluster_vs_embedded", "top10_range_24h_ms_median"],
  ] as const;
  for (const [derived, base] of pairs) {
    figures[derived] = ratio(figures[base], embedded?.[base]);
    if (figures.suspect_figures.includes(base) || (embedded?.suspect_figures.includes(base) ?? false)) figures.suspect_figures.push(derived);
  }
  if (figures.top10_cluster_vs_embedded !== null) {
    console.log(`${target.title}: top-10 vs embedded: hour ${figures.top10_cluster_vs_embedded.toFixed(2)}x, 24 h ${figures.top10_range_24h_cluster_vs_embedded?.toFixed(2) ?? "-"}x`);
  }
}
