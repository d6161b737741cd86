/**
 * Backpressure for write requests (MAX_INFLIGHT): a gateway holds at most `limit` of
 * them at a time, from the moment it accepts one (before reading its body) until its
 * answer is sent or its connection closes. The next one is refused at once (429 with
 * Retry-After) instead of waiting in a queue that only grows under overload: its body
 * is never read, so memory for bodies stays under `limit` × BODY_LIMIT.
 */
export class InflightLimit {
  private held = 0;

  constructor(readonly limit: number) {}

  get inflight(): number {
    return this.held;
  }

  /**
   * A slot, or null when every one is taken. The returned release is idempotent: call it
   * from every way a request can end (an answer, a closed connection).
   */
  acquire(): (() => void) | null {
    if (this.held >= this.limit) return null;
    this.held++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held--;
    };
  }
}

/**
 * At most one log line per `intervalMs` for refused requests: a client retrying a bad
 * token in a loop must not flood the log. The lines skipped meanwhile are counted in the
 * next one that is written.
 */
export class ThrottledLog {
  private lastAt = -Infinity;
  private skipped = 0;

  constructor(
    private readonly write: (line: string) => void,
    private readonly intervalMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  note(line: string): void {
    const t = this.now();
    if (t - this.lastAt < this.intervalMs) {
      this.skipped++;
      return;
    }
    this.lastAt = t;
    const more = this.skipped > 0 ? ` (and ${this.skipped} more refusal(s) not logged since the last line)` : "";
    this.skipped = 0;
    this.write(line + more);
  }
}

/**
 * Requests per window per key (RATE_LIMIT_PER_MIN, keyed by API token name): a fixed
 * window, as moleculer-web's own rateLimit counts, but checked before a request's body is
 * read and keyed by the token the gateway has already checked. Keys are token names, so
 * the map holds at most one entry per listed token.
 */
export class RateLimit {
  private windowStart: number;
  private readonly counts = new Map<string, number>();

  constructor(
    readonly limit: number,
    readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {
    this.windowStart = now();
  }

  /** Counts one request for `key`: 0 when it may go on, else the seconds until the window turns (for Retry-After). */
  take(key: string): number {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) {
      this.windowStart = t - ((t - this.windowStart) % this.windowMs);
      this.counts.clear();
    }
    const count = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, count);
    if (count <= this.limit) return 0;
    return Math.max(1, Math.ceil((this.windowStart + this.windowMs - t) / 1000));
  }
}
