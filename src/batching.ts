/**
 * The write path's split: a validated batch of records becomes one SubBatch per
 * partition, and the sub-batches are grouped by the node that owns them; and the
 * transport's limits: sub-batches packed into messages, reads cut into pages.
 */
import { placedKey } from "./flow-key";
import { partitionOfKeyHash } from "./hash";
import { ENTRY_STRIDE, estimateKeyBytes, KEY_BYTES_BASE, KEY_BYTES_PER_UNIT, type SubBatch } from "./partition-store";

export interface FlowRecord {
  src_app: string;
  dest_app: string;
  vpc_id: string;
  hour: number;
  bytes_tx: number;
  bytes_rx: number;
}

/** A request's sub-batches, and their estimated encoded bytes in total (messageBytes of them). */
export interface PlacedBatches {
  batches: SubBatch[];
  bytes: number;
}

/**
 * One SubBatch per partition touched, in partition order, each carrying the batch's dedupe
 * key; and messageBytes of them, summed in the same loop (the write path needs the total
 * to know whether any sub-batch can be too large for a message; a pass of its own over
 * every key cost about as much as the placement's hash lookups of a record).
 *
 * plainKeys: whether every flow key is plain (PlacedKey.plain), which lets the group
 * codec write their JSON without JSON.stringify.
 *
 * Two passes: the records are placed and counted per partition, then each sub-batch's
 * entries are allocated at their exact size and filled. Grown by push, a sub-batch's
 * entries held room for about twice its flows, and the sub-batches are what a gateway
 * keeps while a request waits for its shards.
 */
export function placeRecords(records: readonly FlowRecord[], partitions: number, idempotencyKey?: string): PlacedBatches & { plainKeys: boolean } {
  const n = records.length;
  if (scratchParts.length < n) scratchParts = new Int32Array(Math.max(n, 2 * scratchParts.length));
  if (scratchCounts.length < partitions) scratchCounts = new Int32Array(partitions);
  const parts = scratchParts;
  const counts = scratchCounts;
  const keys = scratchKeys;
  counts.fill(0, 0, partitions);
  let keyUnits = 0;
  let plainKeys = true;
  for (let i = 0; i < n; i++) {
    const r = records[i];
    const placed = placedKey(r.src_app, r.dest_app, r.vpc_id);
    const p = partitionOfKeyHash(r.hour, placed.hash, partitions);
    keys[i] = placed.key;
    parts[i] = p;
    counts[p]++;
    keyUnits += placed.key.length;
    plainKeys = plainKeys && placed.plain;
  }
  const byPartition: SubBatch[] = new Array(partitions);
  const out: SubBatch[] = [];
  for (let p = 0; p < partitions; p++) {
    const c = counts[p];
    if (c === 0) continue;
    const entries: (string | number)[] = new Array(ENTRY_STRIDE * c);
    const batch: SubBatch = idempotencyKey === undefined ? { partition: p, entries } : { partition: p, entries, idempotencyKey };
    byPartition[p] = batch;
    out.push(batch);
    // From here on, where the partition's next entry goes.
    counts[p] = 0;
  }
  for (let i = 0; i < n; i++) {
    const r = records[i];
    const p = parts[i];
    const e = byPartition[p].entries;
    const at = counts[p];
    e[at] = keys[i];
    e[at + 1] = r.hour;
    e[at + 2] = r.bytes_tx;
    e[at + 3] = r.bytes_rx;
    counts[p] = at + ENTRY_STRIDE;
  }
  // subBatchBytes summed: 64 + the dedupe key per sub-batch, estimateKeyBytes per flow.
  const bytes = out.length * (64 + (idempotencyKey?.length ?? 0)) + KEY_BYTES_BASE * n + KEY_BYTES_PER_UNIT * keyUnits;
  return { batches: out, bytes, plainKeys };
}

/** placeRecords' scratch (it runs to completion: one set serves every call). */
let scratchParts = new Int32Array(1024);
let scratchCounts = new Int32Array(256);
const scratchKeys: string[] = [];

/** One SubBatch per partition touched, in partition order, each carrying the batch's dedupe key. */
export function splitByPartition(records: readonly FlowRecord[], partitions: number, idempotencyKey?: string): SubBatch[] {
  return placeRecords(records, partitions, idempotencyKey).batches;
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

/** Estimated encoded bytes of a sub-batch (an upper bound; see estimateKeyBytes). */
export function subBatchBytes(batch: SubBatch): number {
  let bytes = 64 + (batch.idempotencyKey?.length ?? 0);
  const e = batch.entries;
  for (let i = 0; i < e.length; i += ENTRY_STRIDE) bytes += estimateKeyBytes(e[i] as string);
  return bytes;
}

/** Estimated encoded bytes of sub-batches sent together. */
export function messageBytes(batches: readonly SubBatch[]): number {
  let bytes = 0;
  for (const b of batches) bytes += subBatchBytes(b);
  return bytes;
}

/**
 * Sub-batches no larger than maxBytes each, for a transport with a payload limit. A
 * sub-batch too large is cut into parts whose dedupe keys are derived from its own
 * (key, NUL, part number): the cut is deterministic, so a retry of the same request
 * produces the same parts and keys on every copy of the partition.
 */
export function splitOversized(batches: SubBatch[], maxBytes: number): SubBatch[] {
  const out: SubBatch[] = [];
  for (const b of batches) {
    if (subBatchBytes(b) <= maxBytes) {
      out.push(b);
      continue;
    }
    let part: (string | number)[] = [];
    let bytes = 64;
    let n = 0;
    const flush = () => {
      const key = b.idempotencyKey === undefined ? undefined : `${b.idempotencyKey}\u0000${n}`;
      out.push(key === undefined ? { partition: b.partition, entries: part } : { partition: b.partition, entries: part, idempotencyKey: key });
      n++;
      part = [];
      bytes = 64;
    };
    for (let i = 0; i < b.entries.length; i += ENTRY_STRIDE) {
      const size = estimateKeyBytes(b.entries[i] as string);
      if (part.length > 0 && bytes + size > maxBytes) flush();
      part.push(b.entries[i], b.entries[i + 1], b.entries[i + 2], b.entries[i + 3]);
      bytes += size;
    }
    flush();
  }
  return out;
}

/** Sub-batches grouped into messages of at most maxBytes (each sub-batch already fits). */
export function packMessages(batches: SubBatch[], maxBytes: number): SubBatch[][] {
  return packMessagesSized(batches, maxBytes).map((m) => m.batches);
}

/** packMessages, with each message's messageBytes (counted while packing, not again). */
export function packMessagesSized(batches: SubBatch[], maxBytes: number): PlacedBatches[] {
  const messages: PlacedBatches[] = [];
  let current: SubBatch[] = [];
  let bytes = 0;
  for (const b of batches) {
    const size = subBatchBytes(b);
    if (current.length > 0 && bytes + size > maxBytes) {
      messages.push({ batches: current, bytes });
      current = [];
      bytes = 0;
    }
    current.push(b);
    bytes += size;
  }
  if (current.length > 0) messages.push({ batches: current, bytes });
  return messages;
}

/**
 * Sub-batches as a message between nodes carries them. When they all hold the same
 * dedupe key (a request's), the key is written once for the message instead of once
 * per sub-batch: a 1000-record request spans ~250 partitions, so the key would be a
 * sixth of the message's bytes and of its serialising time.
 */
export interface SubBatchMessage {
  key?: string;
  batches: SubBatch[];
}

/**
 * A write between nodes (flow-shard's apply, replicate, revert): groups of sub-batches,
 * each group one request's (or one part of a request too large for a message), applied
 * atomically on its own. Concurrent requests share a message (src/write-coalescer.ts).
 */
export interface WriteMessage {
  groups: SubBatchMessage[];
}

export function toMessage(batches: SubBatch[]): SubBatchMessage {
  const key = batches.length > 0 ? batches[0].idempotencyKey : undefined;
  if (key === undefined || batches.some((b) => b.idempotencyKey !== key)) return { batches };
  return { key, batches: batches.map((b) => ({ partition: b.partition, entries: b.entries })) };
}

/** The sub-batches of a received message, each with its dedupe key again (they are the receiver's to change). */
export function fromMessage(message: SubBatchMessage): SubBatch[] {
  const { key, batches } = message;
  if (key !== undefined) for (const b of batches) if (b.idempotencyKey === undefined) b.idempotencyKey = key;
  return batches;
}

