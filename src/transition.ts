/**
 * From the placement the cluster has to the one it should have: which partitions
 * change owners, which nodes need a copy first, and whose primary moves. Pure.
 *
 * A partition changes owners in three steps, each safe on its own:
 *   1. fill: every new owner gets a copy from the current primary (a snapshot plus
 *      the writes that arrive meanwhile, forwarded synchronously like any replica's);
 *   2. release: if the primary changes, the old primary stops serving the partition
 *      and waits for its writes in flight;
 *   3. switch: the coordinator publishes a table with the new owners (a new epoch).
 * Until the switch, the old owners serve; after it, every new owner holds the state.
 */
import type { Owners } from "./placement";

export interface PartitionChange {
  partition: number;
  from: string[];
  to: string[];
  /** Nodes of `to` that need a copy from `from[0]` before the switch. */
  fills: string[];
  /** The old primary must release the partition before the switch. */
  releaseFrom: string | null;
}

export function planTransition(current: Owners, target: Owners): PartitionChange[] {
  const changes: PartitionChange[] = [];
  for (let p = 0; p < target.length; p++) {
    const from = current[p] ?? [];
    const to = target[p];
    if (from.length === to.length && from.every((n, i) => n === to[i])) continue;
    // With no current owner there is no state to copy (a new cluster, or R = 1 after a crash).
    const fills = from.length === 0 ? [] : to.filter((n) => !from.includes(n));
    const releaseFrom = from.length > 0 && from[0] !== to[0] ? from[0] : null;
    changes.push({ partition: p, from, to, fills, releaseFrom });
  }
  return changes;
}

/** Nodes that own anything in the table. */
export function ownerNodes(owners: Owners): Set<string> {
  const nodes = new Set<string>();
  for (const o of owners) for (const n of o) nodes.add(n);
  return nodes;
}
