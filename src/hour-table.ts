/**
 * The flows of one hour in one partition (HourTable), the stamp clock every table
 * shares, and sorted runs of flows (what a read answers) with their merge. Split from
 * src/partition-store.ts, which holds the partitions and the store built on these.
 */

/** Sorted flows of one hour, columnar: keys ascending, sums at the same index. */
export interface FlowRun {
  keys: string[];
  tx: number[];
  rx: number[];
}

/**
 * Stamps: one clock for every table, so "the newest change of an hour" is the largest
 * stamp among its tables (see PartitionStore.hourVersion).
 */
let clock = 0;
export function tick(): number {
  return ++clock;
}

/** Tables up to this many keys find a key by scanning; larger ones keep a Map. */
const SCAN_MAX = 8;

/** What only some tables need: the key -> slot Map (past SCAN_MAX keys), the sorted order (once read), removals (reverts). */
interface TableExtra {
  index: Map<string, number> | null;
  order: Uint32Array | null;
  removals: number;
}

/** The capacity after `cap` slots: +2 while small (most tables hold a few flows), then x1.5. */
function grown(cap: number): number {
  return cap < 8 ? cap + 2 : cap + (cap >> 1);
}

/**
 * The flows of one hour in one partition. Most tables are small (an hour's flows are
 * spread over all partitions: ~4 a table in the bench's memory scenario, 256 partitions),
 * so the layout is lean: the keys by slot, the sums interleaved (sums[2*slot] = bytes_tx,
 * sums[2*slot+1] = bytes_rx), both made as large as the batch that creates the table needs
 * and grown in small steps after (doubling left ~45% of the slots unused at ~4 flows a
 * table, and each step's copy is garbage), and five fields, what few tables need kept in
 * `extra` (a store holding a shard's third of the bench's 1M flows, ~4 flows a table:
 * 410 live bytes a table with eight fields and doubling, 335 now).
 */
export class HourTable {
  /** Keys by slot; entries at size and above are unused capacity. */
  keys: string[];
  /** [tx, rx] per slot. */
  sums: number[];
  size = 0;
  /** Stamp of the last change of any sum or key. */
  stamp = 0;
  private extra: TableExtra | null = null;

  /** `capacity`: the slots to make room for (the keys the batch creating the table brings, at most). */
  constructor(capacity = 2) {
    const cap = Math.max(1, capacity);
    this.keys = new Array(cap);
    this.sums = new Array(2 * cap);
  }

  /**
   * Slots removed so far (a removal moves another key into the slot; adding only appends).
   * The set of keys is unchanged as long as (size, removals) is: an added key raises size,
   * a removed one raises removals (src/hour-view.ts checks its views so).
   */
  get removals(): number {
    return this.extra === null ? 0 : this.extra.removals;
  }

  private extras(): TableExtra {
    return (this.extra ??= { index: null, order: null, removals: 0 });
  }

  /** The slot of key, or -1. */
  find(key: string): number {
    const index = this.extra === null ? null : this.extra.index;
    if (index !== null) {
      const slot = index.get(key);
      return slot === undefined ? -1 : slot;
    }
    const keys = this.keys;
    for (let i = 0, n = this.size; i < n; i++) if (keys[i] === key) return i;
    return -1;
  }

  /** The slot of key, created with zero sums when new. */
  slotOf(key: string): number {
    const slot = this.find(key);
    return slot >= 0 ? slot : this.add(key);
  }

  /** Append a key the table does not hold (the caller found none): its new slot, zero sums. */
  add(key: string): number {
    const slot = this.size;
    if (slot === this.keys.length) {
      const cap = grown(slot);
      const keys = new Array<string>(cap);
      const sums = new Array<number>(cap * 2);
      for (let i = 0; i < slot; i++) keys[i] = this.keys[i];
      for (let i = 0; i < slot * 2; i++) sums[i] = this.sums[i];
      this.keys = keys;
      this.sums = sums;
    }
    this.keys[slot] = key;
    this.sums[2 * slot] = 0;
    this.sums[2 * slot + 1] = 0;
    this.size = slot + 1;
    const extra = this.extra;
    if (extra !== null) {
      if (extra.index !== null) extra.index.set(key, slot);
      extra.order = null;
    }
    if (this.size > SCAN_MAX && (extra === null || extra.index === null)) {
      const index = new Map<string, number>();
      for (let i = 0; i < this.size; i++) index.set(this.keys[i], i);
      this.extras().index = index;
    }
    this.stamp = tick();
    return slot;
  }

  /** Remove any slot: the last slot takes its place. */
  removeSlot(slot: number): void {
    const last = this.size - 1;
    const key = this.keys[slot];
    const extra = this.extras();
    if (slot !== last) {
      const moved = this.keys[last];
      this.keys[slot] = moved;
      this.sums[2 * slot] = this.sums[2 * last];
      this.sums[2 * slot + 1] = this.sums[2 * last + 1];
      if (extra.index !== null) extra.index.set(moved, slot);
    }
    this.keys[last] = undefined as unknown as string;
    this.size = last;
    extra.removals++;
    if (extra.index !== null) extra.index.delete(key);
    extra.order = null;
    this.stamp = tick();
  }

  /** Remove the newest slot (rollback of the batch that created it). */
  popSlot(): void {
    const slot = --this.size;
    const extra = this.extras();
    extra.removals++;
    const key = this.keys[slot];
    this.keys[slot] = undefined as unknown as string;
    if (extra.index !== null) extra.index.delete(key);
    extra.order = null;
    this.stamp = tick();
  }

  tx(slot: number): number {
    return this.sums[2 * slot];
  }

  rx(slot: number): number {
    return this.sums[2 * slot + 1];
  }

  sortedSlots(): Uint32Array {
    const extra = this.extras();
    if (extra.order === null) {
      const keys = this.keys;
      const order = new Uint32Array(this.size);
      for (let i = 0; i < order.length; i++) order[i] = i;
      order.sort((a, b) => (keys[a] < keys[b] ? -1 : 1));
      extra.order = order;
    }
    return extra.order;
  }

  /** The hour's flows in key order, optionally filtered. */
  read(matches: ((key: string) => boolean) | null): FlowRun {
    const order = this.sortedSlots();
    const n = order.length;
    const run: FlowRun = { keys: new Array(n), tx: new Array(n), rx: new Array(n) };
    const sums = this.sums;
    let j = 0;
    for (let i = 0; i < n; i++) {
      const slot = order[i];
      const key = this.keys[slot];
      if (matches !== null && !matches(key)) continue;
      run.keys[j] = key;
      run.tx[j] = sums[2 * slot];
      run.rx[j] = sums[2 * slot + 1];
      j++;
    }
    if (j < n) {
      run.keys.length = j;
      run.tx.length = j;
      run.rx.length = j;
    }
    return run;
  }
}

/**
 * Merge sorted runs (keys distinct across runs: each flow lives in one partition)
 * into one sorted run, by a balanced tree of two-way merges.
 */
export function mergeRuns(runs: FlowRun[]): FlowRun {
  if (runs.length === 0) return { keys: [], tx: [], rx: [] };
  let level = runs;
  while (level.length > 1) {
    const next: FlowRun[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(i + 1 < level.length ? mergeTwo(level[i], level[i + 1]) : level[i]);
    }
    level = next;
  }
  return level[0];
}

function mergeTwo(a: FlowRun, b: FlowRun): FlowRun {
  const n = a.keys.length + b.keys.length;
  const out: FlowRun = { keys: new Array(n), tx: new Array(n), rx: new Array(n) };
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.keys.length && j < b.keys.length) {
    if (a.keys[i] < b.keys[j]) {
      out.keys[k] = a.keys[i];
      out.tx[k] = a.tx[i];
      out.rx[k++] = a.rx[i++];
    } else {
      out.keys[k] = b.keys[j];
      out.tx[k] = b.tx[j];
      out.rx[k++] = b.rx[j++];
    }
  }
  for (; i < a.keys.length; i++, k++) {
    out.keys[k] = a.keys[i];
    out.tx[k] = a.tx[i];
    out.rx[k] = a.rx[i];
  }
  for (; j < b.keys.length; j++, k++) {
    out.keys[k] = b.keys[j];
    out.tx[k] = b.tx[j];
    out.rx[k] = b.rx[j];
  }
  return out;
}
