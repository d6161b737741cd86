/** Merged hour views (src/hour-view.ts): extended as keys are appended, rebuilt otherwise; reads always equal a brute-force model. */
import fc from "fast-check";
import { splitByPartition, type FlowRecord } from "../../src/batching";
import { PartitionStore } from "../../src/partition-store";
import { HourViews } from "../../src/hour-view";

const P = 8;
const HOUR = 4;

/** The hour read the slow, obvious way: every table's keys, sorted. */
function expected(s: PartitionStore, ids: number[]) {
  const rows: [string, number, number][] = [];
  for (const id of ids) {
    const t = s.partitions.get(id)?.hours.get(HOUR);
    if (t) for (let slot = 0; slot < t.size; slot++) rows.push([t.keys[slot], t.tx(slot), t.rx(slot)]);
  }
  return rows.sort((a, b) => (a[0] < b[0] ? -1 : 1));
}
function actual(s: PartitionStore, ids: number[]) {
  const run = s.read(HOUR, {}, ids);
  return run.keys.map((k, i) => [k, run.tx[i], run.rx[i]]);
}

const rec = (n: number, tx: number): FlowRecord => ({ src_app: `s${n % 37}`, dest_app: `d${Math.floor(n / 37)}`, vpc_id: n % 5 === 0 ? "v 1" : "v", hour: HOUR, bytes_tx: tx, bytes_rx: 1 });
const op = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("apply" as const), flows: fc.array(fc.tuple(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 0, max: 9 })), { minLength: 1, maxLength: 60 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("revert" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reload" as const), partition: fc.integer({ min: 0, max: P - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("drop" as const), partition: fc.integer({ min: 0, max: P - 1 }) }) },
);

test("reads through the cached view equal the model after appends, reverts, drops and reloads, over several partition lists", () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 25 }), (ops) => {
      const s = new PartitionStore({ max: 100, ttlMs: 60_000 });
      // Enough flows that reads go through the view from the start.
      s.apply(splitByPartition(Array.from({ length: 900 }, (_, i) => rec(i * 3, 1)), P));
      const lists = [Array.from({ length: P }, (_, p) => p), [0, 2, 4, 6]];
      let last: ReturnType<typeof splitByPartition> | null = null;
      let n = 0;
      for (const o of ops) {
        if (o.kind === "apply") {
          last = splitByPartition(o.flows.map(([k, tx]) => rec(k, tx)), P, `key-${n++}`);
          s.apply(last);
        } else if (o.kind === "revert" && last !== null) {
          s.revert(last);
          last = null;
        } else if (o.kind === "reload") {
          const chunks = s.snapshot(o.partition, 1 << 20);
          s.drop(o.partition);
          for (const c of chunks) s.loadChunk(c);
        } else if (o.kind === "drop") s.drop(o.partition);
        // One list read after every step (its view extended or rebuilt), the other now and then (a rebuild each time).
        expect(actual(s, lists[0])).toEqual(expected(s, lists[0]));
        if (n % 4 === 3) expect(actual(s, lists[1])).toEqual(expected(s, lists[1]));
      }
      for (const ids of lists) expect(actual(s, ids)).toEqual(expected(s, ids));
    }),
    { numRuns: 60 },
  );
});

test("views kept are bounded by hours and by flows, the least recently read out first", () => {
  const s = new PartitionStore({ max: 100, ttlMs: 600_000 });
  const ids = Array.from({ length: P }, (_, p) => p);
  const hourOf = (h: number, n: number): FlowRecord[] => Array.from({ length: n }, (_, i) => ({ ...rec(i, 1), hour: h }));
  for (let h = 0; h < 6; h++) s.apply(splitByPartition(hourOf(h, 100), P));
  const views = new HourViews(4, 250);
  const tablesOf = (h: number) => ids.map((id) => s.partitions.get(id)?.hours.get(h));
  const view = (h: number) => views.get(h, ids, tablesOf(h));
  const v0 = view(0);
  view(1);
  expect(views.kept).toEqual({ hours: 2, flows: 200 });
  expect(view(0)).toBe(v0); // read again: kept, and now the most recently read
  view(2); // 300 flows > 250: hour 1 (least recently read) goes
  expect(views.kept).toEqual({ hours: 2, flows: 200 });
  expect(view(0)).toBe(v0);
  const big = new HourViews(4, 250);
  s.apply(splitByPartition(hourOf(9, 400), P));
  big.get(9, ids, tablesOf(9)); // larger than the bound alone: kept while it is the last read
  expect(big.kept).toEqual({ hours: 1, flows: 400 });
  for (let h = 0; h < 6; h++) big.get(h, ids, tablesOf(h));
  expect(big.kept.hours).toBe(2);
  const small = new HourViews(3, 10_000);
  for (let h = 0; h < 6; h++) small.get(h, ids, tablesOf(h));
  expect(small.kept).toEqual({ hours: 3, flows: 300 });
});
