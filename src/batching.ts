/**
 * The write path's split: a validated batch of records becomes one SubBatch per
 * partition, and the sub-batches are grouped by the node that owns them.
 */
import { placedKey } from "./flow-key";
import { partitionOfKeyHash } from "./hash";
import type { SubBatch } from "./partition-store";

export interface FlowRecord {
  src_app: string;
  dest_app: string;
  vpc_id: string;
  hour: number;
  bytes_tx: number;
  bytes_rx: number;
}

/** One SubBatch per partition touched, in partition order, each carrying the batch's dedupe key. */
export function splitByPartition(records: readonly FlowRecord[], partitions: number, idempotencyKey?: string): SubBatch[] {
  const byPartition: (SubBatch | undefined)[] = new Array(partitions);
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const hour = r.hour;
    const placed = placedKey(r.src_app, r.dest_app, r.vpc_id);
    const p = partitionOfKeyHash(hour, placed.hash, partitions);
    let batch = byPartition[p];
    if (batch === undefined) {
      batch = idempotencyKey === undefined ? { partition: p, entries: [] } : { partition: p, entries: [], idempotencyKey };
      byPartition[p] = batch;
    }
    batch.entries.push(placed.key, hour, r.bytes_tx, r.bytes_rx);
  }
  const out: SubBatch[] = [];
  for (const b of byPartition) if (b !== undefined) out.push(b);
  return out;
}

/** Sub-batches grouped by the primary of their partition (owners[p][0]). */
export function groupByPrimary(batches: readonly SubBatch[], owners: readonly (readonly string[])[]): Map<string | undefined, SubBatch[]> {
  const byNode = new Map<string | undefined, SubBatch[]>();
  for (const b of batches) {
    const node = owners[b.partition]?.[0];
    let list = byNode.get(node);
    if (list === undefined) byNode.set(node, (list = []));
    list.push(b);
  }
  return byNode;
}

/** Partitions grouped by their primary node: the fan-out of a read. */
export function partitionsByPrimary(owners: readonly (readonly string[])[]): Map<string | undefined, number[]> {
  const byNode = new Map<string | undefined, number[]>();
  owners.forEach((o, p) => {
    const node = o[0];
    let list = byNode.get(node);
    if (list === undefined) byNode.set(node, (list = []));
    list.push(p);
  });
  return byNode;
}
