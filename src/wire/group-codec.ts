/**
 * The group codec: one request's sub-batches for one node, in binary. The gateway
 * encodes a group once; the primary applies it, forwards to each copy the parts that
 * copy holds, and logs what it applied, all as slices of the bytes it received, never
 * re-encoded; a copy logs what it received. A part (one partition's sub-batch) is
 * self-delimiting, so cutting a group by partition is copying slices.
 *
 *   group = u8 GROUP_FORMAT | len key | u16 parts | part*
 *   part  = u32 bytes (of the rest of the part) | u32 partition | u32 count
 *         | u8 keyMode (0 none, 1 the group's key, 2 own: len key)
 *         | (len flowKey)*count | f64 (hour, bytes_tx, bytes_rx)*count
 *   len s = u8 n (< 254) or 254 + u32 n, then n bytes of UTF-8; or 255 + u32 n, then
 *           n bytes of UTF-16LE for a string UTF-8 cannot carry (a lone surrogate, which
 *           a JSON body can spell as \ud800): every key arrives exactly as it was sent
 *
 * The idempotency key is written once per group (a 1000-record request touches ~250
 * partitions); a part cut from an oversized sub-batch carries its own derived key.
 * Numbers are float64: hours and sums are exact integers up to 2^53-1.
 *
 * A message (flow-shard.apply / replicate) is several groups, each applied on its own:
 *   message = u8 MESSAGE_FORMAT | f64 epoch | u32 groups | (u32 bytes | group)*
 *
 * No Moleculer here; mixins/binary.serializer.ts carries a Buffer across NATS as is.
 */
import type { SubBatch } from "../partition-store";

export const GROUP_FORMAT = 1;
export const MESSAGE_FORMAT = 0xb1;

const KEY_NONE = 0;
const KEY_GROUP = 1;
const KEY_OWN = 2;

/** A group as the write path handles it: its sub-batches, and its bytes when it arrived encoded. */
export interface Group {
  key: string | undefined;
  batches: SubBatch[];
  /** batches[i]'s part, as received (absent for a group built in this process). */
  parts?: Buffer[];
  /** The whole group as received. */
  bytes?: Buffer;
}

/** A growable output buffer (one per encode; the result is a copy of its used bytes). */
class Writer {
  buf: Buffer;
  at = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(bigger, 0, 0, this.at);
    this.buf = bigger;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.at++] = v;
  }
  u16(v: number): void {
    this.room(2);
    this.buf.writeUInt16LE(v, this.at);
    this.at += 2;
  }
  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v, this.at);
    this.at += 4;
  }
  f64(v: number): void {
    this.room(8);
    this.buf.writeDoubleLE(v, this.at);
    this.at += 8;
  }
  /** len s: the length is written after the string (a UTF-8 length is known once written). */
  str(s: string): void {
    const most = s.length * 3;
    this.room(5 + most);
    // A one-byte string (most keys) is well-formed without a scan.
    if (!s.isWellFormed()) {
      const n = this.buf.ucs2Write(s, this.at + 5);
      this.buf[this.at] = UTF16;
      this.buf.writeUInt32LE(n, this.at + 1);
      this.at += 5 + n;
    } else if (most < LONG) {
      const n = this.buf.utf8Write(s, this.at + 1);
      this.buf[this.at] = n;
      this.at += 1 + n;
    } else {
      const n = this.buf.utf8Write(s, this.at + 5);
      this.buf[this.at] = LONG;
      this.buf.writeUInt32LE(n, this.at + 5 - 4);
      this.at += 5 + n;
    }
  }
  done(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.at));
  }
}

/** A string's length byte: below LONG, the UTF-8 length itself. */
const LONG = 254;
const UTF16 = 255;

// Node's own fast paths (what Buffer.write and toString call after checking the encoding name).
declare module "buffer" {
  interface Buffer {
    utf8Write(s: string, offset: number): number;
    utf8Slice(start: number, end: number): string;
    ucs2Write(s: string, offset: number): number;
    ucs2Slice(start: number, end: number): string;
  }
}
declare global {
  interface String {
    /** ES2024; Node 20 has it. */
    isWellFormed(): boolean;
  }
}

/** A reader over a group's or message's bytes; throws on bytes that end early. */
class Reader {
  at: number;
  constructor(
    readonly buf: Buffer,
    start = 0,
    readonly end = buf.length,
  ) {
    this.at = start;
  }
  need(n: number): void {
    if (this.at + n > this.end) throw new Error(`group codec: truncated at byte ${this.at} (need ${n} of ${this.end - this.at})`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.at++];
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.at);
    this.at += 8;
    return v;
  }
  str(): string {
    let n = this.u8();
    const utf16 = n === UTF16;
    if (n >= LONG) n = this.u32();
    this.need(n);
    const s = utf16 ? this.buf.ucs2Slice(this.at, this.at + n) : this.buf.utf8Slice(this.at, this.at + n);
    this.at += n;
    return s;
  }
}

/** The key every sub-batch holds, or undefined when they differ or some have none. */
function commonKey(batches: readonly SubBatch[]): string | undefined {
  const key = batches.length > 0 ? batches[0].idempotencyKey : undefined;
  if (key === undefined) return undefined;
  for (const b of batches) if (b.idempotencyKey !== key) return undefined;
  return key;
}

function writePart(w: Writer, b: SubBatch, groupKey: string | undefined): void {
  const e = b.entries;
  const count = e.length / 4;
  const start = w.at;
  w.u32(0);
  w.u32(b.partition);
  w.u32(count);
  if (b.idempotencyKey === undefined) w.u8(KEY_NONE);
  else if (b.idempotencyKey === groupKey) w.u8(KEY_GROUP);
  else {
    w.u8(KEY_OWN);
    w.str(b.idempotencyKey);
  }
  for (let i = 0; i < e.length; i += 4) w.str(e[i] as string);
  w.room(24 * count);
  const buf = w.buf;
  let at = w.at;
  for (let i = 0; i < e.length; i += 4) {
    buf.writeDoubleLE(e[i + 1] as number, at);
    buf.writeDoubleLE(e[i + 2] as number, at + 8);
    buf.writeDoubleLE(e[i + 3] as number, at + 16);
    at += 24;
  }
  w.at = at;
  w.buf.writeUInt32LE(w.at - start - 4, start);
}

/** A group of sub-batches (one request's for one node) as bytes. */
export function encodeGroup(batches: readonly SubBatch[]): Buffer {
  let flows = 0;
  for (const b of batches) flows += b.entries.length / 4;
  const w = new Writer(64 + 64 * flows + 16 * batches.length);
  const key = commonKey(batches);
  w.u8(GROUP_FORMAT);
  w.str(key ?? "");
  w.u16(batches.length);
  for (const b of batches) writePart(w, b, key);
  return w.done();
}

/** The group's key and its parts (slices of `bytes`, not copies). */
export function partsOf(bytes: Buffer): { key: string | undefined; parts: Buffer[] } {
  const r = new Reader(bytes);
  const format = r.u8();
  if (format !== GROUP_FORMAT) throw new Error(`group codec: unknown group format ${format}`);
  const key = r.str();
  const n = r.u16();
  const parts: Buffer[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const start = r.at;
    const size = r.u32();
    r.need(size);
    r.at += size;
    parts[i] = bytes.subarray(start, r.at);
  }
  if (r.at !== bytes.length) throw new Error(`group codec: ${bytes.length - r.at} byte(s) after the last part`);
  return { key: key === "" ? undefined : key, parts };
}

/** One part as the sub-batch it carries. */
export function decodePart(part: Buffer, groupKey: string | undefined): SubBatch {
  const r = new Reader(part);
  const size = r.u32();
  if (size + 4 !== part.length) throw new Error(`group codec: a part of ${part.length} bytes says ${size + 4}`);
  const partition = r.u32();
  const count = r.u32();
  const mode = r.u8();
  const key = mode === KEY_NONE ? undefined : mode === KEY_GROUP ? groupKey : mode === KEY_OWN ? r.str() : undefined;
  if (mode > KEY_OWN) throw new Error(`group codec: unknown key mode ${mode}`);
  if (mode === KEY_GROUP && groupKey === undefined) throw new Error("group codec: a part names the group's key, the group has none");
  const entries: (string | number)[] = new Array(count * 4);
  for (let i = 0; i < count; i++) entries[4 * i] = r.str();
  r.need(24 * count);
  const buf = part;
  let at = r.at;
  for (let i = 0; i < count; i++) {
    entries[4 * i + 1] = buf.readDoubleLE(at);
    entries[4 * i + 2] = buf.readDoubleLE(at + 8);
    entries[4 * i + 3] = buf.readDoubleLE(at + 16);
    at += 24;
  }
  if (at !== part.length) throw new Error(`group codec: ${part.length - at} byte(s) after a part's flows`);
  return key === undefined ? { partition, entries } : { partition, entries, idempotencyKey: key };
}

/** A received group, decoded, its parts kept for forwarding and logging. */
export function decodeGroup(bytes: Buffer): Group {
  const { key, parts } = partsOf(bytes);
  return { key, batches: parts.map((p) => decodePart(p, key)), parts, bytes };
}

/** The bytes of a group holding `indexes` of its sub-batches: its parts when it has them, else encoded. */
export function groupBytes(group: Group, indexes?: readonly number[]): Buffer {
  const all = indexes === undefined || indexes.length === group.batches.length;
  if (all && group.bytes !== undefined) return group.bytes;
  if (group.parts === undefined) return encodeGroup(all ? group.batches : indexes!.map((i) => group.batches[i]));
  const parts = all ? group.parts : indexes!.map((i) => group.parts![i]);
  const head = new Writer(8 + (group.key?.length ?? 0) * 3);
  head.u8(GROUP_FORMAT);
  head.str(group.key ?? "");
  head.u16(parts.length);
  return Buffer.concat([head.buf.subarray(0, head.at), ...parts]);
}

/** Groups, each applied on its own, as one message. */
export function encodeMessage(epoch: number, groups: readonly Buffer[]): Buffer {
  let size = 13;
  for (const g of groups) size += 4 + g.length;
  const out = Buffer.allocUnsafe(size);
  out[0] = MESSAGE_FORMAT;
  out.writeDoubleLE(epoch, 1);
  out.writeUInt32LE(groups.length, 9);
  let at = 13;
  for (const g of groups) {
    out.writeUInt32LE(g.length, at);
    g.copy(out, at + 4);
    at += 4 + g.length;
  }
  return out;
}

/** A message's epoch and groups (slices of `bytes`). */
export function readMessage(bytes: Buffer): { epoch: number; groups: Buffer[] } {
  const r = new Reader(bytes);
  const format = r.u8();
  if (format !== MESSAGE_FORMAT) throw new Error(`group codec: unknown message format ${format}`);
  const epoch = r.f64();
  const n = r.u32();
  const groups: Buffer[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    r.need(size);
    groups[i] = bytes.subarray(r.at, r.at + size);
    r.at += size;
  }
  return { epoch, groups };
}
