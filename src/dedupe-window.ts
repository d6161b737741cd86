/**
 * A partition's idempotency window: the dedupe keys it applied, each remembered until
 * its expiry, at most `max` of them (the oldest go first).
 *
 * One Map in insertion order. Every key is remembered for the same TTL from when it
 * was applied, so insertion order is expiry order and the oldest key is always the
 * first: expiring and evicting both take from the front, O(1) per key. (lru-cache did
 * the same job at about twice the cost per key, and a cluster write remembers one key
 * per sub-batch: some 250 per 1000-record request on every copy.) Keys loaded from a
 * snapshot arrive in the sender's order with their remaining lifetimes, so the order
 * holds there too; a key remembered again moves to the back.
 */
export class DedupeWindow {
  private readonly expiries = new Map<string, number>();
  /** Expiry of the front key when last looked at (no later than the true front's): nothing to drop before then. */
  private frontExpires = Infinity;

  constructor(private readonly max: number) {}

  get size(): number {
    return this.expiries.size;
  }

  /** Remember `key` until `expires` (ms, Date.now() clock). */
  remember(key: string, expires: number, now: number): void {
    const map = this.expiries;
    if (map.has(key)) map.delete(key);
    map.set(key, expires);
    if (map.size === 1) this.frontExpires = expires;
    if (this.frontExpires > now && map.size <= this.max) return;
    // Drop from the front what has expired, and what is over the bound.
    this.frontExpires = Infinity;
    for (const [oldest, until] of map) {
      if (until > now && map.size <= this.max) {
        this.frontExpires = until;
        break;
      }
      map.delete(oldest);
    }
  }

  /** Whether `key` is remembered and not expired at `now`. */
  has(key: string, now: number): boolean {
    const expires = this.expiries.get(key);
    return expires !== undefined && expires > now;
  }

  delete(key: string): void {
    this.expiries.delete(key);
  }

  /** The live keys, oldest first, with their remaining lifetimes (ms). */
  entries(now: number): [key: string, ttlMs: number][] {
    const out: [string, number][] = [];
    for (const [key, expires] of this.expiries) if (expires > now) out.push([key, Math.ceil(expires - now)]);
    return out;
  }
}
