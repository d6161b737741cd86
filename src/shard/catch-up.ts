/**
 * Catching a returning copy up from its primary's log tail instead of a snapshot.
 *
 * A node restarted with its data directory comes back holding its copies as they were
 * (role `recovered`). When the coordinator gives it a partition again, the primary may
 * send only what the copy is missing: its log since the copy fell behind. Sums cannot be
 * undone, so this is done only when the primary can tell the copy lacks nothing older
 * and holds nothing the primary does not:
 *
 * - The copy was this primary's follower: its newest change is later than the moment
 *   this node became primary (a copy that was itself primary until it died stops
 *   changing before its successor starts, so it is always refilled by snapshot).
 * - Every write this primary applied before the tail's start reached the copy: the tail
 *   starts at the earliest write whose forward to that node failed or is still under
 *   way, or when a table stopped listing it (`FollowerGaps`), and no later than a margin
 *   before the copy's newest change (with DURABILITY=interval, a power cut may have taken
 *   the last second of what it acknowledged).
 * - What the copy already holds from the tail is recognised by idempotency key: the tail
 *   is refused when it holds more keys than half the copy's window, or when its start is
 *   so old that the copy's keys from then may have expired.
 *
 * Everything else (a node down for long, a primary that restarted, a busy log) gets a
 * snapshot, as a new node does. No Moleculer here.
 */

/** What a returning copy says about its recovered copy of a partition. */
export interface RecoveredCopy {
  /** Time of its newest change (its clock). */
  changedAt: number;
  /** Its idempotency window: how long and how many keys per partition it remembers. */
  ttlMs: number;
  maxKeys: number;
}

/** DURABILITY=interval's sync period plus a second of clock difference between two nodes. */
export const CLOCK_MARGIN_MS = 2000;
/** The copy's keys from the tail's start must outlive the catch-up by this much. */
const TTL_MARGIN_MS = 60_000;

/**
 * Where the log tail for a returning copy starts (this node's clock), or null when it
 * must get a snapshot instead.
 */
export function tailStart(o: { primarySince: number; gapFrom: number; copy: RecoveredCopy; now: number }): number | null {
  const from = Math.min(o.gapFrom, o.copy.changedAt - CLOCK_MARGIN_MS);
  if (!Number.isFinite(from) || from < o.primarySince) return null;
  if (o.now - from > o.copy.ttlMs - TTL_MARGIN_MS) return null;
  return from;
}

interface Forward {
  node: string;
  partitions: readonly number[];
  /** When this node applied the writes (its clock). */
  at: number;
}

/**
 * Per partition and follower: the earliest write this node applied as primary that may
 * not have reached that follower (its forward failed, or has not answered yet), in the
 * node's current term as primary (`termOf`: since when it has been primary).
 */
export class FollowerGaps {
  private readonly failed = new Map<number, Map<string, { term: number; at: number }>>();
  private readonly pending = new Set<Forward>();

  constructor(private readonly termOf: (p: number) => number) {}

  /** A forward to `node` of writes applied at `at` is sent: settle it with the returned function. */
  sending(node: string, partitions: readonly number[], at: number): (delivered: boolean) => void {
    const forward: Forward = { node, partitions, at };
    this.pending.add(forward);
    return (delivered) => {
      this.pending.delete(forward);
      if (!delivered) for (const p of partitions) this.markFailed(p, node, at);
    };
  }

  /** `node` no longer receives `p`'s writes from `at` on (a table without it). */
  left(p: number, node: string, at: number): void {
    this.markFailed(p, node, at);
  }

  /** The earliest write to `p` that `node` may lack (Infinity: none known). */
  gapFrom(p: number, node: string): number {
    const f = this.failed.get(p)?.get(node);
    let from = f !== undefined && f.term === this.termOf(p) ? f.at : Infinity;
    for (const forward of this.pending) if (forward.at < from && forward.node === node && forward.partitions.includes(p)) from = forward.at;
    return from;
  }

  /**
   * `node` is sent a snapshot or a log tail taken now (it reaches every write applied so
   * far): what it lacked is forgotten; a failure of a forward sent before is marked again
   * when it settles (harmless: it only makes a later tail start earlier).
   */
  filled(p: number, node: string): void {
    this.failed.get(p)?.delete(node);
  }

  private markFailed(p: number, node: string, at: number): void {
    let byNode = this.failed.get(p);
    if (!byNode) this.failed.set(p, (byNode = new Map()));
    const term = this.termOf(p);
    const f = byNode.get(node);
    if (f === undefined || f.term !== term || at < f.at) byNode.set(node, { term, at });
  }
}
