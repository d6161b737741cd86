/**
 * A range read: the flows of hours from..to, hour by hour, as the gateway streams them
 * (read one hour's first pages from the shards, merge it as its pages arrive and hand it
 * on, then the next). At most the hour being handed on (a page or two per node) and the
 * next one's first pages (read meanwhile) are held, however long the range: an answer is
 * never built whole on the gateway.
 */
import type { HourSlices } from "./flow-render";
import { MERGE_SLICE, mergePaged, type Paged } from "./hour-merge";

/**
 * The flows of hours from..to, hour by hour, each hour's merged in slices of at most
 * `slice` flows. The first hour is read before this resolves, so a read that cannot be
 * served fails before an answer has begun. `readHour` answers an hour's first page from
 * each owner node.
 */
export async function readRange(from: number, to: number, readHour: (hour: number) => Promise<Paged[]>, slice = MERGE_SLICE): Promise<AsyncGenerator<HourSlices>> {
  const first = await readHour(from);
  return hoursOfRange(from, to, first, readHour, slice);
}

async function* hoursOfRange(from: number, to: number, first: Paged[], readHour: (hour: number) => Promise<Paged[]>, slice: number): AsyncGenerator<HourSlices> {
  let sources = first;
  for (let hour = from; ; hour++) {
    let next: Promise<Paged[]> | null = null;
    if (hour < to) {
      next = readHour(hour + 1);
      // A reader that stops early (the client went away) never awaits it: its failure is nobody's.
      next.catch(() => undefined);
    }
    yield { hour, slices: mergePaged(sources, slice) };
    if (next === null) return;
    sources = await next;
  }
}

/** The oldest and newest hour over every primary's bounds (null: no primary holds any). */
export function widestHours(bounds: readonly { oldest: number | null; newest: number | null }[]): { newest: number | null; oldest: number | null } {
  let oldest: number | null = null;
  let newest: number | null = null;
  for (const b of bounds) {
    if (b.oldest !== null && (oldest === null || b.oldest < oldest)) oldest = b.oldest;
    if (b.newest !== null && (newest === null || b.newest > newest)) newest = b.newest;
  }
  return { newest, oldest };
}
