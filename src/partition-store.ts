/**
 * Partition state: the flows of one partition, indexed by hour, and the
 * PartitionStore that holds the partitions one node hosts.
 *
 * Memory layout (the service keeps millions of flows): per hour, a Map from the
 * encoded flow key to a slot, and parallel arrays of keys and sums. No object per
 * flow; slots are never freed except by rolling back the batch that made them.
 */
import { LRUCache } from "lru-cache";
import { decodeFlowKey, FlowFilter, keyMatcher } from "./flow-key";

/**
 * One owner's share of a batch: the entries of one partition, flat, four values per
 * record: [key, hour, bytes_tx, bytes_rx, key, hour, ...]. Flat arrays keep a batch
 * of 1000 records to a few allocations, in process and on the wire.
 */
export interface SubBatch {
  partition: number;
  entries: (string | number)[];
  /** Dedupe key of this sub-batch (the request's Idempotency-Key). */
  idempotencyKey?: string;
}
export const ENTRY_STRIDE = 4;

/** Sorted flows of one hour, columnar: keys ascending, sums at the same index. */
export interface FlowRun {
  keys: string[];
  tx: number[];
  rx: number[];
}

export interface DedupeOptions {
  /** Keys remembered per partition. */
  max: number;
  /** Milliseconds a key is remembered. */
  ttlMs: number;
}

export class SumOverflowError extends Error {
  constructor(
    readonly flow: { src_app: string; dest_app: string; vpc_id: string; hour: number },
    readonly field: "bytes_tx" | "bytes_rx",
  ) {
    super(`${field} of flow ${JSON.stringify(flow)} would exceed ${Number.MAX_SAFE_INTEGER} (2^53-1)`);
    this.name = "SumOverflowError";
  }
}

/** The flows of one hour in one partition. */
export class HourTable {
  readonly slots = new Map<string, number>();
  readonly keys: string[] = [];
  readonly tx: number[] = [];
  readonly rx: number[] = [];
  /** Slots ordered by key; dropped whenever a key is added. */
  private order: Uint32Array | null = null;

  get size(): number {
    return this.keys.length;
  }

  /** The slot of key, created with zero sums when new. */
  slotOf(key: string): number {
    let slot = this.slots.get(key);
    if (slot === undefined) {
      slot = this.keys.length;
      this.slots.set(key, slot);
      this.keys.push(key);
      this.tx.push(0);
      this.rx.push(0);
      this.order = null;
    }
    return slot;
  }

  /** Remove the newest slot (rollback of the batch that created it). */
  popSlot(): void {
    const key = this.keys.pop() as string;
    this.tx.pop();
    this.rx.pop();
    this.slots.delete(key);
    this.order = null;
  }

  sortedSlots(): Uint32Array {
    if (this.order === null) {
      const keys = this.keys;
      const order = new Uint32Array(keys.length);
      for (let i = 0; i < order.length; i++) order[i] = i;
      order.sort((a, b) => (keys[a] < keys[b] ? -1 : 1));
      this.order = order;
    }
    return this.order;
  }

  /** The hour's flows in key order, optionally filtered. */
  read(matches: ((key: string) => boolean) | null): FlowRun {
    const order = this.sortedSlots();
    const n = order.length;
    const run: FlowRun = { keys: new Array(n), tx: new Array(n), rx: new Array(n) };
    let j = 0;
    for (let i = 0; i < n; i++) {
      const slot = order[i];
      const key = this.keys[slot];
      if (matches !== null && !matches(key)) continue;
      run.keys[j] = key;
      run.tx[j] = this.tx[slot];
      run.rx[j] = this.rx[slot];
      j++;
    }
    if (j < n) {
      run.keys.length = j;
      run.tx.length = j;
      run.rx.length = j;
    }
    return run;
  }
}

/** [hour, keys, bytes_tx sums, bytes_rx sums] of one hour, as a snapshot carries it. */
export type SnapshotHour = [hour: number, keys: string[], tx: number[], rx: number[]];

export interface SnapshotChunk {
  partition: number;
  hours: SnapshotHour[];
  /** Idempotency keys the partition remembers, with their remaining lifetime in ms. */
  dedupe: [key: string, ttlMs: number][];
}

/**
 * Upper bound of a key's bytes once JSON-encoded with its sums: a UTF-16 unit takes at
 * most 3 UTF-8 bytes, and a NUL is escaped as 6 characters but is 1 unit of 2 (it
 * always comes in a pair with 0x01/0x02, which escape to 6 too): 6 per unit is safe.
 */
export function estimateKeyBytes(key: string): number {
  return key.length * 3 + (key.indexOf("\u0000") === -1 ? 0 : key.length * 3) + 48;
}

/** One partition: hours -> HourTable, plus the idempotency keys it has applied. */
export class Partition {
  readonly hours = new Map<number, HourTable>();
  private dedupe: LRUCache<string, true> | null = null;
  /** Flows held (distinct keys over all hours). */
  flowCount = 0;

  constructor(readonly id: number, private readonly dedupeOptions: DedupeOptions) {}

  /** The remembered idempotency keys and their remaining lifetimes (ms), for snapshots. */
  dedupeEntries(): [key: string, ttlMs: number][] {
    if (this.dedupe === null) return [];
    const out: [string, number][] = [];
    for (const key of this.dedupe.keys()) {
      const ttl = this.dedupe.getRemainingTTL(key);
      if (ttl > 0) out.push([key, Math.ceil(ttl)]);
    }
    return out;
  }

  rememberFor(idempotencyKey: string, ttlMs: number): void {
    this.rememberApplied(idempotencyKey);
    this.dedupe!.set(idempotencyKey, true, { ttl: ttlMs });
  }

  hasApplied(idempotencyKey: string): boolean {
    return this.dedupe !== null && this.dedupe.has(idempotencyKey);
  }

  rememberApplied(idempotencyKey: string): void {
    if (this.dedupe === null) {
      // maxSize rather than max: lru-cache preallocates `max` slots, and most partitions never see a key.
      this.dedupe = new LRUCache<string, true>({ maxSize: this.dedupeOptions.max, sizeCalculation: () => 1, ttl: this.dedupeOptions.ttlMs });
    }
    this.dedupe.set(idempotencyKey, true);
  }

  hourTable(hour: number): HourTable {
    let table = this.hours.get(hour);
    if (table === undefined) {
      table = new HourTable();
      this.hours.set(hour, table);
    }
    return table;
  }

  read(hour: number, matches: ((key: string) => boolean) | null): FlowRun | null {
    const table = this.hours.get(hour);
    return table === undefined || table.size === 0 ? null : table.read(matches);
  }
}

/** Result of applying a batch: which sub-batches were skipped as already applied. */
export interface ApplyResult {
  applied: number;
  duplicates: number;
}

/**
 * The partitions hosted by one node. `apply` is atomic over everything it is given:
 * either every sub-batch is applied (or recognised as a duplicate) or, when a sum
 * would pass 2^53-1, nothing is and SumOverflowError is thrown.
 */
export class PartitionStore {
  readonly partitions = new Map<number, Partition>();

  constructor(private readonly dedupeOptions: DedupeOptions) {}

  partition(id: number): Partition {
    let p = this.partitions.get(id);
    if (p === undefined) {
      p = new Partition(id, this.dedupeOptions);
      this.partitions.set(id, p);
    }
    return p;
  }

  apply(batches: SubBatch[]): ApplyResult {
    // Undo log, filled only as far as needed: the applied (partition-local) prefix of
    // each sub-batch, and the tables in which a slot was created, in creation order.
    const appliedBatches: SubBatch[] = [];
    const created: { partition: Partition; table: HourTable }[] = [];
    let duplicates = 0;
    for (const batch of batches) {
      const partition = this.partition(batch.partition);
      if (batch.idempotencyKey !== undefined && partition.hasApplied(batch.idempotencyKey)) {
        duplicates++;
        continue;
      }
      const e = batch.entries;
      for (let i = 0; i < e.length; i += ENTRY_STRIDE) {
        const key = e[i] as string;
        const hour = e[i + 1] as number;
        const tx = e[i + 2] as number;
        const rx = e[i + 3] as number;
        const table = partition.hourTable(hour);
        const before = table.size;
        const slot = table.slotOf(key);
        if (table.size !== before) created.push({ partition, table });
        const newTx = table.tx[slot] + tx;
        const newRx = table.rx[slot] + rx;
        if (newTx > Number.MAX_SAFE_INTEGER || newRx > Number.MAX_SAFE_INTEGER) {
          appliedBatches.push({ partition: batch.partition, entries: e.slice(0, i) });
          this.undo(appliedBatches, created);
          const [src_app, dest_app, vpc_id] = decodeFlowKey(key);
          throw new SumOverflowError({ src_app, dest_app, vpc_id, hour }, newTx > Number.MAX_SAFE_INTEGER ? "bytes_tx" : "bytes_rx");
        }
        table.tx[slot] = newTx;
        table.rx[slot] = newRx;
      }
      appliedBatches.push(batch);
    }
    for (const { partition } of created) partition.flowCount++;
    for (const batch of appliedBatches) {
      if (batch.idempotencyKey !== undefined) this.partition(batch.partition).rememberApplied(batch.idempotencyKey);
    }
    return { applied: appliedBatches.length, duplicates };
  }

  private undo(appliedBatches: SubBatch[], created: { partition: Partition; table: HourTable }[]): void {
    for (let b = appliedBatches.length - 1; b >= 0; b--) {
      const { partition: id, entries: e } = appliedBatches[b];
      const partition = this.partition(id);
      for (let i = e.length - ENTRY_STRIDE; i >= 0; i -= ENTRY_STRIDE) {
        const table = partition.hourTable(e[i + 1] as number);
        const slot = table.slots.get(e[i] as string) as number;
        table.tx[slot] -= e[i + 2] as number;
        table.rx[slot] -= e[i + 3] as number;
      }
    }
    for (let c = created.length - 1; c >= 0; c--) created[c].table.popSlot();
  }

  /** The sorted flows of an hour over the given partitions (all hosted ones by default). */
  read(hour: number, filter: FlowFilter, partitionIds?: Iterable<number>): FlowRun {
    const matches = keyMatcher(filter);
    const runs: FlowRun[] = [];
    for (const id of partitionIds ?? this.partitions.keys()) {
      const run = this.partitions.get(id)?.read(hour, matches);
      if (run) runs.push(run);
    }
    return mergeRuns(runs);
  }

  /**
   * A point-in-time copy of one partition, in chunks of bounded encoded size (the
   * transport refuses large messages). Synchronous: no write can interleave.
   */
  snapshot(id: number, maxChunkBytes: number): SnapshotChunk[] {
    const p = this.partitions.get(id);
    const chunks: SnapshotChunk[] = [];
    let chunk: SnapshotChunk = { partition: id, hours: [], dedupe: p ? p.dedupeEntries() : [] };
    let bytes = chunk.dedupe.reduce((a, [k]) => a + k.length + 24, 64);
    if (p) {
      for (const [hour, table] of p.hours) {
        let run: SnapshotHour | null = null;
        for (let slot = 0; slot < table.size; slot++) {
          const key = table.keys[slot];
          const size = estimateKeyBytes(key);
          if (run === null || bytes + size > maxChunkBytes) {
            if (bytes + size > maxChunkBytes && (chunk.hours.length > 0 || chunk.dedupe.length > 0)) {
              chunks.push(chunk);
              chunk = { partition: id, hours: [], dedupe: [] };
              bytes = 64;
            }
            run = [hour, [], [], []];
            chunk.hours.push(run);
            bytes += 24;
          }
          run[1].push(key);
          run[2].push(table.tx[slot]);
          run[3].push(table.rx[slot]);
          bytes += size;
        }
      }
    }
    chunks.push(chunk);
    return chunks;
  }

  /** Add a snapshot chunk into a partition (sums add up: chunks of one snapshot never overlap). */
  loadChunk(chunk: SnapshotChunk): void {
    const p = this.partition(chunk.partition);
    for (const [hour, keys, tx, rx] of chunk.hours) {
      const table = p.hourTable(hour);
      for (let i = 0; i < keys.length; i++) {
        const before = table.size;
        const slot = table.slotOf(keys[i]);
        if (table.size !== before) p.flowCount++;
        table.tx[slot] += tx[i];
        table.rx[slot] += rx[i];
      }
    }
    for (const [key, ttl] of chunk.dedupe) p.rememberFor(key, ttl);
  }

  drop(id: number): void {
    this.partitions.delete(id);
  }

  flowCount(): number {
    let n = 0;
    for (const p of this.partitions.values()) n += p.flowCount;
    return n;
  }
}

/**
 * Merge sorted runs (keys distinct across runs: each flow lives in one partition)
 * into one sorted run, by a balanced tree of two-way merges.
 */
export function mergeRuns(runs: FlowRun[]): FlowRun {
  if (runs.length === 0) return { keys: [], tx: [], rx: [] };
  let level = runs;
  while (level.length > 1) {
    const next: FlowRun[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(i + 1 < level.length ? mergeTwo(level[i], level[i + 1]) : level[i]);
    }
    level = next;
  }
  return level[0];
}

function mergeTwo(a: FlowRun, b: FlowRun): FlowRun {
  const n = a.keys.length + b.keys.length;
  const out: FlowRun = { keys: new Array(n), tx: new Array(n), rx: new Array(n) };
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.keys.length && j < b.keys.length) {
    if (a.keys[i] < b.keys[j]) {
      out.keys[k] = a.keys[i];
      out.tx[k] = a.tx[i];
      out.rx[k++] = a.rx[i++];
    } else {
      out.keys[k] = b.keys[j];
      out.tx[k] = b.tx[j];
      out.rx[k++] = b.rx[j++];
    }
  }
  for (; i < a.keys.length; i++, k++) {
    out.keys[k] = a.keys[i];
    out.tx[k] = a.tx[i];
    out.rx[k] = a.rx[i];
  }
  for (; j < b.keys.length; j++, k++) {
    out.keys[k] = b.keys[j];
    out.tx[k] = b.tx[j];
    out.rx[k] = b.rx[j];
  }
  return out;
}
