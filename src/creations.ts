/**
 * What recent keyed sub-batches created, so that PartitionStore.revert can remove those
 * flows again (a cluster write refused by another owner node for a sum past 2^53-1 must
 * apply nothing anywhere), by idempotency key (a cluster write's sub-batches share one).
 * At least the last RECENT_CREATIONS sub-batches: a revert follows its apply within one
 * request.
 *
 * Flat per key, a segment a sub-batch, each key's room made at once: no object or string
 * per sub-batch or flow, no array grown by push. These live for some hundred requests, so
 * they outlive young collections, and whatever they allocate becomes old-space garbage on
 * a shard node. Measured on a store holding a shard's third of the bench's 1M flows (R=1,
 * one key an hour): with an object per created flow and a list per sub-batch, 95 live
 * bytes a held flow and 44 MB of old space; flat, 87 bytes and 42 MB (no keys at all: 76
 * bytes, 29 MB).
 */
import type { HourTable, SubBatch } from "./partition-store";

/** Keyed sub-batches whose created flows can still be removed (at least the last this many). */
const RECENT_CREATIONS = 8192;

/** PartitionStore.apply's undo list, flat: [partition, table, hour, key, sub-batch]* (a created slot each). */
export const CREATED_STRIDE = 5;
/** What take() returns, flat: [table, hour, key]*. */
export const CREATION_STRIDE = 3;

/**
 * The flows one idempotency key's sub-batches created, a segment a sub-batch:
 * [partition, n, (table, hour, key) * n] *, in creation order; `fill` values used.
 */
interface Creations {
  flows: (number | HourTable | string)[];
  fill: number;
  /** Segments in `flows`. */
  subBatches: number;
}

export class RecentCreations {
  private readonly creations = new Map<string, Creations>();
  /** Sub-batches over every entry of `creations`. */
  private creationSubBatches = 0;

  /** Keep what apply's keyed sub-batches created (its undo list), a segment each, every key's room made at once. */
  remember(created: unknown[]): void {
    // Values each key needs: 2 a segment, CREATION_STRIDE a flow (one key, most often).
    const need: (string | number)[] = [];
    for (let c = 0; c < created.length; ) {
      const batch = created[c + 4] as SubBatch;
      let n = 0;
      while (c < created.length && created[c + 4] === batch) {
        n++;
        c += CREATED_STRIDE;
      }
      const id = batch.idempotencyKey;
      if (id === undefined) continue;
      const at = need.indexOf(id);
      if (at >= 0) (need[at + 1] as number) += 2 + CREATION_STRIDE * n;
      else need.push(id, 2 + CREATION_STRIDE * n);
    }
    if (need.length === 0) return;
    for (let i = 0; i < need.length; i += 2) this.reserve(need[i] as string, need[i + 1] as number);
    for (let c = 0; c < created.length; ) {
      const batch = created[c + 4] as SubBatch;
      const id = batch.idempotencyKey;
      const entry = id === undefined ? undefined : this.creations.get(id)!;
      const f = entry?.flows;
      let at = entry === undefined ? 0 : entry.fill + 2;
      const from = at;
      while (c < created.length && created[c + 4] === batch) {
        if (f !== undefined) {
          f[at++] = created[c + 1] as HourTable;
          f[at++] = created[c + 2] as number;
          f[at++] = created[c + 3] as string;
        }
        c += CREATED_STRIDE;
      }
      if (entry === undefined || f === undefined) continue;
      f[entry.fill] = batch.partition;
      f[entry.fill + 1] = (at - from) / CREATION_STRIDE;
      entry.fill = at;
      entry.subBatches++;
      this.creationSubBatches++;
    }
    this.forgetOld();
  }

  /** Room for `n` more values in the creations of key `id` (made exactly: these outlive young collections). */
  private reserve(id: string, n: number): void {
    const entry = this.creations.get(id);
    if (entry === undefined) {
      this.creations.set(id, { flows: new Array(n), fill: 0, subBatches: 0 });
      return;
    }
    if (entry.fill + n <= entry.flows.length) return;
    const flows = new Array<number | HourTable | string>(entry.fill + n);
    for (let i = 0; i < entry.fill; i++) flows[i] = entry.flows[i];
    entry.flows = flows;
  }

  /** Oldest keys first, as long as the rest still hold RECENT_CREATIONS sub-batches. */
  private forgetOld(): void {
    for (const [id, entry] of this.creations) {
      if (this.creations.size === 1 || this.creationSubBatches - entry.subBatches < RECENT_CREATIONS) break;
      this.creations.delete(id);
      this.creationSubBatches -= entry.subBatches;
    }
  }

  /** The flows the sub-batch (partition, idempotencyKey) created, taken out of `creations`: [table, hour, key]*. */
  take(partition: number, id: string): (number | HourTable | string)[] {
    const entry = this.creations.get(id);
    if (entry === undefined) return [];
    const taken: (number | HourTable | string)[] = [];
    const f = entry.flows;
    let kept = 0;
    for (let i = 0; i < entry.fill; ) {
      const n = f[i + 1] as number;
      const end = i + 2 + CREATION_STRIDE * n;
      if (f[i] === partition) {
        for (let j = i + 2; j < end; j++) taken.push(f[j]);
        entry.subBatches--;
        this.creationSubBatches--;
      } else {
        for (let j = i; j < end; j++) f[kept++] = f[j];
      }
      i = end;
    }
    entry.fill = kept;
    f.length = kept;
    if (kept === 0) {
      this.creations.delete(id);
      this.creationSubBatches -= entry.subBatches;
    }
    return taken;
  }
}
