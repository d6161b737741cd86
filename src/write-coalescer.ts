/**
 * Writes to one node, coalesced. At most `maxInFlight` messages to the node are
 * unanswered at a time; groups submitted meanwhile wait and leave together in the
 * next message (up to `maxBytes`, at least one group). Messages leave at the end of
 * the event loop's turn, so the groups submitted in one turn (a request's, and those of
 * requests whose bodies arrived together) share one.
 *
 * Why: in a cluster most of a write's cost was per message, not per record (a
 * Moleculer call over NATS costs ~0.6 ms of CPU across the sender, nats-server and the
 * receiver on the 2-core bench machine), and concurrent requests each sent every owner
 * a message of its own. Under load a message now carries the groups of several requests.
 *
 * Each group keeps its own outcome: the receiver answers one result per group, in
 * order, and a group's refusal is its request's alone. A failed message (timeout,
 * node gone) fails every group in it; their requests retry, and keys make that safe.
 */
export interface CoalescerOptions {
  maxInFlight: number;
  maxBytes: number;
}

interface Waiting<G, R> {
  group: G;
  bytes: number;
  resolve(result: R): void;
  reject(err: unknown): void;
}

export class WriteCoalescer<G, R> {
  private waiting: Waiting<G, R>[] = [];
  private inFlight = 0;
  private scheduled = false;

  /** send(groups) resolves with one result per group, in order. */
  constructor(
    private readonly send: (groups: G[]) => Promise<R[]>,
    private readonly options: CoalescerOptions,
  ) {}

  /** Messages sent and not answered yet. */
  get pending(): number {
    return this.inFlight;
  }

  /** Send `group` (of about `bytes` encoded) with whatever else is waiting; resolves with its own result. */
  submit(group: G, bytes: number): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ group, bytes, resolve, reject });
      this.schedule();
    });
  }

  /**
   * Send what waits once this turn of the event loop is over: the groups submitted in
   * it (other requests whose bodies arrived at the same time) leave together.
   */
  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.options.maxInFlight) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      while (this.waiting.length > 0 && this.inFlight < this.options.maxInFlight) this.sendNext();
    });
  }

  private sendNext(): void {
    const { maxBytes } = this.options;
    let bytes = 0;
    let n = 0;
    while (n < this.waiting.length && (n === 0 || bytes + this.waiting[n].bytes <= maxBytes)) bytes += this.waiting[n++].bytes;
    const batch = this.waiting.splice(0, n);
    this.inFlight++;
    let sent: Promise<R[]>;
    try {
      sent = this.send(batch.map((w) => w.group));
    } catch (err) {
      sent = Promise.reject(err);
    }
    sent
      .then(
        (results) => {
          batch.forEach((w, i) => {
            if (i < results.length) w.resolve(results[i]);
            else w.reject(new Error(`Answered ${results.length} of ${batch.length} groups`));
          });
        },
        (err: unknown) => {
          for (const w of batch) w.reject(err);
        },
      )
      .finally(() => {
        this.inFlight--;
        if (this.waiting.length > 0) this.schedule();
      });
  }
}
