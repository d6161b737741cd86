/**
 * A client that posts continuously with Idempotency-Keys, retrying each batch until
 * it gets its 200 (through whichever gateway answers), and keeps a ledger of what was
 * acknowledged. Between writes it reads an hour back through another gateway and
 * records any difference from the ledger (read-your-writes).
 */
import { expectedHour, flow, request, type Flow } from "./api-contract";
import { sleep } from "./processes";

export class LedgerWriter {
  readonly ledger: Flow[] = [];
  acknowledged = 0;
  attempts = 0;
  readonly staleReads: string[] = [];
  private running = false;
  private done: Promise<void> | null = null;
  private turn = 0;

  constructor(
    private readonly gateways: () => string[],
    readonly hours: number[],
    private readonly tag: string,
    private readonly batchSize = 200,
  ) {}

  start(): void {
    this.running = true;
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }

  private gateway(): string {
    const all = this.gateways();
    return all[this.turn++ % all.length];
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
    for (let attempt = 0; ; attempt++) {
      this.attempts++;
      try {
        const r = await request(`${this.gateway()}/flows`, { method: "POST", json: batch, headers: { "Idempotency-Key": key } });
        if (r.status === 200) return;
        if (r.status !== 503 && r.status !== 502 && r.status !== 504) throw new Error(`unexpected ${r.status}: ${JSON.stringify(r.body)}`);
      } catch (err) {
        if ((err as Error).message.startsWith("unexpected")) throw err;
        // connection refused or reset: that gateway is going away; try the next
      }
      if (attempt > 600) throw new Error(`batch ${key} never acknowledged`);
      await sleep(25);
    }
  }

  private async checkReadYourWrites(hour: number): Promise<void> {
    try {
      const r = await request(`${this.gateway()}/flows?hour=${hour}&vpc_id=vpc-${this.tag}`);
      if (r.status !== 200) return; // unavailable is not stale
      const want = expectedHour(this.ledger, hour);
      if (JSON.stringify(r.body) !== JSON.stringify(want)) this.staleReads.push(`hour ${hour}: ${r.body.length} flows vs ${want.length} expected`);
    } catch {
      /* gateway going away */
    }
  }
}
