/**
 * The write-ahead log of one node: numbered records in segment files
 * (`<first record's LSN, 16 digits>.wal`), each record `[u32 length][u32 crc32][payload]`
 * (little-endian). Appends go to a buffer; one writer drains it with one write (to the
 * OS, on the event loop: see writeAllSync) and, in `sync` mode, one fdatasync for
 * everything that arrived meanwhile (group commit), on libuv's threads, off the event
 * loop. `durable(lsn)` resolves once that record is on disk (`sync`) or written to the
 * OS (`interval`, which fdatasyncs every `intervalMs`).
 *
 * A write that fails (ENOSPC, EIO) is cut back off the file and kept in the buffer; the
 * log reports itself `failed` (writes must be refused before they touch memory) and
 * tries again every second, resolving the waiters once it succeeds.
 *
 * Reading (`readLog`): records in LSN order; a torn last record (a crash mid-write) is
 * cut off with a warning; damage anywhere else throws CorruptLogError naming the file
 * and offset: the log is never silently shortened. `readRecent`: the records from an LSN
 * this process wrote, found through the positions of its recent writes (a primary's log
 * tail for a returning copy, src/durability/log-tail.ts).
 */
import * as fs from "fs";
import * as path from "path";
import { crc32 } from "zlib";

const HEADER = 8;
/** Bytes in front of a record's payload (length and checksum): room a caller of appendRecord leaves. */
export const RECORD_HEADER = HEADER;
const SUFFIX = ".wal";

export type SyncMode = "sync" | "interval";

export class CorruptLogError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    why: string,
  ) {
    super(`write-ahead log ${file} is damaged at byte ${offset} (${why}); see README "Operations: a corrupt log"`);
    this.name = "CorruptLogError";
  }
}

export interface Segment {
  firstLsn: number;
  file: string;
}

export function segmentName(firstLsn: number): string {
  return `${String(firstLsn).padStart(16, "0")}${SUFFIX}`;
}

export function listSegments(dir: string): Segment[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{16}\.wal$/.test(f))
    .sort()
    .map((f) => ({ firstLsn: Number(f.slice(0, 16)), file: path.join(dir, f) }));
}

export function encodeRecord(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER + payload.length);
  out.writeUInt32LE(payload.length, 0);
  out.writeUInt32LE(crc32(payload), 4);
  payload.copy(out, HEADER);
  return out;
}

/**
 * The record at `offset` of a segment's bytes (`data`): its payload and where the next one
 * starts, or why it is not there whole: cut off (`damaged` false: the bytes end first) or
 * damaged (its checksum does not match; `end` is where it would end).
 */
function recordAt(data: Buffer, offset: number): { payload: Buffer; end: number } | { why: string; damaged: boolean; end: number } {
  if (data.length - offset < HEADER) return { why: "incomplete header", damaged: false, end: data.length };
  const length = data.readUInt32LE(offset);
  const end = offset + HEADER + length;
  if (end > data.length) return { why: `a ${length}-byte record runs past the end`, damaged: false, end };
  const payload = data.subarray(offset + HEADER, end);
  if (crc32(payload) !== data.readUInt32LE(offset + 4)) return { why: end === data.length ? "checksum mismatch in the last record" : "checksum mismatch", damaged: true, end };
  return { payload, end };
}

/**
 * Every record of the log in `dir`, in order. Returns the LSN the next record gets.
 * A torn tail of the last segment is truncated (and reported through `warn`).
 */
export function readLog(dir: string, onRecord: (lsn: number, payload: Buffer) => void, warn: (msg: string) => void): number {
  const segments = listSegments(dir);
  let next = segments.length > 0 ? segments[0].firstLsn : 1;
  segments.forEach((segment, i) => {
    const last = i === segments.length - 1;
    if (segment.firstLsn !== next) throw new CorruptLogError(segment.file, 0, `expected a segment starting at record ${next}`);
    const data = fs.readFileSync(segment.file);
    let offset = 0;
    while (offset < data.length) {
      const r = recordAt(data, offset);
      if ("payload" in r) {
        onRecord(next++, r.payload);
        offset = r.end;
        continue;
      }
      // Damage before the end of the last segment is never a crash mid-write.
      if (!last || (r.damaged && r.end !== data.length)) throw new CorruptLogError(segment.file, offset, r.why);
      warn(`Write-ahead log ${segment.file}: a torn last record at byte ${offset} (${r.why}) was dropped (a crash during a write; it was never acknowledged)`);
      fs.truncateSync(segment.file, offset);
      break;
    }
  });
  return next;
}

/** Writes whose positions are remembered (one entry per write to the OS, a group commit): over a minute at 1000 writes a second. */
const POSITIONS = 65536;

/** Where a write put its records: the first record's LSN, its segment (by first LSN) and offset. */
interface Position {
  lsn: number;
  segment: number;
  offset: number;
}

export interface WalOptions {
  dir: string;
  mode: SyncMode;
  /** LSN of the next record (from readLog). */
  nextLsn: number;
  /** A segment is closed and a new one started past this size. */
  segmentBytes: number;
  /** `interval` mode: fdatasync this often. */
  intervalMs: number;
  warn(msg: string): void;
}

interface Waiter {
  lsn: number;
  resolve(): void;
  reject(err: Error): void;
}

export class Wal {
  private fd: number;
  private segmentFirstLsn: number;
  private segmentSize: number;
  private nextLsn: number;
  /**
   * Encoded records not yet written, copied into one reused buffer (`pending`, `pendingBytes`
   * used), and the buffer the last write took (`spare`, reused next): at hundreds of records
   * a second, a buffer allocated per record made the GC a sixth of the node's time.
   */
  private pending = Buffer.allocUnsafe(1 << 20);
  private pendingBytes = 0;
  private spare = Buffer.allocUnsafe(1 << 20);
  /** Last LSN written to the file; last LSN on disk. */
  private writtenLsn: number;
  private syncedLsn: number;
  private waiters: Waiter[] = [];
  private pumping = false;
  private failure: Error | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private syncTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** The positions of this process's recent writes, oldest first (a bounded window: `positionsHead` onwards). */
  private positions: Position[] = [];
  private positionsHead = 0;

  constructor(private readonly o: WalOptions) {
    fs.mkdirSync(o.dir, { recursive: true });
    this.nextLsn = o.nextLsn;
    this.writtenLsn = this.syncedLsn = o.nextLsn - 1;
    const segments = listSegments(o.dir);
    const lastSegment = segments[segments.length - 1];
    if (lastSegment && fs.statSync(lastSegment.file).size < o.segmentBytes) {
      this.segmentFirstLsn = lastSegment.firstLsn;
      this.fd = fs.openSync(lastSegment.file, "a");
      this.segmentSize = fs.fstatSync(this.fd).size;
    } else {
      this.segmentFirstLsn = this.nextLsn;
      this.fd = fs.openSync(path.join(o.dir, segmentName(this.nextLsn)), "a");
      this.segmentSize = 0;
      syncDir(o.dir);
    }
    if (o.mode === "interval") {
      this.syncTimer = setInterval(() => void this.syncNow(), o.intervalMs);
      this.syncTimer.unref();
    }
  }

  /** LSN of the last record appended (0: none yet). */
  get lastLsn(): number {
    return this.nextLsn - 1;
  }

  /** Why the log cannot take writes now (null: it can). Writes are refused before they touch memory. */
  get failed(): Error | null {
    return this.failure;
  }

  /** Append one record; returns its LSN. Write it with durable(). */
  append(payload: Buffer): number {
    return this.appendRecord(encodeRecord(payload));
  }

  /**
   * Append a record whose first RECORD_HEADER bytes are left for the log to fill; it is
   * copied, so the caller may reuse `record` at once.
   */
  appendRecord(record: Buffer): number {
    record.writeUInt32LE(record.length - HEADER, 0);
    record.writeUInt32LE(crc32(record.subarray(HEADER)), 4);
    this.reserve(record.length);
    record.copy(this.pending, this.pendingBytes);
    this.pendingBytes += record.length;
    const lsn = this.nextLsn++;
    queueMicrotask(() => void this.pump());
    return lsn;
  }

  /**
   * Resolves once record `lsn` (default: every record appended so far) is durable as the
   * mode promises; rejects at once while the log cannot be written (the record stays
   * buffered and is written when it can: a retry of the same request then waits for it).
   */
  durable(lsn = this.lastLsn): Promise<void> {
    if (lsn <= (this.o.mode === "sync" ? this.syncedLsn : this.writtenLsn)) return Promise.resolve();
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ lsn, resolve, reject }));
  }

  /**
   * Delete whole segments whose every record is below `lsn` (covered by checkpoints).
   * Resolves how many. Off the event loop: unlinking a 64 MiB segment took the main
   * thread ~20 µs a request, amortized, in an embedded `sync` profile.
   */
  async deleteBefore(lsn: number): Promise<number> {
    const segments = listSegments(this.o.dir);
    let deleted = 0;
    for (let i = 0; i + 1 < segments.length; i++) {
      if (segments[i + 1].firstLsn > lsn || segments[i].firstLsn === this.segmentFirstLsn) break;
      await fs.promises.rm(segments[i].file, { force: true });
      deleted++;
      while (this.positionsHead < this.positions.length && this.positions[this.positionsHead].segment <= segments[i].firstLsn) this.positionsHead++;
    }
    return deleted;
  }

  /**
   * The records `fromLsn`..`toLsn` (written, not necessarily synced), in order, or null
   * when this process did not write `fromLsn` or no longer knows where it is, or when
   * more than `maxBytes` would have to be read.
   */
  readRecent(fromLsn: number, toLsn: number, maxBytes: number, onRecord: (lsn: number, payload: Buffer) => void): number | null {
    if (fromLsn > toLsn) return 0;
    if (toLsn > this.writtenLsn) throw new Error(`log record ${toLsn} is not written yet (written up to ${this.writtenLsn})`);
    let i = this.positions.length - 1;
    while (i >= this.positionsHead && this.positions[i].lsn > fromLsn) i--;
    if (i < this.positionsHead) return null;
    const start = this.positions[i];
    const segments = listSegments(this.o.dir).filter((s) => s.firstLsn >= start.segment);
    if (segments.length === 0 || segments[0].firstLsn !== start.segment) return null;
    const sizes = segments.map((s) => fs.statSync(s.file).size);
    const bytes = sizes.reduce((a, b) => a + b, 0) - start.offset;
    if (bytes > maxBytes) return null;
    let lsn = start.lsn;
    for (let k = 0; k < segments.length && lsn <= toLsn; k++) {
      const from = k === 0 ? start.offset : 0;
      const data = Buffer.allocUnsafe(sizes[k] - from);
      const fd = fs.openSync(segments[k].file, "r");
      try {
        let read = 0;
        while (read < data.length) {
          const n = fs.readSync(fd, data, read, data.length - read, from + read);
          if (n === 0) break;
          read += n;
        }
      } finally {
        fs.closeSync(fd);
      }
      if (k > 0 && segments[k].firstLsn !== lsn) throw new CorruptLogError(segments[k].file, 0, `expected a segment starting at record ${lsn}`);
      let offset = 0;
      while (lsn <= toLsn && offset < data.length) {
        const r = recordAt(data, offset);
        if (!("payload" in r)) {
          if (r.damaged) throw new CorruptLogError(segments[k].file, from + offset, r.why);
          break; // the rest is being written: not yet written up to toLsn in this segment
        }
        if (lsn >= fromLsn) onRecord(lsn, r.payload);
        lsn++;
        offset = r.end;
      }
    }
    if (lsn <= toLsn) throw new Error(`log records ${lsn}..${toLsn} were not found where this process wrote them`);
    return bytes;
  }

  private remember(position: Position): void {
    this.positions.push(position);
    if (this.positions.length - this.positionsHead > POSITIONS) this.positionsHead++;
    if (this.positionsHead > POSITIONS) {
      this.positions = this.positions.slice(this.positionsHead);
      this.positionsHead = 0;
    }
  }

  /** Bytes in the log's segments. */
  diskBytes(): number {
    return listSegments(this.o.dir).reduce((a, s) => a + (fs.existsSync(s.file) ? fs.statSync(s.file).size : 0), 0);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.syncTimer) clearInterval(this.syncTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    while (this.pumping) await new Promise((r) => setTimeout(r, 2));
    if (this.failure === null) await this.pump();
    try {
      fs.fdatasyncSync(this.fd);
    } catch {
      /* closing anyway */
    }
    fs.closeSync(this.fd);
  }

  /** Room for `n` more bytes in the pending buffer. */
  private reserve(n: number): void {
    if (this.pendingBytes + n <= this.pending.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(2 * this.pending.length, this.pendingBytes + n));
    this.pending.copy(bigger, 0, 0, this.pendingBytes);
    this.pending = bigger;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.pendingBytes > 0) {
        // Take what is buffered now; records appended during the write wait for the next round (in the other buffer).
        const full = this.pending;
        const data = full.subarray(0, this.pendingBytes);
        this.pending = this.spare;
        this.spare = full;
        this.pendingBytes = 0;
        const upTo = this.nextLsn - 1;
        const before = this.segmentSize;
        try {
          writeAllSync(this.fd, data);
        } catch (err) {
          // Cut a partial write back off and keep the records in front: written whole later, or never.
          await ftruncate(this.fd, before).catch(() => undefined);
          const after = Buffer.from(this.pending.subarray(0, this.pendingBytes));
          this.pending = Buffer.allocUnsafe(Math.max(1 << 20, data.length + after.length));
          data.copy(this.pending, 0);
          after.copy(this.pending, data.length);
          this.pendingBytes = data.length + after.length;
          this.fail(err as Error);
          return;
        }
        this.remember({ lsn: this.writtenLsn + 1, segment: this.segmentFirstLsn, offset: before });
        this.segmentSize += data.length;
        this.writtenLsn = upTo;
        if (this.o.mode === "sync") {
          try {
            await fdatasync(this.fd);
          } catch (err) {
            this.fail(err as Error);
            return;
          }
          this.syncedLsn = upTo;
        }
        this.failure = null;
        this.release();
        if (this.segmentSize >= this.o.segmentBytes) await this.rotate();
      }
    } finally {
      this.pumping = false;
    }
  }

  private async syncNow(): Promise<void> {
    const upTo = this.writtenLsn;
    if (upTo <= this.syncedLsn) return;
    try {
      await fdatasync(this.fd);
      this.syncedLsn = Math.max(this.syncedLsn, upTo);
    } catch (err) {
      this.o.warn(`Write-ahead log: fdatasync failed: ${(err as Error).message}`);
    }
  }

  private fail(err: Error): void {
    if (this.failure === null) this.o.warn(`Write-ahead log: cannot write (${err.message}); writes are refused until it can, reads go on`);
    this.failure = err;
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w.reject(err);
    if (this.retryTimer === null && !this.closed) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        void this.retry();
      }, 1000);
      this.retryTimer.unref();
    }
  }

  private async retry(): Promise<void> {
    if (this.o.mode === "sync" && this.pendingBytes === 0 && this.writtenLsn > this.syncedLsn) {
      try {
        await fdatasync(this.fd);
        this.syncedLsn = this.writtenLsn;
        this.failure = null;
        this.release();
      } catch (err) {
        this.fail(err as Error);
        return;
      }
    }
    await this.pump();
    if (this.failure !== null && this.pendingBytes === 0 && this.writtenLsn <= this.syncedLsn) this.failure = null;
    if (this.failure === null) this.o.warn("Write-ahead log: writing again");
  }

  private release(): void {
    const done = this.o.mode === "sync" ? this.syncedLsn : this.writtenLsn;
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.lsn <= done) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  /** Start a new segment; if it cannot be created (a full disk), keep writing to this one. */
  private async rotate(): Promise<void> {
    let fd: number;
    try {
      fd = fs.openSync(path.join(this.o.dir, segmentName(this.writtenLsn + 1)), "a");
    } catch (err) {
      this.o.warn(`Write-ahead log: cannot start a new segment (${(err as Error).message}); the current one grows`);
      return;
    }
    await fdatasync(this.fd).catch(() => undefined);
    fs.closeSync(this.fd);
    this.fd = fd;
    this.segmentFirstLsn = this.writtenLsn + 1;
    this.segmentSize = 0;
    await syncDirAsync(this.o.dir);
  }
}

/**
 * Write to the OS on the event loop: a write to the page cache of a few hundred KiB takes
 * tens of µs, less than handing it to libuv's threads and back did on this 2-core VM
 * (cluster R=2 under wrk, medians of 3 alternated rounds: 0.77 -> 0.84 of DURABILITY=memory's
 * throughput with `interval`, 0.65 -> 0.72 with `sync`; README "Design notes"). fdatasync, which
 * waits for the disk, stays off the event loop.
 */
function writeAllSync(fd: number, data: Buffer): void {
  let offset = 0;
  while (offset < data.length) offset += fs.writeSync(fd, data, offset, data.length - offset);
}

const fdatasync = (fd: number) => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
const ftruncate = (fd: number, len: number) => new Promise<void>((resolve, reject) => fs.ftruncate(fd, len, (err) => (err ? reject(err) : resolve())));

/** A new or renamed file's directory entry is durable only once the directory is synced. */
export function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* some filesystems refuse directory fsync: nothing more can be done */
  }
}

/** syncDir off the event loop (libuv's threads). */
export async function syncDirAsync(dir: string): Promise<void> {
  try {
    const handle = await fs.promises.open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    /* as syncDir */
  }
}
