import { DedupeWindow } from "../../src/dedupe-window";

describe("DedupeWindow", () => {
  test("remembers a key until its expiry, not after", () => {
    const w = new DedupeWindow(10);
    w.remember("a", 1100, 1000);
    expect(w.has("a", 1000)).toBe(true);
    expect(w.has("a", 1099)).toBe(true);
    expect(w.has("a", 1100)).toBe(false);
    expect(w.has("b", 1000)).toBe(false);
  });

  test("expired keys are dropped from the front as new ones arrive", () => {
    const w = new DedupeWindow(10);
    w.remember("a", 1100, 1000);
    w.remember("b", 1150, 1050);
    w.remember("c", 1300, 1200); // a and b have expired by now
    expect(w.size).toBe(1);
    expect(w.entries(1200)).toEqual([["c", 100]]);
  });

  test("holds at most max keys, evicting the oldest", () => {
    const w = new DedupeWindow(3);
    for (const [i, k] of ["a", "b", "c", "d", "e"].entries()) w.remember(k, 10_000 + i, i);
    expect(w.size).toBe(3);
    expect(w.entries(10).map(([k]) => k)).toEqual(["c", "d", "e"]);
    expect(w.has("b", 10)).toBe(false);
    expect(w.has("e", 10)).toBe(true);
  });

  test("a key remembered again moves to the back with its new expiry", () => {
    const w = new DedupeWindow(3);
    w.remember("a", 100, 0);
    w.remember("b", 101, 1);
    w.remember("a", 102, 2);
    w.remember("c", 103, 3);
    w.remember("d", 104, 4); // evicts the oldest: b, not a
    expect(w.entries(50)).toEqual([
      ["a", 52],
      ["c", 53],
      ["d", 54],
    ]);
    expect(w.has("b", 50)).toBe(false);
  });

  test("a deleted key is forgotten; the window keeps working after its front is deleted", () => {
    const w = new DedupeWindow(2);
    w.remember("a", 100, 0);
    w.remember("b", 200, 0);
    w.delete("a");
    expect(w.has("a", 1)).toBe(false);
    w.remember("c", 300, 150); // front (b) not expired at 150; bound of 2 holds
    expect(w.entries(150).map(([k]) => k)).toEqual(["b", "c"]);
    w.remember("d", 400, 250); // b expired at 250
    expect(w.entries(250).map(([k]) => k)).toEqual(["c", "d"]);
  });

  test("entries gives remaining lifetimes, rounded up, oldest first, without the expired", () => {
    const w = new DedupeWindow(10);
    w.remember("x", 1000.5, 0);
    w.remember("y", 2000, 0);
    expect(w.entries(500)).toEqual([
      ["x", 501],
      ["y", 1500],
    ]);
    expect(w.entries(1500)).toEqual([["y", 500]]);
  });
});
