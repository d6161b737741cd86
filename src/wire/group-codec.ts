/**
 * The group codec: one request's sub-batches for one node, in binary. The gateway
 * encodes a group once; the primary applies it and logs it, forwards it to each copy
 * with the list of parts (sub-batches) that copy holds, and the copy logs it with the
 * parts it applied: the same bytes from the gateway to every disk, never re-encoded.
 *
 *   group = u8 GROUP_FORMAT | str key | u32 parts | u32 flows
 *         | (u32 partition | u32 count | u8 keyMode [str own key])*parts
 *         | u32 n | n bytes: the flow keys of every part, in order, as one JSON array
 *         | f64 (hour, bytes_tx, bytes_rx)*flows
 *   keyMode: 0 no key, 1 the group's key, 2 its own (a part cut from an oversized sub-batch)
 *
 * Why this shape (measured on a 1000-record request over 256 partitions, ~250 parts of
 * ~4 flows): per-key UTF-8 writes and reads cost a native call each, so a codec that
 * wrote each key on its own was no faster than JSON (~150 µs to encode, ~160 µs to
 * decode); the keys as one JSON array are one JSON.stringify and one JSON.parse (which
 * also keeps every string exact, lone surrogates included, and hands the store fresh
 * flat strings), and the numbers one copy of a Float64Array.
 *
 * A selection names which parts of a group apply (a copy holds some partitions; a
 * duplicate part is not logged): u32 count (ALL: every part) | u32 index*count.
 *
 *   message    = u8 MESSAGE_FORMAT | f64 epoch | u32 groups | (selection | u32 bytes | group)*
 *   log record = selection | group   (src/durability/journal.ts adds the kind and time)
 *
 * No Moleculer here; mixins/binary.serializer.ts carries a Buffer across NATS as is.
 */
import type { SubBatch } from "../partition-store";
import { Reader, Writer } from "./bytes";

export const GROUP_FORMAT = 2;
export const MESSAGE_FORMAT = 0xb2;
/** A selection of every part. */
const ALL = 0xffffffff;

const KEY_NONE = 0;
const KEY_GROUP = 1;
const KEY_OWN = 2;

/** A group as the write path handles it: its sub-batches, and its bytes once encoded or received. */
export interface Group {
  batches: SubBatch[];
  bytes?: Buffer;
}

/** A group and the parts of it that apply (undefined: all). */
export interface SelectedGroup {
  group: Group;
  parts: number[] | undefined;
}

/** The key every sub-batch holds, or undefined when they differ or some have none. */
function commonKey(batches: readonly SubBatch[]): string | undefined {
  const key = batches.length > 0 ? batches[0].idempotencyKey : undefined;
  if (key === undefined) return undefined;
  for (const b of batches) if (b.idempotencyKey !== key) return undefined;
  return key;
}

/** A group of sub-batches (one request's for one node) as bytes. */
export function encodeGroup(batches: readonly SubBatch[]): Buffer {
  const w = new Writer(groupSizeBound(batches));
  writeGroup(w, batches);
  return w.done();
}

/** At least the bytes of the group encoded (keys at 3 bytes a unit, escapes aside): one allocation, no growing. */
function groupSizeBound(batches: readonly SubBatch[]): number {
  let bytes = 64;
  for (const b of batches) {
    const e = b.entries;
    bytes += 16 + 3 * (b.idempotencyKey?.length ?? 0);
    for (let i = 0; i < e.length; i += 4) bytes += 27 + 3 * (e[i] as string).length;
  }
  return bytes;
}

/**
 * Float64 scratch for a group's numbers while it is encoded or decoded (values are copied
 * out before the call returns): an ArrayBuffer per group is memory outside V8's heap, and
 * hundreds a second of those made the GC run full collections.
 */
let scratchNumbers = new Float64Array(3 * 1024);
function numbersFor(flows: number): Float64Array {
  if (scratchNumbers.length < 3 * flows) scratchNumbers = new Float64Array(Math.max(3 * flows, 2 * scratchNumbers.length));
  return scratchNumbers;
}

function writeGroup(w: Writer, batches: readonly SubBatch[]): void {
  let flows = 0;
  for (const b of batches) flows += b.entries.length / 4;
  const keys: string[] = new Array(flows);
  const numbers = numbersFor(flows);
  const key = commonKey(batches);
  w.u8(GROUP_FORMAT);
  w.str(key ?? "");
  w.u32(batches.length);
  w.u32(flows);
  let k = 0;
  let n = 0;
  for (const b of batches) {
    const e = b.entries;
    w.u32(b.partition);
    w.u32(e.length / 4);
    if (b.idempotencyKey === undefined) w.u8(KEY_NONE);
    else if (b.idempotencyKey === key) w.u8(KEY_GROUP);
    else {
      w.u8(KEY_OWN);
      w.str(b.idempotencyKey);
    }
    for (let i = 0; i < e.length; i += 4) {
      keys[k++] = e[i] as string;
      numbers[n++] = e[i + 1] as number;
      numbers[n++] = e[i + 2] as number;
      numbers[n++] = e[i + 3] as number;
    }
  }
  const json = JSON.stringify(keys);
  w.room(4 + 3 * json.length + 24 * flows);
  const lengthAt = w.at;
  const written = w.buf.utf8Write(json, lengthAt + 4);
  w.buf.writeUInt32LE(written, lengthAt);
  w.at = lengthAt + 4 + written;
  w.buf.set(new Uint8Array(numbers.buffer, 0, 24 * flows), w.at);
  w.at += 24 * flows;
}

/** A received group's sub-batches. */
export function decodeGroup(bytes: Buffer): Group {
  const r = new Reader(bytes);
  const format = r.u8();
  if (format !== GROUP_FORMAT) throw new Error(`group codec: unknown group format ${format}`);
  const groupKey = r.str() || undefined;
  const parts = r.u32();
  const flows = r.u32();
  const heads: { partition: number; count: number; key: string | undefined }[] = new Array(parts);
  let total = 0;
  for (let i = 0; i < parts; i++) {
    const partition = r.u32();
    const count = r.u32();
    const mode = r.u8();
    if (mode > KEY_OWN) throw new Error(`group codec: unknown key mode ${mode}`);
    if (mode === KEY_GROUP && groupKey === undefined) throw new Error("group codec: a part names the group's key, the group has none");
    const key = mode === KEY_NONE ? undefined : mode === KEY_GROUP ? groupKey : r.str();
    heads[i] = { partition, count, key };
    total += count;
  }
  if (total !== flows) throw new Error(`group codec: parts hold ${total} flows, the group says ${flows}`);
  const keysBytes = r.u32();
  r.need(keysBytes);
  const keys = JSON.parse(bytes.utf8Slice(r.at, r.at + keysBytes)) as unknown;
  if (!Array.isArray(keys) || keys.length !== flows) throw new Error("group codec: the flow keys do not match the parts");
  r.at += keysBytes;
  r.need(24 * flows);
  const numbers = numbersFor(flows);
  new Uint8Array(numbers.buffer, 0, 24 * flows).set(bytes.subarray(r.at, r.at + 24 * flows));
  r.at += 24 * flows;
  if (r.at !== bytes.length) throw new Error(`group codec: ${bytes.length - r.at} byte(s) after the group`);
  const batches: SubBatch[] = new Array(parts);
  let k = 0;
  let n = 0;
  for (let i = 0; i < parts; i++) {
    const { partition, count, key } = heads[i];
    const entries: (string | number)[] = new Array(4 * count);
    for (let j = 0; j < 4 * count; j += 4) {
      const flowKey = keys[k++];
      if (typeof flowKey !== "string") throw new Error("group codec: a flow key is not a string");
      entries[j] = flowKey;
      entries[j + 1] = numbers[n++];
      entries[j + 2] = numbers[n++];
      entries[j + 3] = numbers[n++];
    }
    batches[i] = key === undefined ? { partition, entries } : { partition, entries, idempotencyKey: key };
  }
  return { batches, bytes };
}

/** The group's bytes, encoded now if it was built in this process. */
export function groupBytes(group: Group): Buffer {
  return (group.bytes ??= encodeGroup(group.batches));
}

function selectionBytes(parts: readonly number[] | undefined): number {
  return 4 + 4 * (parts?.length ?? 0);
}

function writeSelection(out: Buffer, at: number, parts: readonly number[] | undefined): number {
  if (parts === undefined) {
    out.writeUInt32LE(ALL, at);
    return at + 4;
  }
  out.writeUInt32LE(parts.length, at);
  at += 4;
  for (const p of parts) {
    out.writeUInt32LE(p, at);
    at += 4;
  }
  return at;
}

function readSelection(r: Reader, parts: number): number[] | undefined {
  const n = r.u32();
  if (n === ALL) return undefined;
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const p = r.u32();
    if (p >= parts) throw new Error(`group codec: part ${p} selected of ${parts}`);
    out[i] = p;
  }
  return out;
}

/** The sub-batches a selection names. */
export function selectedBatches({ group, parts }: SelectedGroup): SubBatch[] {
  return parts === undefined ? group.batches : parts.map((i) => group.batches[i]);
}

/** Groups, each applied on its own (as far as selected), as one message; a group built here is encoded straight into it. */
export function encodeMessage(epoch: number, groups: readonly SelectedGroup[]): Buffer {
  let size = 13;
  for (const g of groups) size += selectionBytes(g.parts) + 4 + (g.group.bytes?.length ?? groupSizeBound(g.group.batches));
  const w = new Writer(size);
  w.u8(MESSAGE_FORMAT);
  w.f64(epoch);
  w.u32(groups.length);
  for (const g of groups) {
    w.room(selectionBytes(g.parts));
    w.at = writeSelection(w.buf, w.at, g.parts);
    const lengthAt = w.at;
    w.u32(0);
    const bytes = g.group.bytes;
    if (bytes === undefined) writeGroup(w, g.group.batches);
    else {
      w.room(bytes.length);
      bytes.copy(w.buf, w.at);
      w.at += bytes.length;
    }
    w.buf.writeUInt32LE(w.at - lengthAt - 4, lengthAt);
  }
  return w.done();
}

/** A message's epoch and groups, decoded. */
export function decodeMessage(bytes: Buffer): { epoch: number; groups: SelectedGroup[] } {
  const r = new Reader(bytes);
  const format = r.u8();
  if (format !== MESSAGE_FORMAT) throw new Error(`group codec: unknown message format ${format}`);
  const epoch = r.f64();
  const n = r.u32();
  const groups: SelectedGroup[] = new Array(n);
  for (let i = 0; i < n; i++) groups[i] = readSelectedGroup(r);
  if (r.at !== bytes.length) throw new Error(`group codec: ${bytes.length - r.at} byte(s) after the last group`);
  return { epoch, groups };
}

function readSelectedGroup(r: Reader): SelectedGroup {
  // The selection comes first; its indexes are checked once the group's part count is known.
  const selectionAt = r.at;
  const n = r.u32();
  r.at += n === ALL ? 0 : 4 * n;
  const size = r.u32();
  r.need(size);
  const group = decodeGroup(r.buf.subarray(r.at, r.at + size));
  const end = r.at + size;
  r.at = selectionAt;
  const parts = readSelection(r, group.batches.length);
  r.at = end;
  return { group, parts };
}

/**
 * A log record: `head` bytes for the caller to fill, the selection, then the group's
 * bytes (as received; a group built in this process is encoded straight into the record).
 * The result is a view of a buffer the next call reuses: copy it before then.
 */
export function encodeLogged(g: SelectedGroup, head: number): Buffer {
  const bytes = g.group.bytes;
  const w = scratchRecord;
  w.at = 0;
  w.room(head + selectionBytes(g.parts) + (bytes?.length ?? groupSizeBound(g.group.batches)));
  w.at = writeSelection(w.buf, head, g.parts);
  if (bytes === undefined) writeGroup(w, g.group.batches);
  else {
    bytes.copy(w.buf, w.at);
    w.at += bytes.length;
  }
  return w.done();
}
/** Where log records are built: the log copies a record at once (Wal.appendRecord), so one buffer serves every record. */
const scratchRecord = new Writer(64 * 1024);

/** The sub-batches a log record's body applied. */
export function decodeLogged(body: Buffer): SubBatch[] {
  const r = new Reader(body);
  const n = r.u32();
  r.at += n === ALL ? 0 : 4 * n;
  const group = decodeGroup(body.subarray(r.at));
  r.at = 0;
  return selectedBatches({ group, parts: readSelection(r, group.batches.length) });
}
