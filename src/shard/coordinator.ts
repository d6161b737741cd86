/**
 * The coordinator's decision: a pure function of (table, the membership this node
 * sees, its peers' views, whether it may decide at all) -> what to do next. The
 * coordinator's runner carries the decision out; every table it writes is a
 * compare-and-set against `basedOn`, the epoch the decision was computed from.
 *
 * The rules, in order:
 * 1. A node that may not decide (no lease, a recent stall, NATS lost) waits.
 * 2. No table yet: place the partitions on the live nodes.
 * 3. Dead owners (silent, or restarted as a new incarnation with none of the old state):
 *    judging a silent node dead for the first time needs a majority of the nodes the
 *    table lists to agree (their own settled views do not hear it either); an even
 *    split is broken by the lease, which this node holds. Then each partition with a live copy loses its
 *    dead owners (the first live one becomes primary: it applied every acknowledged
 *    write). A partition with no live copy keeps its owners and waits; its dead owners
 *    are listed as `lost` and it answers 503. Never an empty partition, never fewer
 *    copies except of nodes agreed dead.
 * 4. Lost nodes that are back (same incarnation) leave `lost`.
 * 5. Otherwise move toward the balanced placement of the live nodes (copies are made
 *    before a switch), leaving waiting partitions where they are.
 */
import type { PlacementTable, TableContent } from "../placement-store";
import { rebalancePartitions, type Owners } from "../placement";
import { ownerNodes, planTransition, type PartitionChange } from "../transition";

export interface CoordinatorInput {
  table: PlacementTable | null;
  me: string;
  partitions: number;
  replicas: number;
  /** Live shard nodes this node hears from (itself included), with their incarnations. */
  alive: ReadonlyMap<string, number>;
  /** Each live node's own view of who is alive (from its beats; this node's own too). */
  views: ReadonlyMap<string, ReadonlySet<string>>;
  /** Live nodes that may receive partitions (their shard service is registered). */
  ready: ReadonlySet<string>;
  /** Nodes handing their partitions off (SIGTERM). */
  leaving: ReadonlySet<string>;
  /** null when this node may decide; else why not. */
  blocked: string | null;
  /** Wall-clock ms, stamped on the table. */
  now: number;
}

export type Decision =
  | { kind: "wait"; reason: string }
  | { kind: "idle" }
  | { kind: "write"; content: TableContent; basedOn: number | null; log: string }
  | { kind: "move"; changes: PartitionChange[]; basedOn: number; log: string };

/** Every owner of the table that is not alive as the incarnation the table names. */
export function deadOwners(table: PlacementTable, alive: ReadonlyMap<string, number>): Set<string> {
  const dead = new Set<string>();
  for (const n of ownerNodes(table.owners)) {
    const inc = alive.get(n);
    if (inc === undefined || (table.incarnations[n] !== undefined && inc !== table.incarnations[n])) dead.add(n);
  }
  return dead;
}

/** Owners without the dead nodes, except where that would leave a partition empty (it waits for them). */
export function withoutDead(owners: Owners, dead: ReadonlySet<string>): Owners {
  return owners.map((row) => (row.some((n) => dead.has(n)) && row.some((n) => !dead.has(n)) ? row.filter((n) => !dead.has(n)) : row));
}

/** Partitions whose every owner is dead: they answer 503 until one returns. */
export function waitingPartitions(owners: Owners, dead: ReadonlySet<string>): number[] {
  const out: number[] = [];
  owners.forEach((row, p) => {
    if (row.length > 0 && row.every((n) => dead.has(n))) out.push(p);
  });
  return out;
}

function contentOf(table: PlacementTable | null, owners: Owners, lost: string[], input: CoordinatorInput, why: string): TableContent {
  const incarnations: Record<string, number> = {};
  for (const n of ownerNodes(owners)) {
    const inc = table?.incarnations[n] ?? input.alive.get(n);
    if (inc !== undefined) incarnations[n] = inc;
  }
  return { owners, lost: [...lost].sort(), coordinator: input.me, incarnations, why, at: input.now };
}

const sameRows = (a: Owners, b: Owners) => a.length === b.length && a.every((row, p) => row.length === b[p].length && row.every((n, i) => n === b[p][i]));

export function decide(input: CoordinatorInput): Decision {
  if (input.blocked !== null) return { kind: "wait", reason: input.blocked };
  const { table, partitions, replicas } = input;
  const candidates = [...input.alive.keys()].filter((n) => input.ready.has(n) && !input.leaving.has(n));

  if (table === null) {
    if (candidates.length === 0) return { kind: "wait", reason: "no shard node ready" };
    const owners = rebalancePartitions(null, candidates, partitions, replicas);
    const why = `new cluster on ${candidates.join(", ")}`;
    return { kind: "write", content: contentOf(null, owners, [], input, why), basedOn: null, log: why };
  }

  const dead = deadOwners(table, input.alive);
  const alreadyLost = new Set(table.lost);
  const newlyDead = [...dead].filter((n) => !alreadyLost.has(n));
  // A node heard again as a new incarnation proves the old one gone; only silence needs a majority.
  const silent = newlyDead.filter((n) => !input.alive.has(n));
  if (silent.length > 0) {
    const listed = ownerNodes(table.owners);
    const agreeing = [...listed].filter((n) => {
      if (dead.has(n)) return false;
      const view = input.views.get(n);
      return view !== undefined && silent.every((d) => !view.has(d));
    });
    // Keep-majority, an even split going to the lease holder (this node).
    if (agreeing.length * 2 < listed.size) {
      return {
        kind: "wait",
        reason: `minority: ${agreeing.length} of ${listed.size} listed node(s) agree that ${silent.join(", ")} ${silent.length === 1 ? "is" : "are"} gone`,
      };
    }
  }
  const owners = withoutDead(table.owners, dead);
  const lost = [...ownerNodes(owners)].filter((n) => dead.has(n));
  const lostChanged = lost.length !== table.lost.length || lost.some((n) => !alreadyLost.has(n));
  if (!sameRows(owners, table.owners) || lostChanged) {
    const promoted = owners.filter((row, p) => row[0] !== table.owners[p][0]).length;
    const waiting = waitingPartitions(owners, dead).length;
    const returned = table.lost.filter((n) => !dead.has(n));
    const parts = [
      newlyDead.length > 0 ? `lost ${newlyDead.join(", ")} (agreed by a majority)` : "",
      returned.length > 0 ? `${returned.join(", ")} back` : "",
      promoted > 0 ? `${promoted} replica(s) promoted to primary` : "",
      waiting > 0 ? `${waiting} partition(s) wait for ${lost.join(", ")} (no other copy; 503 until one returns, or force-empty)` : "",
    ].filter(Boolean);
    return { kind: "write", content: contentOf(table, owners, lost, input, parts.join("; ")), basedOn: table.epoch, log: parts.join("; ") };
  }

  if (candidates.length === 0) return { kind: "idle" };
  const waiting = waitingPartitions(table.owners, dead);
  const target = rebalancePartitions(table.owners, candidates, partitions, replicas);
  for (const p of waiting) target[p] = table.owners[p];
  const changes = planTransition(table.owners, target);
  if (changes.length === 0) return { kind: "idle" };
  const fills = changes.reduce((a, c) => a + c.fills.length, 0);
  return {
    kind: "move",
    changes,
    basedOn: table.epoch,
    log: `rebalancing ${changes.length} partition(s) onto ${candidates.join(", ")} from epoch ${table.epoch}: ${fills} cop${fills === 1 ? "y" : "ies"} to make`,
  };
}

/**
 * The table after one partition's switch (its copies made, its old primary released),
 * or null when the partition's owners changed since the plan (the plan is stale).
 */
export function switched(table: PlacementTable, change: PartitionChange, me: string, alive: ReadonlyMap<string, number>, now: number): TableContent | null {
  const row = table.owners[change.partition] ?? [];
  if (row.length !== change.from.length || row.some((n, i) => n !== change.from[i])) return null;
  const owners = table.owners.slice();
  owners[change.partition] = change.to;
  const incarnations: Record<string, number> = {};
  for (const n of ownerNodes(owners)) {
    const inc = table.incarnations[n] ?? alive.get(n);
    if (inc !== undefined) incarnations[n] = inc;
  }
  const why = `partition ${change.partition}: ${change.from.join(",") || "-"} -> ${change.to.join(",")}`;
  return { owners, lost: table.lost.filter((n) => ownerNodes(owners).has(n)), coordinator: me, incarnations, why, at: now };
}

/**
 * An operator's explicit choice: the given waiting partitions (all of them when none
 * are named) give up on their lost owners and start empty on live nodes. Returns null
 * when none of them is waiting.
 */
export function forcedEmpty(table: PlacementTable, alive: ReadonlyMap<string, number>, me: string, now: number, only?: number[]): { content: TableContent; partitions: number[] } | null {
  const dead = deadOwners(table, alive);
  const waiting = new Set(waitingPartitions(table.owners, dead));
  const chosen = (only ?? [...waiting]).filter((p) => waiting.has(p));
  if (chosen.length === 0) return null;
  const owners = table.owners.map((row, p) => (chosen.includes(p) ? [] : row));
  const incarnations: Record<string, number> = {};
  for (const n of ownerNodes(owners)) if (table.incarnations[n] !== undefined) incarnations[n] = table.incarnations[n];
  const lost = table.lost.filter((n) => ownerNodes(owners).has(n));
  const why = `operator forced ${chosen.length} partition(s) empty (${chosen.slice(0, 8).join(", ")}${chosen.length > 8 ? ", ..." : ""}): their data on ${table.lost.join(", ") || "lost nodes"} is given up`;
  return { content: { owners, lost, coordinator: me, incarnations, why, at: now }, partitions: chosen };
}
