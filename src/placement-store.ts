/**
 * The placement table and where it lives: one key (`table`) of a NATS JetStream
 * key-value bucket. Every change is a compare-and-set against the revision it was
 * computed from, so a decision made from a stale table fails and is made again; every
 * node (gateways too) adopts tables from the bucket (a watch, a read when a peer says
 * it is behind, a poll as a safety net), never from a broadcast. The revision of the
 * entry is the table's epoch, and the bucket's history is the audit log of placement
 * (each value says who wrote it, why, and from which revision).
 *
 * No Moleculer here: the service hands over the bucket (`KeyValue`, the part of the
 * nats client's KV used). The embedded node has no bucket and one fixed table.
 */
import type { Owners } from "./placement";

export interface PlacementTable {
  /** Revision of the bucket entry this table was read from (rises with every change). */
  epoch: number;
  /** owners[p] = [primary, ...replicas]. */
  owners: Owners;
  /**
   * Nodes judged lost that are still listed, as the only holders of some partitions:
   * those partitions wait for them (503) instead of restarting empty.
   */
  lost: string[];
  /** Node that wrote it. */
  coordinator: string;
  /**
   * Start time of each owner's process when the table was made: a node restarted under
   * the same id is a new incarnation with none of the old one's state.
   */
  incarnations: Record<string, number>;
  /** Why it was written (the audit log's line). */
  why: string;
  /** Wall-clock ms when it was written. */
  at: number;
}

/** What is stored: the table without its epoch (the entry's revision), plus the revision it replaced. */
export type TableContent = Omit<PlacementTable, "epoch">;

export interface KvEntryLike {
  revision: number;
  operation: "PUT" | "DEL" | "PURGE";
  json<T>(): T;
}

/** The calls of the nats client's KV (`js.views.kv(bucket)`) that placement uses. */
export interface KeyValue {
  get(key: string): Promise<KvEntryLike | null>;
  create(key: string, value: Uint8Array): Promise<number>;
  update(key: string, value: Uint8Array, revision: number): Promise<number>;
  watch(opts: { key: string }): Promise<AsyncIterable<KvEntryLike> & { stop(): void }>;
}

export const TABLE_KEY = "table";
export const LEASE_KEY = "coordinator";
/** Entries kept per key: the last 64 tables (the most the server allows). */
export const HISTORY = 64;

/** Bucket names allow letters, digits, `-` and `_`: one bucket per Moleculer namespace. */
export function bucketName(namespace: string): string {
  return `flowmesh-${(namespace || "default").replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

export const encodeJson = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

/** A compare-and-set that lost: the table changed since the revision the change was computed from. */
export class CasConflict extends Error {
  constructor(readonly basedOn: number | null) {
    super(`placement changed since revision ${basedOn ?? "none"}`);
  }
}

/** The nats client reports a failed compare-and-set as a JetStream API error naming the sequence. */
function isCasFailure(err: unknown): boolean {
  const msg = String((err as Error)?.message ?? err);
  return /wrong last sequence|key exists|last sequence mismatch/i.test(msg);
}

export class PlacementStore {
  private current: PlacementTable | null;
  private kv: KeyValue | null = null;
  private watcher: { stop(): void } | null = null;
  private closed = false;
  private confirming: Promise<PlacementTable | null> | null = null;
  private nextConfirm: Promise<PlacementTable | null> | null = null;
  private readonly listeners: ((table: PlacementTable, previous: PlacementTable | null) => void)[] = [];

  constructor(initial: PlacementTable | null = null) {
    this.current = initial;
  }

  get table(): PlacementTable | null {
    return this.current;
  }

  get attached(): boolean {
    return this.kv !== null;
  }

  /** Called with every table adopted (newer than the one before), in epoch order. */
  onChange(listener: (table: PlacementTable, previous: PlacementTable | null) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Start following the bucket: read the table now, then watch it. */
  async attach(kv: KeyValue): Promise<void> {
    this.kv = kv;
    await this.refresh();
    void this.follow();
  }

  close(): void {
    this.closed = true;
    this.watcher?.stop();
  }

  /** Keep a table newer than the one held; true when adopted. */
  adopt(table: PlacementTable): boolean {
    const previous = this.current;
    if (previous !== null && table.epoch <= previous.epoch) return false;
    this.current = table;
    for (const listener of this.listeners) listener(table, previous);
    return true;
  }

  /** Read the table from the bucket and adopt it if newer. */
  async refresh(): Promise<PlacementTable | null> {
    if (this.kv === null) return this.current;
    const entry = await this.kv.get(TABLE_KEY);
    if (entry !== null && entry.operation === "PUT") this.adopt(fromEntry(entry));
    return this.current;
  }

  /**
   * The newest table, read from the bucket after this call began (a read started
   * earlier is not enough): what a primary checks before it answers a read. Calls that
   * arrive while a read is under way share the next one.
   */
  confirmLatest(): Promise<PlacementTable | null> {
    if (this.confirming === null) {
      this.confirming = this.refresh().finally(() => {
        this.confirming = null;
      });
      return this.confirming;
    }
    this.nextConfirm ??= this.confirming
      .catch(() => undefined)
      .then(() => {
        this.nextConfirm = null;
        return this.confirmLatest();
      });
    return this.nextConfirm;
  }

  /**
   * Write a new table against `basedOn` (the epoch it was computed from; null: only if
   * the bucket has none). Adopts and returns it; throws CasConflict when the table
   * changed meanwhile (the caller re-reads and decides again).
   */
  async write(content: TableContent, basedOn: number | null): Promise<PlacementTable> {
    if (this.kv === null) throw new Error("placement store is not attached to a bucket");
    let revision: number;
    try {
      revision = basedOn === null ? await this.kv.create(TABLE_KEY, encodeJson(content)) : await this.kv.update(TABLE_KEY, encodeJson(content), basedOn);
    } catch (err) {
      if (isCasFailure(err)) {
        await this.refresh().catch(() => undefined);
        throw new CasConflict(basedOn);
      }
      throw err;
    }
    const table = { ...content, epoch: revision };
    this.adopt(table);
    return table;
  }

  /** Watch the key; on any error start again (the poll covers the gap). */
  private async follow(): Promise<void> {
    while (!this.closed && this.kv !== null) {
      try {
        const iter = await this.kv.watch({ key: TABLE_KEY });
        this.watcher = iter;
        for await (const entry of iter) {
          if (entry.operation === "PUT") this.adopt(fromEntry(entry));
        }
      } catch {
        /* reconnecting: the next round starts a new watch */
      }
      if (!this.closed) await new Promise((r) => setTimeout(r, 1000).unref());
    }
  }
}

export function fromEntry(entry: KvEntryLike): PlacementTable {
  const content = entry.json<Partial<TableContent>>();
  return {
    owners: content.owners ?? [],
    lost: content.lost ?? [],
    coordinator: content.coordinator ?? "",
    incarnations: content.incarnations ?? {},
    why: content.why ?? "",
    at: content.at ?? 0,
    epoch: entry.revision,
  };
}
