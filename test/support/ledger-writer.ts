/**
 * A client that posts continuously with Idempotency-Keys, retrying each batch until
 * it gets its 200 (through whichever gateway answers), and keeps a ledger of what was
 * acknowledged. Between writes it reads an hour back through another gateway and
 * records any difference from the ledger (read-your-writes).
 *
 * One writer is sequential: nothing of its own is acknowledged between sending a read
 * and its answer, so the ledger at that moment is exactly what the read must show.
 */
import { expectedHour, flow, request, type Flow } from "./api-contract";
import { sleep } from "./processes";

/**
 * How a read differs from what the ledger expects, per flow key and byte field: `lost` sums
 * the shortfalls, `doubled` the excesses (bytes_tx + bytes_rx), `keys` counts the flow keys
 * that differ (missing, extra or wrong).
 */
export function ledgerDifference(read: Flow[], expected: Flow[]): { lost: number; doubled: number; keys: number } {
  const keyOf = (f: Flow) => JSON.stringify([f.src_app, f.dest_app, f.vpc_id, f.hour]);
  const unmatched = new Map(read.map((f) => [keyOf(f), f]));
  let lost = 0;
  let doubled = 0;
  let keys = 0;
  for (const want of expected) {
    const got = unmatched.get(keyOf(want));
    unmatched.delete(keyOf(want));
    const dtx = (got?.bytes_tx ?? 0) - want.bytes_tx;
    const drx = (got?.bytes_rx ?? 0) - want.bytes_rx;
    lost += Math.max(0, -dtx) + Math.max(0, -drx);
    doubled += Math.max(0, dtx) + Math.max(0, drx);
    if (dtx !== 0 || drx !== 0) keys++;
  }
  for (const extra of unmatched.values()) doubled += extra.bytes_tx + extra.bytes_rx;
  return { lost, doubled, keys: keys + unmatched.size };
}

export interface LedgerWriterOptions {
  /**
   * Give up on one request after this long and send it to the next gateway (a write with
   * the same Idempotency-Key): a frozen gateway accepts connections but never answers.
   * Unset: wait for every answer.
   */
  requestTimeoutMs?: number;
  /**
   * Fail when a batch is still unacknowledged after retrying it this long (a cluster that
   * is down on purpose for a while, e.g. a cold start). Unset: after 600 attempts.
   */
  giveUpAfterMs?: number;
}

export class LedgerWriter {
  readonly ledger: Flow[] = [];
  acknowledged = 0;
  attempts = 0;
  /** Attempts abandoned after requestTimeoutMs. */
  timeouts = 0;
  /** Reads answered with something other than 200: unavailable, not stale. */
  unavailableReads = 0;
  readonly staleReads: string[] = [];
  /** The Idempotency-Key of the batch being retried now (null between batches). */
  pendingKey: string | null = null;
  private running = false;
  private done: Promise<void> | null = null;
  private turn = 0;

  constructor(
    private readonly gateways: () => string[],
    readonly hours: number[],
    private readonly tag: string,
    private readonly batchSize = 200,
    private readonly options: LedgerWriterOptions = {},
  ) {}

  start(): void {
    this.running = true;
    this.done = this.loop();
    // A failure surfaces from stop(); until then it must not count as an unhandled rejection.
    this.done.catch(() => undefined);
  }

  /** Finishes the batch under way (until its 200), then resolves; rejects if the writer failed. */
  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }

  private gateway(): string {
    const all = this.gateways();
    return all[this.turn++ % all.length];
  }

  private get signal(): AbortSignal | undefined {
    return this.options.requestTimeoutMs ? AbortSignal.timeout(this.options.requestTimeoutMs) : undefined;
  }

  private async loop(): Promise<void> {
    for (let seq = 0; this.running; seq++) {
      const batch = Array.from({ length: this.batchSize }, (_, i) => {
        const n = seq * this.batchSize + i;
        return flow(`src-${n % 97}`, `dst-${n % 13}`, `vpc-${this.tag}`, this.hours[n % this.hours.length], 1 + (n % 1000), 1 + (n % 7));
      });
      await this.postUntilAcknowledged(batch, `${this.tag}-${seq}`);
      this.ledger.push(...batch);
      this.acknowledged += batch.length;
      if (seq % 3 === 0) await this.checkReadYourWrites(this.hours[seq % this.hours.length]);
    }
  }

  private async postUntilAcknowledged(batch: Flow[], key: string): Promise<void> {
    this.pendingKey = key;
    const since = Date.now();
    for (let attempt = 0; ; attempt++) {
      this.attempts++;
      try {
        const r = await request(`${this.gateway()}/flows`, { method: "POST", json: batch, headers: { "Idempotency-Key": key }, signal: this.signal });
        if (r.status === 200) {
          this.pendingKey = null;
          return;
        }
        if (r.status !== 503 && r.status !== 502 && r.status !== 504) throw new Error(`unexpected ${r.status}: ${JSON.stringify(r.body)}`);
      } catch (err) {
        if ((err as Error).message.startsWith("unexpected")) throw err;
        if ((err as Error).name === "TimeoutError") this.timeouts++;
        // else connection refused or reset: that gateway is going away; try the next
      }
      const { giveUpAfterMs } = this.options;
      if (giveUpAfterMs === undefined ? attempt > 600 : Date.now() - since > giveUpAfterMs) throw new Error(`batch ${key} never acknowledged`);
      await sleep(25);
    }
  }

  private async checkReadYourWrites(hour: number): Promise<void> {
    const want = expectedHour(this.ledger, hour);
    const gateway = this.gateway();
    try {
      const r = await request(`${gateway}/flows?hour=${hour}&vpc_id=vpc-${this.tag}`, { signal: this.signal });
      if (r.status !== 200) {
        this.unavailableReads++;
        return;
      }
      if (JSON.stringify(r.body) !== JSON.stringify(want)) {
        const d = ledgerDifference(r.body as Flow[], want);
        this.staleReads.push(`hour ${hour} via ${gateway}: ${r.body.length} flows vs ${want.length} expected, ${d.keys} differ, ${d.lost} bytes short, ${d.doubled} over`);
      }
    } catch {
      this.unavailableReads++; // timed out, or the gateway is going away
    }
  }
}
