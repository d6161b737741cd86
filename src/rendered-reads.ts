/**
 * A cache of rendered GET /flows bodies, keyed by what determines them: the hour, the
 * filter, and the hour's version (PartitionStore.hourVersion, which changes whenever
 * any key or sum of the hour changes, or a partition is dropped or loaded). Pure: the
 * caller supplies the version and the rendering; nothing here knows Moleculer.
 *
 * Why: rendering an hour of 100,000 flows costs tens of milliseconds; an hour that is
 * read again unchanged can answer with the bytes it answered last time. As
 * flows.aggregate uses it (embedded and cluster):
 *
 *   version = combine(placement epoch, each owner node's store.hourVersion(hour, itsPartitions))
 *   body = cache.get(hour, filter, version)
 *          ?? the hour merged and streamed (src/query/hour-read.ts), its chunks collected on
 *             the side and cache.keep(hour, filter, version, chunks) once it ended, if the body
 *             is at most RENDERED_MAX_BODY_BYTES (a larger one is streamed, never kept); the
 *             chunks are joined into one body on its first hit
 *   return body, with ctx.meta.$responseType = "application/json; charset=utf-8"
 *
 * (only for HTTP callers: broker callers of flows.aggregate keep getting the array).
 *
 * Both caches here are keyed by what a client asks for (any hour, any filter strings),
 * so both are bounded, in entries and in bytes (lru-cache, least recently used out
 * first): a client reading ever-new filters costs a gateway at most these bounds.
 *
 *   rendered bodies:   RENDERED_MAX_ENTRIES (1,024) and RENDERED_MAX_BYTES (64 MiB)
 *   read versions:     READ_VERSIONS_MAX_ENTRIES (1,024) and READ_VERSIONS_MAX_BYTES (2 MiB)
 *
 * Bytes are the body's bytes plus a conservative estimate of what the entry keeps on
 * the heap (its key and version strings at two bytes a character, and a fixed
 * overhead for the objects around them).
 */
import { LRUCache } from "lru-cache";
import type { FlowFilter } from "./flow-key";

/** Total bytes of rendered bodies (and their entries) a gateway keeps. */
export const RENDERED_MAX_BYTES = 64 * 1024 * 1024;
/**
 * Largest body kept (collected while it streams): an hour of ~140k flows of short names.
 * Bigger hours are streamed each time, so reading them never holds the whole body.
 */
export const RENDERED_MAX_BODY_BYTES = 16 * 1024 * 1024;
/** (hour, filter) pairs whose body a gateway keeps. */
export const RENDERED_MAX_ENTRIES = 1024;
/**
 * (hour, filter) pairs whose owners' versions a gateway keeps: as many as bodies, since
 * the versions only save work while the body they describe is still kept.
 */
export const READ_VERSIONS_MAX_ENTRIES = RENDERED_MAX_ENTRIES;
/** Total estimated heap bytes of the read versions (long filters, many owner nodes). */
export const READ_VERSIONS_MAX_BYTES = 2 * 1024 * 1024;

/** Heap bytes charged per entry besides its strings and body: the entry object, the Buffer object, lru-cache's slots. */
const ENTRY_OVERHEAD_BYTES = 256;
/** Heap bytes charged per chunk of a body kept as chunks (the Buffer object, its slot in the array). */
const CHUNK_OVERHEAD_BYTES = 96;
/** Heap bytes charged per owner node in a read-versions entry (a property and its number). */
const NODE_OVERHEAD_BYTES = 48;

const stringBytes = (s: string) => 2 * s.length;

export function filterKey(filter: FlowFilter): string {
  return JSON.stringify([filter.src_app ?? null, filter.dest_app ?? null, filter.vpc_id ?? null]);
}

interface Entry {
  version: string | number;
  /** The body, or the chunks it streamed in (joined on the first hit: a body never read again is never copied). */
  body: Buffer | readonly Buffer[];
}

export class RenderedReadCache {
  private readonly entries: LRUCache<string, Entry>;

  /** maxBytes: total size of the bodies kept (and their entries); maxEntries: how many (hour, filter) pairs. */
  constructor(maxBytes = RENDERED_MAX_BYTES, maxEntries = RENDERED_MAX_ENTRIES) {
    this.entries = new LRUCache<string, Entry>({
      max: maxEntries,
      maxSize: maxBytes,
      // A body larger than maxBytes is not kept (lru-cache refuses an entry over maxSize).
      sizeCalculation: (e, key) => renderedEntryBytes(key, e),
    });
  }

  get(hour: number, filter: FlowFilter, version: string | number): Buffer | undefined {
    const key = hour + filterKey(filter);
    const e = this.entries.get(key); // most recently used now
    if (e === undefined) return undefined;
    if (e.version !== version) {
      // Stale for good: versions only move forward.
      this.entries.delete(key);
      return undefined;
    }
    if (!Buffer.isBuffer(e.body)) e.body = Buffer.concat(e.body as readonly Buffer[]);
    return e.body as Buffer;
  }

  /** Keep a body as the chunks it was streamed in (each of its own memory, not a slice of Node's pool). */
  keep(hour: number, filter: FlowFilter, version: string | number, chunks: readonly Buffer[]): void {
    this.entries.set(hour + filterKey(filter), { version, body: chunks });
  }

  /** (hour, filter) pairs kept. */
  get size(): number {
    return this.entries.size;
  }

  /** Bytes charged for what is kept (at most maxBytes). */
  get bytes(): number {
    return this.entries.calculatedSize;
  }
}

function bodyBytes(body: Buffer | readonly Buffer[]): number {
  if (Buffer.isBuffer(body)) return body.length;
  let n = 0;
  for (const c of body as readonly Buffer[]) n += c.length + CHUNK_OVERHEAD_BYTES;
  return n;
}

/** What a rendered entry is charged: the body, its key and version strings, the objects around them. */
export function renderedEntryBytes(key: string, e: Entry): number {
  return bodyBytes(e.body) + stringBytes(key) + stringBytes(String(e.version)) + ENTRY_OVERHEAD_BYTES;
}

/** Per (hour, filter): the placement epoch and each owner node's hour version behind the body last rendered. */
export interface ReadVersions {
  epoch: number;
  versions: Record<string, number>;
  /**
   * The last read found the hour changed: the next one reads in full at once (asking the
   * owners whether it is unchanged would cost a second round trip when only some are).
   */
  changed?: boolean;
}

/** What a read-versions entry is charged: its key, each owner node's id and version, the objects around them. */
export function readVersionsBytes(key: string, v: ReadVersions): number {
  let bytes = stringBytes(key) + ENTRY_OVERHEAD_BYTES;
  for (const nodeID in v.versions) bytes += stringBytes(nodeID) + NODE_OVERHEAD_BYTES;
  return bytes;
}

/**
 * The gateway's read versions (`hour + filterKey(filter)` -> ReadVersions): used like a
 * Map (get, set), bounded to maxEntries and maxBytes, least recently used out first.
 */
export function readVersionCache(maxBytes = READ_VERSIONS_MAX_BYTES, maxEntries = READ_VERSIONS_MAX_ENTRIES): LRUCache<string, ReadVersions> {
  return new LRUCache<string, ReadVersions>({ max: maxEntries, maxSize: maxBytes, sizeCalculation: (v, key) => readVersionsBytes(key, v) });
}
