import { PartitionRoles, Role, type Listing } from "../../src/shard/partition-roles";

const listed = (map: Record<number, Listing>) => (p: number) => map[p] ?? null;

describe("partition roles", () => {
  test("a table makes a node primary or replica; only primary serves; everything listed accepts forwards", () => {
    const roles = new PartitionRoles(4);
    expect(roles.adopt(listed({ 0: "primary", 1: "replica" }), 0)).toEqual([]);
    expect(roles.name(0)).toBe("primary");
    expect(roles.name(1)).toBe("replica");
    expect(roles.name(2)).toBe("absent");
    expect([0, 1, 2].map((p) => roles.servesAsPrimary(p))).toEqual([true, false, false]);
    expect([0, 1, 2].map((p) => roles.acceptsForward(p))).toEqual([true, true, false]);
  });

  test("a table that no longer lists the node drops its copies", () => {
    const roles = new PartitionRoles(3);
    roles.adopt(listed({ 0: "primary", 1: "replica" }), 0);
    expect(roles.adopt(listed({}), 1)).toEqual([0, 1]);
    expect(roles.inState(Role.Absent)).toEqual([0, 1, 2]);
  });

  test("a copy: prepare -> loading (queues forwards) -> loaded -> standby until listed, then what the table says", () => {
    const roles = new PartitionRoles(2);
    roles.prepareCopy(1, 0);
    expect(roles.name(1)).toBe("loading");
    expect(roles.acceptsForward(1)).toBe(true);
    expect(roles.holdsCopy(1)).toBe(false);
    roles.queueOf(1)!.push({ partition: 1, entries: [] });
    // A table switch that does not list it yet leaves a loading copy alone.
    expect(roles.adopt(listed({}), 1)).toEqual([]);
    expect(roles.name(1)).toBe("loading");
    expect(roles.loaded(1, 2, null)).toHaveLength(1);
    expect(roles.name(1)).toBe("standby");
    expect(roles.servesAsPrimary(1)).toBe(false);
    expect(roles.adopt(listed({}), 3)).toEqual([]); // standby survives unlisted tables until abandoned
    roles.adopt(listed({ 1: "primary" }), 4);
    expect(roles.servesAsPrimary(1)).toBe(true);
  });

  test("loaded into a table that already lists it takes that role at once", () => {
    const roles = new PartitionRoles(1);
    roles.prepareCopy(0, 0);
    roles.loaded(0, 1, "replica");
    expect(roles.name(0)).toBe("replica");
  });

  test("loaded is refused unless loading", () => {
    const roles = new PartitionRoles(1);
    expect(() => roles.loaded(0, 0, null)).toThrow(/loaded while absent/);
  });

  test("release: stops serving until a table moves the primary elsewhere", () => {
    const roles = new PartitionRoles(2);
    roles.adopt(listed({ 0: "primary" }), 0);
    roles.release(0, 1);
    expect(roles.name(0)).toBe("released");
    expect(roles.servesAsPrimary(0)).toBe(false);
    expect(roles.acceptsForward(0)).toBe(true);
    expect(roles.holdsCopy(0)).toBe(true);
    // Another partition's switch (a newer table, still primary here) does not undo it.
    roles.adopt(listed({ 0: "primary" }), 2);
    expect(roles.name(0)).toBe("released");
    roles.adopt(listed({ 0: "replica" }), 3);
    expect(roles.name(0)).toBe("replica");
    expect(() => roles.release(1, 4)).toThrow(/release while absent/);
  });

  test("expire: abandoned copies are dropped, a release whose switch never came serves again", () => {
    const roles = new PartitionRoles(3);
    roles.adopt(listed({ 2: "primary" }), 0);
    roles.prepareCopy(0, 0);
    roles.prepareCopy(1, 0);
    roles.loaded(1, 0, null);
    roles.release(2, 0);
    const limits = { abandonMs: 60_000, releaseMs: 10_000 };
    expect(roles.expire(5_000, limits, listed({ 2: "primary" }))).toEqual([]);
    expect(roles.expire(10_001, limits, listed({ 2: "primary" }))).toEqual([]);
    expect(roles.name(2)).toBe("primary");
    expect(roles.expire(60_001, limits, listed({ 2: "primary" }))).toEqual([0, 1]);
    expect(roles.inState(Role.Absent)).toEqual([0, 1]);
  });
});
