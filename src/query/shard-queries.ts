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
import type { PartitionStore } from "../partition-store";
import { cursorExpired, MESSAGE_BYTES, type GroupsPage, type GroupsParams, type HourBounds, type HoursParams } from "../protocol";
import { GroupSums, groupKeyOf, pageOfGroups } from "./top";

/** Longest stretch of adding up before the event loop gets a turn. */
const YIELD_MS = 20;

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

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class ShardQueries {
  private readonly cursors = new Map<string, GroupsCursor>();

  constructor(private readonly o: ShardQueriesOptions) {}

  async groups(params: GroupsParams, remote: boolean): Promise<GroupsPage> {
    const { epoch, partitions, from, to, filter, by } = params;
    this.expire(this.o.now());
    await this.o.confirmServing(partitions, epoch);
    const sums = new GroupSums();
    const groupOf = groupKeyOf(by, filter);
    const add = (key: string, tx: number, rx: number) => {
      const group = groupOf(key);
      if (group !== null) sums.add(group, tx, rx, 1);
    };
    let turn = performance.now();
    for (let hour = from; hour <= to; hour++) {
      for (const p of partitions) {
        this.o.store.forEachFlow(p, hour, add);
        if (performance.now() - turn > YIELD_MS) {
          await nextTurn();
          turn = performance.now();
        }
      }
    }
    await this.o.confirmServing(partitions, epoch);
    return this.page(sums, remote);
  }

  groupsMore(id: string): GroupsPage {
    const cursor = this.cursors.get(id);
    if (!cursor) throw cursorExpired();
    const { page, next } = pageOfGroups(cursor.sums, cursor.offset, MESSAGE_BYTES);
    cursor.offset = next;
    const done = next >= cursor.sums.size;
    if (done) this.cursors.delete(id);
    return { groups: page, cursor: done ? null : id };
  }

  async hours(params: HoursParams): Promise<HourBounds> {
    await this.o.confirmServing(params.partitions, params.epoch);
    return this.o.store.hourBounds(params.partitions);
  }

  /** Drop cursors nobody asked for in time (checked at every new query). */
  expire(now: number): void {
    for (const [id, c] of this.cursors) if (c.expires < now) this.cursors.delete(id);
  }

  private page(sums: GroupSums, remote: boolean): GroupsPage {
    const all = { keys: sums.keys, tx: sums.tx, rx: sums.rx, flows: sums.flows };
    if (!remote) return { groups: all, cursor: null };
    const { page, next } = pageOfGroups(sums, 0, MESSAGE_BYTES);
    if (next >= sums.size) return { groups: all, cursor: null };
    const id = randomUUID();
    this.cursors.set(id, { sums, offset: next, expires: this.o.now() + this.o.cursorMs });
    return { groups: page, cursor: id };
  }
}
