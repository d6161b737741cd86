/**
 * Partition state: the flows of one partition, indexed by hour, and the
 * PartitionStore that holds the partitions one node hosts.
 *
 * Memory layout (the service keeps millions of flows): per hour and partition, an
 * HourTable of keys by slot and interleaved sums (plus a key -> slot Map once it is
 * not small). No object per flow; slots are never freed except by rolling back the
 * batch that made them. Keys are flat strings, one per distinct key (internKey): shared
 * by every hour and partition holding the flow, whether it came from this node's write
 * path or from another node's message.
 */
import { DedupeWindows } from "./dedupe-window";
import { HourTable, mergeRuns, tick, type FlowRun } from "./hour-table";
import { HourViews, readView } from "./hour-view";
import { CREATED_STRIDE, CREATION_STRIDE, RecentCreations } from "./creations";

export { HourTable, mergeRuns, type FlowRun } from "./hour-table";
import { decodeFlowKey, FlowFilter, internKey, keyMatcher } from "./flow-key";

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

/** A flow a revert removed: [partition, hour, key]. */
export type RemovedFlow = [partition: number, hour: number, key: string];


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


/** Views are built for hours with at least this many flows; smaller hours merge fast enough. */
const VIEW_MIN_FLOWS = 512;

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
 * most 6 bytes (a control character in the data is escaped as \u001f; anything else
 * is at most 3 UTF-8 bytes), plus room for the numbers.
 */
export function estimateKeyBytes(key: string): number {
  return key.length * KEY_BYTES_PER_UNIT + KEY_BYTES_BASE;
}
/** estimateKeyBytes is linear in the key's length: a sum over keys needs only their total length. */
export const KEY_BYTES_PER_UNIT = 6;
export const KEY_BYTES_BASE = 48;

/** One partition: hours -> HourTable, plus the idempotency keys it has applied (in the store's shared windows). */
export class Partition {
  readonly hours = new Map<number, HourTable>();
  /** Flows held (distinct keys over all hours). */
  flowCount = 0;

  constructor(
    readonly id: number,
    private readonly windows: DedupeWindows,
    private readonly ttlMs: number,
  ) {}

  /** The remembered idempotency keys and their remaining lifetimes (ms), for snapshots. */
  dedupeEntries(now = Date.now()): [key: string, ttlMs: number][] {
    return this.windows.entriesOf(this.id, now);
  }

  rememberFor(idempotencyKey: string, ttlMs: number, now = Date.now()): void {
    this.windows.remember(this.id, idempotencyKey, now + ttlMs, now);
  }

  hasApplied(idempotencyKey: string, now = Date.now()): boolean {
    return this.windows.has(this.id, idempotencyKey, now);
  }

  forget(idempotencyKey: string): void {
    this.windows.delete(this.id, idempotencyKey);
  }

  rememberApplied(idempotencyKey: string, now = Date.now()): void {
    this.windows.remember(this.id, idempotencyKey, now + this.ttlMs, now);
  }

  /** The table of hour, made when missing with room for `capacity` keys. */
  hourTable(hour: number, capacity?: number): HourTable {
    let table = this.hours.get(hour);
    if (table === undefined) {
      table = new HourTable(capacity);
      this.hours.set(hour, table);
    }
    return table;
  }

  read(hour: number, matches: ((key: string) => boolean) | null): FlowRun | null {
    const table = this.hours.get(hour);
    return table === undefined || table.size === 0 ? null : table.read(matches);
  }
}

/** Entries from index i on with the same hour as entry i, in a row (a new table's keys from this batch, at most). */
function runOfHour(e: (string | number)[], i: number): number {
  const hour = e[i + 1];
  let n = 1;
  for (let j = i + ENTRY_STRIDE; j < e.length && e[j + 1] === hour; j += ENTRY_STRIDE) n++;
  return n;
}

/** Result of applying a batch: which sub-batches were skipped as already applied. */
export interface ApplyResult {
  applied: number;
  duplicates: number;
  /** Records in the applied (not duplicate) sub-batches. */
  records: number;
}

/**
 * The partitions hosted by one node. `apply` is atomic over everything it is given:
 * either every sub-batch is applied (or recognised as a duplicate) or, when a sum
 * would pass 2^53-1, nothing is and SumOverflowError is thrown.
 */
export class PartitionStore {
  readonly partitions = new Map<number, Partition>();

  /** Every partition's idempotency window, in one structure (src/dedupe-window.ts says why). */
  private readonly windows: DedupeWindows;

  constructor(private readonly dedupeOptions: DedupeOptions) {
    this.windows = new DedupeWindows(dedupeOptions.max);
  }

  partition(id: number): Partition {
    let p = this.partitions.get(id);
    if (p === undefined) {
      p = new Partition(id, this.windows, this.dedupeOptions.ttlMs);
      this.partitions.set(id, p);
    }
    return p;
  }

  /**
   * `opts.now`: the clock for the idempotency window (a replayed log record passes its
   * own time); `opts.replay`: the sub-batches were applied before (from the log), so
   * none is a duplicate; `opts.applied` collects the sub-batches applied (not skipped).
   */
  apply(batches: SubBatch[], opts?: { now?: number; replay?: boolean; applied?: SubBatch[] }): ApplyResult {
    // Undo log, filled only as far as needed: the applied (partition-local) prefix of
    // each sub-batch, and the tables in which a slot was created, in creation order
    // (flat, CREATED_STRIDE values a slot: no object per created flow).
    const appliedBatches: SubBatch[] = [];
    const created: (Partition | HourTable | number | string | SubBatch)[] = [];
    let duplicates = 0;
    const stamp = tick();
    const now = opts?.now ?? Date.now();
    const checkDuplicates = opts?.replay !== true;
    for (const batch of batches) {
      const partition = this.partition(batch.partition);
      if (checkDuplicates && batch.idempotencyKey !== undefined && partition.hasApplied(batch.idempotencyKey, now)) {
        duplicates++;
        continue;
      }
      const e = batch.entries;
      let lastHour = -1;
      let table: HourTable | undefined;
      for (let i = 0; i < e.length; i += ENTRY_STRIDE) {
        const key = e[i] as string;
        const hour = e[i + 1] as number;
        const tx = e[i + 2] as number;
        const rx = e[i + 3] as number;
        if (hour !== lastHour) {
          table = partition.hours.get(hour) ?? partition.hourTable(hour, runOfHour(e, i));
          lastHour = hour;
        }
        let slot = table!.find(key);
        if (slot < 0) {
          const shared = internKey(key);
          slot = table!.add(shared);
          created.push(partition, table!, hour, shared, batch);
        }
        const sums = table!.sums;
        const newTx = sums[2 * slot] + tx;
        const newRx = sums[2 * slot + 1] + rx;
        if (newTx > Number.MAX_SAFE_INTEGER || newRx > Number.MAX_SAFE_INTEGER) {
          appliedBatches.push({ partition: batch.partition, entries: e.slice(0, i) });
          this.undo(appliedBatches, created);
          const [src_app, dest_app, vpc_id] = decodeFlowKey(key);
          throw new SumOverflowError({ src_app, dest_app, vpc_id, hour }, newTx > Number.MAX_SAFE_INTEGER ? "bytes_tx" : "bytes_rx");
        }
        sums[2 * slot] = newTx;
        sums[2 * slot + 1] = newRx;
        table!.stamp = stamp;
      }
      appliedBatches.push(batch);
    }
    for (let c = 0; c < created.length; c += CREATED_STRIDE) (created[c] as Partition).flowCount++;
    if (created.length > 0) this.creations.remember(created);
    let records = 0;
    for (const batch of appliedBatches) {
      records += batch.entries.length / ENTRY_STRIDE;
      if (batch.idempotencyKey !== undefined) this.partition(batch.partition).rememberApplied(batch.idempotencyKey, now);
    }
    opts?.applied?.push(...appliedBatches);
    return { applied: appliedBatches.length, duplicates, records };
  }

  /** What recent keyed sub-batches created, for revert() (src/creations.ts). */
  private readonly creations = new RecentCreations();

  /**
   * Undo keyed sub-batches applied earlier (a cluster write refused by another owner
   * node for a sum past 2^53-1 must apply nothing anywhere): subtract their entries,
   * remove the flows they created if nothing else has added to them since, and forget
   * their keys. A sub-batch this store never applied is skipped; `undone` collects the
   * others (for the log). `now`: the idempotency window's clock (a replayed record's own).
   */
  revert(batches: SubBatch[], now = Date.now(), undone?: SubBatch[], removed?: RemovedFlow[]): number {
    let reverted = 0;
    for (const batch of batches) {
      const partition = this.partitions.get(batch.partition);
      const key = batch.idempotencyKey;
      if (partition === undefined || key === undefined || !partition.hasApplied(key, now)) continue;
      undone?.push(batch);
      const e = batch.entries;
      for (let i = 0; i < e.length; i += ENTRY_STRIDE) {
        const table = partition.hours.get(e[i + 1] as number);
        const slot = table === undefined ? -1 : table.find(e[i] as string);
        if (slot < 0) continue;
        table!.sums[2 * slot] -= e[i + 2] as number;
        table!.sums[2 * slot + 1] -= e[i + 3] as number;
        table!.stamp = tick();
      }
      const created = this.creations.take(batch.partition, key);
      for (let c = 0; c < created.length; c += CREATION_STRIDE) {
        const table = created[c] as HourTable;
        const flowKey = created[c + 2] as string;
        const slot = table.find(flowKey);
        if (slot >= 0 && table.tx(slot) === 0 && table.rx(slot) === 0) {
          table.removeSlot(slot);
          partition.flowCount--;
          removed?.push([batch.partition, created[c + 1] as number, flowKey]);
        }
      }
      partition.forget(key);
      reverted++;
    }
    return reverted;
  }

  /**
   * Remove flows a revert removed (as the log recorded them), if they are still at zero:
   * a replayed revert cannot know which flows the reverted request created once those
   * were in a checkpoint.
   */
  removeEmpty(flows: RemovedFlow[]): void {
    for (const [id, hour, key] of flows) {
      const partition = this.partitions.get(id);
      const table = partition?.hours.get(hour);
      const slot = table === undefined ? -1 : table.find(key);
      if (slot >= 0 && table!.tx(slot) === 0 && table!.rx(slot) === 0) {
        table!.removeSlot(slot);
        partition!.flowCount--;
        table!.stamp = tick();
      }
    }
  }

  private undo(appliedBatches: SubBatch[], created: unknown[]): void {
    for (let b = appliedBatches.length - 1; b >= 0; b--) {
      const { partition: id, entries: e } = appliedBatches[b];
      const partition = this.partition(id);
      for (let i = e.length - ENTRY_STRIDE; i >= 0; i -= ENTRY_STRIDE) {
        const table = partition.hourTable(e[i + 1] as number);
        const slot = table.find(e[i] as string);
        table.sums[2 * slot] -= e[i + 2] as number;
        table.sums[2 * slot + 1] -= e[i + 3] as number;
        table.stamp = tick();
      }
    }
    for (let c = created.length - CREATED_STRIDE; c >= 0; c -= CREATED_STRIDE) (created[c + 1] as HourTable).popSlot();
  }

  /** Merged views of recently read hours (src/hour-view.ts). */
  private readonly views = new HourViews();
  /** Stamp of the last drop(): an hour's version must change when a partition leaves. */
  private dropStamp = 0;

  /**
   * The sorted flows of an hour over the given partitions (all hosted ones by default).
   * Without a filter, the keys are a frozen array shared between reads (do not modify).
   */
  read(hour: number, filter: FlowFilter, partitionIds?: Iterable<number>): FlowRun {
    const matches = keyMatcher(filter);
    const ids = partitionIds === undefined ? Array.from(this.partitions.keys()) : Array.from(partitionIds);
    const tables: (HourTable | undefined)[] = new Array(ids.length);
    let flows = 0;
    for (let i = 0; i < ids.length; i++) {
      const table = this.partitions.get(ids[i])?.hours.get(hour);
      tables[i] = table;
      if (table !== undefined) flows += table.size;
    }
    if (flows < VIEW_MIN_FLOWS) {
      const runs: FlowRun[] = [];
      for (const table of tables) if (table !== undefined && table.size > 0) runs.push(table.read(matches));
      return mergeRuns(runs);
    }
    return readView(this.views.get(hour, ids, tables), matches);
  }

  /**
   * A number that changes whenever the data of hour (over the given partitions, all
   * hosted ones by default) changes: a key or a sum, a partition dropped or loaded.
   * For caches of rendered reads: equal versions mean equal read results.
   */
  hourVersion(hour: number, partitionIds?: Iterable<number>): number {
    let version = this.dropStamp;
    for (const id of partitionIds ?? this.partitions.keys()) {
      const table = this.partitions.get(id)?.hours.get(hour);
      if (table !== undefined && table.stamp > version) version = table.stamp;
    }
    return version;
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
          run[2].push(table.tx(slot));
          run[3].push(table.rx(slot));
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
      const table = p.hourTable(hour, keys.length);
      for (let i = 0; i < keys.length; i++) {
        let slot = table.find(keys[i]);
        if (slot < 0) {
          slot = table.add(internKey(keys[i]));
          p.flowCount++;
        }
        table.sums[2 * slot] += tx[i];
        table.sums[2 * slot + 1] += rx[i];
        table.stamp = tick();
      }
    }
    for (const [key, ttl] of chunk.dedupe) p.rememberFor(key, ttl);
  }

  /**
   * Remove every hour before `hour` from the given partitions (all by default). Returns
   * the flows removed where `counted(partition)` holds (a node counts its primaries,
   * so a gateway can add up nodes) and the hours removed.
   */
  trimBefore(hour: number, partitionIds?: Iterable<number>, counted: (partition: number) => boolean = () => true): { flows: number; hours: number[] } {
    let flows = 0;
    const hours = new Set<number>();
    for (const id of partitionIds ?? [...this.partitions.keys()]) {
      const p = this.partitions.get(id);
      if (p === undefined) continue;
      for (const [h, table] of p.hours) {
        if (h >= hour) continue;
        p.hours.delete(h);
        p.flowCount -= table.size;
        if (counted(id)) flows += table.size;
        hours.add(h);
        this.views.delete(h);
      }
    }
    if (hours.size > 0) this.dropStamp = tick();
    return { flows, hours: [...hours].sort((a, b) => a - b) };
  }

  /**
   * Calls visit for every flow of `hour` in one partition (in no particular order): the
   * per-group sums of top-N queries are added up from it (src/query/shard-queries.ts).
   */
  forEachFlow(partitionId: number, hour: number, visit: (key: string, tx: number, rx: number) => void): void {
    const table = this.partitions.get(partitionId)?.hours.get(hour);
    if (table === undefined) return;
    const { keys, sums } = table;
    for (let slot = 0, n = table.size; slot < n; slot++) visit(keys[slot], sums[2 * slot], sums[2 * slot + 1]);
  }

  /** The oldest and newest hour holding a flow in the given partitions (null: none). */
  hourBounds(partitionIds: Iterable<number>): { oldest: number | null; newest: number | null } {
    let oldest: number | null = null;
    let newest: number | null = null;
    for (const id of partitionIds) {
      const p = this.partitions.get(id);
      if (p === undefined) continue;
      for (const [hour, table] of p.hours) {
        if (table.size === 0) continue;
        if (oldest === null || hour < oldest) oldest = hour;
        if (newest === null || hour > newest) newest = hour;
      }
    }
    return { oldest, newest };
  }

  /** The oldest hour held (null: none). */
  oldestHour(): number | null {
    let oldest: number | null = null;
    for (const p of this.partitions.values()) for (const h of p.hours.keys()) if (oldest === null || h < oldest) oldest = h;
    return oldest;
  }

  /** The node's idempotency keys, each once, with expiry and partitions (DedupeWindows.keys). */
  windowKeys(): ReturnType<DedupeWindows["keys"]> {
    return this.windows.keys();
  }

  /** Partition `p` applied `key`, remembered until `expires` (a checkpoint of the windows loaded back). */
  rememberWindowKey(p: number, key: string, expires: number, now: number): void {
    if (expires > now) this.windows.remember(p, key, expires, now);
  }

  /** Partition `id` forgets every idempotency key, its flows stay (replaying a drop its checkpoint already covers). */
  forgetWindow(id: number): void {
    this.windows.dropPartition(id);
  }

  drop(id: number): void {
    this.partitions.delete(id);
    this.windows.dropPartition(id);
    this.dropStamp = tick();
  }

  flowCount(): number {
    let n = 0;
    for (const p of this.partitions.values()) n += p.flowCount;
    return n;
  }
}
