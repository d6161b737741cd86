/**
 * A primary's read path. Before it answers, a primary checks with the placement
 * bucket that its table is still the newest (a read of the table's key started after
 * the request arrived; concurrent reads share one): a primary that was replaced while
 * it was paused or cut off, and has not yet heard of it, refuses instead of answering
 * from old state, so reads are read-your-writes through any gateway. Big answers go to
 * remote callers in pages under the message limit, the rest kept behind a cursor.
 *
 * No Moleculer: the checks and the bucket read are handed in.
 */
import { randomUUID } from "crypto";
import { pageOfRun } from "../batching";
import type { FlowRun, PartitionStore } from "../partition-store";
import { cursorExpired, MESSAGE_BYTES, wrongOwner, type ReadPage, type ReadParams } from "../protocol";

export interface ReadPathOptions {
  store: PartitionStore;
  /** Throws when this node may not serve as primary at all; else the partitions it does not serve. */
  notServedAsPrimary(partitions: readonly number[], callerEpoch: number | undefined): number[];
  /** Resolves once the newest table has been read from the bucket (after this call). */
  confirmLatest(): Promise<{ epoch: number } | null>;
  now(): number;
  cursorMs: number;
}

interface ReadCursor {
  run: FlowRun;
  offset: number;
  expires: number;
}

export class ReadPath {
  private readonly cursors = new Map<string, ReadCursor>();

  constructor(private readonly o: ReadPathOptions) {}

  async read(params: ReadParams, remote: boolean): Promise<ReadPage> {
    const { hour, filter, partitions, knownVersion, epoch } = params;
    await this.confirmServing(partitions, epoch);
    // The caller may hold this hour already rendered: say so instead of sending it again.
    const version = this.o.store.hourVersion(hour, partitions);
    if (knownVersion === version) return { unchanged: true, version, run: null, cursor: null };
    const run = this.o.store.read(hour, filter, partitions);
    if (!remote) return { run, cursor: null, version };
    const first = pageOfRun(run, 0, MESSAGE_BYTES);
    if (first.next >= run.keys.length) return { run, cursor: null, version };
    const id = randomUUID();
    this.cursors.set(id, { run, offset: first.next, expires: this.o.now() + this.o.cursorMs });
    return { run: first.run, cursor: id, version };
  }

  /**
   * Resolves once this node is confirmed the serving primary of every listed partition
   * by the newest table in the bucket; else throws (wrongOwner, or the fence's refusal).
   * Every shard read passes it first (top-N's too: src/query/shard-queries.ts).
   */
  async confirmServing(partitions: readonly number[], epoch: number | undefined): Promise<void> {
    // Cheap refusals first (fenced, behind the caller, not primary), then the bucket.
    let refused = this.o.notServedAsPrimary(partitions, epoch);
    if (refused.length > 0) throw wrongOwner(refused, undefined);
    const latest = await this.o.confirmLatest();
    refused = this.o.notServedAsPrimary(partitions, epoch);
    if (refused.length > 0) throw wrongOwner(refused, latest?.epoch);
  }

  readMore(id: string): ReadPage {
    const cursor = this.cursors.get(id);
    if (!cursor) throw cursorExpired();
    const { run, next } = pageOfRun(cursor.run, cursor.offset, MESSAGE_BYTES);
    cursor.offset = next;
    const done = next >= cursor.run.keys.length;
    if (done) this.cursors.delete(id);
    return { run, cursor: done ? null : id, version: 0 };
  }

  expire(now: number): void {
    for (const [id, c] of this.cursors) if (c.expires < now) this.cursors.delete(id);
  }
}
