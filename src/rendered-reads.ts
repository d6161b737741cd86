/**
 * A cache of rendered GET /flows bodies, keyed by what determines them: the hour, the
 * filter, and the hour's version (PartitionStore.hourVersion, which changes whenever
 * any key or sum of the hour changes, or a partition is dropped or loaded). Pure: the
 * caller supplies the version and the rendering; nothing here knows Moleculer.
 *
 * Why: JSON.stringify of an hour of 100,000 flow objects costs ~55 ms, more than the
 * whole read budget; an hour that is read again unchanged can answer with the bytes
 * it answered last time. As flows.aggregate uses it (embedded and cluster):
 *
 *   version = combine(placement epoch, each owner node's store.hourVersion(hour, itsPartitions))
 *   body = cache.get(hour, filter, version)
 *          ?? cache.set(hour, filter, version, renderFlowRecords(toFlowRecords(...)))
 *   return body, with ctx.meta.$responseType = "application/json; charset=utf-8"
 *
 * (only for HTTP callers: broker callers of flows.aggregate keep getting the array).
 */
import type { FlowFilter } from "./flow-key";

export function filterKey(filter: FlowFilter): string {
  return JSON.stringify([filter.src_app ?? null, filter.dest_app ?? null, filter.vpc_id ?? null]);
}

/** JSON bytes of flow records, exactly as moleculer-web would send them. */
export function renderFlowRecords(records: readonly object[]): Buffer {
  return Buffer.from(JSON.stringify(records), "utf8");
}

interface Entry {
  version: string | number;
  body: Buffer;
}

export class RenderedReadCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  /** maxBytes: total size of the bodies kept; maxEntries: how many (hour, filter) pairs. */
  constructor(private readonly maxBytes = 64 * 1024 * 1024, private readonly maxEntries = 16) {}

  get(hour: number, filter: FlowFilter, version: string | number): Buffer | undefined {
    const key = hour + filterKey(filter);
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (e.version !== version) {
      this.remove(key, e);
      return undefined;
    }
    this.entries.delete(key); // most recently used last
    this.entries.set(key, e);
    return e.body;
  }

  set(hour: number, filter: FlowFilter, version: string | number, body: Buffer): Buffer {
    const key = hour + filterKey(filter);
    const old = this.entries.get(key);
    if (old !== undefined) this.remove(key, old);
    if (body.length > this.maxBytes) return body;
    this.entries.set(key, { version, body });
    this.bytes += body.length;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes && this.entries.size <= this.maxEntries) break;
      this.remove(k, e);
    }
    return body;
  }

  get size(): number {
    return this.entries.size;
  }

  private remove(key: string, e: Entry): void {
    this.entries.delete(key);
    this.bytes -= e.body.length;
  }
}
