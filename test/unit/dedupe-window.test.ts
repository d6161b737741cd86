import fc from "fast-check";
import { DedupeWindows } from "../../src/dedupe-window";

/** One partition's view, as the tests of a single window read it. */
function windowOf(w: DedupeWindows, p = 0) {
  return {
    remember: (k: string, expires: number, now: number) => w.remember(p, k, expires, now),
    has: (k: string, now: number) => w.has(p, k, now),
    delete: (k: string) => w.delete(p, k),
    entries: (now: number) => w.entriesOf(p, now),
    get size() {
      return w.sizeOf(p);
    },
  };
}

describe("DedupeWindows, one partition", () => {
  test("remembers a key until its expiry, not after", () => {
    const w = windowOf(new DedupeWindows(10));
    w.remember("a", 1100, 1000);
    expect(w.has("a", 1000)).toBe(true);
    expect(w.has("a", 1099)).toBe(true);
    expect(w.has("a", 1100)).toBe(false);
    expect(w.has("b", 1000)).toBe(false);
  });

  test("expired keys are dropped from the front as new ones arrive", () => {
    const windows = new DedupeWindows(10);
    const w = windowOf(windows);
    w.remember("a", 1100, 1000);
    w.remember("b", 1150, 1050);
    w.remember("c", 1300, 1200); // a and b have expired by now
    expect(w.size).toBe(1);
    expect(windows.size).toBe(1);
    expect(w.entries(1200)).toEqual([["c", 100]]);
  });

  test("holds at most max keys, evicting the oldest", () => {
    const w = windowOf(new DedupeWindows(3));
    for (const [i, k] of ["a", "b", "c", "d", "e"].entries()) w.remember(k, 10_000 + i, i);
    expect(w.size).toBe(3);
    expect(w.entries(10).map(([k]) => k)).toEqual(["c", "d", "e"]);
    expect(w.has("b", 10)).toBe(false);
    expect(w.has("e", 10)).toBe(true);
  });

  test("a deleted key is forgotten; the window keeps working after its front is deleted", () => {
    const w = windowOf(new DedupeWindows(2));
    w.remember("a", 100, 0);
    w.remember("b", 200, 0);
    w.delete("a");
    expect(w.has("a", 1)).toBe(false);
    w.remember("c", 300, 150);
    expect(w.entries(150).map(([k]) => k)).toEqual(["b", "c"]);
    w.remember("d", 400, 250); // b expired at 250
    expect(w.entries(250).map(([k]) => k)).toEqual(["c", "d"]);
  });

  test("entries gives remaining lifetimes, rounded up, oldest first, without the expired", () => {
    const w = windowOf(new DedupeWindows(10));
    w.remember("x", 1000.5, 0);
    w.remember("y", 2000, 0);
    expect(w.entries(500)).toEqual([
      ["x", 501],
      ["y", 1500],
    ]);
    expect(w.entries(1500)).toEqual([["y", 500]]);
  });
});

describe("DedupeWindows, many partitions", () => {
  test("a key is one entry for every partition that applied it; each partition's bound is its own", () => {
    const w = new DedupeWindows(2);
    for (const p of [0, 5, 40, 300]) w.remember(p, "req-1", 1000, 0);
    expect(w.size).toBe(1);
    expect([0, 5, 40, 300, 1].map((p) => w.has(p, "req-1", 10))).toEqual([true, true, true, true, false]);
    w.remember(5, "req-2", 1000, 1);
    w.remember(5, "req-3", 1000, 2); // partition 5 is over its bound: req-1 leaves it, and only it
    expect(w.has(5, "req-1", 10)).toBe(false);
    expect(w.has(0, "req-1", 10)).toBe(true);
    expect(w.sizeOf(5)).toBe(2);
    expect(w.sizeOf(0)).toBe(1);
  });

  test("a dropped partition forgets its keys, the others keep them", () => {
    const w = new DedupeWindows(10);
    w.remember(1, "k", 1000, 0);
    w.remember(2, "k", 1000, 0);
    w.remember(1, "only-1", 1000, 0);
    w.dropPartition(1);
    expect(w.has(1, "k", 10)).toBe(false);
    expect(w.has(2, "k", 10)).toBe(true);
    expect(w.size).toBe(1);
    expect(w.entriesOf(1, 10)).toEqual([]);
  });

  test("an expired key applied again starts over: the partitions that had it before do not get it back", () => {
    const w = new DedupeWindows(10);
    w.remember(1, "k", 100, 0);
    w.remember(2, "k", 100, 0);
    w.remember(3, "k", 300, 200);
    expect(w.has(3, "k", 250)).toBe(true);
    expect(w.has(1, "k", 250)).toBe(false);
    expect(w.sizeOf(1)).toBe(0);
  });

  test("never forgets a key before a window per partition would (same TTL for every key, applied in time order), and keeps each partition's bound", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("remember" as const), p: fc.integer({ min: 0, max: 40 }), key: fc.integer({ min: 0, max: 30 }), dt: fc.integer({ min: 0, max: 30 }) }),
      fc.record({ kind: fc.constant("delete" as const), p: fc.integer({ min: 0, max: 40 }), key: fc.integer({ min: 0, max: 30 }), dt: fc.constant(0) }),
      fc.record({ kind: fc.constant("drop" as const), p: fc.integer({ min: 0, max: 40 }), key: fc.constant(0), dt: fc.constant(0) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), fc.integer({ min: 1, max: 6 }), (ops, max) => {
        const TTL = 100;
        const w = new DedupeWindows(max);
        // Model: per partition, key -> time applied, in order; at most max, oldest out.
        const model = new Map<number, Map<string, number>>();
        let now = 0;
        for (const o of ops) {
          now += o.dt;
          const key = `k${o.key}`;
          const m = model.get(o.p) ?? new Map<string, number>();
          model.set(o.p, m);
          if (o.kind === "drop") {
            w.dropPartition(o.p);
            m.clear();
            continue;
          }
          if (o.kind === "delete") {
            w.delete(o.p, key);
            m.delete(key);
            continue;
          }
          // As the store does: remember only what is not a duplicate. Never forgotten early; a key
          // may be kept longer than its partition's own expiry (another partition applied it later).
          if (w.has(o.p, key, now)) continue;
          expect((m.get(key) ?? -Infinity) + TTL > now).toBe(false);
          w.remember(o.p, key, now + TTL, now);
          m.delete(key);
          m.set(key, now);
          for (const [k, t] of m) if (t + TTL <= now) m.delete(k);
          while (m.size > max) m.delete(m.keys().next().value as string);
        }
        // A key may outlive its partition's own expiry while another partition applied it later (a lower bound), never the other way.
        for (const [p, m] of model) for (const [k, t] of m) if (t + TTL > now) expect(w.has(p, k, now)).toBe(true);
        for (const p of model.keys()) expect(w.sizeOf(p)).toBeLessThanOrEqual(max);
      }),
      { numRuns: 300 },
    );
  });
});
