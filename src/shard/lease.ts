/**
 * The coordinator's lease: one key of the placement bucket names the shard node that
 * decides placement. Only the holder writes tables (and every write is still a
 * compare-and-set on the table's own revision).
 *
 * - The holder renews it every `leaseMs / 3` by compare-and-set on the lease entry's
 *   revision. It counts its lease valid until `leaseMs * 0.8` after it *sent* the
 *   renewal that succeeded, by its own monotonic clock: a holder that was paused finds
 *   its lease expired when it wakes, whatever it last believed.
 * - Every other node reads the entry each round and notes when it first saw its
 *   current revision. A revision unchanged for `leaseMs` since then (by the observer's
 *   clock, which started after the holder's renewal was sent) means the holder stopped
 *   renewing: it takes the lease over by compare-and-set on that revision, so of several
 *   contenders one wins. No clocks are compared between nodes.
 *
 * No Moleculer, no nats: the entry's get/create/update are handed in.
 */
export interface LeaseValue {
  node: string;
  incarnation: number;
}

export interface LeaseEntry {
  revision: number;
  value: LeaseValue | null;
}

export interface LeaseStore {
  get(): Promise<LeaseEntry | null>;
  /** Resolves with the new revision; rejects when the key exists. */
  create(value: LeaseValue): Promise<number>;
  /** Resolves with the new revision; rejects when the entry is no longer at `revision`. */
  update(value: LeaseValue, revision: number): Promise<number>;
}

export interface LeaseOptions {
  me: LeaseValue;
  store: LeaseStore;
  now(): number;
  leaseMs: number;
}

export class CoordinatorLease {
  /** The entry's revision as this node last wrote or saw it, and when it first saw it. */
  private seenRevision = -1;
  private seenAt = 0;
  private holder: LeaseValue | null = null;
  private validUntil = -Infinity;

  constructor(private readonly o: LeaseOptions) {}

  /** Holds a lease that has not run out by this node's clock. */
  holds(): boolean {
    return this.isMe(this.holder) && this.o.now() < this.validUntil;
  }

  /** The node named by the lease as last seen (it may have stopped renewing). */
  get holderNode(): string | null {
    return this.holder?.node ?? null;
  }

  /** Renew (holder) or watch and take over an abandoned lease (others). */
  async tick(): Promise<void> {
    const sent = this.o.now();
    if (this.isMe(this.holder) && this.seenRevision >= 0) {
      try {
        this.seenRevision = await this.o.store.update(this.o.me, this.seenRevision);
        this.seenAt = this.o.now();
        this.validUntil = sent + this.o.leaseMs * 0.8;
        return;
      } catch {
        // Someone took it (we were silent too long), or the store is unreachable: read it below.
        this.validUntil = -Infinity;
      }
    }
    const entry = await this.o.store.get();
    if (entry === null || entry.value === null) {
      await this.claim(sent, () => this.o.store.create(this.o.me));
      return;
    }
    if (entry.revision !== this.seenRevision) {
      this.seenRevision = entry.revision;
      this.seenAt = this.o.now();
      this.holder = entry.value;
      if (!this.isMe(entry.value)) this.validUntil = -Infinity;
      // Our own earlier incarnation's lease (a restart): take it at once, it renews no more.
      if (entry.value.node === this.o.me.node && entry.value.incarnation !== this.o.me.incarnation) {
        await this.claim(sent, () => this.o.store.update(this.o.me, entry.revision));
      }
      return;
    }
    if (!this.isMe(entry.value) && this.o.now() - this.seenAt >= this.o.leaseMs) {
      await this.claim(sent, () => this.o.store.update(this.o.me, entry.revision));
    }
  }

  private async claim(sent: number, write: () => Promise<number>): Promise<void> {
    try {
      this.seenRevision = await write();
      this.seenAt = this.o.now();
      this.holder = this.o.me;
      this.validUntil = sent + this.o.leaseMs * 0.8;
    } catch {
      // Another node claimed it first: the next round reads who.
      this.seenRevision = -1;
    }
  }

  private isMe(v: LeaseValue | null): boolean {
    return v !== null && v.node === this.o.me.node && v.incarnation === this.o.me.incarnation;
  }
}
