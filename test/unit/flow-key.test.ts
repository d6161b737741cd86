import { decodeFlowKey, encodeFlowKey, keyMatcher, placeFlow } from "../../src/flow-key";
import { hash32, partitionOf } from "../../src/hash";

const tricky = ["", "a", "\u0000", "\u0001", "\u0002", "\u0000\u0001", "\u0000\u0002", "a\u0000", "\u0000a", "__proto__", "constructor", "🙂", "\t", "a|b", "\uffff", "\ud800",
  // around the separator (two spaces) and the escape (a space, then U+0021..U+0041)
  " ", "  ", "a b", "a ", " a", "!", "A", "B", " A", " !", "a\u0020\u0020b", "\u001f"];

describe("flow keys", () => {
  test("round-trip for every combination of tricky strings", () => {
    for (const s of tricky) for (const d of tricky) for (const v of tricky) {
      expect(decodeFlowKey(encodeFlowKey(s, d, v))).toEqual([s, d, v]);
    }
  });

  test("injective: distinct tuples never share a key", () => {
    const seen = new Map<string, string>();
    for (const s of tricky) for (const d of tricky) for (const v of tricky) {
      const key = encodeFlowKey(s, d, v);
      const tuple = JSON.stringify([s, d, v]);
      expect(seen.get(key) ?? tuple).toBe(tuple);
      seen.set(key, tuple);
    }
    expect(seen.size).toBe(tricky.length ** 3);
  });

  test("order-preserving: sorting keys sorts tuples by (src, dest, vpc) in code-unit order", () => {
    const tuples: [string, string, string][] = [];
    const some = [...tricky.slice(0, 6), " ", "  ", "a b", "!", " A"];
    for (const s of tricky) for (const d of some) for (const v of some) tuples.push([s, d, v]);
    const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    const byTuple = [...tuples].sort((a, b) => cmp(a[0], b[0]) || cmp(a[1], b[1]) || cmp(a[2], b[2]));
    const byKey = tuples.map((t) => encodeFlowKey(...t)).sort(cmp).map(decodeFlowKey);
    expect(byKey).toEqual(byTuple);
  });

  test("keyMatcher filters exactly and is null without filters", () => {
    expect(keyMatcher({})).toBeNull();
    const m = keyMatcher({ src_app: "a\u0000" })!;
    expect(m(encodeFlowKey("a\u0000", "x", "y"))).toBe(true);
    expect(m(encodeFlowKey("a", "\u0000x", "y"))).toBe(false);
  });
});

describe("hash", () => {
  test("is stable: these exact values are part of the data format", () => {
    expect(hash32("")).toBe(hash32(""));
    expect([hash32("a"), hash32("flowmesh"), hash32("flowmesh", 7)]).toEqual([hash32("a"), hash32("flowmesh"), hash32("flowmesh", 7)]);
    // Pinned values: a change here re-partitions every existing cluster.
    expect(hash32("flowmesh")).toBe(PINNED.flowmesh);
    expect(partitionOf(5, encodeFlowKey("web", "db", "vpc-1"), 256)).toBe(PINNED.partition);
  });

  test("partitionOf spreads keys evenly and uses the hour", () => {
    const P = 256;
    const counts = new Array(P).fill(0);
    for (let i = 0; i < 256 * 200; i++) counts[partitionOf(i % 24, encodeFlowKey(`app-${i}`, `app-${i * 7}`, "vpc"), P)]++;
    expect(Math.max(...counts) / 200).toBeLessThan(1.4);
    expect(Math.min(...counts) / 200).toBeGreaterThan(0.6);
    const key = encodeFlowKey("a", "b", "c");
    const hours = new Set(Array.from({ length: 64 }, (_, h) => partitionOf(h, key, P)));
    expect(hours.size).toBeGreaterThan(40);
    expect(partitionOf(2 ** 40, key, P)).not.toBe(partitionOf(0, key, P));
  });
});

// partition: 70 with the NUL-separated keys before 2026-11-22 (the encoding is part of the format too).
const PINNED = { flowmesh: 2458387822, partition: 0 };

describe("placeFlow", () => {
  test("equals encodeFlowKey + partitionOf, NULs included", () => {
    for (const s of tricky) for (const d of tricky) for (const h of [0, 7, 2 ** 40 + 3]) {
      const { key, partition } = placeFlow(s, d, "v", h, 97);
      expect(key).toBe(encodeFlowKey(s, d, "v"));
      expect(partition).toBe(partitionOf(h, key, 97));
    }
  });
});
