/**
 * The field-groups codec: a shard's partial top-N sums (src/query/top.ts FieldGroups)
 * in binary pages, as a primary sends them to a gateway in another process. Each page
 * stands alone: it carries the dictionary entries its groups use.
 *
 *   page   = u8 format | f64 pages | u32 count | u8 fields
 *          | (u32 size | str value * size | column refs) * fields
 *          | column tx | column rx | column flows | str cursor ("" for a one-page answer)
 *   column = u8 width | [ALIGNED_FORMAT: zero bytes up to the page's next multiple of 8]
 *          | count values: width 1 = u8 (ALIGNED_FORMAT), 2 = u16, 4 = u32, 8 = f64, little-endian
 *          | (ALIGNED_FORMAT, refs only) u8 RUNS | zero bytes up to a multiple of 8
 *          | u32 groups * size: how many groups in a row refer to each entry, in order
 *
 * A column takes the narrowest width its page's values fit exactly (refs: u16 below
 * 65,536 dictionary entries; sums: u16 for integers below 2^16, u32 below 2^32): a group
 * of two fields is 12-16 bytes where keys and f64 sums took ~45. `pages` is the number of
 * pages of the whole answer (every page encoded before the first is sent), so a gateway
 * asks for the rest at once. Same string conventions as the other codecs (src/wire/bytes.ts).
 *
 * In the aligned format (asked for by GroupsParams.alignedPages), sums below 256 take a
 * byte, and the refs of the first field, which ascend when the groups are in key order
 * (as a shard sends them), go as a count of groups per entry: ~3 bytes a group less than
 * u16 refs and sums, of ~14 (bytes cost on both ends and in nats-server). A reader whose page
 * starts at a multiple of 8 (mixins/binary.serializer.ts places it so) takes each column
 * as a typed array over the page's bytes instead of a copy: a gateway then allocates
 * ~3.5 MB less outside V8's heap per top-N of a 1M-flow hour, which is what starts its
 * full collections. FIELD_GROUPS_FORMAT is kept for gateways of the version before.
 *
 * When the answer's dictionaries are small beside a page (every group's fields from a
 * few thousand values), every page carries all of them and the groups as they are: a
 * page is then a few native copies, where cutting per-page dictionaries walked every group.
 *
 * No Moleculer here; mixins/binary.serializer.ts carries the page as its bytes.
 */
import type { FieldGroups } from "../query/top";
import { Reader, Writer } from "./bytes";

export const FIELD_GROUPS_FORMAT = 0xb4;
export const ALIGNED_FIELD_GROUPS_FORMAT = 0xb5;
/** Where a page's count of pages is (a float64 after the format byte). */
const PAGES_AT = 1;
/** format, pages, count, fields. */
const HEAD_BYTES = 14;
/** Room kept for the cursor at the end (a UUID, 36 bytes, and its length). */
const CURSOR_ROOM = 48;
/** Bytes of a column's width, the most its alignment adds, and the most a string of n UTF-16 units takes (len s). */
const WIDTH_BYTES = 1;
const ALIGN = 8;
const stringBytes = (s: string): number => 5 + 3 * s.length;
/** Dictionaries that fit in this share of a page go whole on every page. */
const WHOLE_DICTIONARIES_SHARE = 8;

const U8 = 1;
const U16 = 2;
const U32 = 4;
const F64 = 8;

/** A refs column given as runs: groups per dictionary entry. */
const RUNS = 0x80;

type Column = Uint8Array | Uint16Array | Uint32Array | Float64Array;
/** A column's typed array by its width. */
const COLUMN: Record<number, { new (n: number): Column; new (buffer: ArrayBufferLike, at: number, n: number): Column }> = { [U8]: Uint8Array, [U16]: Uint16Array, [U32]: Uint32Array, [F64]: Float64Array };

/** values[from..to) as a typed array's view, or a copy of a plain array's. */
const sliceOf = (values: ArrayLike<number>, from: number, to: number): ArrayLike<number> =>
  ArrayBuffer.isView(values) ? (values as Float64Array).subarray(from, to) : Array.prototype.slice.call(values, from, to);

/** The narrowest width sums[from..to) fit exactly: u8 (when `narrowest` allows it) or u16 for integers below 2^8 or 2^16, u32 below 2^32, else f64. */
function sumsWidth(values: ArrayLike<number>, from: number, to: number, narrowest: number): number {
  let most = 0;
  for (let i = from; i < to; i++) {
    const v = values[i];
    if (v !== v >>> 0) return F64;
    if (v > most) most = v;
  }
  return most > 0xffff ? U32 : most > 0xff ? U16 : narrowest;
}

/** Whether refs[from..to) never descend (then they go as runs, in the aligned format). */
function ascending(refs: ArrayLike<number>, from: number, to: number): boolean {
  for (let i = from + 1; i < to; i++) if (refs[i] < refs[i - 1]) return false;
  return true;
}

/**
 * A column of `n` values at the width given, filled by fill(column): straight in the
 * page's bytes when they fall aligned for the width (a new writer's buffer starts at a
 * multiple of 8), else in a typed array copied in; little-endian as the platform's typed
 * arrays are. Writing them byte by byte was ~2.8 ms of a shard's ~4.5 ms encode of 100k groups.
 */
function writeColumn(w: Writer, width: number, n: number, aligned: boolean, fill: (column: Column) => void, code = width): void {
  w.room(WIDTH_BYTES + ALIGN + width * n);
  w.buf[w.at++] = code;
  if (aligned) while (w.at % ALIGN !== 0) w.buf[w.at++] = 0;
  const at = w.buf.byteOffset + w.at;
  if (at % width === 0) fill(new COLUMN[width](w.buf.buffer, at, n));
  else {
    const column = new COLUMN[width](n);
    fill(column);
    w.buf.set(new Uint8Array(column.buffer, column.byteOffset, column.byteLength), w.at);
  }
  w.at += width * n;
}

function writeSums(w: Writer, values: ArrayLike<number>, from: number, to: number, aligned: boolean): void {
  const slice = sliceOf(values, from, to);
  writeColumn(w, sumsWidth(values, from, to, aligned ? U8 : U16), to - from, aligned, (column) => column.set(slice));
}

/** Refs that never descend as runs: how many groups refer to each of the `size` entries. */
function writeRuns(w: Writer, refs: ArrayLike<number>, from: number, to: number, size: number): void {
  const counts = (column: Column) => {
    column.fill(0);
    for (let i = from; i < to; i++) column[refs[i]]++;
  };
  writeColumn(w, U32, size, true, counts, RUNS);
}

/** A column as its wire width's typed array: a view of the page's bytes where they are aligned for it, else a copy. */
function readColumn(r: Reader, count: number, aligned: boolean, width = r.u8()): Column {
  if (width !== U16 && width !== U32 && width !== F64 && !(aligned && width === U8)) throw new Error(`field-groups codec: unknown column width ${width}`);
  if (aligned) r.at += (ALIGN - (r.at % ALIGN)) % ALIGN;
  r.need(width * count);
  const at = r.buf.byteOffset + r.at;
  let column: Column;
  if (at % width === 0) column = new COLUMN[width](r.buf.buffer, at, count);
  else {
    column = new COLUMN[width](count);
    new Uint8Array(column.buffer).set(r.buf.subarray(r.at, r.at + width * count));
  }
  r.at += width * count;
  return column;
}

/** A field's refs into a dictionary of `size` entries: a column, or (aligned format) runs, written out. */
function readRefs(r: Reader, count: number, size: number, aligned: boolean): Column {
  const code = r.u8();
  if (!(aligned && code === RUNS)) return readColumn(r, count, aligned, code);
  const runs = readColumn(r, size, aligned, U32);
  const refs = size <= 0xffff ? new Uint16Array(count) : new Uint32Array(count);
  let at = 0;
  for (let e = 0; e < size; e++) {
    if (runs[e] > count - at) throw new Error(`field-groups codec: runs of more than the page's ${count} groups`);
    refs.fill(e, at, (at += runs[e]));
  }
  if (at !== count) throw new Error(`field-groups codec: runs of ${at} groups in a page of ${count}`);
  return refs;
}

/**
 * Every page of `groups`, each at most maxBytes (at least one group), `cursor` naming
 * where the rest wait (written on every page of a several-page answer).
 */
export function encodeFieldGroupsPages(groups: FieldGroups, maxBytes: number, cursor: string, aligned = false): Buffer[] {
  const count = groups.tx.length;
  const narrowest = aligned ? U8 : U16;
  let rowBytes = sumsWidth(groups.tx, 0, count, narrowest) + sumsWidth(groups.rx, 0, count, narrowest) + sumsWidth(groups.flows, 0, count, narrowest);
  for (const values of groups.values) rowBytes += values.length <= 0xffff ? U16 : U32;
  const fixed = HEAD_BYTES + CURSOR_ROOM + (groups.values.length + 3) * (4 + WIDTH_BYTES + ALIGN);
  let dictionaryBytes = 0;
  for (const values of groups.values) for (const v of values) dictionaryBytes += stringBytes(v);
  const pages: Buffer[] = [];
  if (dictionaryBytes * WHOLE_DICTIONARIES_SHARE <= maxBytes) {
    // The first field's refs as runs: a count per entry in place of a ref per group.
    const runs = aligned && groups.values.length > 0 && 4 * groups.values[0].length < count && ascending(groups.refs[0], 0, count);
    if (runs) rowBytes -= groups.values[0].length <= 0xffff ? U16 : U32;
    const runBytes = runs ? 4 * groups.values[0].length : 0;
    const rows = Math.max(1, Math.floor((maxBytes - fixed - dictionaryBytes - runBytes) / rowBytes));
    for (let from = 0; pages.length === 0 || from < count; from += rows) {
      const to = Math.min(count, from + rows);
      pages.push(writePage(groups, from, to, fixed + dictionaryBytes + runBytes + (to - from) * rowBytes, null, aligned, to < count || from > 0 ? cursor : ""));
    }
  } else {
    // Per field: a dictionary entry's index in the page being cut (-1: unused so far).
    const localOf = groups.values.map((v) => new Int32Array(v.length).fill(-1));
    for (let from = 0; pages.length === 0 || from < count; ) {
      const used: number[][] = groups.values.map(() => []);
      const { to, bytes } = cutPage(groups, from, maxBytes, fixed, rowBytes, localOf, used);
      const entries = used.map((list) => Int32Array.from(list).sort());
      pages.push(writePage(groups, from, to, Math.min(bytes, maxBytes), { entries, localOf }, aligned, to < count || from > 0 ? cursor : ""));
      from = to;
    }
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
function cutPage(groups: FieldGroups, from: number, maxBytes: number, fixed: number, rowBytes: number, localOf: Int32Array[], used: number[][]): { to: number; bytes: number } {
  const { values, refs } = groups;
  const count = groups.tx.length;
  const fields = values.length;
  let bytes = fixed;
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

/**
 * A page's own dictionaries: per field, the entries its groups use (ascending: ascending
 * indexes are ascending values), and `localOf`, where the groups' refs are renumbered to
 * their places in them (left all -1 again). Null: the whole dictionaries, refs as they are.
 */
type PageDictionaries = { entries: Int32Array[]; localOf: Int32Array[] } | null;

/** The page of groups [from, to) with its dictionaries. */
function writePage(groups: FieldGroups, from: number, to: number, size: number, dictionaries: PageDictionaries, aligned: boolean, cursor: string): Buffer {
  const w = new Writer(size);
  w.u8(aligned ? ALIGNED_FIELD_GROUPS_FORMAT : FIELD_GROUPS_FORMAT);
  w.f64(0); // the count of pages, once known
  w.u32(to - from);
  w.u8(groups.values.length);
  for (let k = 0; k < groups.values.length; k++) {
    const own = dictionaries === null ? null : { entries: dictionaries.entries[k], localOf: dictionaries.localOf[k] };
    writeField(w, groups.values[k], groups.refs[k], from, to, own, aligned);
  }
  writeSums(w, groups.tx, from, to, aligned);
  writeSums(w, groups.rx, from, to, aligned);
  writeSums(w, groups.flows, from, to, aligned);
  w.str(cursor);
  return w.done();
}

/** A field's page dictionary (its own entries, or the whole `values` when `own` is null) and its refs into it. */
function writeField(w: Writer, values: readonly string[], refs: ArrayLike<number>, from: number, to: number, own: { entries: Int32Array; localOf: Int32Array } | null, aligned: boolean): void {
  if (own === null) {
    w.u32(values.length);
    for (const v of values) w.str(v);
    const width = values.length <= 0xffff ? U16 : U32;
    // Runs where they take fewer bytes than the refs (so no page grows past its estimate).
    if (aligned && 4 * values.length < width * (to - from) && ascending(refs, from, to)) return writeRuns(w, refs, from, to, values.length);
    const slice = sliceOf(refs, from, to);
    writeColumn(w, width, to - from, aligned, (column) => column.set(slice));
    return;
  }
  const { entries, localOf } = own;
  w.u32(entries.length);
  for (let i = 0; i < entries.length; i++) w.str(values[entries[i]]);
  const width = entries.length <= 0xffff ? U16 : U32;
  for (let i = 0; i < entries.length; i++) localOf[entries[i]] = i;
  writeColumn(w, width, to - from, aligned, (column) => {
    for (let i = 0; i < column.length; i++) column[i] = localOf[refs[from + i]];
  });
  for (let i = 0; i < entries.length; i++) localOf[entries[i]] = -1;
}

export interface FieldGroupsPage {
  /** The number of pages of the whole answer. */
  pages: number;
  /** Where the other pages wait on the shard; null for a one-page answer. */
  cursor: string | null;
  groups: FieldGroups;
}

/** Whether `bytes` are a field-groups page (either format). */
export const isFieldGroupsPage = (bytes: Buffer): boolean => bytes[0] === FIELD_GROUPS_FORMAT || bytes[0] === ALIGNED_FIELD_GROUPS_FORMAT;

/** A page of either format; its columns may be views of `bytes`. */
export function decodeFieldGroupsPage(bytes: Buffer): FieldGroupsPage {
  const r = new Reader(bytes);
  const format = r.u8();
  if (!isFieldGroupsPage(bytes)) throw new Error(`field-groups codec: unknown page format ${format}`);
  const aligned = format === ALIGNED_FIELD_GROUPS_FORMAT;
  const pages = r.f64();
  const count = r.u32();
  const fields = r.u8();
  // At least a width byte per column and, per group, two bytes per column (aligned: one per sums column, as refs may be runs): a wrong count fails here, not after allocating.
  r.need((fields + 3) * WIDTH_BYTES + (aligned ? 3 : 2 * (fields + 3)) * count);
  const values: string[][] = [];
  const refs: ArrayLike<number>[] = [];
  for (let k = 0; k < fields; k++) {
    const size = r.u32();
    r.need(size);
    const dictionary = new Array<string>(size);
    for (let i = 0; i < size; i++) dictionary[i] = r.str();
    const column = readRefs(r, count, size, aligned);
    for (let i = 0; i < count; i++) if (column[i] >= size) throw new Error(`field-groups codec: group ${i} refers to entry ${column[i]} of ${size}`);
    values.push(dictionary);
    refs.push(column);
  }
  const tx = readColumn(r, count, aligned);
  const rx = readColumn(r, count, aligned);
  const flows = readColumn(r, count, aligned);
  const cursor = r.str();
  if (r.at !== bytes.length) throw new Error(`field-groups codec: ${bytes.length - r.at} byte(s) after the page`);
  return { pages, cursor: cursor === "" ? null : cursor, groups: { values, refs, tx, rx, flows } };
}
