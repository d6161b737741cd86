import { rebalancePartitions } from "../../src/placement";
import { ownerNodes, planTransition } from "../../src/transition";

describe("planTransition", () => {
  test("a join fills only the new node and releases only moved primaries", () => {
    const before = rebalancePartitions(null, ["a", "b", "c"], 64, 2);
    const after = rebalancePartitions(before, ["a", "b", "c", "d"], 64, 2);
    const changes = planTransition(before, after);
    expect(changes.length).toBeGreaterThan(0);
    for (const c of changes) {
      expect(c.to).toEqual(after[c.partition]);
      for (const f of c.fills) expect(before[c.partition]).not.toContain(f);
      expect(c.fills.every((f) => f === "d")).toBe(true);
      if (c.releaseFrom) expect(after[c.partition][0]).toBe("d");
    }
    const unchanged = after.filter((o, p) => !changes.some((c) => c.partition === p));
    expect(unchanged.length + changes.length).toBe(64);
  });

  test("no owners yet: nothing to fill or release", () => {
    const target = rebalancePartitions(null, ["a"], 4, 1);
    const changes = planTransition([[], [], [], []], target);
    expect(changes).toHaveLength(4);
    expect(changes.every((c) => c.fills.length === 0 && c.releaseFrom === null)).toBe(true);
  });

  test("ownerNodes lists every node a table names", () => {
    expect([...ownerNodes([["a", "b"], ["b", "c"], []])].sort()).toEqual(["a", "b", "c"]);
  });
});

export {};
