/**
 * A primary's read path. Before it answers, a primary checks with the placement
 * bucket that its table is still the newest (a read of the table's key started after
 * the request arrived; concurrent reads share one): a primary that was replaced while
 * it was paused or cut off, and has not yet heard of it, refuses instead of answering
 * from old state, so reads are read-your-writes through any gateway.
 *
 * A caller in this process gets the run itself (no copy, no encoding). A remote caller
 * gets pages in the run codec (src/wire/run-codec.ts), each under MESSAGE_BYTES, the
 * rest of the run kept behind a cursor (`readMore`) until it is asked for or expires.
 * Cursors are bounded (MAX_READ_CURSORS, MAX_CURSOR_FLOWS: the oldest go first), as
 * gateways create them: a cursor dropped early answers CURSOR_EXPIRED.
 *
 * No Moleculer: the checks and the bucket read are handed in.
 */
import { randomUUID } from "crypto";
import type { FlowRun, PartitionStore } from "../partition-store";
import { cursorExpired, MESSAGE_BYTES, wrongOwner, type ReadAnswer, type ReadParams } from "../protocol";
import { BoundedCursors } from "../cursors";
import { encodeRunPage, encodeUnchanged } from "../wire/run-codec";

/** Reads paged out at a time (each holds its run's sums until read or expired). */
export const MAX_READ_CURSORS = 256;
/** Flows those reads hold in all (~16 bytes each beyond keys the store shares). */
export const MAX_CURSOR_FLOWS = 8_000_000;

export interface ReadPathOptions {
  store: PartitionStore;
  /** Throws when this node may not serve as primary at all; else the partitions it does not serve. */
  notServedAsPrimary(partitions: readonly number[], callerEpoch: number | undefined): number[];
  /** Resolves once the newest table has been read from the bucket (after this call). */
  confirmLatest(): Promise<{ epoch: number } | null>;
  now(): number;
  cursorMs: number;
  /** Page size for remote callers (MESSAGE_BYTES). */
  pageBytes?: number;
}

interface ReadCursor {
  run: FlowRun;
  offset: number;
  expires: number;
}

export class ReadPath {
  private readonly cursors = new BoundedCursors<ReadCursor>(MAX_READ_CURSORS, MAX_CURSOR_FLOWS, (c) => c.run.keys.length);

  constructor(private readonly o: ReadPathOptions) {}

  /** The run of the hour (in process), or its first page as bytes (remote). */
  async read(params: ReadParams, remote: boolean): Promise<ReadAnswer> {
    const { hour, filter, partitions, knownVersion, epoch } = params;
    await this.confirmServing(partitions, epoch);
    // The caller may hold this hour already rendered: say so instead of sending it again.
    const version = this.o.store.hourVersion(hour, partitions);
    if (knownVersion === version) return remote ? encodeUnchanged(version) : { unchanged: true, version, run: null, cursor: null };
    const run = this.o.store.read(hour, filter, partitions);
    if (!remote) return { run, cursor: null, version };
    return this.page(version, run, 0, null);
  }

  /** The next page of a remote read (bytes). */
  readMore(id: string): Buffer {
    const cursor = this.cursors.take(id);
    if (!cursor) throw cursorExpired();
    return this.page(0, cursor.run, cursor.offset, id);
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

  expire(now: number): void {
    this.cursors.expire(now);
  }

  /** Reads paged out and not finished. */
  get openCursors(): number {
    return this.cursors.size;
  }

  /** The page at offset; the rest (if any) kept under `id` (a new one for a read's first page). */
  private page(version: number, run: FlowRun, offset: number, id: string | null): Buffer {
    const { bytes } = encodeRunPage(version, run, offset, this.o.pageBytes ?? MESSAGE_BYTES, (next) => {
      const cursorId = id ?? randomUUID();
      this.cursors.keep(cursorId, { run, offset: next, expires: this.o.now() + this.o.cursorMs });
      return cursorId;
    });
    return bytes;
  }

}
