/**
 * The run codec: one page of a shard's read answer (a sorted run of an hour's flows)
 * in binary, as a primary sends it to a gateway in another process. Same conventions
 * as the group codec (src/wire/bytes.ts: little-endian, `str` = length-prefixed UTF-8,
 * or UTF-16 for a string with a lone surrogate, so every key arrives exactly as sent):
 *
 *   page = u8 RUN_PAGE_FORMAT | u8 flags (1: unchanged, 2: with flows, 4: keys ascend) | f64 version | u32 count
 *        | str key * count | f64 bytes_tx * count | f64 bytes_rx * count
 *        [| f64 flows * count] | str cursor ("" on the last page)
 *
 * Top-N's partial groups travelled in the same pages, with a third column: the flows
 * added into each group, flagged when in key order. A shard still answers so to a
 * gateway of an older version (one that does not ask for field-groups pages,
 * src/wire/field-groups-codec.ts), and a gateway reads them from a shard of an older
 * version (src/query/group-ids.ts groupSourceOf). Their `version` is the number of pages
 * of the whole answer (0 from an older shard: asked for one by one, each after the last).
 *
 * A page is cut by its exact size (at most maxBytes, at least one flow), so a page
 * holds ~10k flows of ~30-character keys where the JSON pages' estimate held ~2k.
 * Keys are written one by one (a UTF-8 write each): measured on pages of 11k keys,
 * ~47 ns a key to write and ~57 to read, against ~65 and ~56 for the keys as one JSON
 * array, which could not be cut at an exact size. The numbers are copied as blocks.
 *
 * No Moleculer here; mixins/binary.serializer.ts carries the page as its bytes.
 */
import { Reader, Writer } from "./bytes";

export const RUN_PAGE_FORMAT = 0xb3;
const UNCHANGED = 1;
const WITH_FLOWS = 2;
const IN_KEY_ORDER = 4;
/** format, flags, version, count. */
const HEAD_BYTES = 14;
/** Where a page's version is (a float64 after the format and flags bytes). */
export const RUN_PAGE_VERSION_AT = 2;
/** Room kept for the cursor at the end (a UUID, 36 bytes, and its length). */
const CURSOR_ROOM = 48;

/** A page as the gateway reads it: numbers as Float64Arrays (copied out of the bytes). */
export interface RunPage {
  version: number;
  unchanged: boolean;
  /** Where the rest of the run waits on the shard; null on the last page. */
  cursor: string | null;
  keys: string[];
  tx: Float64Array;
  rx: Float64Array;
  /** Top-N pages only. */
  flows?: Float64Array;
  /** Top-N pages: the keys ascend (across the answer's pages). */
  inKeyOrder: boolean;
}

/**
 * The page of `run` starting at `offset`: consecutive flows while the page stays within
 * maxBytes (at least one). `more()` is asked for a cursor only when flows remain after it.
 */
export function encodeRunPage(
  version: number,
  run: { keys: readonly string[]; tx: ArrayLike<number>; rx: ArrayLike<number> },
  offset: number,
  maxBytes: number,
  more: (next: number) => string,
  flows?: ArrayLike<number>,
): { bytes: Buffer; next: number } {
  const { keys, tx, rx } = run;
  const total = keys.length;
  const numberBytes = flows === undefined ? 16 : 24;
  const w = new Writer(Math.min(maxBytes, HEAD_BYTES + CURSOR_ROOM + 64 * (total - offset)));
  w.u8(RUN_PAGE_FORMAT);
  // Never flagged in key order (IN_KEY_ORDER): groups go out as they come (see above).
  w.u8(flows === undefined ? 0 : WITH_FLOWS);
  w.f64(version);
  w.u32(0); // the count, once known
  let end = offset;
  for (; end < total; end++) {
    const before = w.at;
    w.str(keys[end]);
    if (end > offset && w.at + numberBytes * (end + 1 - offset) + CURSOR_ROOM > maxBytes) {
      w.at = before;
      break;
    }
  }
  const count = end - offset;
  w.buf.writeUInt32LE(count, 10);
  w.room(numberBytes * count);
  const buf = w.buf;
  let at = w.at;
  for (let i = offset; i < end; i++, at += 8) buf.writeDoubleLE(tx[i], at);
  for (let i = offset; i < end; i++, at += 8) buf.writeDoubleLE(rx[i], at);
  if (flows !== undefined) for (let i = offset; i < end; i++, at += 8) buf.writeDoubleLE(flows[i], at);
  w.at = at;
  w.str(end < total ? more(end) : "");
  return { bytes: w.done(), next: end };
}

/** The answer to a reader that holds this version already: nothing to send again. */
export function encodeUnchanged(version: number): Buffer {
  const w = new Writer(HEAD_BYTES + 1);
  w.u8(RUN_PAGE_FORMAT);
  w.u8(UNCHANGED);
  w.f64(version);
  w.u32(0);
  w.str("");
  return w.done();
}

function numbersAt(r: Reader, count: number): Float64Array {
  r.need(8 * count);
  const out = new Float64Array(count);
  // A copy: the page's bytes need not be 8-byte aligned for a view.
  new Uint8Array(out.buffer).set(r.buf.subarray(r.at, r.at + 8 * count));
  r.at += 8 * count;
  return out;
}

export function decodeRunPage(bytes: Buffer): RunPage {
  const r = new Reader(bytes);
  const format = r.u8();
  if (format !== RUN_PAGE_FORMAT) throw new Error(`run codec: unknown page format ${format}`);
  const flags = r.u8();
  const version = r.f64();
  const count = r.u32();
  // At least a length byte per key and 16 bytes of numbers: a wrong count fails here, not after allocating.
  r.need(17 * count);
  const keys: string[] = new Array(count);
  for (let i = 0; i < count; i++) keys[i] = r.str();
  const tx = numbersAt(r, count);
  const rx = numbersAt(r, count);
  const flows = (flags & WITH_FLOWS) !== 0 ? numbersAt(r, count) : undefined;
  const cursor = r.str();
  if (r.at !== bytes.length) throw new Error(`run codec: ${bytes.length - r.at} byte(s) after the page`);
  const page: RunPage = { version, unchanged: (flags & UNCHANGED) !== 0, cursor: cursor === "" ? null : cursor, keys, tx, rx, inKeyOrder: (flags & IN_KEY_ORDER) !== 0 };
  if (flows !== undefined) page.flows = flows;
  return page;
}
