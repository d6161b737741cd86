/**
 * A node's idempotency windows: per partition, the dedupe keys it applied, each
 * remembered until its expiry, at most `max` of them per partition (its oldest go first).
 *
 * One Map from key to an entry holding the key's expiry and a bitset of the partitions
 * that applied it. Why: a cluster write carries one key for all its sub-batches (some
 * 250 partitions for a 1000-record request), and a Map per partition made every copy
 * look the key up and store it 250 times: ~330 ns per lookup in 170 maps of thousands
 * of keys (cache misses), 15% of a shard node's CPU, and most of its memory per flow.
 * Now a group's parts share one lookup, and a key costs one entry per node.
 *
 * Expiry: an entry lives until the latest expiry any of its partitions was given (a key
 * applied again by another partition a moment later keeps the others a moment longer:
 * a window is a lower bound). Entries are in insertion order, moved to the back when
 * their expiry grows, so expired ones are dropped from the front, O(1) per key.
 * Bound: each partition keeps a queue of its entries in the order it remembered them;
 * past `max`, its oldest is cleared from the entry (and the entry dropped once no
 * partition holds it). Queues are compacted when mostly stale, so they stay O(max).
 */
interface Entry {
  key: string;
  expires: number;
  /** Bitset of partitions, 32 per word. */
  bits: number[];
  partitions: number;
}

interface Queue {
  entries: Entry[];
  head: number;
}

function hasBit(e: Entry, p: number): boolean {
  const word = e.bits[p >>> 5];
  return word !== undefined && (word & (1 << (p & 31))) !== 0;
}

export class DedupeWindows {
  private readonly byKey = new Map<string, Entry>();
  /** Keys held per partition. */
  private readonly counts: number[] = [];
  private readonly queues: Queue[] = [];
  /** Expiry of the front entry when last looked at (no later than the true front's): nothing to drop before then. */
  private frontExpires = Infinity;

  constructor(private readonly max: number) {}

  /** Keys held over all partitions (each key once). */
  get size(): number {
    return this.byKey.size;
  }

  /** Keys partition `p` holds. */
  sizeOf(p: number): number {
    return this.counts[p] ?? 0;
  }

  /** Whether partition `p` applied `key` and it has not expired at `now`. */
  has(p: number, key: string, now: number): boolean {
    const e = this.byKey.get(key);
    return e !== undefined && e.expires > now && hasBit(e, p);
  }

  /** Partition `p` applied `key`: remember it until `expires` (ms, Date.now() clock) at least. */
  remember(p: number, key: string, expires: number, now: number): void {
    let e = this.byKey.get(key);
    if (e !== undefined && e.expires <= now) {
      // Expired but not yet swept: its partitions' marks are stale, start over.
      this.remove(e);
      e = undefined;
    }
    if (e === undefined) {
      e = { key, expires, bits: [], partitions: 0 };
      this.byKey.set(key, e);
      if (this.byKey.size === 1) this.frontExpires = expires;
    } else if (expires > e.expires) {
      e.expires = expires;
      this.byKey.delete(key);
      this.byKey.set(key, e);
    }
    if (!hasBit(e, p)) {
      const w = p >>> 5;
      while (e.bits.length <= w) e.bits.push(0);
      e.bits[w] |= 1 << (p & 31);
      e.partitions++;
      this.counts[p] = (this.counts[p] ?? 0) + 1;
      const q = (this.queues[p] ??= { entries: [], head: 0 });
      q.entries.push(e);
      if (this.counts[p] > this.max) this.evictOldest(p);
      else this.compactIfStale(p);
    }
    this.sweep(now);
  }

  /** Partition `p` forgets `key` (a reverted write). */
  delete(p: number, key: string): void {
    const e = this.byKey.get(key);
    if (e !== undefined && hasBit(e, p)) this.clear(e, p);
  }

  /** Partition `p` forgets every key (it was dropped from this node). */
  dropPartition(p: number): void {
    const q = this.queues[p];
    if (q === undefined) return;
    for (let i = q.head; i < q.entries.length; i++) if (hasBit(q.entries[i], p)) this.clear(q.entries[i], p);
    this.queues[p] = { entries: [], head: 0 };
  }

  /** Partition `p`'s live keys, oldest first, with their remaining lifetimes (ms). */
  entriesOf(p: number, now: number): [key: string, ttlMs: number][] {
    const q = this.queues[p];
    if (q === undefined) return [];
    const out: [string, number][] = [];
    const seen = new Set<Entry>();
    for (let i = q.head; i < q.entries.length; i++) {
      const e = q.entries[i];
      if (e.expires > now && hasBit(e, p) && !seen.has(e)) {
        seen.add(e);
        out.push([e.key, Math.ceil(e.expires - now)]);
      }
    }
    return out;
  }

  /**
   * Every key, oldest first, with its expiry and the partitions holding it (`bits`: 32 a
   * word), for a checkpoint of the whole window: one pass over the node's keys, where a
   * listing per partition (entriesOf) visits a request's key once per partition it touched.
   * Read-only entries; skip those with no partition or expired. The iterator survives
   * changes between its steps (a Map's does): a key removed meanwhile is not visited, a
   * key added or moved to the back meanwhile is (again).
   */
  keys(): IterableIterator<Readonly<{ key: string; expires: number; bits: readonly number[]; partitions: number }>> {
    return this.byKey.values();
  }

  /** Drop from the front what has expired. */
  private sweep(now: number): void {
    if (this.frontExpires > now) return;
    this.frontExpires = Infinity;
    for (const e of this.byKey.values()) {
      if (e.expires > now) {
        this.frontExpires = e.expires;
        break;
      }
      this.remove(e);
    }
  }

  private evictOldest(p: number): void {
    const q = this.queues[p];
    while (q.head < q.entries.length) {
      const e = q.entries[q.head++];
      if (hasBit(e, p)) {
        this.clear(e, p);
        break;
      }
    }
    this.compactIfStale(p);
  }

  private clear(e: Entry, p: number): void {
    e.bits[p >>> 5] &= ~(1 << (p & 31));
    e.partitions--;
    this.counts[p]--;
    if (e.partitions === 0 && this.byKey.get(e.key) === e) this.byKey.delete(e.key);
    this.compactIfStale(p);
  }

  /** An entry leaves every partition. */
  private remove(e: Entry): void {
    this.byKey.delete(e.key);
    for (let w = 0; w < e.bits.length; w++) {
      let word = e.bits[w];
      while (word !== 0) {
        const bit = 31 - Math.clz32(word);
        word &= ~(1 << bit);
        const p = 32 * w + bit;
        this.counts[p]--;
        this.compactIfStale(p);
      }
    }
    e.bits = [];
    e.partitions = 0;
  }

  /** Keep a queue within twice its live keys (plus slack): stale references go. */
  private compactIfStale(p: number): void {
    const q = this.queues[p];
    if (q === undefined || q.entries.length - q.head <= 2 * (this.counts[p] ?? 0) + 32) return;
    const seen = new Set<Entry>();
    const live: Entry[] = [];
    for (let i = q.head; i < q.entries.length; i++) {
      const e = q.entries[i];
      if (hasBit(e, p) && !seen.has(e)) {
        seen.add(e);
        live.push(e);
      }
    }
    this.queues[p] = { entries: live, head: 0 };
  }
}
