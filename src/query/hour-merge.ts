/**
 * One hour's read on the gateway: a k-way merge of the owner nodes' sorted runs, page
 * by page, handed on in slices as it goes. Each owner answers its first page; the merge
 * asks for a node's next page as soon as it starts on the current one, so a node's next
 * page travels while this one is merged, and at most two pages per node are held: memory
 * does not grow with the hour.
 *
 * Every flow lives in one partition and every partition has one primary, so keys are
 * distinct across nodes; each node's run is sorted by key (UTF-16 code units, as
 * JavaScript compares strings), and so is the merge.
 *
 * No Moleculer here: fetching a page is handed in (flows.service.ts readFrom).
 */

/** Sorted flows: keys ascending, sums at the same index. */
export interface SortedFlows {
  keys: readonly string[];
  tx: ArrayLike<number>;
  rx: ArrayLike<number>;
}

/** A page of one node's run, and how to get the page after it (null: this is the last). */
export interface Paged {
  flows: SortedFlows;
  next: (() => Promise<Paged>) | null;
}

/** Flows start..end-1 of `flows`, in order: what the merge hands on. */
export interface FlowSlice extends SortedFlows {
  start: number;
  end: number;
}

/** Flows per slice handed on (each is rendered and written on its own). */
export const MERGE_SLICE = 1024;

/** A node's run as the merge walks it: the current page, where it is in it, the next page on its way. */
class Walk {
  keys: readonly string[] = [];
  tx: ArrayLike<number> = [];
  rx: ArrayLike<number> = [];
  at = 0;
  size = 0;
  private pending: Promise<Paged> | null = null;

  constructor(page: Paged) {
    this.install(page);
  }

  private install(page: Paged): void {
    const { keys, tx, rx } = page.flows;
    this.keys = keys;
    this.tx = tx;
    this.rx = rx;
    this.at = 0;
    this.size = keys.length;
    this.pending = page.next === null ? null : page.next();
    // A reader that stops early never awaits it: its failure is nobody's.
    this.pending?.catch(() => undefined);
  }

  /** Past the current page: the next one (false when the run is over). Throws what fetching it threw. */
  async advance(): Promise<boolean> {
    while (this.at >= this.size) {
      if (this.pending === null) return false;
      this.install(await this.pending);
    }
    return true;
  }
}

/** The flows of sorted runs (one per node, each paged), merged, in slices of at most `slice`. */
export async function* mergePaged(sources: readonly Paged[], slice = MERGE_SLICE): AsyncGenerator<FlowSlice> {
  const walks: Walk[] = [];
  for (const s of sources) {
    const w = new Walk(s);
    if (await w.advance()) walks.push(w);
  }
  if (walks.length === 1) {
    yield* walkAlone(walks[0], slice);
    return;
  }
  while (walks.length > 0) {
    const keys: string[] = new Array(slice);
    const tx = new Float64Array(slice);
    const rx = new Float64Array(slice);
    let n = 0;
    while (n < slice && walks.length > 0) {
      // The walk whose next key is lowest (a few nodes: a scan beats a heap).
      let low = walks[0];
      let lowKey = low.keys[low.at];
      for (let w = 1; w < walks.length; w++) {
        const k = walks[w].keys[walks[w].at];
        if (k < lowKey) {
          low = walks[w];
          lowKey = k;
        }
      }
      const i = low.at++;
      keys[n] = lowKey;
      tx[n] = low.tx[i];
      rx[n] = low.rx[i];
      n++;
      if (low.at >= low.size && !(await low.advance())) walks.splice(walks.indexOf(low), 1);
    }
    keys.length = n;
    yield { keys, tx, rx, start: 0, end: n };
  }
}

/** One node's run: its pages handed on as they are, in windows of at most `slice` (no copy). */
async function* walkAlone(w: Walk, slice: number): AsyncGenerator<FlowSlice> {
  do {
    const { keys, tx, rx } = w;
    while (w.at < w.size) {
      const start = w.at;
      const end = Math.min(w.size, start + slice);
      w.at = end;
      yield { keys, tx, rx, start, end };
    }
  } while (await w.advance());
}

/** A whole run as the single page of a source (a read answered in process). */
export function wholeRun(flows: SortedFlows): Paged {
  return { flows, next: null };
}
