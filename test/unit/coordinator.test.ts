import { rebalancePartitions, type Owners } from "../../src/placement";
import type { PlacementTable } from "../../src/placement-store";
import { decide, forcedEmpty, switched, type CoordinatorInput, type Decision } from "../../src/shard/coordinator";

const P = 32;

function table(owners: Owners, epoch = 10, lost: string[] = []): PlacementTable {
  const incarnations: Record<string, number> = {};
  for (const row of owners) for (const n of row) incarnations[n] = 1;
  return { epoch, owners, lost, coordinator: "a", incarnations, why: "test", at: 0 };
}

/** Every node in `alive` sees exactly `alive` unless `views` says otherwise. */
function input(t: PlacementTable | null, alive: string[], extra: Partial<CoordinatorInput> = {}): CoordinatorInput {
  const aliveMap = new Map(alive.map((n) => [n, 1]));
  const views = new Map(alive.map((n) => [n, new Set(alive)] as const));
  return { table: t, me: alive[0], partitions: P, replicas: 2, alive: aliveMap, views, ready: new Set(alive), leaving: new Set(), blocked: null, now: 0, ...extra };
}

function written(d: Decision): { owners: Owners; lost: string[]; basedOn: number | null } {
  if (d.kind !== "write") throw new Error(`expected a write, got ${d.kind}: ${JSON.stringify(d)}`);
  return { owners: d.content.owners, lost: d.content.lost, basedOn: d.basedOn };
}

const four = () => table(rebalancePartitions(null, ["a", "b", "c", "d"], P, 2));

describe("coordinator decision", () => {
  test("refuses to act when blocked (no lease, a detected stall, NATS lost)", () => {
    for (const why of ["not the coordinator", "this node was stalled or cut off moments ago", "no confirmed round trip to NATS for 3000 ms"]) {
      expect(decide(input(four(), ["a"], { blocked: why }))).toEqual({ kind: "wait", reason: why });
    }
  });

  test("a new cluster: every partition placed, written only if the bucket has no table (basedOn null)", () => {
    const w = written(decide(input(null, ["a", "b"])));
    expect(w.basedOn).toBeNull();
    expect(w.owners.every((row) => row.length === 2)).toBe(true);
  });

  test("a crash agreed by the majority: the dead node is removed, replicas promoted, every write based on the table's epoch", () => {
    const t = four();
    const w = written(decide(input(t, ["a", "b", "c"])));
    expect(w.basedOn).toBe(t.epoch);
    expect(w.lost).toEqual([]);
    t.owners.forEach((row, p) => {
      expect(w.owners[p]).toEqual(row.filter((n) => n !== "d"));
      expect(w.owners[p].length).toBeGreaterThan(0);
    });
  });

  test("a minority view acts on nothing: the node that sees the others gone is alone", () => {
    const t = four();
    // a woke from a pause and hears nobody yet: 1 of 4 listed nodes.
    const d = decide(input(t, ["a"]));
    expect(d.kind).toBe("wait");
    expect((d as { reason: string }).reason).toMatch(/minority: 1 of 4/);
  });

  test("peers that still hear the suspect do not count toward the majority", () => {
    const t = four();
    const views = new Map<string, Set<string>>([
      ["a", new Set(["a", "b", "c"])],
      ["b", new Set(["a", "b", "c", "d"])], // b still hears d
      ["c", new Set(["a", "b", "c", "d"])],
    ]);
    const d = decide(input(t, ["a", "b", "c"], { views }));
    expect(d.kind).toBe("wait");
    expect((d as { reason: string }).reason).toMatch(/1 of 4/);
    views.set("b", new Set(["a", "b", "c"]));
    expect(decide(input(t, ["a", "b", "c"], { views })).kind).toBe("write");
  });

  test("a peer whose view is unknown (just stalled, just started) does not count", () => {
    const t = four();
    const views = new Map<string, Set<string>>([["a", new Set(["a", "b", "c"])]]);
    expect(decide(input(t, ["a", "b", "c"], { views })).kind).toBe("wait");
  });

  test("an even split is the lease holder's: two nodes, one dies, the other takes over", () => {
    const t = table(rebalancePartitions(null, ["a", "b"], P, 2));
    const w = written(decide(input(t, ["b"])));
    expect(w.owners.every((row) => row.length === 1 && row[0] === "b")).toBe(true);
  });

  test("no unclean promotion: a partition whose every copy is lost keeps its owners and lists them as lost", () => {
    const t = table(rebalancePartitions(null, ["a", "b", "c", "d", "e"], P, 2));
    const w = written(decide(input(t, ["a", "b", "c"])));
    const waiting = t.owners.map((row, p) => p).filter((p) => t.owners[p].every((n) => n === "d" || n === "e"));
    expect(waiting.length).toBeGreaterThan(0);
    for (const p of waiting) expect(w.owners[p]).toEqual(t.owners[p]);
    expect(w.lost).toEqual(["d", "e"]);
    // And the next round moves nothing onto those partitions: no empty restart.
    const next = table(w.owners, t.epoch + 1, w.lost);
    const d = decide(input(next, ["a", "b", "c"]));
    if (d.kind === "move") for (const c of d.changes) expect(waiting).not.toContain(c.partition);
  });

  test("with R = 1 a crashed node's partitions wait for it", () => {
    const t = table(rebalancePartitions(null, ["a", "b"], P, 1));
    const w = written(decide(input(t, ["a", "b", "c"].slice(0, 1), { replicas: 1 })));
    expect(w.owners).toEqual(t.owners);
    expect(w.lost).toEqual(["b"]);
  });

  test("a lost node that returns (same incarnation) leaves `lost`", () => {
    const owners = rebalancePartitions(null, ["a", "b"], P, 1);
    const t = table(owners, 12, ["b"]);
    const w = written(decide(input(t, ["a", "b"], { replicas: 1 })));
    expect(w.owners).toEqual(owners);
    expect(w.lost).toEqual([]);
  });

  test("a node restarted under the same id (a new incarnation) is dead to the table", () => {
    const t = four();
    const alive = input(t, ["a", "b", "c", "d"]);
    (alive.alive as Map<string, number>).set("d", 2);
    const w = written(decide(alive));
    expect(w.owners.some((row) => row.includes("d"))).toBe(false);
  });

  test("property: no table it writes has a partition with fewer copies unless those nodes were agreed dead, and never an empty partition", () => {
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const nodes = ["a", "b", "c", "d", "e", "f"];
    for (let round = 0; round < 300; round++) {
      const members = nodes.slice(0, 2 + Math.floor(random() * 5));
      const t = table(rebalancePartitions(null, members, P, 1 + Math.floor(random() * 3)));
      const alive = members.filter(() => random() < 0.6);
      if (alive.length === 0) continue;
      const views = new Map(alive.map((n) => [n, new Set(random() < 0.8 ? alive : members)] as const));
      const d = decide(input(t, alive, { views, me: alive[0] }));
      if (d.kind !== "write") continue;
      const agreedDead = new Set(members.filter((n) => !alive.includes(n)));
      const agreeing = alive.filter((n) => [...agreedDead].every((x) => !views.get(n)!.has(x)));
      expect(agreeing.length * 2).toBeGreaterThanOrEqual(members.length);
      d.content.owners.forEach((row, p) => {
        expect(row.length).toBeGreaterThan(0);
        for (const n of t.owners[p]) if (!row.includes(n)) expect(agreedDead.has(n)).toBe(true);
      });
    }
  });

  test("moves copy before they switch; a stale plan's switch is refused", () => {
    const t = table(rebalancePartitions(null, ["a", "b", "c"], P, 2));
    const d = decide(input(t, ["a", "b", "c", "d"]));
    expect(d.kind).toBe("move");
    if (d.kind !== "move") return;
    expect(d.basedOn).toBe(t.epoch);
    const c = d.changes[0];
    expect(c.fills).toContain("d");
    const alive = new Map([["d", 1]]);
    expect(switched(t, c, "a", alive, 0)!.owners[c.partition]).toEqual(c.to);
    const moved = table(t.owners.map((row, p) => (p === c.partition ? ["b"] : row)));
    expect(switched(moved, c, "a", alive, 0)).toBeNull();
  });

  test("force-empty: only waiting partitions, only when asked", () => {
    const t = table(rebalancePartitions(null, ["a", "b"], P, 1), 20, ["b"]);
    const alive = new Map([["a", 1]]);
    const forced = forcedEmpty(t, alive, "a", 0)!;
    const waiting = t.owners.map((_, p) => p).filter((p) => t.owners[p][0] === "b");
    expect(forced.partitions).toEqual(waiting);
    for (const p of waiting) expect(forced.content.owners[p]).toEqual([]);
    expect(forced.content.lost).toEqual([]);
    expect(forcedEmpty(t, alive, "a", 0, [t.owners.findIndex((row) => row[0] === "a")])).toBeNull();
  });
});
