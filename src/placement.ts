/**
 * Placement of the P partitions (the actors) onto the live shard nodes. Pure: no
 * Moleculer, no I/O, and the same result on every node for the same input.
 *
 * Why a consistent-hashing ring:
 * - Each partition sits at a fixed, evenly spaced ring position (p * 2^52 / P, not a
 *   hash), and each node contributes VIRTUAL_NODES points derived from hashing its id.
 *   A partition's owners are the first R distinct nodes clockwise from its position.
 * - A node's points depend only on its own id, so every partition ranks the nodes in an
 *   order that does not depend on who else is present. Adding a node can therefore only
 *   move partitions TO it, and removing one only moves the partitions it held: minimal
 *   movement, with no coordination or history.
 * - Many virtual nodes per node cut the variance of each node's share of the ring, and
 *   even spacing of the partitions avoids adding a second layer of hash noise.
 *
 * Why that is not the whole story: with few partitions per node (P = 256 over 16 nodes
 * is 16 each) the count of partitions landing in a node's arcs still fluctuates by about
 * sqrt(P/n), whatever V is, and this holds for any placement that depends only on the
 * membership (ring, rendezvous, ...). Measured max/mean primaries for the pure ring: up
 * to 1.5-1.8 at P = 256 with 10-16 nodes (over half of random 3-16 node sets exceed
 * 1.25, for every V tried from 64 to 1024) and about 1.5 at 200 nodes / P = 4096. Meeting
 * "max/mean <= 1.25" and "a join moves about P/(n+1) primaries and nothing else" at the
 * same time therefore needs the previous table: `rebalancePartitions` starts from the
 * previous placement (or from the ring when there is none), keeps every live primary it
 * can, and moves only the primaries that balance requires (bounded loads: every node
 * gets floor(P/n) or ceil(P/n)), choosing destinations by the ring's preference order.
 * From a balanced table, a join moves primaries only to the new node and a leave moves
 * only the leaver's primaries.
 */
import { fmix32, hash32 } from "./hash";

/** owners[p] = [primary, replica1, ...]: R distinct node ids (R capped by node count). */
export type Owners = string[][];

/**
 * Virtual nodes per node. Measured over 3-16 nodes: 64-128 is best for P = 256 (where
 * the per-partition counting noise dominates), 256-512 for P >= 1024; 128 is the
 * compromise for the default P = 256. No V brings the pure ring to max/mean <= 1.25 at
 * P = 256 (the unit test prints the ring's figures next to rebalancePartitions').
 */
export const VIRTUAL_NODES = 128;

/** Ring positions are integers in [0, 2^52): two 32-bit hashes combined, exact in a double. */
const RING_SPAN = 2 ** 52;
const SEED_HI = 0x2f6b1c3d;
const SEED_LO = 0x5e9a47b1;

function checkCounts(partitions: number, replicas: number): void {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new Error(`placement: partitions must be an integer >= 1, got ${String(partitions)}`);
  }
  if (!Number.isInteger(replicas) || replicas < 1) {
    throw new Error(`placement: replicas must be an integer >= 1, got ${String(replicas)}`);
  }
}

/** Sorted (by UTF-16 code units, locale-independent), de-duplicated node ids. */
function normalizeNodes(nodeIds: Iterable<string>): string[] {
  if (nodeIds == null || typeof (nodeIds as Iterable<string>)[Symbol.iterator] !== "function") {
    throw new Error("placement: nodeIds must be an iterable of strings");
  }
  const set = new Set<string>();
  for (const id of nodeIds) {
    if (typeof id !== "string" || id.length === 0) {
      throw new Error(`placement: node ids must be non-empty strings, got ${JSON.stringify(id)}`);
    }
    set.add(id);
  }
  return [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function emptyOwners(partitions: number): Owners {
  return Array.from({ length: partitions }, () => []);
}

/** Ring position of partition p: evenly spaced, identical on every node. */
function partitionPosition(p: number, partitions: number): number {
  return Math.floor((p * RING_SPAN) / partitions);
}

/**
 * For every partition, the first `count` distinct node indices (into `nodes`) walking
 * clockwise from the partition's position. `nodes` must be sorted and de-duplicated.
 */
function ringPreferences(nodes: string[], partitions: number, count: number): number[][] {
  const n = nodes.length;
  const size = n * VIRTUAL_NODES;
  const pos = new Float64Array(size);
  const owner = new Int32Array(size);
  for (let i = 0; i < n; i++) {
    // Hash the id once per seed; each virtual node mixes its index into both words
    // (fmix32 is a bijection, so a node's virtual nodes never coincide).
    const hi = hash32(nodes[i], SEED_HI);
    const lo = hash32(nodes[i], SEED_LO);
    for (let v = 0; v < VIRTUAL_NODES; v++) {
      const k = i * VIRTUAL_NODES + v;
      pos[k] = fmix32((hi + Math.imul(v, 0x9e3779b9)) >>> 0) * 2 ** 20 + (fmix32((lo ^ Math.imul(v + 1, 0x7feb352d)) >>> 0) >>> 12);
      owner[k] = i;
    }
  }
  // Sort once; equal positions (practically never) are ordered by node id, so the ring
  // is the same whatever order the ids arrived in.
  const order = new Int32Array(size);
  for (let k = 0; k < size; k++) order[k] = k;
  order.sort((a, b) => pos[a] - pos[b] || owner[a] - owner[b]);
  const ringPos = new Float64Array(size);
  const ringOwner = new Int32Array(size);
  for (let k = 0; k < size; k++) {
    ringPos[k] = pos[order[k]];
    ringOwner[k] = owner[order[k]];
  }

  const want = Math.min(count, n);
  const seen = new Int32Array(n).fill(-1);
  const prefs: number[][] = new Array(partitions);
  let j = 0; // first ring point at or after the current partition's position (a sweep)
  for (let p = 0; p < partitions; p++) {
    const at = partitionPosition(p, partitions);
    while (j < size && ringPos[j] < at) j++;
    const list: number[] = [];
    for (let step = 0; list.length < want; step++) {
      const node = ringOwner[(j + step) % size];
      if (seen[node] !== p) {
        seen[node] = p;
        list.push(node);
      }
    }
    prefs[p] = list;
  }
  return prefs;
}

/**
 * The pure consistent-hashing placement: owners[p] = the first min(R, n) distinct nodes
 * clockwise from partition p on the ring. Depends only on the set of node ids.
 */
export function placePartitions(nodeIds: Iterable<string>, partitions: number, replicas: number): Owners {
  checkCounts(partitions, replicas);
  const nodes = normalizeNodes(nodeIds);
  if (nodes.length === 0) return emptyOwners(partitions);
  const prefs = ringPreferences(nodes, partitions, Math.min(replicas, nodes.length));
  return prefs.map((list) => list.map((i) => nodes[i]));
}

/**
 * The placement to publish: balanced (every node has floor(P/n) or ceil(P/n) primaries)
 * with the fewest primary moves relative to `previous` (null or [] = no previous table:
 * start from the ring). A live previous primary keeps its partition unless its node is
 * over its quota; freed partitions go first to a live previous owner (which already has
 * the data), then along the ring's preference order. Replicas follow the ring's order
 * for the current membership, skipping the primary. Depends on (previous, node set) only.
 */
export function rebalancePartitions(
  previous: Owners | null | undefined,
  nodeIds: Iterable<string>,
  partitions: number,
  replicas: number,
): Owners {
  checkCounts(partitions, replicas);
  const nodes = normalizeNodes(nodeIds);
  const n = nodes.length;
  if (n === 0) return emptyOwners(partitions);
  const hasPrevious = previous != null && previous.length > 0;
  if (hasPrevious && previous.length !== partitions) {
    throw new Error(`placement: previous table has ${previous.length} partitions, expected ${partitions}`);
  }
  const r = Math.min(replicas, n);
  // One spare preference so that r - 1 replicas remain after skipping any primary.
  const prefs = ringPreferences(nodes, partitions, Math.min(n, r + 1));
  const index = new Map<string, number>();
  nodes.forEach((id, i) => index.set(id, i));

  // Live previous owners of each partition, in their previous order (primary first).
  const prevLive: number[][] = new Array(partitions);
  const primary = new Int32Array(partitions).fill(-1);
  const count = new Int32Array(n);
  for (let p = 0; p < partitions; p++) {
    if (hasPrevious) {
      const list: number[] = [];
      const row = previous[p] ?? [];
      for (const id of row) {
        const i = index.get(id);
        if (i !== undefined && !list.includes(i)) list.push(i);
      }
      prevLive[p] = list;
      const first = row.length > 0 ? index.get(row[0]) : undefined;
      if (first !== undefined) primary[p] = first;
    } else {
      prevLive[p] = prefs[p];
      primary[p] = prefs[p][0];
    }
    if (primary[p] >= 0) count[primary[p]]++;
  }

  // Quotas: floor(P/n) each, plus one for the (P mod n) nodes currently holding the most
  // (ties by id), which minimises how many primaries must leave over-quota nodes.
  const base = Math.floor(partitions / n);
  const extra = partitions % n;
  const byLoad = Array.from({ length: n }, (_, i) => i).sort((a, b) => count[b] - count[a] || a - b);
  const deficit = new Int32Array(n);
  byLoad.forEach((node, rank) => {
    deficit[node] = base + (rank < extra ? 1 : 0) - count[node];
  });

  // Where a freed partition p would rather go: its live previous owners, then the ring.
  const rank = (p: number, exclude: number): number => {
    const live = prevLive[p];
    for (let k = 0; k < live.length; k++) if (live[k] !== exclude && deficit[live[k]] > 0) return k;
    const ring = prefs[p];
    for (let k = 0; k < ring.length; k++) if (ring[k] !== exclude && deficit[ring[k]] > 0) return live.length + k;
    return Number.MAX_SAFE_INTEGER;
  };

  const pool: number[] = [];
  for (let p = 0; p < partitions; p++) if (primary[p] < 0) pool.push(p);
  const held: number[][] = Array.from({ length: n }, () => []);
  for (let p = 0; p < partitions; p++) if (primary[p] >= 0) held[primary[p]].push(p);
  for (let node = 0; node < n; node++) {
    const excess = -deficit[node];
    if (excess <= 0) continue;
    // Release the partitions that have the best-placed alternative; ties by partition.
    const scored = held[node].map((p) => ({ p, score: rank(p, node) }));
    scored.sort((a, b) => a.score - b.score || a.p - b.p);
    for (let k = 0; k < excess; k++) {
      primary[scored[k].p] = -1;
      pool.push(scored[k].p);
    }
    deficit[node] = 0;
  }
  pool.sort((a, b) => a - b);

  for (const p of pool) {
    let chosen = -1;
    for (const c of prevLive[p]) if (deficit[c] > 0) { chosen = c; break; }
    if (chosen < 0) for (const c of prefs[p]) if (deficit[c] > 0) { chosen = c; break; }
    if (chosen < 0) {
      for (let c = 0; c < n; c++) if (deficit[c] > 0 && (chosen < 0 || deficit[c] > deficit[chosen])) chosen = c;
    }
    primary[p] = chosen;
    deficit[chosen]--;
  }

  const owners: Owners = new Array(partitions);
  for (let p = 0; p < partitions; p++) {
    const row = [nodes[primary[p]]];
    for (const c of prefs[p]) {
      if (row.length >= r) break;
      if (c !== primary[p]) row.push(nodes[c]);
    }
    owners[p] = row;
  }
  return owners;
}

/** node -> number of partitions it is primary for. Nodes in `nodeIds` with none appear as 0. */
export function primaryCounts(owners: Owners, nodeIds: Iterable<string> = []): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of nodeIds) counts.set(id, 0);
  for (const row of owners) {
    if (row.length > 0) counts.set(row[0], (counts.get(row[0]) ?? 0) + 1);
  }
  return counts;
}

/** How many partitions a node holds as primary and as replica. */
export function rolesOf(owners: Owners, nodeId: string): { primaries: number; replicas: number } {
  let primaries = 0;
  let replicas = 0;
  for (const row of owners) {
    const i = row.indexOf(nodeId);
    if (i === 0) primaries++;
    else if (i > 0) replicas++;
  }
  return { primaries, replicas };
}

/** Partitions short of owners: those without a primary, and those with fewer than `copies` (the former included). */
export function partitionsShort(owners: Owners, copies: number): { withoutPrimary: number[]; underReplicated: number[] } {
  const withoutPrimary: number[] = [];
  const underReplicated: number[] = [];
  owners.forEach((row, p) => {
    if (row.length === 0) withoutPrimary.push(p);
    if (row.length < copies) underReplicated.push(p);
  });
  return { withoutPrimary, underReplicated };
}

/**
 * Partitions whose primary differs between two placements of the same P: {partition,
 * from, to}; "" stands for "no primary" (an empty owner list).
 */
export function movedPrimaries(before: Owners, after: Owners): { partition: number; from: string; to: string }[] {
  if (before.length !== after.length) {
    throw new Error(`placement: cannot compare tables of ${before.length} and ${after.length} partitions`);
  }
  const moved: { partition: number; from: string; to: string }[] = [];
  for (let p = 0; p < before.length; p++) {
    const from = before[p][0] ?? "";
    const to = after[p][0] ?? "";
    if (from !== to) moved.push({ partition: p, from, to });
  }
  return moved;
}
