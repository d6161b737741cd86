/**
 * A range read: the flows of hours from..to, hour by hour, as the gateway streams them
 * (read one hour from the shards, hand it on in slices, then the next). At most the
 * hour being handed on and the next one (read meanwhile) are held, however long the
 * range: an answer is never built whole on the gateway.
 */
import type { FlowRecord } from "../batching";
import { toFlowRecords } from "../flow-key";
import type { FlowRun } from "../partition-store";

/** Records per slice handed on (each slice is rendered and written on its own). */
export const RANGE_SLICE = 4096;

/**
 * The flows of hours from..to in slices of at most `slice` records, ordered by hour
 * then as one hour's read is. The first hour is read before this resolves, so a read
 * that cannot be served fails before an answer has begun.
 */
export async function readRange(from: number, to: number, readHour: (hour: number) => Promise<FlowRun>, slice = RANGE_SLICE): Promise<AsyncGenerator<FlowRecord[]>> {
  const first = await readHour(from);
  return slicesOfRange(from, to, first, readHour, slice);
}

async function* slicesOfRange(from: number, to: number, first: FlowRun, readHour: (hour: number) => Promise<FlowRun>, slice: number): AsyncGenerator<FlowRecord[]> {
  let run = first;
  for (let hour = from; ; hour++) {
    let next: Promise<FlowRun> | null = null;
    if (hour < to) {
      next = readHour(hour + 1);
      // A reader that stops early (the client went away) never awaits it: its failure is nobody's.
      next.catch(() => undefined);
    }
    for (let i = 0; i < run.keys.length; i += slice) {
      const end = Math.min(i + slice, run.keys.length);
      yield toFlowRecords(hour, run.keys.slice(i, end), run.tx.slice(i, end), run.rx.slice(i, end));
    }
    if (next === null) return;
    run = await next;
  }
}

/** Every record of a range read, in one array (for broker callers, who get the array). */
export async function collectRange(slices: AsyncIterable<FlowRecord[]>): Promise<FlowRecord[]> {
  const out: FlowRecord[] = [];
  for await (const records of slices) for (const r of records) out.push(r);
  return out;
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
