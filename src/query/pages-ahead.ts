/**
 * Pages asked for ahead: a gateway that expects a top-N answer of several pages asks for
 * the pages after the first together with the query (naming the cursor id it chose), so
 * every page leaves the shard as soon as it is encoded, instead of one round trip after
 * the first page arrived. An ask waits here until its query has finished (or, when the
 * query has not arrived, at most `waitMs`), then is answered from the cursor, if any.
 *
 * Bounded: at most `maxWaiting` asks wait at once (the rest are answered at once, as if
 * their query had no such page), and the ids of finished queries are remembered only
 * while a later ask for them may still come (the last `maxWaiting`).
 */
export class PagesAhead {
  private readonly running = new Set<string>();
  private readonly finishedIds = new Set<string>();
  private readonly waiting = new Map<string, (() => void)[]>();
  private waiters = 0;

  constructor(
    private readonly maxWaiting: number,
    private readonly waitMs: number,
  ) {}

  started(id: string): void {
    this.running.add(id);
  }

  finished(id: string): void {
    this.running.delete(id);
    this.finishedIds.add(id);
    if (this.finishedIds.size > this.maxWaiting) this.finishedIds.delete(this.finishedIds.values().next().value as string);
    const wake = this.waiting.get(id);
    if (wake === undefined) return;
    this.waiting.delete(id);
    for (const w of wake) w();
  }

  /** Resolves once the query `id` has finished, or at once when it finished already or too many wait. */
  settled(id: string): Promise<void> {
    if (this.finishedIds.has(id) || this.waiters >= this.maxWaiting) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer === undefined) return;
        clearTimeout(timer);
        timer = undefined;
        this.waiters--;
        resolve();
      };
      // A query under way is waited for whatever it takes (it always finishes); one not yet arrived, waitMs.
      timer = setTimeout(() => {
        if (this.running.has(id)) return;
        const list = this.waiting.get(id);
        list?.splice(list.indexOf(done), 1);
        if (list?.length === 0) this.waiting.delete(id);
        done();
      }, this.waitMs);
      timer.unref();
      this.waiters++;
      const list = this.waiting.get(id);
      if (list === undefined) this.waiting.set(id, [done]);
      else list.push(done);
    });
  }
}
