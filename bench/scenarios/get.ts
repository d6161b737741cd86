/**
 * Scenario "get": load 100,000 distinct flows into one hour, check one GET of it, then
 * time sequential GETs of the whole hour (method step 3 in bench/README.md).
 */
import * as http from "http";
import { checkHour, GET_FLOWS, GET_HOUR, getHourBody, LOAD_BATCH } from "../harness/data";
import { type Fail, flagProblems, type TargetFigures } from "../harness/figures";
import { httpRequest } from "../harness/http";
import { load, loadProblems } from "../harness/load";
import { GET_ROUNDS } from "../harness/settings";
import { median, percentile } from "../harness/stats";
import type { Running, Target } from "../targets";

/** Untimed GETs before the timed ones (the first one is checked). */
const GET_WARMUPS = 3;

interface GetHourResult {
  median_ms: number;
  p90_ms: number;
  flows_returned: number;
  body_bytes: number;
  samples_ms: number[];
  problems: string[];
}

/** Load 100,000 distinct flows into GET_HOUR, check one GET, then time GET_ROUNDS sequential GETs. */
async function measureGetHour(url: string, label: string): Promise<GetHourResult> {
  const loaded = await load(url, `${label} loading ${GET_FLOWS.toLocaleString("en-US")} flows into one hour`, GET_FLOWS / LOAD_BATCH, getHourBody);
  const problems = loadProblems(loaded, "");
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const query = `/flows?hour=${GET_HOUR}`;
  try {
    const first = await httpRequest(agent, url, "GET", query);
    if (first.status !== 200) throw new Error(`GET ${query} answered ${first.status}: ${first.body.toString("utf8").slice(0, 300)}`);
    const check = checkHour(first.body, GET_HOUR, GET_FLOWS);
    problems.push(...check.problems);
    for (let i = 1; i < GET_WARMUPS; i++) await httpRequest(agent, url, "GET", query);
    const samples: number[] = [];
    let bodyBytes = 0;
    for (let i = 0; i < GET_ROUNDS; i++) {
      const t0 = process.hrtime.bigint();
      const res = await httpRequest(agent, url, "GET", query);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (res.status !== 200) problems.push(`timed GET ${i} answered ${res.status}`);
      bodyBytes = res.body.length;
      samples.push(ms);
    }
    const sorted = [...samples].sort((a, b) => a - b);
    return {
      median_ms: median(sorted),
      p90_ms: percentile(sorted, 90),
      flows_returned: check.count,
      body_bytes: bodyBytes,
      samples_ms: samples.map((x) => Math.round(x * 100) / 100),
      problems,
    };
  } finally {
    agent.destroy();
  }
}


export async function runGet(running: Running, target: Target, figures: TargetFigures, fail: Fail): Promise<void> {
  try {
    const g = await measureGetHour(running.url, target.title);
    figures.get_hour_100k_ms_median = g.median_ms;
    figures.get_hour_100k_ms_p90 = g.p90_ms;
    figures.details.get_hour_100k = { flows_returned: g.flows_returned, body_bytes: g.body_bytes, samples_ms: g.samples_ms };
    flagProblems(figures, g.problems, ["get_hour_100k_ms_median", "get_hour_100k_ms_p90"]);
    console.log(`    GET hour of 100k flows: median ${g.median_ms.toFixed(1)} ms, p90 ${g.p90_ms.toFixed(1)} ms (${(g.body_bytes / 1e6).toFixed(1)} MB body)`);
  } catch (err) {
    fail("GET hour of 100k flows", err);
  }
}
