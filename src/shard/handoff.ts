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
 * Catch-up: a receiver that holds a recovered copy of the partition (restarted with its
 * data directory) keeps it when the sender asks, and says how recent it is; when
 * src/shard/catch-up.ts finds it safe, the sender sends its log tail since then
 * (`loadTail`) instead of a snapshot, else asks again for a fresh copy and snapshots.
 *
 * No Moleculer: `send` is handed in.
 */
import { randomUUID } from "crypto";
import type { TailEntry, TailLimits } from "../durability/log-tail";
import { estimateKeyBytes, type PartitionStore, type RemovedFlow, type SnapshotChunk, type SubBatch } from "../partition-store";
import type { PlacementTable } from "../placement-store";
import { MESSAGE_BYTES, notLoading, wrongOwner, type LoadChunkParams, type LoadTailParams, type PrepareCopyAnswer, type PrepareCopyParams } from "../protocol";
import { tailStart, type FollowerGaps, type RecoveredCopy } from "./catch-up";
import { Role, type Listing, type PartitionRoles } from "./partition-roles";

/** A log tail bigger than this is not read (it is read and decoded on the event loop: 61-117 ms for 19.8 MiB in a throwaway timing): a snapshot is sent instead. */
const TAIL_MAX_BYTES = 8 * 1024 * 1024;

/** A copy given: how many flows the receiver holds, in how many messages, how long it took, and (from a log tail) how many entries. */
export interface CopyResult {
  partition: number;
  to: string;
  flows: number;
  chunks: number;
  ms: number;
  tail?: number;
}

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
  reverted(batches: SubBatch[], removed: RemovedFlow[], t: number): void;
  trimmed(hour: number, partitions: number[]): void;
  durable(): Promise<void>;
  /** Time of the newest change to `p` read back from disk at start. */
  recoveredChangeAt(p: number): number;
  readonly lastRecordLsn: number;
  tail(p: number, fromTime: number, toLsn: number, limits: TailLimits): Promise<{ entries: TailEntry[]; bytes: number } | { refused: string }>;
}

export interface HandoffOptions {
  me: string;
  store: PartitionStore;
  journal: HandoffJournal | null;
  roles: PartitionRoles;
  table(): PlacementTable | null;
  listing(p: number): Listing;
  send(nodeID: string, action: "prepareCopy" | "loadChunk" | "loadTail", params: PrepareCopyParams | LoadChunkParams | LoadTailParams): Promise<unknown>;
  now(): number;
  /** What each follower may lack (a sender's record of its forwards). */
  gaps: FollowerGaps;
  /** This node's idempotency window (a receiver reports it). */
  dedupe: { ttlMs: number; maxKeys: number };
  log: { info(msg: string): void };
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

  /**
   * A copy is about to arrive. `keep`: the sender could send a log tail instead; a
   * recovered copy here is kept and described. Anything else starts over empty.
   */
  prepareCopy({ partition, keep }: PrepareCopyParams): PrepareCopyAnswer {
    const journal = this.o.journal;
    if (keep === true && journal !== null && this.o.roles.role(partition) === Role.Recovered) {
      this.o.roles.prepareCopy(partition, this.o.now());
      return { ok: true, kept: { changedAt: journal.recoveredChangeAt(partition), ...this.o.dedupe } };
    }
    this.o.store.drop(partition);
    journal?.droppedPartition(partition);
    this.o.store.partition(partition);
    this.o.roles.prepareCopy(partition, this.o.now());
    return { ok: true };
  }

  /** The sender's log tail for a kept copy: applied in order (what it already holds is recognised by key). */
  async loadTail({ partition: p, entries, last }: LoadTailParams): Promise<{ flows: number }> {
    if (this.o.roles.role(p) !== Role.Loading) throw notLoading(p);
    const journal = this.o.journal;
    const store = this.o.store;
    for (const e of entries) {
      if (e.o === "apply") this.applyLogged(e.b, e.t);
      else if (e.o === "revert") {
        const undone: SubBatch[] = [];
        const removed: RemovedFlow[] = [];
        store.revert(e.b, e.t, undone, removed);
        store.removeEmpty(e.rm);
        journal?.reverted(undone, [...removed, ...e.rm], e.t);
      } else {
        store.trimBefore(e.h, [p]);
        journal?.trimmed(e.h, [p]);
      }
    }
    if (last) this.finishLoading(p);
    await journal?.durable();
    return { flows: store.partitions.get(p)?.flowCount ?? 0 };
  }

  /** Each chunk is answered once it is durable: the copy is whole on disk before it can become an owner. */
  async loadChunk({ chunk, last }: LoadChunkParams): Promise<{ flows: number }> {
    const p = chunk.partition;
    if (this.o.roles.role(p) !== Role.Loading) throw notLoading(p);
    const journal = this.o.journal;
    const now = Date.now();
    this.o.store.loadChunk(chunk);
    journal?.loaded(chunk, now);
    if (last) this.finishLoading(p);
    await journal?.durable();
    return { flows: this.o.store.partitions.get(p)?.flowCount ?? 0 };
  }

  /** The copy is whole: its role follows the table, and the writes queued meanwhile apply. */
  private finishLoading(p: number): void {
    const queued = this.o.roles.loaded(p, this.o.now(), this.o.listing(p));
    if (queued.length > 0) this.applyLogged(queued, Date.now());
  }

  /** Apply sub-batches (duplicates skipped by key) and log those applied, at time `t`. */
  private applyLogged(batches: SubBatch[], t: number): void {
    const journal = this.o.journal;
    const logged: SubBatch[] = [];
    this.o.store.apply(batches, { now: t, applied: journal ? logged : undefined });
    journal?.applied(logged, t);
  }

  // ---- sender ----

  /**
   * Give `to` a copy: the log tail its recovered copy lacks when that is safe
   * (src/shard/catch-up.ts), else a snapshot; plus the writes meanwhile. Resolves when
   * `to` holds it.
   */
  async addCopy(partition: number, to: string): Promise<CopyResult> {
    if (!this.o.roles.holdsCopy(partition)) throw wrongOwner([partition], this.o.table()?.epoch);
    const keep = this.o.journal !== null && this.o.roles.servesAsPrimary(partition);
    const answer = (await this.o.send(to, "prepareCopy", keep ? { partition, keep } : { partition })) as PrepareCopyAnswer;
    if (answer.kept !== undefined) {
      const caughtUp = await this.catchUp(partition, to, answer.kept);
      if (caughtUp !== null) return caughtUp;
      await this.o.send(to, "prepareCopy", { partition }); // start over empty
    }
    // Snapshot and start forwarding in the same turn: every write is in one or the other.
    const chunks: SnapshotChunk[] = this.o.store.snapshot(partition, MESSAGE_BYTES);
    this.follow(partition, to);
    const flows = this.o.store.partitions.get(partition)?.flowCount ?? 0;
    return this.sending(partition, to, chunks.length, flows, async (progress) => {
      for (let i = 0; i < chunks.length; i++) {
        await this.o.send(to, "loadChunk", { chunk: chunks[i], last: i === chunks.length - 1 });
        progress.sent = i + 1;
      }
      return flows;
    });
  }

  /** Send `to` the log tail its kept copy lacks; null (nothing sent) when that is not safe or the log cannot tell. */
  private async catchUp(p: number, to: string, copy: RecoveredCopy): Promise<CopyResult | null> {
    const journal = this.o.journal;
    const refused = (why: string) => {
      this.o.log.info(`Partition ${p}: ${to}'s recovered copy gets a snapshot, not the log tail (${why})`);
      return null;
    };
    if (journal === null || !this.o.roles.servesAsPrimary(p)) return refused("this node is not its primary");
    const from = tailStart({ primarySince: this.o.roles.sinceOf(p), gapFrom: this.o.gaps.gapFrom(p, to), copy, now: this.o.now() });
    if (from === null) return refused("it may lack older writes or hold writes this primary does not");
    // The tail's end and the start of forwarding in the same turn: every write is in one or the other.
    const toLsn = journal.lastRecordLsn;
    this.follow(p, to);
    const tail = await journal.tail(p, from, toLsn, { maxBytes: TAIL_MAX_BYTES, maxKeys: Math.floor(copy.maxKeys / 2) }).catch((err: Error) => ({ refused: err.message }));
    if ("refused" in tail) {
      this.unfollow(p, to);
      return refused(tail.refused);
    }
    const chunks = cutTail(tail.entries);
    const result = await this.sending(p, to, chunks.length, 0, async (progress) => {
      let flows = 0;
      for (let i = 0; i < chunks.length; i++) {
        flows = ((await this.o.send(to, "loadTail", { partition: p, entries: chunks[i], last: i === chunks.length - 1 })) as { flows: number }).flows;
        progress.sent = i + 1;
      }
      return flows;
    });
    this.o.log.info(`Partition ${p}: ${to}'s recovered copy caught up from the log tail (${tail.entries.length} entries, ${tail.bytes} log bytes read, since ${this.o.now() - from} ms ago)`);
    return { ...result, tail: tail.entries.length };
  }

  /** Run a transfer to `to` (shown as under way meanwhile); on failure `to` no longer receives the partition's writes. */
  private async sending(p: number, to: string, chunks: number, flows: number, send: (progress: HandoffProgress) => Promise<number>): Promise<CopyResult> {
    const progress: HandoffProgress = { partition: p, from: this.o.me, to, chunks, sent: 0, flows, startedAt: Date.now() };
    const id = randomUUID();
    this.active.set(id, progress);
    try {
      const held = await send(progress);
      this.o.counted.done(held);
      return { partition: p, to, flows: held, chunks, ms: Date.now() - progress.startedAt };
    } catch (err) {
      this.unfollow(p, to);
      this.o.counted.failed();
      throw err;
    } finally {
      this.active.delete(id);
    }
  }

  /** `to` receives the partition's writes from now on (and lacks nothing before: a snapshot or tail taken in this turn). */
  private follow(p: number, to: string): void {
    let copies = this.pending.get(p);
    if (!copies) this.pending.set(p, (copies = new Map()));
    copies.set(to, this.o.now());
    this.o.gaps.filled(p, to);
  }

  private unfollow(p: number, to: string): void {
    const copies = this.pending.get(p);
    copies?.delete(to);
    if (copies?.size === 0) this.pending.delete(p);
  }

  // ---- housekeeping ----

  /** A new table: copies it lists are copies like any other now. */
  tableAdopted(table: PlacementTable, previous: PlacementTable | null): void {
    if (previous !== null) {
      const now = this.o.now();
      previous.owners.forEach((owners, p) => {
        if (owners[0] !== this.o.me) return;
        for (const n of owners) if (n !== this.o.me && !table.owners[p]?.includes(n)) this.o.gaps.left(p, n, now);
      });
    }
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

/** A tail in messages under MESSAGE_BYTES (at least one: the last one finishes the copy). */
function cutTail(entries: TailEntry[]): TailEntry[][] {
  const out: TailEntry[][] = [[]];
  let bytes = 0;
  for (const e of entries) {
    let size = 64;
    if (e.o !== "trim") for (const b of e.b) for (let i = 0; i < b.entries.length; i += 4) size += estimateKeyBytes(b.entries[i] as string);
    if (bytes + size > MESSAGE_BYTES && out[out.length - 1].length > 0) {
      out.push([]);
      bytes = 0;
    }
    out[out.length - 1].push(e);
    bytes += size;
  }
  return out;
}
