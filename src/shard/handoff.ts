/**
 * Handoff: giving another node a copy of a partition while writes go on.
 *
 * Sender (the partition's primary, asked by the coordinator): asks the target to
 * prepare (a fresh loading copy that queues forwarded writes), then in one synchronous
 * step takes a point-in-time snapshot and adds the target to the partition's followers,
 * so every write is in the snapshot or forwarded; then streams the chunks. The last
 * chunk applies the writes the target queued meanwhile.
 *
 * Receiver: `prepareCopy` and `loadChunk`, moving the partition's role through
 * loading -> standby (src/shard/partition-roles.ts).
 *
 * No Moleculer: `send` is handed in.
 */
import { randomUUID } from "crypto";
import type { PartitionStore, SnapshotChunk, SubBatch } from "../partition-store";
import type { PlacementTable } from "../placement-store";
import { MESSAGE_BYTES, notLoading, wrongOwner, type LoadChunkParams } from "../protocol";
import { Role, type Listing, type PartitionRoles } from "./partition-roles";

export interface HandoffProgress {
  partition: number;
  from: string;
  to: string;
  chunks: number;
  sent: number;
  flows: number;
  startedAt: number;
}

/** Where a copy's arrival is logged (src/durability/journal.ts); absent with DURABILITY=memory. */
export interface HandoffJournal {
  droppedPartition(p: number): void;
  loaded(chunk: SnapshotChunk, t: number): void;
  applied(batches: SubBatch[], t: number): void;
  durable(): Promise<void>;
}

export interface HandoffOptions {
  me: string;
  store: PartitionStore;
  journal: HandoffJournal | null;
  roles: PartitionRoles;
  table(): PlacementTable | null;
  listing(p: number): Listing;
  send(nodeID: string, action: "prepareCopy" | "loadChunk", params: { partition: number } | LoadChunkParams): Promise<unknown>;
  now(): number;
  counted: { done(flows: number): void; failed(): void };
}

export class Handoff {
  /** Per partition: nodes being given a copy (they receive its writes too), since when. */
  private readonly pending = new Map<number, Map<string, number>>();
  readonly active = new Map<string, HandoffProgress>();

  constructor(private readonly o: HandoffOptions) {}

  /** Every other node that must receive the partition's writes: its listed copies and copies being made. */
  followersOf(partition: number): string[] {
    const owners = this.o.table()?.owners[partition] ?? [];
    const pending = this.pending.get(partition);
    if (owners.length <= 1 && !pending) return [];
    const out: string[] = [];
    for (const n of owners) if (n !== this.o.me) out.push(n);
    if (pending) for (const n of pending.keys()) if (n !== this.o.me && !out.includes(n)) out.push(n);
    return out;
  }

  // ---- receiver ----

  prepareCopy(partition: number): { ok: true } {
    this.o.store.drop(partition);
    this.o.journal?.droppedPartition(partition);
    this.o.store.partition(partition);
    this.o.roles.prepareCopy(partition, this.o.now());
    return { ok: true };
  }

  /** Each chunk is answered once it is durable: the copy is whole on disk before it can become an owner. */
  async loadChunk({ chunk, last }: LoadChunkParams): Promise<{ flows: number }> {
    const p = chunk.partition;
    if (this.o.roles.role(p) !== Role.Loading) throw notLoading(p);
    const journal = this.o.journal;
    const now = Date.now();
    this.o.store.loadChunk(chunk);
    journal?.loaded(chunk, now);
    if (last) {
      const queued = this.o.roles.loaded(p, this.o.now(), this.o.listing(p));
      if (queued.length > 0) {
        const logged: SubBatch[] = [];
        this.o.store.apply(queued, { now, applied: journal ? logged : undefined });
        journal?.applied(logged, now);
      }
    }
    await journal?.durable();
    return { flows: this.o.store.partitions.get(p)?.flowCount ?? 0 };
  }

  // ---- sender ----

  /** Give `to` a copy (snapshot + writes meanwhile). Resolves when `to` holds it. */
  async addCopy(partition: number, to: string): Promise<{ partition: number; to: string; flows: number; chunks: number; ms: number }> {
    if (!this.o.roles.holdsCopy(partition)) throw wrongOwner([partition], this.o.table()?.epoch);
    await this.o.send(to, "prepareCopy", { partition });
    // Snapshot and start forwarding in the same turn: every write is in one or the other.
    const chunks: SnapshotChunk[] = this.o.store.snapshot(partition, MESSAGE_BYTES);
    let copies = this.pending.get(partition);
    if (!copies) this.pending.set(partition, (copies = new Map()));
    copies.set(to, this.o.now());
    const flows = this.o.store.partitions.get(partition)?.flowCount ?? 0;
    const progress: HandoffProgress = { partition, from: this.o.me, to, chunks: chunks.length, sent: 0, flows, startedAt: Date.now() };
    const id = randomUUID();
    this.active.set(id, progress);
    try {
      for (let i = 0; i < chunks.length; i++) {
        await this.o.send(to, "loadChunk", { chunk: chunks[i], last: i === chunks.length - 1 });
        progress.sent = i + 1;
      }
      this.o.counted.done(flows);
      return { partition, to, flows, chunks: chunks.length, ms: Date.now() - progress.startedAt };
    } catch (err) {
      copies.delete(to);
      this.o.counted.failed();
      throw err;
    } finally {
      this.active.delete(id);
    }
  }

  // ---- housekeeping ----

  /** A new table: copies it lists are copies like any other now. */
  tableAdopted(table: PlacementTable): void {
    for (const [p, copies] of this.pending) {
      for (const n of [...copies.keys()]) if (table.owners[p]?.includes(n)) copies.delete(n);
      if (copies.size === 0) this.pending.delete(p);
    }
  }

  nodeGone(node: string): void {
    for (const copies of this.pending.values()) copies.delete(node);
  }

  expire(now: number, abandonMs: number): void {
    for (const [p, copies] of this.pending) {
      for (const [n, since] of copies) if (now - since > abandonMs) copies.delete(n);
      if (copies.size === 0) this.pending.delete(p);
    }
  }
}
