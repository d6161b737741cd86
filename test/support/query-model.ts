/**
 * The answers of range reads and top-N queries, computed the plain way from the records
 * a test posted: the model the API's answers are checked against (embedded and cluster).
 */
import { decodeFlowKey, type FlowFilter } from "../../src/flow-key";
import type { GroupField, TopMetric } from "../../src/query/top";
import { expectedHour, type Flow } from "./api-contract";

export interface TopQuery {
  from: number;
  to: number;
  by: GroupField[];
  metric: TopMetric;
  n: number;
  filter?: FlowFilter;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function matches(f: Flow, filter: FlowFilter = {}): boolean {
  return Object.entries(filter).every(([k, v]) => v === undefined || f[k as GroupField] === v);
}

/** GET /flows?from=A&to=B (with filters): every hour's flows, by hour, then as one hour's. */
export function expectedRange(flows: Flow[], from: number, to: number, filter: FlowFilter = {}): Flow[] {
  const out: Flow[] = [];
  for (let h = from; h <= to; h++) out.push(...expectedHour(flows, h).filter((f) => matches(f, filter)));
  return out;
}

/** GET /flows/top: groups ranked by the metric, ties by the by fields in order; the rest as other. */
export function expectedTop(flows: Flow[], q: TopQuery) {
  const groups = new Map<string, { fields: string[]; bytes_tx: number; bytes_rx: number; flows: number }>();
  for (const f of expectedRange(flows, q.from, q.to, q.filter)) {
    const fields = q.by.map((b) => f[b]);
    const k = JSON.stringify(fields);
    const g = groups.get(k) ?? { fields, bytes_tx: 0, bytes_rx: 0, flows: 0 };
    g.bytes_tx += f.bytes_tx;
    g.bytes_rx += f.bytes_rx;
    g.flows++;
    groups.set(k, g);
  }
  const value = (g: { bytes_tx: number; bytes_rx: number }) => (q.metric === "bytes_tx" ? g.bytes_tx : q.metric === "bytes_rx" ? g.bytes_rx : g.bytes_tx + g.bytes_rx);
  const ranked = [...groups.values()].sort((a, b) => value(b) - value(a) || a.fields.reduce((c, x, i) => c || cmp(x, b.fields[i]), 0));
  const totals = (list: typeof ranked) => {
    const t = { bytes_tx: 0, bytes_rx: 0, bytes_total: 0, flows: 0, groups: list.length };
    for (const g of list) {
      t.bytes_tx += g.bytes_tx;
      t.bytes_rx += g.bytes_rx;
      t.flows += g.flows;
    }
    t.bytes_total = t.bytes_tx + t.bytes_rx;
    return t;
  };
  return {
    from: q.from,
    to: q.to,
    by: q.by,
    metric: q.metric,
    top: ranked.slice(0, q.n).map((g) => ({ ...Object.fromEntries(q.by.map((b, i) => [b, g.fields[i]])), bytes_tx: g.bytes_tx, bytes_rx: g.bytes_rx, bytes_total: g.bytes_tx + g.bytes_rx, flows: g.flows })),
    other: totals(ranked.slice(q.n)),
    total: totals(ranked),
  };
}

/** The query string of a top-N query. */
export function topQueryString(q: TopQuery): string {
  const params = new URLSearchParams({ from: String(q.from), to: String(q.to), by: q.by.join(","), metric: q.metric, n: String(q.n), ...q.filter });
  return params.toString();
}

/** A seeded generator: the same data on every run. */
export function seeded(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
}

/** Names that test quoting and ordering: separators, spaces, controls, prefixes of each other, formulas. */
export const HOSTILE_NAMES = ["web", "db", "a", "a b", "a\u0000", "ab", "ünï", "🚀", "x,y", ' "q" ', "=cmd()", "-1", "@x", "line\r\nbreak"];

/** Random records over hours `hours` (seeded), names drawn from `names`. */
export function randomFlows(count: number, hours: number[], seed: number, names: string[] = HOSTILE_NAMES): Flow[] {
  const r = seeded(seed);
  const pick = <T>(list: T[]) => list[Math.floor(r() * list.length)];
  const vpcs = ["vpc-1", "vpc-2", "vpc 3"];
  return Array.from({ length: count }, () => ({ src_app: pick(names), dest_app: pick(names), vpc_id: pick(vpcs), hour: pick(hours), bytes_tx: Math.floor(r() * 1000), bytes_rx: Math.floor(r() * 1000) }));
}

/** A CSV text as rows of fields (RFC 4180: quoted fields, doubled quotes, CRLF rows). */
export function parseCsv(csv: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < csv.length; i++) {
    const c = csv[i];
    if (quoted) {
      if (c === '"' && csv[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\r" && csv[i + 1] === "\n") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      i++;
    } else field += c;
  }
  if (row.length > 0 || field !== "") throw new Error("CSV does not end with CRLF");
  return rows;
}

/** A text field as the CSV shows it: with a single quote before what a spreadsheet would run. */
export const asCsvText = (value: string | number): string => (typeof value === "string" && /^[=+\-@\t\r]/.test(value) ? `'${value}` : String(value));

/** Flow records of one hour from encoded keys and their sums, decoded the plain way. */
export function flowRecordsOf(hour: number, keys: readonly string[], tx: ArrayLike<number>, rx: ArrayLike<number>) {
  return keys.map((key, i) => {
    const [src_app, dest_app, vpc_id] = decodeFlowKey(key);
    return { src_app, dest_app, vpc_id, hour, bytes_tx: tx[i], bytes_rx: rx[i] };
  });
}
