/**
 * A primary's side of top-N and of the hour bounds: per-group sums of its partitions'
 * flows over a range of hours (paged to remote callers under the message limit, the
 * rest kept behind a cursor), and the oldest and newest hour they hold.
 *
 * Fenced like every shard read (ReadPath.confirmServing, handed in): a primary that
 * was replaced and has not heard of it refuses instead of answering from old state. A
 * range can hold many flows, so the sums are added a partition-hour at a time, giving
 * the event loop back every YIELD_MS (a node that stops beating is judged lost); the
 * node is confirmed again at the end, as its partitions may have moved meanwhile.
 *
 * No Moleculer: the checks and the clock are handed in.
 */
import { randomUUID } from "crypto";
import type { HourTable, PartitionStore } from "../partition-store";
import { keyMatcher } from "../flow-key";
import { BoundedCursors } from "../cursors";
import { cursorExpired, MESSAGE_BYTES, noSuchPage, type GroupsMoreParams, type GroupsPage, type GroupsParams, type HourBounds, type HoursParams } from "../protocol";
import { encodeRunPage, RUN_PAGE_VERSION_AT } from "../wire/run-codec";
import { encodeFieldGroupsPages } from "../wire/field-groups-codec";
import { fieldGroupsOfKeys, groupColumnsOfFields, GroupSums, groupKeyOf, type FieldGroups } from "./top";
import { groupIdsOf, type GroupIds } from "./group-ids";
import { PagesAhead } from "./pages-ahead";

/** Longest stretch of adding up before the event loop gets a turn. */
const YIELD_MS = 20;

/**
 * Every hour table keeps, per grouping asked for, the group id (src/query/group-ids.ts)
 * of each slot, and a query adds into arrays indexed by id: no string work for hours
 * asked before. Adding flows only appends slots, so a table's list is extended; a
 * removed slot (a reverted request) makes it rebuilt. The lists live as long as their
 * table (WeakMap); a renumbering of the grouping's ids makes them rebuilt too.
 */
interface SlotIds {
  generation: number;
  removals: number;
  ids: number[];
}
const slotIdsByTable = new WeakMap<HourTable, Map<string, SlotIds>>();

/** The group id of every slot of `table` under `grouping`; null when the ids were renumbered meanwhile. */
function slotIds(table: HourTable, grouping: string, registry: GroupIds, groupOf: (key: string) => string): number[] | null {
  let perTable = slotIdsByTable.get(table);
  if (perTable === undefined) slotIdsByTable.set(table, (perTable = new Map()));
  let cached = perTable.get(grouping);
  if (cached === undefined || cached.removals !== table.removals || cached.generation !== registry.generation) {
    cached = { generation: registry.generation, removals: table.removals, ids: [] };
    perTable.set(grouping, cached);
  }
  const { ids } = cached;
  for (let slot = ids.length; slot < table.size; slot++) ids.push(registry.idOf(groupOf(table.keys[slot])));
  // Renumbered while this list was extended: its first ids are stale (the query starts over).
  return cached.generation === registry.generation ? ids : null;
}

export interface ShardQueriesOptions {
  store: PartitionStore;
  /** Resolves once this node is the confirmed serving primary of the partitions; else throws (ReadPath.confirmServing). */
  confirmServing(partitions: readonly number[], epoch: number): Promise<void>;
  now(): number;
  cursorMs: number;
}

/** A remote caller's answer, every page encoded at once (the first already sent). */
interface GroupsCursor {
  pages: Buffer[];
  /** Pages after the first handed out (the cursor goes once each has been). */
  served: Set<number>;
  /** The page for a caller that asks for the next one. */
  next: number;
  groups: number;
  expires: number;
}

/** Whether `page` is one of the cursor's pages after the first. */
const hasPage = (cursor: GroupsCursor, page: number): boolean => Number.isInteger(page) && page >= 1 && page < cursor.pages.length;

function grown(values: Float64Array, size: number): Float64Array {
  const out = new Float64Array(size);
  out.set(values);
  return out;
}

/** Top-N answers paged out at a time, and the partial groups they hold in all (bounded: gateways create them). */
export const MAX_GROUPS_CURSORS = 256;
export const MAX_CURSOR_GROUPS = 8_000_000;
/** The longest cursor id a caller may choose (a UUID is 36). */
const MAX_CURSOR_ID = 64;
/** How long a page asked for ahead waits for its query to arrive. */
const AHEAD_WAIT_MS = 1000;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class ShardQueries {
  private readonly cursors = new BoundedCursors<GroupsCursor>(MAX_GROUPS_CURSORS, MAX_CURSOR_GROUPS, (c) => c.groups);
  private readonly ahead = new PagesAhead(MAX_GROUPS_CURSORS, AHEAD_WAIT_MS);

  constructor(private readonly o: ShardQueriesOptions) {}

  async groups(params: GroupsParams, remote: boolean): Promise<GroupsPage | Buffer> {
    const { epoch, partitions } = params;
    this.expire(this.o.now());
    const id = typeof params.cursorId === "string" && params.cursorId.length <= MAX_CURSOR_ID ? params.cursorId : randomUUID();
    this.ahead.started(id);
    try {
      // The bucket is asked while the flows are added up (nothing is answered before it
      // confirms); the cheap local refusals come first, in this turn.
      const confirmed = this.o.confirmServing(partitions, epoch);
      confirmed.catch(() => undefined);
      // Renumbered meanwhile (the ids ran out): once more from scratch; a query with more
      // groups than the ids can number is added up by key instead.
      const sums = (await this.sumsById(params, remote)) ?? (await this.sumsById(params, remote)) ?? (await this.sumsByKey(params));
      await confirmed;
      // Confirmed again after the read (its partitions may have moved meanwhile), the pages encoded meanwhile.
      const again = this.o.confirmServing(partitions, epoch);
      again.catch(() => undefined);
      const answer = this.page(sums, remote, params.fieldPages === true, params.alignedPages === true, id);
      await again;
      return answer;
    } finally {
      this.ahead.finished(id);
    }
  }

  /**
   * Page `page` asked for ahead, with the groups query that names `id` (sent together, so
   * the pages travel at once): waits for that query, then answers the page, or an empty
   * Buffer when the answer has no such page or is gone (the caller then asks as usual).
   */
  async groupsAhead(id: string, page: number): Promise<Buffer> {
    await this.ahead.settled(id);
    const cursor = this.cursors.peek(id);
    if (cursor === undefined || !hasPage(cursor, page) || cursor.served.has(page)) return Buffer.alloc(0);
    return this.groupsMore(id, page);
  }

  /** The groups action's answer: a query, a page asked for ahead, or a page after the first. */
  answer(params: GroupsParams | GroupsMoreParams, remote: boolean): Promise<GroupsPage | Buffer> | Buffer {
    if (!("cursor" in params)) return this.groups(params, remote);
    return params.ahead === true ? this.groupsAhead(params.cursor, params.page ?? 1) : this.groupsMore(params.cursor, params.page);
  }

  /**
   * The per-group sums added by group id; null when the grouping's ids were renumbered
   * meanwhile. For another process, in key order (the ids' order is kept: 1.0-1.4 ms for 98k
   * of 100k groups, micro-benchmark), so the gateway adds each page up in ascending places: in random order its
   * adding up of a 1M-flow hour's ~300k partial groups took ~9.5 ms, in order ~5.5 ms.
   */
  private async sumsById(params: GroupsParams, inKeyOrder: boolean): Promise<FieldGroups | null> {
    const { by, filter } = params;
    const groupOf = groupKeyOf(by, {}) as (key: string) => string;
    const grouping = by.join(",");
    const registry = groupIdsOf(by);
    const matches = keyMatcher(filter);
    // Sums by group id, grown as ids appear (sized for the ids known: a repeated query never grows them); `seen` lists the ids this query touched.
    const size = Math.max(1024, registry.size);
    let tx: Float64Array = new Float64Array(size);
    let rx: Float64Array = new Float64Array(size);
    let flows: Float64Array = new Float64Array(size);
    const seen: number[] = [];
    const generation = registry.generation;
    const complete = await this.eachTable(params, (table) => {
      const ids = slotIds(table, grouping, registry, groupOf);
      if (ids === null || registry.generation !== generation) return false;
      if (registry.size > tx.length) {
        const size = Math.max(registry.size, tx.length * 2);
        tx = grown(tx, size);
        rx = grown(rx, size);
        flows = grown(flows, size);
      }
      const { keys, sums: values } = table;
      for (let slot = 0, n = table.size; slot < n; slot++) {
        if (matches !== null && !matches(keys[slot])) continue;
        const id = ids[slot];
        if (flows[id] === 0) seen.push(id);
        tx[id] += values[2 * slot];
        rx[id] += values[2 * slot + 1];
        flows[id]++;
      }
      return true;
    });
    if (!complete) return null;
    // Columns straight from the ids (each id is in `seen` once): no Map of the keys.
    return registry.fieldGroups(inKeyOrder ? registry.groups.sorted(seen) : seen, { tx, rx, flows });
  }

  /** The per-group sums added by group key (a query with more groups than the ids number). */
  private async sumsByKey(params: GroupsParams): Promise<FieldGroups> {
    const group = groupKeyOf(params.by, params.filter);
    const sums = new GroupSums();
    await this.eachTable(params, (table) => {
      for (let slot = 0, n = table.size; slot < n; slot++) {
        const g = group(table.keys[slot]);
        if (g !== null) sums.add(g, table.sums[2 * slot], table.sums[2 * slot + 1], 1);
      }
      return true;
    });
    return fieldGroupsOfKeys(sums, params.by.length);
  }

  /**
   * visit(table) for each non-empty hour table of the query's partitions and hours, the
   * event loop getting a turn every YIELD_MS; false as soon as a visit returns false.
   */
  private async eachTable(params: GroupsParams, visit: (table: HourTable) => boolean): Promise<boolean> {
    let turn = performance.now();
    for (let hour = params.from; hour <= params.to; hour++) {
      for (const p of params.partitions) {
        const table = this.o.store.partitions.get(p)?.hours.get(hour);
        if (table !== undefined && table.size > 0 && !visit(table)) return false;
        if (performance.now() - turn > YIELD_MS) {
          await nextTurn();
          turn = performance.now();
        }
      }
    }
    return true;
  }

  /** Page `page` of a remote caller's groups, or the next one (bytes). */
  groupsMore(id: string, page?: number): Buffer {
    const cursor = this.cursors.take(id);
    if (!cursor) throw cursorExpired();
    const index = page ?? cursor.next;
    if (!hasPage(cursor, index)) {
      this.cursors.keep(id, cursor);
      throw noSuchPage(page, cursor.pages.length);
    }
    cursor.served.add(index);
    cursor.next = index + 1;
    if (cursor.served.size < cursor.pages.length - 1) this.cursors.keep(id, { ...cursor, expires: this.o.now() + this.o.cursorMs });
    return cursor.pages[index];
  }

  async hours(params: HoursParams): Promise<HourBounds> {
    await this.o.confirmServing(params.partitions, params.epoch);
    return this.o.store.hourBounds(params.partitions);
  }

  /** Drop cursors nobody asked for in time (checked at every new query). */
  expire(now: number): void {
    this.cursors.expire(now);
  }

  /**
   * In process, the sums themselves; to another process, binary pages, every page encoded
   * now, the first answered and the rest kept for the caller to ask for at once:
   * field-groups pages (src/wire/field-groups-codec.ts) when asked for, else run pages of
   * group keys (a gateway of an older version, which adds them up by key).
   */
  private page(groups: FieldGroups, remote: boolean, fieldPages: boolean, aligned: boolean, id: string): GroupsPage | Buffer {
    if (!remote) return { groups };
    const count = groups.tx.length;
    let pages: Buffer[];
    if (fieldPages) pages = encodeFieldGroupsPages(groups, MESSAGE_BYTES, id, aligned);
    else {
      const sums = groupColumnsOfFields(groups);
      pages = [];
      for (let offset = 0; pages.length === 0 || offset < count; ) {
        const { bytes, next } = encodeRunPage(0, sums, offset, MESSAGE_BYTES, () => id, sums.flows);
        pages.push(bytes);
        offset = next;
      }
      for (const page of pages) page.writeDoubleLE(pages.length, RUN_PAGE_VERSION_AT);
    }
    if (pages.length > 1) this.cursors.keep(id, { pages, served: new Set(), next: 1, groups: count, expires: this.o.now() + this.o.cursorMs });
    return pages[0];
  }
}
