/** The bench's data: deterministic, identical for every target, and the checks of what reads return. */
import type { FlowRecord } from "../../src/batching";
import { httpRequest } from "./http";

export type { FlowRecord };

export const BASE_HOUR = 480_000; // hours since the epoch, roughly 2024
export const THROUGHPUT_KEYS = 1000;
const THROUGHPUT_HOURS = 24;
export const GET_HOUR = BASE_HOUR + 100;
export const GET_FLOWS = 100_000;
export const MEMORY_HOUR0 = BASE_HOUR + 1000;
export const MEMORY_FLOWS = 1_000_000;
/** The restart scenario's hours start here: clear of the others (and of the failover probe's BASE_HOUR + 50,000). */
export const RESTART_HOUR0 = BASE_HOUR + 100_000;
/** Records per POST while loading data. */
export const LOAD_BATCH = 1000;

const pad4 = (n: number): string => String(n).padStart(4, "0");
const vpc = (n: number): string => `vpc-${(Math.imul(n + 1, 0x9e3779b1) >>> 0).toString(16).padStart(8, "0")}`;

/** Throughput key k (0..999): 1000 distinct keys, hours spread over 24 hours. */
function throughputRecord(k: number): FlowRecord {
  return {
    src_app: `app-${pad4(k % 40)}`,
    dest_app: `svc-${pad4(Math.floor(k / 40))}`,
    vpc_id: vpc(k % 3),
    hour: BASE_HOUR + (k % THROUGHPUT_HOURS),
    bytes_tx: 1000 + k,
    bytes_rx: 500 + 2 * k,
  };
}

/** The throughput bodies: batch 1000 = one body of all keys; batch 100 = 10 bodies of 100 keys. */
export function throughputBodies(batch: number): string[] {
  const bodies: string[] = [];
  for (let start = 0; start < THROUGHPUT_KEYS; start += batch) {
    const records: FlowRecord[] = [];
    for (let k = start; k < start + batch; k++) records.push(throughputRecord(k));
    bodies.push(JSON.stringify(records));
  }
  return bodies;
}

/** Body b (0..99) of the 100k-flow hour: 1000 distinct keys each, in scrambled order. */
export function getHourBody(b: number): string {
  const records: FlowRecord[] = [];
  for (let i = b * LOAD_BATCH; i < (b + 1) * LOAD_BATCH; i++) {
    const p = (i * 7919) % GET_FLOWS; // 7919 is prime, coprime with 100,000: a permutation
    records.push({
      src_app: `app-${pad4(p % 100)}`,
      dest_app: `svc-${pad4(Math.floor(p / 100) % 100)}`,
      vpc_id: vpc(Math.floor(p / 10_000)),
      hour: GET_HOUR,
      bytes_tx: 100 + (p % 1000),
      bytes_rx: 200 + (p % 777),
    });
  }
  return JSON.stringify(records);
}

/** What getHourBody(0..99) adds up to: every key once. */
export function expectedGetHourTotals(): { tx: number; rx: number } {
  let tx = 0;
  let rx = 0;
  for (let p = 0; p < GET_FLOWS; p++) {
    tx += 100 + (p % 1000);
    rx += 200 + (p % 777);
  }
  return { tx, rx };
}

/** One body of LOAD_BATCH (1000) distinct flows, all in `hour`: large loads put one body in each hour. */
export function hourBody(hour: number): string {
  const records: FlowRecord[] = [];
  for (let c = 0; c < LOAD_BATCH; c++) {
    records.push({
      src_app: `app-${pad4(c % 40)}`,
      dest_app: `svc-${pad4(Math.floor(c / 40))}`,
      vpc_id: vpc(c % 5),
      hour,
      bytes_tx: 1 + c,
      bytes_rx: 2 + c,
    });
  }
  return JSON.stringify(records);
}

/** Body b (0..999) of the 1M-flow load: hour MEMORY_HOUR0 + b, 1000 distinct keys. */
export const memoryBody = (b: number): string => hourBody(MEMORY_HOUR0 + b);

/** Check a GET /flows answer: the expected count, every item in the hour, ordered by (src_app, dest_app, vpc_id). */
export function checkHour(body: Buffer, hour: number, expected: number): { count: number; problems: string[] } {
  const problems: string[] = [];
  let flows: unknown;
  try {
    flows = JSON.parse(body.toString("utf8"));
  } catch {
    return { count: 0, problems: [`GET /flows?hour=${hour}: body is not JSON`] };
  }
  if (!Array.isArray(flows)) return { count: 0, problems: [`GET /flows?hour=${hour}: body is not an array`] };
  if (flows.length !== expected) problems.push(`GET /flows?hour=${hour}: ${flows.length} flows, expected ${expected}`);
  const key = (f: FlowRecord): [string, string, string] => [f.src_app, f.dest_app, f.vpc_id];
  for (let i = 0; i < flows.length; i++) {
    const f = flows[i] as FlowRecord;
    if (f.hour !== hour) {
      problems.push(`GET /flows?hour=${hour}: item ${i} has hour ${String(f.hour)}`);
      break;
    }
    if (i > 0) {
      const a = key(flows[i - 1] as FlowRecord);
      const b = key(f);
      const order = a[0] !== b[0] ? (a[0] < b[0] ? -1 : 1) : a[1] !== b[1] ? (a[1] < b[1] ? -1 : 1) : a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0;
      if (order >= 0) {
        problems.push(`GET /flows?hour=${hour}: items ${i - 1} and ${i} are not in (src_app, dest_app, vpc_id) order`);
        break;
      }
    }
  }
  return { count: flows.length, problems };
}

/** GET one hour that a load filled and check it (checkHour): its problems, none when it is whole. */
export async function checkLoadedHour(url: string, hour: number, expected: number): Promise<string[]> {
  const res = await httpRequest(false, url, "GET", `/flows?hour=${hour}`);
  if (res.status !== 200) return [`GET /flows?hour=${hour} answered ${res.status}: ${res.body.toString("utf8").slice(0, 200)}`];
  return checkHour(res.body, hour, expected).problems;
}

/** Sum of bytes_tx / bytes_rx of an answer of GET /flows. */
export function hourTotals(body: Buffer): { tx: number; rx: number } {
  let tx = 0;
  let rx = 0;
  for (const f of JSON.parse(body.toString("utf8")) as FlowRecord[]) {
    tx += f.bytes_tx;
    rx += f.bytes_rx;
  }
  return { tx, rx };
}
