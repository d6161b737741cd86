/**
 * A partition's log tail: what a primary applied to it since a time, read back from the
 * primary's own write-ahead log, to bring a returning copy up to date instead of sending
 * it a whole snapshot (src/shard/handoff.ts decides when that is safe).
 *
 * The log is per node, not per partition, so the tail is found by time: a timeline of
 * this process's records (LSN, time), sampled and bounded, gives an LSN before which
 * every record is older than the tail's start; the log's recent write positions
 * (Wal.readRecent) give where that record is on disk. The tail is refused (the caller
 * sends a snapshot) when the timeline or the log no longer reaches back that far, or
 * when it is larger than the limits (a long absence under load: a snapshot is cheaper).
 *
 * No Moleculer here.
 */
import type { RemovedFlow, SubBatch } from "../partition-store";
import { appliedAt, decodeRecord, isKind } from "./log-records";
import type { Wal } from "./wal";

/** What a tail holds for one partition, in log order. */
export type TailEntry =
  | { o: "apply"; t: number; b: SubBatch[] }
  | { o: "revert"; t: number; b: SubBatch[]; rm: RemovedFlow[] }
  | { o: "trim"; h: number };

export interface TailLimits {
  /** Log bytes read at most. */
  maxBytes: number;
  /** Distinct idempotency keys at most (the receiver recognises what it already holds by key). */
  maxKeys: number;
}

/** Records a clock may run backwards by without the tail missing one (a clock step, NTP). */
const CLOCK_SLACK_MS = 1000;
/** Samples kept: at one per SAMPLE_MS at most, more than five minutes. */
const SAMPLES = 65536;
const SAMPLE_MS = 5;

/** (LSN, time) of this process's log records, sampled: at most one per SAMPLE_MS, the newest SAMPLES. */
export class Timeline {
  private readonly lsns = new Float64Array(SAMPLES);
  private readonly times = new Float64Array(SAMPLES);
  /** Samples taken so far; the ring holds the newest min(count, SAMPLES). */
  private count = 0;

  note(lsn: number, t: number): void {
    if (this.count > 0 && t - this.times[(this.count - 1) % SAMPLES] < SAMPLE_MS) return;
    this.lsns[this.count % SAMPLES] = lsn;
    this.times[this.count % SAMPLES] = t;
    this.count++;
  }

  /**
   * An LSN such that every record this process wrote at `t` or later has that LSN or a
   * higher one; null when the timeline does not reach back that far.
   */
  startOf(t: number): number | null {
    const oldest = Math.max(0, this.count - SAMPLES);
    for (let i = this.count - 1; i >= oldest; i--) {
      if (this.times[i % SAMPLES] < t - CLOCK_SLACK_MS) return this.lsns[i % SAMPLES];
    }
    return null;
  }
}

/**
 * Partition `p`'s entries logged from `fromTime` (this node's clock) up to record `toLsn`
 * (written), or why not. Trims are taken whatever their time (they repeat harmlessly).
 */
export function readTail(wal: Wal, timeline: Timeline, p: number, fromTime: number, toLsn: number, limits: TailLimits): { entries: TailEntry[]; bytes: number } | { refused: string } {
  const from = timeline.startOf(fromTime);
  if (from === null) return { refused: "this node's log timeline does not reach back that far" };
  const entries: TailEntry[] = [];
  const keys = new Set<string>();
  let tooMany = false;
  const forP = (batches: SubBatch[]) => {
    const mine = batches.filter((b) => b.partition === p);
    for (const b of mine) if (b.idempotencyKey !== undefined) keys.add(b.idempotencyKey);
    if (keys.size > limits.maxKeys) tooMany = true;
    return mine;
  };
  const bytes = wal.readRecent(from, toLsn, limits.maxBytes, (_lsn, payload) => {
    if (tooMany) return;
    const at = appliedAt(payload);
    if (at !== undefined && at < fromTime) return;
    if (isKind(payload, "load") || isKind(payload, "drop")) return;
    const e = decodeRecord(payload);
    if (e.o === "apply" && e.t >= fromTime) {
      const b = forP(e.b);
      if (b.length > 0) entries.push({ o: "apply", t: e.t, b });
    } else if (e.o === "revert" && e.t >= fromTime) {
      const b = forP(e.b);
      if (b.length > 0) entries.push({ o: "revert", t: e.t, b, rm: (e.rm ?? []).filter(([q]) => q === p) });
    } else if (e.o === "trim" && e.p.includes(p)) {
      entries.push({ o: "trim", h: e.h });
    }
  });
  if (bytes === null) return { refused: `the log since then is gone or over ${limits.maxBytes} bytes` };
  if (tooMany) return { refused: `more than ${limits.maxKeys} writes since then` };
  return { entries, bytes };
}
