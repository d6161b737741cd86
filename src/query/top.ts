/**
 * Top-N over flows, exactly: each shard adds its primary partitions' flows into
 * per-group sums, the gateway adds the shards' partial sums up (src/query/group-ids.ts)
 * and ranks them (rankTop). Every flow lives in one partition, so a flow (key and hour)
 * is counted once.
 *
 * Partial sums travel as FieldGroups: each `by` field's values once, in a sorted
 * dictionary, and each group as indexes into them. A gateway then adds up and ranks
 * comparing numbers, and makes strings of the n groups it answers only (where 300k
 * decoded group keys per query cost more than the shards' sums).
 *
 * A group key is the flow key's encoded components named by `by`, in `by`'s order,
 * joined by the key separator (src/flow-key.ts): the encoding keeps each component's
 * order and the separator sorts below any continuation, so comparing two group keys
 * as strings compares their `by` fields in order, as JavaScript compares strings.
 *
 * Sums stay exact up to 2^53-1: a floating-point sum of non-negative integers reaches
 * 2^53 exactly when the true sum does, so one check of the grand total finds any sum
 * that passed it (rankTop throws TotalOverflowError rather than answer a rounded number).
 */
import { decodeFlowKey, keyMatcher, SEP, type FlowFilter } from "../flow-key";

export const GROUP_FIELDS = ["src_app", "dest_app", "vpc_id"] as const;
export type GroupField = (typeof GROUP_FIELDS)[number];
export const DEFAULT_GROUP_BY: readonly GroupField[] = ["src_app", "dest_app"];

export const TOP_METRICS = ["bytes_tx", "bytes_rx", "bytes_total"] as const;
export type TopMetric = (typeof TOP_METRICS)[number];

/** Per-group sums, columnar (as they travel between nodes): one entry per group key. */
export interface GroupColumns {
  keys: string[];
  tx: ArrayLike<number>;
  rx: ArrayLike<number>;
  /** Flows (key and hour) added into the group. */
  flows: ArrayLike<number>;
}

/** A binary page of partial groups (src/wire/run-codec.ts, with its flows column) as columns. */
export function groupColumnsOf(page: { keys: string[]; tx: Float64Array; rx: Float64Array; flows?: Float64Array }): GroupColumns {
  if (page.flows === undefined) throw new Error("a page of groups without their flows");
  return { keys: page.keys, tx: page.tx, rx: page.rx, flows: page.flows };
}

/**
 * Per-group sums, each group's `by` fields as indexes into dictionaries, groups in any
 * order. A dictionary ascends, so comparing refs[0], then refs[1], ... compares group keys.
 */
export interface FieldGroups {
  /** Per `by` field, in `by`'s order: its encoded values (components of flow keys), ascending, each once. */
  values: string[][];
  /**
   * Per `by` field: each group's value, an index into values[k]. Columns are typed arrays
   * as wide as their values need (a decoded page's, src/wire/field-groups-codec.ts): widening
   * them on the gateway cost it ~30 ms of CPU a query of a 1M-flow hour, mostly its GC's.
   */
  refs: ArrayLike<number>[];
  tx: ArrayLike<number>;
  rx: ArrayLike<number>;
  flows: ArrayLike<number>;
}

/** The group key of group i of `groups` (its encoded fields joined by the key separator). */
export function groupKeyAt(groups: Pick<FieldGroups, "values" | "refs">, i: number): string {
  return groups.values.map((values, k) => values[groups.refs[k][i]]).join(SEP);
}

/** Compares strings in JavaScript's order (UTF-16 code units). */
export const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The `fields` components of a group key (its encoded values joined by the separator, which no value holds; missing ones empty). */
export function splitGroupKey(key: string, fields: number): string[] {
  const parts = key.split(SEP);
  while (parts.length < fields) parts.push("");
  return parts;
}

/** Groups keyed by group key (distinct keys, any order) as FieldGroups of `fields` fields. */
export function fieldGroupsOfKeys(sums: GroupColumns, fields: number): FieldGroups {
  const parts = sums.keys.map((key) => splitGroupKey(key, fields));
  const values: string[][] = [];
  const refs: Int32Array[] = [];
  for (let k = 0; k < fields; k++) {
    const distinct = [...new Set(parts.map((p) => p[k]))].sort(compareStrings);
    const index = new Map(distinct.map((v, i) => [v, i]));
    values.push(distinct);
    refs.push(Int32Array.from(parts, (p) => index.get(p[k])!));
  }
  return { values, refs, tx: sums.tx, rx: sums.rx, flows: sums.flows };
}

/** FieldGroups as group keys and columns (for a gateway of an older version, and tests). */
export function groupColumnsOfFields(groups: FieldGroups): GroupColumns {
  return { keys: Array.from(groups.tx, (_, i) => groupKeyAt(groups, i)), tx: groups.tx, rx: groups.rx, flows: groups.flows };
}

/** Per-group sums added up by group key: a shard's query with more groups than its ids number (and tests' reference sums). */
export class GroupSums implements GroupColumns {
  keys: string[] = [];
  tx: number[] = [];
  rx: number[] = [];
  flows: number[] = [];
  private readonly index = new Map<string, number>();

  get size(): number {
    return this.keys.length;
  }

  add(key: string, tx: number, rx: number, flows: number): void {
    const i = this.index.get(key);
    if (i === undefined) {
      this.index.set(key, this.keys.length);
      this.keys.push(key);
      this.tx.push(tx);
      this.rx.push(rx);
      this.flows.push(flows);
      return;
    }
    this.tx[i] += tx;
    this.rx[i] += rx;
    this.flows[i] += flows;
  }

  /** Add another node's (or page's) partial sums. */
  addAll(part: GroupColumns): void {
    for (let i = 0; i < part.keys.length; i++) this.add(part.keys[i], part.tx[i], part.rx[i], part.flows[i]);
  }
}

/**
 * The group key of an encoded flow key for `by`, or null when the filter leaves the
 * flow out. `by` in the flow key's own order (src_app, then dest_app, then vpc_id)
 * is a prefix of the key, taken without splitting it (the common case, and the fast one).
 */
export function groupKeyOf(by: readonly GroupField[], filter: FlowFilter): (key: string) => string | null {
  const matches = keyMatcher(filter);
  const fields = by.map((f) => GROUP_FIELDS.indexOf(f));
  const prefix = fields.every((f, i) => f === i) ? fields.length : 0;
  const group = (key: string): string => {
    const a = key.indexOf(SEP);
    if (prefix === 1) return key.slice(0, a);
    const b = key.indexOf(SEP, a + 2);
    if (prefix === 2) return key.slice(0, b);
    if (prefix === 3) return key;
    const components = [key.slice(0, a), key.slice(a + 2, b), key.slice(b + 2)];
    return fields.map((f) => components[f]).join(SEP);
  };
  return matches === null ? group : (key) => (matches(key) ? group(key) : null);
}

/** The `by` fields of a group key, decoded (padded to three components, it decodes as a flow key does). */
export function groupFields(key: string, by: readonly GroupField[]): Record<GroupField, string> {
  const values = decodeFlowKey(key + SEP.repeat(GROUP_FIELDS.length - by.length));
  const out = {} as Record<GroupField, string>;
  by.forEach((field, i) => (out[field] = values[i]));
  return out;
}

/** The sums of a top row, after its `by` fields (and the columns of top-N as CSV). */
export const TOP_TOTALS = ["bytes_tx", "bytes_rx", "bytes_total", "flows"] as const;

export interface Totals {
  bytes_tx: number;
  bytes_rx: number;
  bytes_total: number;
  flows: number;
}

export type TopRow = Partial<Record<GroupField, string>> & Totals;

export interface TopAnswer {
  from: number;
  to: number;
  by: GroupField[];
  metric: TopMetric;
  top: TopRow[];
  other: Totals & { groups: number };
  total: Totals & { groups: number };
}

export class TotalOverflowError extends Error {
  constructor(readonly total: { bytes_tx: number; bytes_rx: number }) {
    super(`The bytes of the flows asked for add up past ${Number.MAX_SAFE_INTEGER} (2^53-1), which no exact number here can hold: ask for fewer hours or filter`);
    this.name = "TotalOverflowError";
  }
}

/**
 * Groups as ranking reads them: their sums as columns, whether group i's key sorts before
 * group j's, and its key. FieldGroups give them (rankedOf); a gateway's dense sums give
 * them from arrays kept between queries (src/query/group-merge.ts rankSources).
 */
export interface RankedGroups {
  tx: ArrayLike<number>;
  rx: ArrayLike<number>;
  flows: ArrayLike<number>;
  count: number;
  keyBefore(i: number, j: number): boolean;
  keyAt(i: number): string;
}

/** FieldGroups as RankedGroups (ties by the lower refs, field by field). */
export function rankedOf(groups: FieldGroups): RankedGroups {
  const { refs, tx, rx, flows } = groups;
  return {
    tx,
    rx,
    flows,
    count: tx.length,
    keyBefore(i, j) {
      for (const r of refs) if (r[i] !== r[j]) return r[i] < r[j];
      return false;
    },
    keyAt: (i) => groupKeyAt(groups, i),
  };
}

/** What rankTop is asked: the hours (echoed in the answer), the grouping, the metric and how many. */
export interface RankQuery {
  from: number;
  to: number;
  by: GroupField[];
  metric: TopMetric;
  n: number;
}

/**
 * The answer of a top-N query: the n groups largest by `metric` (descending, ties by
 * the `by` fields ascending), the rest summed as `other`, and the `total`.
 */
export function rankTop(groups: FieldGroups | RankedGroups, query: RankQuery): TopAnswer {
  const ranked = "keyAt" in groups ? groups : rankedOf(groups);
  const { count, tx, rx, flows } = ranked;
  const total = { bytes_tx: 0, bytes_rx: 0, bytes_total: 0, flows: 0, groups: count };
  for (let i = 0; i < count; i++) {
    total.bytes_tx += tx[i];
    total.bytes_rx += rx[i];
    total.flows += flows[i];
  }
  total.bytes_total = total.bytes_tx + total.bytes_rx;
  // Every group's sums are at most the total's: checking it checks them all.
  if (total.bytes_total > Number.MAX_SAFE_INTEGER) throw new TotalOverflowError(total);
  const value = query.metric === "bytes_tx" ? (i: number) => tx[i] : query.metric === "bytes_rx" ? (i: number) => rx[i] : (i: number) => tx[i] + rx[i];
  /** Whether group i ranks before group j (ties: the lower group key). */
  const before = (i: number, j: number) => {
    const vi = value(i);
    const vj = value(j);
    return vi !== vj ? vi > vj : ranked.keyBefore(i, j);
  };
  const chosen = bestOf(count, query.n, before);
  const other = { ...total };
  const top = chosen.map((i): TopRow => {
    other.bytes_tx -= tx[i];
    other.bytes_rx -= rx[i];
    other.flows -= flows[i];
    other.groups--;
    return { ...groupFields(ranked.keyAt(i), query.by), bytes_tx: tx[i], bytes_rx: rx[i], bytes_total: tx[i] + rx[i], flows: flows[i] };
  });
  other.bytes_total = other.bytes_tx + other.bytes_rx;
  return { from: query.from, to: query.to, by: query.by, metric: query.metric, top, other, total };
}

/**
 * The indexes (of 0..count-1) of the n that rank first by `before`, in rank order: a
 * binary heap of the n best so far, its root the worst of them (O(count log n), where a
 * full sort of every group would be O(count log count)).
 */
export function bestOf(count: number, n: number, before: (i: number, j: number) => boolean): number[] {
  const heap: number[] = [];
  const swap = (a: number, b: number) => ([heap[a], heap[b]] = [heap[b], heap[a]]);
  for (let i = 0; i < count; i++) {
    if (heap.length < n) {
      heap.push(i);
      // Sift up: a parent ranks after (is worse than) its children.
      for (let c = heap.length - 1; c > 0; ) {
        const p = (c - 1) >> 1;
        if (!before(heap[p], heap[c])) break;
        swap(p, c);
        c = p;
      }
    } else if (n > 0 && before(i, heap[0])) {
      heap[0] = i;
      for (let p = 0; ; ) {
        const l = 2 * p + 1;
        const r = l + 1;
        let worst = p;
        if (l < heap.length && before(heap[worst], heap[l])) worst = l;
        if (r < heap.length && before(heap[worst], heap[r])) worst = r;
        if (worst === p) break;
        swap(p, worst);
        p = worst;
      }
    }
  }
  return heap.sort((a, b) => (before(a, b) ? -1 : 1));
}
