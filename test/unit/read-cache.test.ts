import { splitByPartition, type FlowRecord } from "../../src/batching";
import { decodeFlowKey, encodeFlowKey, placedKey, placeFlow } from "../../src/flow-key";
import { partitionOf } from "../../src/hash";
import { PartitionStore, SumOverflowError } from "../../src/partition-store";

const P = 16;
const store = () => new PartitionStore({ max: 100, ttlMs: 60_000 });
const rec = (i: number, hour: number, bytes_tx = 1, bytes_rx = 2): FlowRecord => ({ src_app: `s${i % 97}`, dest_app: `d${Math.floor(i / 97)}`, vpc_id: "v", hour, bytes_tx, bytes_rx });
/** Enough flows in one hour that reads go through the cached merged view. */
const MANY = 3000;

/** The hour read the slow, obvious way: every table's keys, sorted. */
function expected(s: PartitionStore, hour: number) {
  const rows: [string, number, number][] = [];
  for (const p of s.partitions.values()) {
    const t = p.hours.get(hour);
    if (t) for (let slot = 0; slot < t.size; slot++) rows.push([t.keys[slot], t.tx(slot), t.rx(slot)]);
  }
  return rows.sort((a, b) => (a[0] < b[0] ? -1 : 1));
}
function actual(s: PartitionStore, hour: number, ids?: number[]) {
  const run = s.read(hour, {}, ids);
  return run.keys.map((k, i) => [k, run.tx[i], run.rx[i]]);
}

describe("PartitionStore read cache", () => {
  test("a read after a write sees new keys and changed sums", () => {
    const s = store();
    s.apply(splitByPartition(Array.from({ length: MANY }, (_, i) => rec(i, 7)), P));
    expect(actual(s, 7)).toEqual(expected(s, 7));
    expect(actual(s, 7)).toHaveLength(MANY);
    // sums change, no new key
    s.apply(splitByPartition([rec(5, 7, 100, 200), rec(2999, 7, 1, 1)], P));
    expect(actual(s, 7)).toEqual(expected(s, 7));
    // a new key, sorting first
    s.apply(splitByPartition([{ ...rec(0, 7), src_app: "a" }], P));
    const after = actual(s, 7);
    expect(after).toHaveLength(MANY + 1);
    expect(after[0][0]).toBe(encodeFlowKey("a", "d0", "v"));
    expect(after).toEqual(expected(s, 7));
    // other hours do not disturb it
    s.apply(splitByPartition(Array.from({ length: 600 }, (_, i) => rec(i, 8)), P));
    expect(actual(s, 7)).toEqual(expected(s, 7));
    expect(actual(s, 8)).toEqual(expected(s, 8));
  });

  test("a rolled-back batch leaves reads as they were", () => {
    const s = store();
    s.apply(splitByPartition([...Array.from({ length: MANY }, (_, i) => rec(i, 1)), { ...rec(0, 1), src_app: "big", bytes_tx: Number.MAX_SAFE_INTEGER }], P));
    const before = actual(s, 1);
    const bad = [...Array.from({ length: 50 }, (_, i) => ({ ...rec(i, 1), src_app: `new${i}` })), { ...rec(0, 1), src_app: "big" }];
    expect(() => s.apply(splitByPartition(bad, P))).toThrow(SumOverflowError);
    expect(actual(s, 1)).toEqual(before);
    expect(actual(s, 1)).toEqual(expected(s, 1));
  });

  test("partition lists, drops and snapshot loads are seen", () => {
    const s = store();
    s.apply(splitByPartition(Array.from({ length: MANY }, (_, i) => rec(i, 3)), P));
    const all = Array.from({ length: P }, (_, p) => p);
    const some = all.filter((p) => p % 2 === 0);
    expect(actual(s, 3, all)).toEqual(expected(s, 3));
    const evens = actual(s, 3, some);
    expect(evens.length).toBeLessThan(MANY);
    expect(evens.every(([k]) => some.includes(partitionOf(3, k as string, P)))).toBe(true);
    // drop a partition: its flows leave the read
    const chunks = s.snapshot(4, 1 << 20);
    s.drop(4);
    expect(actual(s, 3, all)).toEqual(expected(s, 3));
    expect(actual(s, 3, all).some(([k]) => partitionOf(3, k as string, P) === 4)).toBe(false);
    // load it back: they return
    for (const c of chunks) s.loadChunk(c);
    expect(actual(s, 3, all)).toHaveLength(MANY);
    expect(actual(s, 3, all)).toEqual(expected(s, 3));
  });

  test("filters over a cached hour", () => {
    const s = store();
    s.apply(splitByPartition(Array.from({ length: MANY }, (_, i) => rec(i, 2)), P));
    const run = s.read(2, { src_app: "s3" });
    expect(run.keys.length).toBe(expected(s, 2).filter(([k]) => decodeFlowKey(k)[0] === "s3").length);
    expect(run.keys.every((k) => decodeFlowKey(k)[0] === "s3")).toBe(true);
    expect(run.tx.length).toBe(run.keys.length);
  });

  test("hourVersion changes with every change of the hour, and only then", () => {
    const s = store();
    s.apply(splitByPartition(Array.from({ length: 100 }, (_, i) => rec(i, 5)), P));
    const v1 = s.hourVersion(5);
    expect(s.hourVersion(5)).toBe(v1);
    s.apply(splitByPartition([rec(1, 6)], P));
    expect(s.hourVersion(5)).toBe(v1);
    s.apply(splitByPartition([rec(1, 5)], P)); // a sum only
    const v2 = s.hourVersion(5);
    expect(v2).not.toBe(v1);
    s.apply(splitByPartition([{ ...rec(1, 5), src_app: "fresh" }], P)); // a key
    const v3 = s.hourVersion(5);
    expect(v3).not.toBe(v2);
    s.drop(s.partitions.keys().next().value as number);
    expect(s.hourVersion(5)).not.toBe(v3);
  });

  test("small tables grow into indexed ones and keep every sum", () => {
    const s = store();
    const records = Array.from({ length: 40 }, (_, i) => rec(i, 9, i, 2 * i));
    s.apply(splitByPartition(records, 1));
    s.apply(splitByPartition(records, 1));
    const t = s.partitions.get(0)!.hours.get(9)!;
    expect(t.size).toBe(40);
    for (const r of records) {
      const slot = t.find(encodeFlowKey(r.src_app, r.dest_app, r.vpc_id));
      expect([t.tx(slot), t.rx(slot)]).toEqual([2 * r.bytes_tx, 2 * r.bytes_rx]);
    }
  });
});

describe("flow key cache", () => {
  test("placedKey gives flat keys equal to encodeFlowKey, the same object when repeated", () => {
    const a = placedKey("x\u0000y", "d", "v");
    expect(a.key).toBe(encodeFlowKey("x\u0000y", "d", "v"));
    expect(placedKey("x\u0000y", "d", "v")).toBe(a);
    // still right after the cache rolls over its generations
    for (let i = 0; i < 140_000; i++) placedKey(`k${i}`, "d", "v");
    expect(placeFlow("x\u0000y", "d", "v", 3, 97)).toEqual({ key: a.key, partition: partitionOf(3, a.key, 97) });
    expect(placedKey("k5", "d", "v").key).toBe(encodeFlowKey("k5", "d", "v"));
  });
});
