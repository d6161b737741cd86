/**
 * Group ids: a number for each group key of a grouping (the `by` fields), kept across
 * queries. Hashing a group key into a Map that grows with every query was most of a
 * top-N's time, on shards (~0.5 µs a flow) and on the gateway adding the shards'
 * partial groups (~0.3 µs a group). With ids kept, a shard adds flows into arrays
 * indexed by id (src/query/shard-queries.ts keeps each hour table's slot ids), and the
 * gateway looks each partial group up in a Map that no longer grows (mergeGroups).
 *
 * Bounded: a grouping's ids are renumbered from scratch past MAX_GROUP_IDS (its
 * `generation` counts the renumberings, so lists of old ids can tell they are stale).
 */
import { GroupSums, type GroupColumns } from "./top";

export const MAX_GROUP_IDS = 1_000_000;

export class GroupIds {
  generation = 0;
  readonly keys: string[] = [];
  private readonly ids = new Map<string, number>();
  /** mergeGroups' scratch: the query-local index of each id (-1: not seen in this merge). */
  local = new Int32Array(0);

  get size(): number {
    return this.keys.length;
  }

  idOf(group: string): number {
    let id = this.ids.get(group);
    if (id === undefined) {
      if (this.keys.length >= MAX_GROUP_IDS) this.renumber();
      id = this.keys.length;
      this.ids.set(group, id);
      this.keys.push(group);
    }
    return id;
  }

  renumber(): void {
    this.ids.clear();
    this.keys.length = 0;
    this.generation++;
  }
}

const byGrouping = new Map<string, GroupIds>();

/** The ids of a grouping (`by` joined by commas: a handful of them in all). */
export function groupIdsOf(grouping: string): GroupIds {
  let ids = byGrouping.get(grouping);
  if (ids === undefined) byGrouping.set(grouping, (ids = new GroupIds()));
  return ids;
}

/**
 * The sum of partial groups (the shards' pages of one query), one entry per group key,
 * in the order the keys first appear. Synchronous, so no other merge renumbers the ids
 * meanwhile; more partial groups than the ids can number are added in a plain Map.
 */
export function mergeGroups(parts: readonly GroupColumns[], grouping: string): GroupColumns {
  if (parts.length === 1) return parts[0];
  let entries = 0;
  for (const part of parts) entries += part.keys.length;
  if (entries > MAX_GROUP_IDS) {
    const sums = new GroupSums();
    for (const part of parts) sums.addAll(part);
    return sums;
  }
  const registry = groupIdsOf(grouping);
  // Room for every entry without renumbering during the merge.
  if (registry.size + entries > MAX_GROUP_IDS) registry.renumber();
  if (registry.local.length < registry.size + entries) {
    registry.local = new Int32Array(Math.min(MAX_GROUP_IDS, Math.max(2 * registry.local.length, registry.size + entries))).fill(-1);
  }
  const local = registry.local;
  const keys: string[] = [];
  const ids: number[] = [];
  const tx = new Float64Array(entries);
  const rx = new Float64Array(entries);
  const flows = new Float64Array(entries);
  try {
    for (const part of parts) {
      for (let i = 0; i < part.keys.length; i++) {
        const id = registry.idOf(part.keys[i]);
        let j = local[id];
        if (j < 0) {
          j = keys.length;
          local[id] = j;
          keys.push(part.keys[i]);
          ids.push(id);
        }
        tx[j] += part.tx[i];
        rx[j] += part.rx[i];
        flows[j] += part.flows[i];
      }
    }
  } finally {
    for (const id of ids) local[id] = -1;
  }
  const n = keys.length;
  return { keys, tx: tx.subarray(0, n), rx: rx.subarray(0, n), flows: flows.subarray(0, n) };
}
