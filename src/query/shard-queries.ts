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
import { cursorExpired, MESSAGE_BYTES, type GroupsPage, type GroupsParams, type HourBounds, type HoursParams } from "../protocol";
import { encodeRunPage } from "../wire/run-codec";
import { GroupSums, groupKeyOf } from "./top";

/** Longest stretch of adding up before the event loop gets a turn. */
const YIELD_MS = 20;

/**
 * Group ids, per grouping (the `by` fields): cutting a group out of each flow key (a
 * substring, then hashing it into the sums' Map) was most of a top-N's time (~0.5 µs a
 * flow). Instead every hour table keeps, per grouping asked for, the id of each slot's
 * group, and a query adds into arrays indexed by id: no string work for hours asked
 * before. Adding flows only appends slots, so a table's list is extended; a removed slot
 * (a reverted request) makes it rebuilt. The lists live as long as their table (WeakMap);
 * the ids of a grouping are renumbered from scratch past MAX_GROUP_IDS (old lists rebuilt).
 */
const MAX_GROUP_IDS = 1_000_000;

class GroupIds {
  generation = 0;
  readonly keys: string[] = [];
  private readonly ids = new Map<string, number>();

  idOf(group: string): number {
    let id = this.ids.get(group);
    if (id === undefined) {
      if (this.keys.length >= MAX_GROUP_IDS) this.reset();
      id = this.keys.length;
      this.ids.set(group, id);
      this.keys.push(group);
    }
    return id;
  }

  private reset(): void {
    this.ids.clear();
    this.keys.length = 0;
    this.generation++;
  }
}

const groupIdsByGrouping = new Map<string, GroupIds>();

interface SlotIds {
  generation: number;
  removals: number;
  ids: number[];
}
const slotIdsByTable = new WeakMap<HourTable, Map<string, SlotIds>>();

/** The group id of every slot of `table` under `grouping`. */
function slotIds(table: HourTable, grouping: string, registry: GroupIds, groupOf: (key: string) => string): number[] {
  let perTable = slotIdsByTable.get(table);
  if (perTable === undefined) slotIdsByTable.set(table, (perTable = new Map()));
  let cached = perTable.get(grouping);
  if (cached === undefined || cached.removals !== table.removals || cached.generation !== registry.generation) {
    cached = { generation: registry.generation, removals: table.removals, ids: [] };
    perTable.set(grouping, cached);
  }
  const { ids } = cached;
  for (let slot = ids.length; slot < table.size; slot++) ids.push(registry.idOf(groupOf(table.keys[slot])));
  // Numbering restarted while this list was extended: its first ids are stale.
  if (cached.generation !== registry.generation) return slotIds(table, grouping, registry, groupOf);
  return ids;
}

export interface ShardQueriesOptions {
  store: PartitionStore;
  /** Resolves once this node is the confirmed serving primary of the partitions; else throws (ReadPath.confirmServing). */
  confirmServing(partitions: readonly number[], epoch: number): Promise<void>;
  now(): number;
  cursorMs: number;
}

interface GroupsCursor {
  sums: GroupSums;
  offset: number;
  expires: number;
}

function grown(values: Float64Array, size: number): Float64Array {
  const out = new Float64Array(size);
  out.set(values);
  return out;
}

/** Top-N answers paged out at a time, and the partial groups they hold in all (bounded: gateways create them). */
export const MAX_GROUPS_CURSORS = 256;
export const MAX_CURSOR_GROUPS = 8_000_000;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class ShardQueries {
  private readonly cursors = new BoundedCursors<GroupsCursor>(MAX_GROUPS_CURSORS, MAX_CURSOR_GROUPS, (c) => c.sums.size);

  constructor(private readonly o: ShardQueriesOptions) {}

  async groups(params: GroupsParams, remote: boolean): Promise<GroupsPage | Buffer> {
    const { epoch, partitions, from, to, filter, by } = params;
    this.expire(this.o.now());
    await this.o.confirmServing(partitions, epoch);
    const groupOf = groupKeyOf(by, {}) as (key: string) => string;
    const grouping = by.join(",");
    let registry = groupIdsByGrouping.get(grouping);
    if (registry === undefined) groupIdsByGrouping.set(grouping, (registry = new GroupIds()));
    const matches = keyMatcher(filter);
    // Sums by group id, grown as ids appear; `seen` lists the ids this query touched.
    let tx: Float64Array = new Float64Array(1024);
    let rx: Float64Array = new Float64Array(1024);
    let flows: Float64Array = new Float64Array(1024);
    const seen: number[] = [];
    const generation = registry.generation;
    let turn = performance.now();
    for (let hour = from; hour <= to; hour++) {
      for (const p of partitions) {
        const table = this.o.store.partitions.get(p)?.hours.get(hour);
        if (table !== undefined && table.size > 0) {
          const ids = slotIds(table, grouping, registry, groupOf);
          if (registry.generation !== generation) return this.groups(params, remote); // renumbered meanwhile: start over
          if (registry.keys.length > tx.length) {
            const size = Math.max(registry.keys.length, tx.length * 2);
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
        }
        if (performance.now() - turn > YIELD_MS) {
          await nextTurn();
          turn = performance.now();
        }
      }
    }
    const sums = new GroupSums();
    for (const id of seen) sums.add(registry.keys[id], tx[id], rx[id], flows[id]);
    await this.o.confirmServing(partitions, epoch);
    return this.page(sums, remote);
  }

  /** The next page of a remote caller's groups (bytes). */
  groupsMore(id: string): Buffer {
    const cursor = this.cursors.take(id);
    if (!cursor) throw cursorExpired();
    return this.remotePage(cursor.sums, cursor.offset, id);
  }

  async hours(params: HoursParams): Promise<HourBounds> {
    await this.o.confirmServing(params.partitions, params.epoch);
    return this.o.store.hourBounds(params.partitions);
  }

  /** Drop cursors nobody asked for in time (checked at every new query). */
  expire(now: number): void {
    this.cursors.expire(now);
  }

  /** In process, the sums themselves; to another process, binary pages (src/wire/run-codec.ts, with the flows column). */
  private page(sums: GroupSums, remote: boolean): GroupsPage | Buffer {
    if (!remote) return { groups: { keys: sums.keys, tx: sums.tx, rx: sums.rx, flows: sums.flows }, cursor: null };
    return this.remotePage(sums, 0, null);
  }

  /** The page at offset; the rest (if any) kept under `id` (a new one for a query's first page). */
  private remotePage(sums: GroupSums, offset: number, id: string | null): Buffer {
    const { bytes } = encodeRunPage(
      0,
      sums,
      offset,
      MESSAGE_BYTES,
      (next) => {
        const cursorId = id ?? randomUUID();
        this.cursors.keep(cursorId, { sums, offset: next, expires: this.o.now() + this.o.cursorMs });
        return cursorId;
      },
      sums.flows,
    );
    return bytes;
  }
}
