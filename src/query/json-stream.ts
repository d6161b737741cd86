/**
 * A JSON array written as it is read: `[`, the items of each slice, `]`. Each slice is
 * stringified on its own, so nothing larger than a slice is ever one string, and the
 * stream pulls the next slice only when the client has taken the last (backpressure).
 */
import { Readable } from "stream";

export async function* jsonArrayChunks(slices: AsyncIterable<readonly object[]>): AsyncGenerator<string> {
  let first = true;
  yield "[";
  for await (const items of slices) {
    if (items.length === 0) continue;
    const json = JSON.stringify(items);
    // The slice's items without its brackets, after a comma unless they are the first.
    yield (first ? "" : ",") + json.slice(1, -1);
    first = false;
  }
  yield "]";
}

/** The JSON array of every item of the slices, as a byte stream. */
export function jsonArrayStream(slices: AsyncIterable<readonly object[]>): Readable {
  return Readable.from(jsonArrayChunks(slices), { objectMode: false });
}
