/**
 * The field-groups codec: a shard's partial top-N sums (src/query/top.ts FieldGroups)
 * in binary pages, as a primary sends them to a gateway in another process. Each page
 * stands alone: it carries the dictionary entries its groups use, renumbered.
 *
 *   page   = u8 FIELD_GROUPS_FORMAT | f64 pages | u32 count | u8 fields
 *          | (u32 size | str value * size | column refs) * fields
 *          | column tx | column rx | column flows | str cursor ("" for a one-page answer)
 *   column = u8 width | count values: width 2 = u16, 4 = u32, 8 = f64, little-endian
 *
 * A column takes the narrowest width its page's values fit exactly (refs: u16 below
 * 65,536 dictionary entries; sums: u16 for integers below 2^16, u32 below 2^32): a group
 * of two fields is 12-16 bytes where keys and f64 sums took ~45. `pages` is the number of
 * pages of the whole answer (every page encoded before the first is sent), so a gateway
 * asks for the rest at once. Same string conventions as the other codecs (src/wire/bytes.ts).
 * (u16 sums are new; a gateway of the version before read every width already.)
 *
 * No Moleculer here; mixins/binary.serializer.ts carries the page as its bytes.
 */
import type { FieldGroups } from "../query/top";
import { Reader, Writer } from "./bytes";

export const FIELD_GROUPS_FORMAT = 0xb4;
/** Where a page's count of pages is (a float64 after the format byte). */
const PAGES_AT = 1;
/** format, pages, count, fields. */
const HEAD_BYTES = 14;
/** Room kept for the cursor at the end (a UUID, 36 bytes, and its length). */
const CURSOR_ROOM = 48;
/** Bytes of a column's width, and the most a string of n UTF-16 units takes (len s). */
const WIDTH_BYTES = 1;
const stringBytes = (s: string): number => 5 + 3 * s.length;

const U16 = 2;
const U32 = 4;
const F64 = 8;

/** The narrowest width sums[from..to) fit exactly: u16 for integers below 2^16, u32 below 2^32, else f64. */
function sumsWidth(values: ArrayLike<number>, from: number, to: number): number {
  let width = U16;
  for (let i = from; i < to; i++) {
    const v = values[i];
    if (v !== v >>> 0) return F64;
    if (v > 0xffff) width = U32;
  }
  return width;
}

/**
 * Column writers: the values converted into a typed array of the wire width (natively,
 * by TypedArray.set, for sums) and its bytes copied in; little-endian as the platform's
 * typed arrays are (readColumn reads them back the same way). Writing them byte by byte
 * was ~2.8 ms of a shard's ~4.5 ms encode of 100k groups.
 */
function writeRefs(w: Writer, refs: ArrayLike<number>, from: number, to: number, localOf: Int32Array, width: number): void {
  const n = to - from;
  const column = width === U16 ? new Uint16Array(n) : new Uint32Array(n);
  for (let i = 0; i < n; i++) column[i] = localOf[refs[from + i]];
  writeColumn(w, column, width);
}

function writeSums(w: Writer, values: ArrayLike<number>, from: number, to: number): void {
  const width = sumsWidth(values, from, to);
  const column = width === U16 ? new Uint16Array(to - from) : width === U32 ? new Uint32Array(to - from) : new Float64Array(to - from);
  column.set(ArrayBuffer.isView(values) ? (values as Float64Array).subarray(from, to) : Array.prototype.slice.call(values, from, to));
  writeColumn(w, column, width);
}

function writeColumn(w: Writer, column: Uint16Array | Uint32Array | Float64Array, width: number): void {
  w.room(WIDTH_BYTES + column.byteLength);
  w.buf[w.at++] = width;
  w.buf.set(new Uint8Array(column.buffer, column.byteOffset, column.byteLength), w.at);
  w.at += column.byteLength;
}

/** A column as its wire width's typed array (a copy: the page's bytes need not be aligned for a view). */
function readColumn(r: Reader, count: number): Uint16Array | Uint32Array | Float64Array {
  const width = r.u8();
  if (width !== U16 && width !== U32 && width !== F64) throw new Error(`field-groups codec: unknown column width ${width}`);
  r.need(width * count);
  const column = width === U16 ? new Uint16Array(count) : width === U32 ? new Uint32Array(count) : new Float64Array(count);
  new Uint8Array(column.buffer).set(r.buf.subarray(r.at, r.at + width * count));
  r.at += width * count;
  return column;
}

/**
 * Every page of `groups`, each at most maxBytes (at least one group), `cursor` naming
 * where the rest wait (written on every page of a several-page answer).
 */
export function encodeFieldGroupsPages(groups: FieldGroups, maxBytes: number, cursor: string): Buffer[] {
  const count = groups.tx.length;
  // Per field: a dictionary entry's index in the page being cut (-1: unused so far).
  const localOf = groups.values.map((v) => new Int32Array(v.length).fill(-1));
  let rowBytes = sumsWidth(groups.tx, 0, count) + sumsWidth(groups.rx, 0, count) + sumsWidth(groups.flows, 0, count);
  for (const values of groups.values) rowBytes += values.length <= 0xffff ? U16 : U32;
  const pages: Buffer[] = [];
  for (let from = 0; pages.length === 0 || from < count; ) {
    const used: number[][] = groups.values.map(() => []);
    const { to, bytes } = cutPage(groups, from, maxBytes, rowBytes, localOf, used);
    pages.push(writePage(groups, from, to, Math.min(bytes, maxBytes), localOf, used, to < count || from > 0 ? cursor : ""));
    from = to;
  }
  for (const page of pages) page.writeDoubleLE(pages.length, PAGES_AT);
  return pages;
}

/**
 * The groups from `from` that fit in maxBytes (at least one), their dictionary entries
 * marked in localOf and listed in `used`. A group is counted at `rowBytes`, the widths the
 * whole answer's columns need (no page's are wider), where counting every group at the
 * widest (32 bytes for two fields) filled pages about half. (The encoder is cut into
 * small functions: V8 optimizes each sooner, where the one large function was recompiled
 * for a query's first several calls.)
 */
function cutPage(groups: FieldGroups, from: number, maxBytes: number, rowBytes: number, localOf: Int32Array[], used: number[][]): { to: number; bytes: number } {
  const { values, refs } = groups;
  const count = groups.tx.length;
  const fields = values.length;
  let bytes = HEAD_BYTES + CURSOR_ROOM + fields * (4 + WIDTH_BYTES) + 3 * WIDTH_BYTES;
  let to = from;
  for (; to < count; to++) {
    let more = rowBytes;
    for (let k = 0; k < fields; k++) if (localOf[k][refs[k][to]] === -1) more += stringBytes(values[k][refs[k][to]]);
    if (to > from && bytes + more > maxBytes) break;
    bytes += more;
    for (let k = 0; k < fields; k++) {
      const ref = refs[k][to];
      if (localOf[k][ref] === -1) {
        localOf[k][ref] = 0;
        used[k].push(ref);
      }
    }
  }
  return { to, bytes };
}

/** The page of groups [from, to) whose dictionary entries are `used` (localOf is left all -1 again). */
function writePage(groups: FieldGroups, from: number, to: number, size: number, localOf: Int32Array[], used: number[][], cursor: string): Buffer {
  const w = new Writer(size);
  w.u8(FIELD_GROUPS_FORMAT);
  w.f64(0); // the count of pages, once known
  w.u32(to - from);
  w.u8(groups.values.length);
  for (let k = 0; k < groups.values.length; k++) writeField(w, groups.values[k], groups.refs[k], from, to, localOf[k], used[k]);
  writeSums(w, groups.tx, from, to);
  writeSums(w, groups.rx, from, to);
  writeSums(w, groups.flows, from, to);
  w.str(cursor);
  return w.done();
}

/** A field's page dictionary (the entries used, ascending: ascending indexes are ascending values) and its refs into it. */
function writeField(w: Writer, values: readonly string[], refs: ArrayLike<number>, from: number, to: number, localOf: Int32Array, used: number[]): void {
  const entries = Int32Array.from(used).sort();
  for (let i = 0; i < entries.length; i++) localOf[entries[i]] = i;
  w.u32(entries.length);
  for (let i = 0; i < entries.length; i++) w.str(values[entries[i]]);
  writeRefs(w, refs, from, to, localOf, entries.length <= 0xffff ? U16 : U32);
  for (let i = 0; i < entries.length; i++) localOf[entries[i]] = -1;
}

export interface FieldGroupsPage {
  /** The number of pages of the whole answer. */
  pages: number;
  /** Where the other pages wait on the shard; null for a one-page answer. */
  cursor: string | null;
  groups: FieldGroups;
}

export function decodeFieldGroupsPage(bytes: Buffer): FieldGroupsPage {
  const r = new Reader(bytes);
  const format = r.u8();
  if (format !== FIELD_GROUPS_FORMAT) throw new Error(`field-groups codec: unknown page format ${format}`);
  const pages = r.f64();
  const count = r.u32();
  const fields = r.u8();
  // At least a width byte and two bytes per group per column: a wrong count fails here, not after allocating.
  r.need((fields + 3) * (WIDTH_BYTES + 2 * count));
  const values: string[][] = [];
  const refs: ArrayLike<number>[] = [];
  for (let k = 0; k < fields; k++) {
    const size = r.u32();
    r.need(size);
    const dictionary = new Array<string>(size);
    for (let i = 0; i < size; i++) dictionary[i] = r.str();
    const column = readColumn(r, count);
    for (let i = 0; i < count; i++) if (column[i] >= size) throw new Error(`field-groups codec: group ${i} refers to entry ${column[i]} of ${size}`);
    values.push(dictionary);
    refs.push(column);
  }
  const tx = readColumn(r, count);
  const rx = readColumn(r, count);
  const flows = readColumn(r, count);
  const cursor = r.str();
  if (r.at !== bytes.length) throw new Error(`field-groups codec: ${bytes.length - r.at} byte(s) after the page`);
  return { pages, cursor: cursor === "" ? null : cursor, groups: { values, refs, tx, rx, flows } };
}
