/**
 * Rendering merged flows as the bytes a client gets, slice by slice, without building
 * a record object per flow: JSON (exactly what JSON.stringify of the records writes:
 * the same field order, each string as JSON.stringify writes it, numbers as String()
 * writes them), CSV (src/query/csv.ts's rows), or the records themselves (broker callers).
 *
 * A flow's text is its key's fragment (`{"src_app":"web","dest_app":"db","vpc_id":"v","hour":`)
 * then the hour and the sums. Most keys need no JSON escaping (no space in the encoded
 * key but its two separators, no quote, backslash or surrogate): their fragment is the
 * key's three parts in quotes, cut out without decoding. A read in the same process
 * gets the store's merged view of the hour (src/hour-view.ts): the fragments of its keys
 * are kept with it as a key column, made once per key (a view extended with new keys
 * carries them over), for the last FRAGMENT_VIEWS views rendered of at most
 * FRAGMENTS_MAX_FLOWS keys. Keys that arrive in pages from another process are fresh
 * strings each read: their fragments are made as they are rendered (~0.3 µs a flow with
 * the decoding), which measured faster than looking each key up in a bounded cache on the
 * gateway (a Map or lru-cache hit cost more than making the fragment: README, Design notes).
 *
 * No Moleculer here.
 */
import type { FlowRecord } from "../batching";
import { decodeFlowKey, SEP } from "../flow-key";
import { keyColumns, type KeyColumns } from "../hour-view";
import type { FlowSlice } from "./hour-merge";
import { csvField } from "./csv";

/** A key whose three parts are their own JSON text inside quotes (the common case). */
const PLAIN = /^[^ "\\\ud800-\udfff]* {2}[^ "\\\ud800-\udfff]* {2}[^ "\\\ud800-\udfff]*$/;

/** `{"src_app":S,"dest_app":D,"vpc_id":V,"hour":` for an encoded key. */
export function jsonFragment(key: string): string {
  if (PLAIN.test(key)) {
    const a = key.indexOf(SEP);
    const b = key.indexOf(SEP, a + 2);
    return '{"src_app":"' + key.slice(0, a) + '","dest_app":"' + key.slice(a + 2, b) + '","vpc_id":"' + key.slice(b + 2) + '","hour":';
  }
  const [s, d, v] = decodeFlowKey(key);
  return '{"src_app":' + JSON.stringify(s) + ',"dest_app":' + JSON.stringify(d) + ',"vpc_id":' + JSON.stringify(v) + ',"hour":';
}

/** `S,D,V,` as CSV fields (src/query/csv.ts csvField) for an encoded key. */
export function csvFragment(key: string): string {
  const [s, d, v] = decodeFlowKey(key);
  return csvField(s) + "," + csvField(d) + "," + csvField(v) + ",";
}

/** Views whose JSON fragments are kept: the last FRAGMENT_VIEWS rendered, each of at most FRAGMENTS_MAX_FLOWS keys (~100 bytes a fragment). */
const FRAGMENT_VIEWS = 2;
export const FRAGMENTS_MAX_FLOWS = 131_072;
/** Smaller hours render fast enough without. */
const FRAGMENTS_MIN_FLOWS = 256;
/** The key columns holding fragments (and the column's name), most recently rendered first. */
let fragmentHolders: { columns: WeakRef<KeyColumns>; name: string }[] = [];

/**
 * The JSON text before a flow's bytes_tx (`{"src_app":...,"hour":H,"bytes_tx":`) kept with a
 * view's keys (src/hour-view.ts keyColumns), filled as they are rendered; null for keys
 * that are not a view's, or too many or too few.
 */
function keptFragments(keys: readonly string[], hour: number): (string | undefined)[] | null {
  if (keys.length < FRAGMENTS_MIN_FLOWS || keys.length > FRAGMENTS_MAX_FLOWS) return null;
  const columns = keyColumns(keys);
  if (columns === undefined) return null;
  const name = `json ${hour}`;
  let frags = columns.get(name) as (string | undefined)[] | undefined;
  if (frags === undefined) columns.set(name, (frags = new Array(keys.length)));
  const first = fragmentHolders[0];
  if (first === undefined || first.columns.deref() !== columns || first.name !== name) {
    const others = fragmentHolders.filter((h) => {
      const c = h.columns.deref();
      return c !== undefined && !(c === columns && h.name === name);
    });
    fragmentHolders = [{ columns: new WeakRef(columns), name }, ...others];
    for (const dropped of fragmentHolders.splice(FRAGMENT_VIEWS)) dropped.columns.deref()?.delete(dropped.name);
  }
  return frags;
}

/** A fragment to keep: one flat string (join writes one; a concatenation would keep its pieces as a tree). */
function keptFragment(key: string, hour: number): string {
  return [jsonFragment(key), hour, ',"bytes_tx":'].join("");
}

/**
 * The slice's flows as JSON objects, comma-separated, the first after `lead` ("" or ",").
 * `keep`: fill and use the view's kept fragments (false for a range: its hours are read
 * once each, and 100k fragments an hour kept then dropped two hours later only made the
 * GC promote and collect them).
 */
export function jsonOfSlice(s: FlowSlice, hour: number, lead: string, keep = true): string {
  const { keys, tx, rx, start, end } = s;
  const frags = keep ? keptFragments(keys, hour) : null;
  let out = "";
  if (frags === null) {
    const tail = hour + ',"bytes_tx":';
    for (let i = start; i < end; i++) out += (i === start ? lead : ",") + jsonFragment(keys[i]) + tail + tx[i] + ',"bytes_rx":' + rx[i] + "}";
    return out;
  }
  for (let i = start; i < end; i++) {
    let frag = frags[i];
    if (frag === undefined) frags[i] = frag = keptFragment(keys[i], hour);
    out += (i === start ? lead : ",") + frag + tx[i] + ',"bytes_rx":' + rx[i] + "}";
  }
  return out;
}

/** ASCII text as bytes at `at` (the caller made room); the end. */
function ascii(buf: Buffer, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) buf[at++] = text.charCodeAt(i);
  return at;
}

/** A whole number's digits at `at`; the end. Anything else (never a sum here) as String() writes it. */
function digits(buf: Buffer, at: number, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) return ascii(buf, at, String(v));
  let width = 1;
  for (let p = 10; p <= v; p *= 10) width++;
  for (let i = at + width - 1; i >= at; i--) {
    buf[i] = 48 + (v % 10);
    v = Math.floor(v / 10);
  }
  return at + width;
}

/**
 * The key's three parts as their JSON text at `at` (a plain key: no space but its two
 * separators, no quote, backslash, control or surrogate, so each part is its own JSON
 * text, written as UTF-8 unit by unit), or -1 for a key that needs escaping.
 */
function plainKeyJson(buf: Buffer, at: number, key: string): number {
  at = ascii(buf, at, '{"src_app":"');
  let part = 0;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c === 0x20) {
      if (part === 2 || key.charCodeAt(i + 1) !== 0x20) return -1;
      at = ascii(buf, at, part === 0 ? '","dest_app":"' : '","vpc_id":"');
      part++;
      i++;
    } else if (c < 0x80) {
      if (c === 0x22 || c === 0x5c || c < 0x20) return -1;
      buf[at++] = c;
    } else if (c < 0x800) {
      buf[at++] = 0xc0 | (c >> 6);
      buf[at++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdfff) return -1;
    else {
      buf[at++] = 0xe0 | (c >> 12);
      buf[at++] = 0x80 | ((c >> 6) & 0x3f);
      buf[at++] = 0x80 | (c & 0x3f);
    }
  }
  return part === 2 ? ascii(buf, at, '","hour":') : -1;
}

/**
 * The slice's flows as JSON objects, comma-separated after `lead`, written straight into
 * bytes: the same bytes as jsonOfSlice's text in UTF-8, without a string per flow (a
 * range read of 2.4M flows spent ~45% of the gateway's time making and collecting them).
 */
export function jsonBytesOfSlice(s: FlowSlice, hour: number, lead: string): Buffer {
  const { keys, tx, rx, start, end } = s;
  let most = lead.length;
  // A key's JSON text is at most 6 bytes a unit (a lone surrogate, written \udXXX); the rest
  // of a flow is ASCII: the names and three numbers of at most 16 digits each.
  for (let i = start; i < end; i++) most += 6 * keys[i].length + 120;
  const buf = Buffer.allocUnsafe(most);
  let at = ascii(buf, 0, lead);
  const tail = hour + ',"bytes_tx":';
  for (let i = start; i < end; i++) {
    if (i > start) buf[at++] = 0x2c;
    const plain = plainKeyJson(buf, at, keys[i]);
    at = plain >= 0 ? plain : at + buf.utf8Write(jsonFragment(keys[i]), at);
    at = ascii(buf, at, tail);
    at = digits(buf, at, tx[i]);
    at = ascii(buf, at, ',"bytes_rx":');
    at = digits(buf, at, rx[i]);
    buf[at++] = 0x7d;
  }
  return buf.subarray(0, at);
}

/** The slice's flows as CSV rows (src_app,dest_app,vpc_id,hour,bytes_tx,bytes_rx), CRLF-terminated. */
export function csvOfSlice(s: FlowSlice, hour: number): string {
  const { keys, tx, rx, start, end } = s;
  const tail = hour + ",";
  let out = "";
  for (let i = start; i < end; i++) out += csvFragment(keys[i]) + tail + tx[i] + "," + rx[i] + "\r\n";
  return out;
}

/** The slice's flows as records (what broker callers of flows.aggregate get). */
export function recordsOfSlice(s: FlowSlice, hour: number): FlowRecord[] {
  const { keys, tx, rx, start, end } = s;
  const out: FlowRecord[] = new Array(end - start);
  for (let i = start; i < end; i++) {
    const [src_app, dest_app, vpc_id] = decodeFlowKey(keys[i]);
    out[i - start] = { src_app, dest_app, vpc_id, hour, bytes_tx: tx[i], bytes_rx: rx[i] };
  }
  return out;
}

/** One hour's merged flows, as a read hands them on. */
export interface HourSlices {
  hour: number;
  slices: AsyncIterable<FlowSlice>;
}

/** The JSON array of every flow of the hours, in chunks (a chunk per slice); `keepFragments` as jsonOfSlice's `keep`. */
export async function* flowJsonChunks(hours: AsyncIterable<HourSlices> | Iterable<HourSlices>, keepFragments = true): AsyncGenerator<Buffer> {
  let prefix = "[";
  let lead = "";
  for await (const { hour, slices } of hours) {
    for await (const s of slices) {
      if (s.end === s.start) continue;
      // A range's hours are read once each: written straight into bytes. One hour keeps its view's fragments (jsonOfSlice).
      yield keepFragments ? Buffer.from(prefix + jsonOfSlice(s, hour, lead, keepFragments), "utf8") : jsonBytesOfSlice(s, hour, prefix + lead);
      prefix = "";
      lead = ",";
    }
  }
  yield Buffer.from(prefix + "]", "utf8");
}

/** The CSV of every flow of the hours: the header row, then a chunk per slice. */
export async function* flowCsvChunks(columns: readonly string[], hours: AsyncIterable<HourSlices> | Iterable<HourSlices>): AsyncGenerator<Buffer> {
  let header = columns.map(csvField).join(",") + "\r\n";
  for await (const { hour, slices } of hours) {
    for await (const s of slices) {
      if (s.end === s.start) continue;
      yield Buffer.from(header + csvOfSlice(s, hour), "utf8");
      header = "";
    }
  }
  if (header !== "") yield Buffer.from(header, "utf8");
}

/** Every flow of the hours as records, in one array (broker callers). */
export async function collectRecords(hours: AsyncIterable<HourSlices> | Iterable<HourSlices>): Promise<FlowRecord[]> {
  const out: FlowRecord[] = [];
  for await (const { hour, slices } of hours) for await (const s of slices) for (const r of recordsOfSlice(s, hour)) out.push(r);
  return out;
}
