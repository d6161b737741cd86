import { splitByPartition, groupByPrimary, partitionsByPrimary, splitOversized, packMessages, packMessagesSized, placeRecords, messageBytes, subBatchBytes, toMessage, fromMessage, type FlowRecord } from "../../src/batching";
import { encodeFlowKey } from "../../src/flow-key";
import { mergeRuns, PartitionStore, SumOverflowError } from "../../src/partition-store";

const MAX = Number.MAX_SAFE_INTEGER;
const rec = (src_app: string, hour: number, bytes_tx: number, bytes_rx = 0, dest_app = "d", vpc_id = "v"): FlowRecord => ({ src_app, dest_app, vpc_id, hour, bytes_tx, bytes_rx });
const store = () => new PartitionStore({ max: 100, ttlMs: 60_000 });
const P = 16;

function readAll(s: PartitionStore, hour: number) {
  const run = s.read(hour, {});
  return run.keys.map((k, i) => [k, run.tx[i], run.rx[i]]);
}

describe("PartitionStore", () => {
  test("sums per key and hour, reads sorted across partitions", () => {
    const s = store();
    const records = [rec("b", 1, 1), rec("a", 1, 2, 3), rec("b", 1, 10), rec("c", 2, 5), rec("a", 1, 1)];
    s.apply(splitByPartition(records, P));
    expect(readAll(s, 1)).toEqual([
      [encodeFlowKey("a", "d", "v"), 3, 3],
      [encodeFlowKey("b", "d", "v"), 11, 0],
    ]);
    expect(readAll(s, 2)).toEqual([[encodeFlowKey("c", "d", "v"), 5, 0]]);
    expect(readAll(s, 3)).toEqual([]);
    expect(s.flowCount()).toBe(3);
  });

  test("overflow past 2^53-1 rolls back the whole batch, new keys included", () => {
    const s = store();
    s.apply(splitByPartition([rec("big", 1, MAX - 1)], P));
    const before = JSON.stringify(readAll(s, 1));
    const batch = [...Array.from({ length: 100 }, (_, i) => rec(`n${i}`, 1, 1, 1)), rec("big", 1, 2), rec("x", 1, 1)];
    expect(() => s.apply(splitByPartition(batch, P, "k1"))).toThrow(SumOverflowError);
    expect(JSON.stringify(readAll(s, 1))).toBe(before);
    expect(s.flowCount()).toBe(1);
    // the refused batch's key was not remembered: a corrected retry with it applies
    s.apply(splitByPartition(batch.filter((r) => r.src_app !== "big"), P, "k1"));
    expect(readAll(s, 1)).toHaveLength(102);
  });

  test("overflow inside a batch that repeats the key counts the repeats", () => {
    const s = store();
    expect(() => s.apply(splitByPartition([rec("k", 1, MAX), rec("k", 1, 1)], P))).toThrow(SumOverflowError);
    expect(readAll(s, 1)).toEqual([]);
    s.apply(splitByPartition([rec("k", 1, MAX - 1), rec("k", 1, 1)], P));
    expect(readAll(s, 1)).toEqual([[encodeFlowKey("k", "d", "v"), MAX, 0]]);
  });

  test("an idempotency key is applied once per partition", () => {
    const s = store();
    const batch = Array.from({ length: 50 }, (_, i) => rec(`s${i}`, 1, i));
    const first = s.apply(splitByPartition(batch, P, "key"));
    const second = s.apply(splitByPartition(batch, P, "key"));
    expect(second.duplicates).toBe(first.applied);
    expect(second.applied).toBe(0);
    expect(first.records).toBe(50);
    expect(second.records).toBe(0);
    expect(readAll(s, 1).reduce((a, [, tx]) => a + (tx as number), 0)).toBe(batch.reduce((a, r) => a + r.bytes_tx, 0));
  });

  test("an idempotency key is forgotten after its TTL, and travels in snapshots with what is left of it", async () => {
    const s = new PartitionStore({ max: 100, ttlMs: 80 });
    const batch = [rec("a", 1, 5)];
    s.apply(splitByPartition(batch, P, "ttl-key"));
    expect(s.apply(splitByPartition(batch, P, "ttl-key")).duplicates).toBe(1);
    s.apply(splitByPartition(batch, P, "other"));
    const [chunk] = s.snapshot(splitByPartition(batch, P)[0].partition, 1 << 20);
    expect(chunk.dedupe.map(([k]) => k).sort()).toEqual(["other", "ttl-key"]);
    for (const [, ttl] of chunk.dedupe) expect(ttl > 0 && ttl <= 80).toBe(true);
    const copy = new PartitionStore({ max: 100, ttlMs: 60_000 });
    copy.loadChunk(chunk);
    // The copy keeps the key for what was left of its TTL, not for its own longer window.
    expect(copy.apply(splitByPartition(batch, P, "ttl-key")).duplicates).toBe(1);
    await new Promise((r) => setTimeout(r, 120));
    expect(s.apply(splitByPartition(batch, P, "ttl-key")).duplicates).toBe(0);
    expect(copy.apply(splitByPartition(batch, P, "ttl-key")).duplicates).toBe(0);
    // Applied: the first time, "other", and once more after expiry.
    expect(readAll(s, 1)).toEqual([[encodeFlowKey("a", "d", "v"), 15, 0]]);
  });

  test("filters", () => {
    const s = store();
    s.apply(splitByPartition([rec("a", 1, 1), rec("b", 1, 1), rec("a", 1, 1, 0, "e")], P));
    expect(s.read(1, { src_app: "a" }).keys).toEqual([encodeFlowKey("a", "d", "v"), encodeFlowKey("a", "e", "v")]);
    expect(s.read(1, { dest_app: "e" }).keys).toEqual([encodeFlowKey("a", "e", "v")]);
  });

  test("reads only the partitions asked for", () => {
    const s = store();
    const batches = splitByPartition(Array.from({ length: 100 }, (_, i) => rec(`s${i}`, 1, 1)), P);
    s.apply(batches);
    const some = batches.slice(0, 3).map((b) => b.partition);
    expect(s.read(1, {}, some).keys.length).toBe(batches.slice(0, 3).reduce((a, b) => a + b.entries.length / 4, 0));
  });
});

describe("batching", () => {
  test("splits by partition, each record exactly once, and groups by primary", () => {
    const records = Array.from({ length: 1000 }, (_, i) => rec(`s${i}`, i % 24, i));
    const batches = splitByPartition(records, P, "k");
    expect(batches.reduce((a, b) => a + b.entries.length / 4, 0)).toBe(1000);
    expect(new Set(batches.map((b) => b.partition)).size).toBe(batches.length);
    expect(batches.every((b) => b.idempotencyKey === "k")).toBe(true);
    const owners = Array.from({ length: P }, (_, p) => [p % 2 ? "n1" : "n2"]);
    const byNode = groupByPrimary(batches, owners);
    expect([...byNode.keys()].sort()).toEqual(["n1", "n2"]);
    expect(byNode.get("n1")!.every((b) => b.partition % 2 === 1)).toBe(true);
    expect(partitionsByPrimary(owners).get("n2")).toEqual([0, 2, 4, 6, 8, 10, 12, 14]);
    expect(groupByPrimary(batches, []).get(undefined)).toHaveLength(batches.length);
  });
});

describe("mergeRuns", () => {
  test("merges any number of sorted runs into one sorted run", () => {
    const runs = Array.from({ length: 7 }, (_, r) => {
      const keys = Array.from({ length: 20 + r }, (_, i) => `k${String(i * 7 + r).padStart(4, "0")}`).sort();
      return { keys, tx: keys.map((k) => Number(k.slice(1))), rx: keys.map(() => r) };
    });
    const merged = mergeRuns(runs);
    const all = runs.flatMap((run) => run.keys).sort();
    expect(merged.keys).toEqual(all);
    merged.keys.forEach((k, i) => expect(merged.tx[i]).toBe(Number(k.slice(1))));
    expect(mergeRuns([])).toEqual({ keys: [], tx: [], rx: [] });
  });
});

describe("transport limits", () => {
  test("splitOversized cuts big sub-batches deterministically with derived keys; packMessages keeps each message under the limit", () => {
    const records = Array.from({ length: 3000 }, (_, i) => rec("same".repeat(50), 1, i + 1));
    const batches = splitByPartition(records, 4, "k");
    const parts = splitOversized(batches, 64 * 1024);
    expect(parts.length).toBeGreaterThan(batches.length);
    for (const p of parts) expect(subBatchBytes(p)).toBeLessThanOrEqual(64 * 1024);
    expect(new Set(parts.map((p) => p.idempotencyKey)).size).toBe(parts.length);
    expect(splitOversized(splitByPartition(records, 4, "k"), 64 * 1024)).toEqual(parts);
    const s = store();
    s.apply(parts);
    expect(s.read(1, {}).tx[0]).toBe((3000 * 3001) / 2);
    const messages = packMessages(parts, 128 * 1024);
    for (const m of messages) expect(m.reduce((a, b) => a + subBatchBytes(b), 0)).toBeLessThanOrEqual(128 * 1024);
    expect(messages.flat()).toEqual(parts);
  });

  test("placeRecords and packMessagesSized count the bytes messageBytes would, with and without a key", () => {
    const records = [...Array.from({ length: 500 }, (_, i) => rec(`s${i % 37}\u0001 x\ud800`, i % 5, i)), rec("big".repeat(300), 2, 1)];
    for (const key of [undefined, "k", "a-much-longer-idempotency-key-".repeat(4)]) {
      const placed = placeRecords(records, P, key);
      expect(placed.batches).toEqual(splitByPartition(records, P, key));
      expect(placed.bytes).toBe(messageBytes(placed.batches));
      for (const max of [1, 4096, 1 << 20]) {
        const sized = packMessagesSized(placed.batches, max);
        expect(sized.map((m) => m.batches)).toEqual(packMessages(placed.batches, max));
        for (const m of sized) expect(m.bytes).toBe(messageBytes(m.batches));
      }
    }
    expect(placeRecords([], P)).toEqual({ batches: [], bytes: 0, plainKeys: true });
  });

  test("a message writes a shared dedupe key once; the receiver gets every sub-batch's key back", () => {
    const records = Array.from({ length: 200 }, (_, i) => rec(`s${i}`, 1, i));
    const shared = splitByPartition(records, P, "k");
    const sent = JSON.parse(JSON.stringify(toMessage(shared)));
    expect(sent.key).toBe("k");
    expect(JSON.stringify(sent.batches)).not.toContain('"k"');
    expect(fromMessage(sent)).toEqual(shared);
    // Mixed keys (a cut sub-batch's derived keys) and no keys travel as they are.
    const mixed = splitOversized(splitByPartition(Array.from({ length: 3000 }, (_, i) => rec("same".repeat(50), 1, i + 1)), 4, "k"), 64 * 1024);
    expect(fromMessage(JSON.parse(JSON.stringify(toMessage(mixed))))).toEqual(mixed);
    const keyless = splitByPartition(records, P);
    expect(toMessage(keyless)).toEqual({ batches: keyless });
    expect(fromMessage(toMessage(keyless))).toEqual(keyless);
  });
});

describe("snapshots", () => {
  test("a snapshot in small chunks rebuilds the partition exactly, with its idempotency keys", () => {
    const src = store();
    const records = Array.from({ length: 2000 }, (_, i) => rec(`s${i}\u0000x`, i % 5, i, 2 * i));
    const batches = splitByPartition(records, 1, "key-1");
    src.apply(batches);
    const chunks = src.snapshot(0, 8 * 1024);
    expect(chunks.length).toBeGreaterThan(5);
    for (const c of chunks) expect(JSON.stringify(c).length).toBeLessThanOrEqual(8 * 1024);
    const dst = store();
    for (const c of JSON.parse(JSON.stringify(chunks))) dst.loadChunk(c);
    for (let h = 0; h < 5; h++) expect(dst.read(h, {})).toEqual(src.read(h, {}));
    expect(dst.flowCount()).toBe(src.flowCount());
    expect(dst.apply(batches).duplicates).toBe(1);
    expect(dst.read(0, {})).toEqual(src.read(0, {}));
  });
});

describe("revert", () => {
  test("undoes keyed sub-batches exactly: sums, created flows, remembered keys", () => {
    const s = store();
    s.apply(splitByPartition([rec("old", 1, 5, 5), rec("shared", 1, 1, 1)], P, "k0"));
    const before = JSON.stringify(readAll(s, 1));
    const batch = splitByPartition([...Array.from({ length: 40 }, (_, i) => rec(`n${i}`, 1, i, 1)), rec("old", 1, 3, 3), rec("shared", 1, 2, 2)], P, "k1");
    s.apply(batch);
    // another request adds to a flow k1 created: that flow must stay
    s.apply(splitByPartition([rec("n7", 1, 100, 0)], P, "k2"));
    expect(s.revert(batch)).toBe(batch.length);
    const after = readAll(s, 1);
    expect(after.filter(([k]) => k !== encodeFlowKey("n7", "d", "v"))).toEqual(JSON.parse(before));
    expect(after.find(([k]) => k === encodeFlowKey("n7", "d", "v"))).toEqual([encodeFlowKey("n7", "d", "v"), 100, 0]);
    expect(s.flowCount()).toBe(3);
    // the key is forgotten: the same sub-batches apply again; a second revert of nothing applied is a no-op
    expect(s.apply(batch).applied).toBe(batch.length);
    expect(s.revert(splitByPartition([rec("zzz", 1, 1)], P, "never"))).toBe(0);
  });
});
