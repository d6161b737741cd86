/**
 * Byte-level helpers of the wire codecs (src/wire/group-codec.ts, and the read path's):
 * a growable little-endian writer and a bounds-checked reader. A string is
 *
 *   len s = u8 n (< 254) or 254 + u32 n, then n bytes of UTF-8; or 255 + u32 n, then
 *           n bytes of UTF-16LE for a string UTF-8 cannot carry (a lone surrogate, which
 *           a JSON body can spell as \ud800): every string arrives exactly as it was sent.
 *
 * No Moleculer here.
 */
/** A growable output buffer (one per encode; the result is a copy of its used bytes). */
export class Writer {
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
  /** The bytes written (a view, not a copy: a writer's buffer is its result's alone). */
  done(): Buffer {
    return this.buf.subarray(0, this.at);
  }
}

/**
 * Bytes copied out with ENVELOPE_ROOM spare bytes of their own in front: the transport's
 * serializer writes its envelope there (takeRoomInFront) instead of copying the bytes
 * after a new envelope, one copy and one buffer outside V8's heap less per message. The
 * room is given once: a second envelope for the same bytes (the first may still wait to be
 * written to the socket) takes the copying path. Small byte strings are copied as usual.
 */
export function withRoomInFront(bytes: Buffer): Buffer {
  if (bytes.length < ROOM_MIN_BYTES) return Buffer.from(bytes);
  // Never from Node's shared pool: the room in front must be this buffer's alone.
  const out = Buffer.allocUnsafeSlow(ENVELOPE_ROOM + bytes.length).subarray(ENVELOPE_ROOM);
  bytes.copy(out, 0);
  roomy.add(out);
  return out;
}

/** The bytes free in front of `bytes` for an envelope (0: none), given up by this call. */
export function takeRoomInFront(bytes: Buffer): number {
  if (!roomy.delete(bytes)) return 0;
  return bytes.byteOffset;
}

export const ENVELOPE_ROOM = 1024;
const ROOM_MIN_BYTES = 4096;
const roomy = new WeakSet<Buffer>();

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
export class Reader {
  at: number;
  constructor(
    readonly buf: Buffer,
    start = 0,
    readonly end = buf.length,
  ) {
    this.at = start;
  }
  need(n: number): void {
    if (this.at + n > this.end) throw new Error(`wire: truncated at byte ${this.at} (need ${n} of ${this.end - this.at})`);
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

