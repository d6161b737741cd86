/**
 * Who is alive, as this shard node sees it, and whether this node may act at all.
 *
 * Every shard node publishes a beat a few times a second: its id, its incarnation and
 * the nodes it hears from (its own view). Each node therefore knows every peer's view
 * as of its last beat, which is what the coordinator's majority rule counts. A peer is
 * judged gone after `suspectMs` of silence (Moleculer's heartbeat timeout, measured
 * here in milliseconds and the same for every node). A node offers no view (`sees:
 * null`) while its own is not worth counting: before its first round trip to NATS,
 * while fenced, and for `suspectMs` after a start, a stall or an outage (it has not
 * heard its peers again yet, and would "see" them all gone).
 *
 * The same loop fences this node: after each beat it makes a round trip to the NATS
 * server (PING/PONG). The node serves as primary only within `fenceMs` of the start of
 * its last completed round trip. `fenceMs` is below `suspectMs`, so a node that its
 * peers can have judged gone (stalled, paused, cut off from NATS) has already stopped
 * serving; after such a gap it re-reads the placement (`onGap`) before it serves
 * again. This catches a stall on the first request after it: the check reads the
 * clock, it does not wait for a timer to notice.
 *
 * No Moleculer, no I/O of its own: `publish`, `ping` and the clock are handed in.
 */
export interface Beat {
  node: string;
  incarnation: number;
  /** This process (random at start): a node restarted with the same data directory keeps its incarnation, not its run. */
  run?: string;
  /** Nodes this node hears from (itself included); null while its view is not settled. */
  sees: string[] | null;
}

export interface LivenessOptions {
  me: string;
  incarnation: number;
  run: string;
  publish(beat: Beat): void;
  /** A round trip to the NATS server; rejects when it is unreachable. */
  ping(): Promise<void>;
  /** Monotonic milliseconds. */
  now(): number;
  /** Silence after which a peer is judged gone. */
  suspectMs: number;
  /** This node serves only this long after its last confirmed round trip (< suspectMs). */
  fenceMs: number;
  /** After a gap longer than fenceMs: re-read what may have changed meanwhile. Serving resumes when it resolves. */
  onGap(gapMs: number): Promise<void>;
}

interface Heard {
  at: number;
  incarnation: number;
  run: string | undefined;
  sees: Set<string> | null;
}

export class Liveness {
  private readonly heard = new Map<string, Heard>();
  /** Start of the last round trip that completed with nothing missed before it. */
  private confirmedAt: number;
  /** When the last gap longer than suspectMs ended (peers may have acted on it); a start counts as one. */
  private lastLongGapAt: number;
  private ticking = false;

  constructor(private readonly o: LivenessOptions) {
    if (!(o.fenceMs < o.suspectMs)) throw new Error("liveness: fenceMs must be below suspectMs");
    // Not confirmed until the first round trip: a node starts fenced.
    this.confirmedAt = -Infinity;
    this.lastLongGapAt = o.now();
  }

  /** A peer's beat arrived. */
  receive(beat: Beat): void {
    if (!beat || typeof beat.node !== "string" || beat.node === this.o.me) return;
    this.heard.set(beat.node, { at: this.o.now(), incarnation: beat.incarnation, run: beat.run, sees: Array.isArray(beat.sees) ? new Set(beat.sees) : null });
  }

  /** Live nodes (heard within suspectMs) with their incarnations, this one included. */
  alive(): Map<string, number> {
    const now = this.o.now();
    const out = new Map<string, number>([[this.o.me, this.o.incarnation]]);
    for (const [node, h] of this.heard) if (now - h.at <= this.o.suspectMs) out.set(node, h.incarnation);
    return out;
  }

  /** The process a live node runs (undefined: silent for suspectMs, or unknown). */
  runOf(node: string): string | undefined {
    if (node === this.o.me) return this.o.run;
    const h = this.heard.get(node);
    return h !== undefined && this.o.now() - h.at <= this.o.suspectMs ? h.run : undefined;
  }

  /** Each live node's settled view, as of its last beat (this node's own: alive(), when settled). */
  views(): Map<string, Set<string>> {
    const now = this.o.now();
    const out = new Map<string, Set<string>>();
    if (this.settled()) out.set(this.o.me, new Set(this.alive().keys()));
    for (const [node, h] of this.heard) if (now - h.at <= this.o.suspectMs && h.sees !== null) out.set(node, h.sees);
    return out;
  }

  /** Its view is worth counting: confirmed with NATS, and not just back from a start, stall or outage. */
  settled(): boolean {
    return this.serving() && !this.recentlyStalled(this.o.suspectMs);
  }

  /** May this node serve as primary now: its last round trip to NATS started less than fenceMs ago. */
  serving(): boolean {
    return this.o.now() - this.confirmedAt < this.o.fenceMs;
  }

  /** Why not serving, for the error message. */
  fenceReason(): string {
    const age = this.o.now() - this.confirmedAt;
    return Number.isFinite(age) ? `no confirmed round trip to NATS for ${Math.round(age)} ms` : "not yet confirmed with NATS";
  }

  /** True within `holdMs` after a gap longer than suspectMs ended: peers may have judged this node gone meanwhile. */
  recentlyStalled(holdMs: number): boolean {
    return this.o.now() - this.lastLongGapAt < holdMs;
  }

  /** Beat, round trip, and after a gap re-read before serving again. One at a time. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const started = this.o.now();
      this.o.publish({ node: this.o.me, incarnation: this.o.incarnation, run: this.o.run, sees: this.settled() ? [...this.alive().keys()] : null });
      await this.o.ping();
      const gap = started - this.confirmedAt;
      if (gap > this.o.fenceMs) {
        if (Number.isFinite(gap) && gap > this.o.suspectMs) this.lastLongGapAt = this.o.now();
        await this.o.onGap(gap);
      }
      this.confirmedAt = started;
    } finally {
      this.ticking = false;
    }
  }
}
