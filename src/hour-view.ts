/**
 * Merged views of an hour over a list of partitions: the hour's keys in order, with the
 * (table, slot) each comes from, so a read gathers the live sums without sorting or
 * merging again. Kept for the last VIEW_CACHE_HOURS hours read (PartitionStore.read).
 *
 * A view is valid while every listed partition has the same table object for the hour
 * with the same size and removals (the table's set of keys unchanged). When the hour gains keys (slots are only appended, no slot
 * removed), the view is extended instead of rebuilt: the new keys are sorted and merged
 * into it, O(n + m log m) for m new keys, where a rebuild merges every partition's run
 * again (~35-90 ms for an hour of 100k flows over 256 partitions; the extension ~2 ms).
 * A removed slot, a partition dropped, loaded or filled anew: rebuilt.
 *
 * Key columns: arrays aligned with a view's keys that a reader derives from them (the
 * JSON text of each key, src/query/flow-render.ts) can be kept with the view
 * (keyColumns(view.keys), a Map by name); an extension moves the Map to the new keys and
 * carries each column over, with holes (undefined) at the new keys, so what was derived
 * from a key is derived once, not on every read. The columns live as long as the view.
 */
import { mergeRuns, type FlowRun, type HourTable } from "./hour-table";

/**
 * Views kept (the least recently read first out): at most this many hours, and this many
 * flows in all (~14 bytes a flow: a key reference, a table index and a slot). A range
 * read of a day of 100k-flow hours keeps every hour's view, so reading the day again
 * merges no partition's run (with 8 hours kept, a 24-hour read rebuilt every view it
 * read, ~20% of an embedded range read's time).
 */
export const VIEW_CACHE_HOURS = 168;
export const VIEW_CACHE_FLOWS = 4_000_000;

export interface HourView {
  ids: number[];
  tables: (HourTable | undefined)[];
  /** Each table's size and removals when the view was made (appended slots are size and up). */
  sizes: number[];
  removals: number[];
  /** Frozen: handed out as is by PartitionStore.read. */
  keys: readonly string[];
  /** Per merged position: index into tables, and slot. */
  table: Uint16Array | Uint32Array;
  slot: Uint32Array;
}

/** Columns kept with a view's keys, by name; entries undefined until derived. */
export type KeyColumns = Map<string, unknown[]>;
const columnsOfKeys = new WeakMap<readonly string[], KeyColumns>();

/** The columns kept with these keys, if they are a view's keys (frozen, as PartitionStore.read hands them out). */
export function keyColumns(keys: readonly string[]): KeyColumns | undefined {
  return columnsOfKeys.get(keys);
}

export class HourViews {
  private readonly views = new Map<number, HourView>();
  private flows = 0;

  constructor(
    private readonly maxHours = VIEW_CACHE_HOURS,
    private readonly maxFlows = VIEW_CACHE_FLOWS,
  ) {}

  /** The view of hour over ids (whose tables are given), extended or rebuilt when stale. */
  get(hour: number, ids: number[], tables: (HourTable | undefined)[]): HourView {
    const cached = this.views.get(hour);
    let view: HourView | null = null;
    if (cached !== undefined && sameIds(cached.ids, ids)) {
      if (isCurrent(cached, tables)) {
        // Most recently read last.
        this.views.delete(hour);
        this.views.set(hour, cached);
        return cached;
      }
      view = extended(cached, tables);
    }
    view ??= built(ids, tables);
    this.delete(hour);
    this.views.set(hour, view);
    this.flows += view.keys.length;
    // The view just read stays, however large.
    while (this.views.size > 1 && (this.views.size > this.maxHours || this.flows > this.maxFlows)) this.delete(this.views.keys().next().value as number);
    return view;
  }

  delete(hour: number): void {
    const view = this.views.get(hour);
    if (view === undefined) return;
    this.flows -= view.keys.length;
    this.views.delete(hour);
  }

  /** Hours and flows kept (for tests). */
  get kept(): { hours: number; flows: number } {
    return { hours: this.views.size, flows: this.flows };
  }
}

/** The hour's flows through a view, sums read live, filtered by `matches` (null: every flow; the view's own frozen keys). */
export function readView(view: HourView, matches: ((key: string) => boolean) | null): FlowRun {
  const n = view.keys.length;
  const tx: number[] = new Array(n);
  const rx: number[] = new Array(n);
  const viewTable = view.table;
  const viewSlot = view.slot;
  const sumsOf: number[][] = view.tables.map((t) => (t === undefined ? [] : t.sums));
  if (matches === null) {
    for (let i = 0; i < n; i++) {
      const sums = sumsOf[viewTable[i]];
      const slot = viewSlot[i];
      tx[i] = sums[2 * slot];
      rx[i] = sums[2 * slot + 1];
    }
    return { keys: view.keys as string[], tx, rx };
  }
  const keys: string[] = [];
  let j = 0;
  for (let i = 0; i < n; i++) {
    const key = view.keys[i];
    if (!matches(key)) continue;
    const sums = sumsOf[viewTable[i]];
    const slot = viewSlot[i];
    keys.push(key);
    tx[j] = sums[2 * slot];
    rx[j] = sums[2 * slot + 1];
    j++;
  }
  tx.length = j;
  rx.length = j;
  return { keys, tx, rx };
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether table i still holds the keys it held when the view was made (HourTable.removals says why this tells). */
function sameKeys(view: HourView, i: number, t: HourTable): boolean {
  return view.sizes[i] === t.size && view.removals[i] === t.removals;
}

function isCurrent(view: HourView, tables: readonly (HourTable | undefined)[]): boolean {
  for (let i = 0; i < tables.length; i++) {
    const t = tables[i];
    if (view.tables[i] !== t || (t !== undefined && !sameKeys(view, i, t))) return false;
  }
  return true;
}

function indexArray(tables: number, n: number): Uint16Array | Uint32Array {
  return tables <= 0xffff ? new Uint16Array(n) : new Uint32Array(n);
}

function made(ids: number[], tables: (HourTable | undefined)[], keys: string[], table: Uint16Array | Uint32Array, slot: Uint32Array): HourView {
  const view: HourView = {
    ids,
    tables,
    sizes: tables.map((t) => (t === undefined ? 0 : t.size)),
    removals: tables.map((t) => (t === undefined ? 0 : t.removals)),
    keys: Object.freeze(keys),
    table,
    slot,
  };
  return view;
}

/** Merge the tables' sorted slots, carrying (table index, slot) along as the run's sums. */
function built(ids: number[], tables: (HourTable | undefined)[]): HourView {
  const runs: FlowRun[] = [];
  for (let t = 0; t < tables.length; t++) {
    const table = tables[t];
    if (table === undefined || table.size === 0) continue;
    const order = table.sortedSlots();
    const keys: string[] = new Array(order.length);
    const which: number[] = new Array(order.length);
    const slots: number[] = new Array(order.length);
    for (let i = 0; i < order.length; i++) {
      keys[i] = table.keys[order[i]];
      which[i] = t;
      slots[i] = order[i];
    }
    runs.push({ keys, tx: which, rx: slots });
  }
  const merged = mergeRuns(runs);
  const view = made(ids, tables, merged.keys, tables.length <= 0xffff ? Uint16Array.from(merged.tx) : Uint32Array.from(merged.tx), Uint32Array.from(merged.rx));
  columnsOfKeys.set(view.keys, new Map());
  return view;
}

/** The view with the slots appended since it was made merged in; null when something else changed. */
function extended(view: HourView, tables: (HourTable | undefined)[]): HourView | null {
  const addedKeys: string[] = [];
  const addedTable: number[] = [];
  const addedSlot: number[] = [];
  for (let i = 0; i < tables.length; i++) {
    const t = tables[i];
    const was = view.tables[i];
    if (t === undefined) {
      if (was !== undefined) return null;
      continue;
    }
    let from: number;
    if (was === t) {
      if (sameKeys(view, i, t)) continue;
      if (t.removals !== view.removals[i] || t.size < view.sizes[i]) return null;
      from = view.sizes[i];
    } else if (was === undefined) from = 0; // a table new to the hour: all of it is new
    else return null;
    for (let slot = from; slot < t.size; slot++) {
      addedKeys.push(t.keys[slot]);
      addedTable.push(i);
      addedSlot.push(slot);
    }
  }
  const m = addedKeys.length;
  const order = Array.from({ length: m }, (_, i) => i).sort((a, b) => (addedKeys[a] < addedKeys[b] ? -1 : 1));
  const n = view.keys.length;
  const keys: string[] = new Array(n + m);
  const table = indexArray(tables.length, n + m);
  const slot = new Uint32Array(n + m);
  /** Where each new key went, ascending. */
  const inserted = new Uint32Array(m);
  const old = view.keys;
  let i = 0;
  let j = 0;
  for (let k = 0; k < n + m; k++) {
    if (j < m && (i >= n || addedKeys[order[j]] < old[i])) {
      const a = order[j];
      keys[k] = addedKeys[a];
      table[k] = addedTable[a];
      slot[k] = addedSlot[a];
      inserted[j++] = k;
    } else {
      keys[k] = old[i];
      table[k] = view.table[i];
      slot[k] = view.slot[i++];
    }
  }
  const next = made(view.ids, tables, keys, table, slot);
  // The same Map moves to the new keys (its holders keep track of it), each column copied
  // with holes at the new keys; the old keys keep no columns (a reader still on them derives afresh).
  const columns = columnsOfKeys.get(view.keys) ?? new Map();
  columnsOfKeys.delete(view.keys);
  for (const [name, column] of columns) columns.set(name, carried(column, inserted, n + m));
  columnsOfKeys.set(next.keys, columns);
  return next;
}

/** A column for the extended keys: the same entries, holes where keys were inserted. */
function carried(column: unknown[], inserted: Uint32Array, size: number): unknown[] {
  const next: unknown[] = new Array(size);
  let from = 0;
  let j = 0;
  for (let k = 0; k < size; k++) {
    if (j < inserted.length && inserted[j] === k) {
      next[k] = undefined;
      j++;
    } else next[k] = column[from++];
  }
  return next;
}
