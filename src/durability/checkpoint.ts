/**
 * Checkpoints, in a node's `checkpoints/` directory:
 *
 * - one file per partition, `<partition>.ckpt`: a full copy of the partition's flows as
 *   of log record `lsn`;
 * - one file for the node's idempotency windows, `window.ckpt`: every live key once, with
 *   its absolute expiry and the partitions that applied it, as of log record `lsn`,
 *   written at the end of each round (so its LSN is at least every partition's).
 *
 * Each is written to a temporary file, synced, then renamed over the old one, so a
 * checkpoint on disk is always whole; a `.tmp` left by a crash is removed at start.
 *
 * Binary, little-endian (src/wire/bytes.ts; `str` is exact for every string, lone
 * surrogates and astral characters included), each file ending with the CRC-32 of every
 * byte before it (a damaged file stops the start with its name, never a silent loss):
 *
 *   partition = u32 PARTITION_MAGIC | u8 FORMAT | u32 partition | f64 lsn | f64 at | u32 hours
 *             | (f64 hour | u32 n | str key * n | f64 (bytes_tx, bytes_rx) * n) * hours | u32 crc
 *   window    = u32 WINDOW_MAGIC | u8 FORMAT | f64 lsn | f64 at | u32 keys
 *             | (str key | f64 expiresAt | u16 words | u32 word * words) * keys | u32 crc
 *               (word w, bit b: partition 32w + b applied the key)
 *
 * Why the windows have a file of their own: a cluster write's key is remembered by every
 * partition it touched (~250 for a 1000-record request), so with a copy of its window in
 * each partition's checkpoint a round listed and wrote each key ~170 times per node
 * (IDEMPOTENCY_MAX keys a partition: ~100 MB a round under the bench's load, where the
 * flows were ~40 kB). Recovery takes a partition's keys from the window file and the log
 * records after it (src/durability/journal.ts replays the keys of records its partition's
 * checkpoint already covers: the window file may be older than a partition's checkpoint
 * after a crash in the middle of a round).
 *
 * Earlier versions wrote `<partition>.json` (the same content, the partition's keys in
 * it): those still load. The next round rewrites such a partition in binary and removes
 * its JSON file once the binary one and the window file are durable; until then, with both
 * on disk, the one covering the later LSN is loaded, and without a window file the keys
 * come from the JSON files.
 */
import * as fs from "fs";
import * as path from "path";
import { crc32 } from "zlib";
import type { PartitionStore, SnapshotHour } from "../partition-store";
import { Reader, Writer } from "../wire/bytes";

/** "FMCP", "FMCW" as little-endian u32. */
const PARTITION_MAGIC = 0x50434d46;
const WINDOW_MAGIC = 0x57434d46;
const FORMAT = 1;
export const WINDOW_FILE = "window.ckpt";

/** A JSON checkpoint, as versions before the binary format wrote them. */
interface JsonCheckpoint {
  partition: number;
  lsn: number;
  at: number;
  hours: SnapshotHour[];
  /** Idempotency keys with their expiry (wall-clock ms). */
  dedupe: [key: string, expiresAt: number][];
}

/** A checkpoint encoded, ready to be written (its bytes are the encoder's until the next encode). */
export interface EncodedCheckpoint {
  /** The file's name in the checkpoint directory. */
  name: string;
  lsn: number;
  bytes: Buffer;
}

export function checkpointName(partition: number): string {
  return `${String(partition).padStart(5, "0")}.ckpt`;
}

function jsonName(partition: number): string {
  return `${String(partition).padStart(5, "0")}.json`;
}

/** Float64 scratch for a table's sums (copied to the file's bytes as one block). */
let scratchNumbers = new Float64Array(1024);

/**
 * The partition's flows as they are now, encoded synchronously (no write can interleave)
 * into `w` (reset first), with the LSN it covers. Straight from the hour tables: no
 * snapshot copy of the keys and sums first.
 */
export function encodePartition(w: Writer, store: PartitionStore, partition: number, lsn: number, at: number): EncodedCheckpoint {
  w.at = 0;
  w.u32(PARTITION_MAGIC);
  w.u8(FORMAT);
  w.u32(partition);
  w.f64(lsn);
  w.f64(at);
  const hoursAt = w.at;
  w.u32(0);
  let hours = 0;
  const p = store.partitions.get(partition);
  if (p !== undefined) {
    for (const [hour, table] of p.hours) {
      const n = table.size;
      if (n === 0) continue;
      hours++;
      w.f64(hour);
      w.u32(n);
      const keys = table.keys;
      for (let slot = 0; slot < n; slot++) w.str(keys[slot]);
      if (scratchNumbers.length < 2 * n) scratchNumbers = new Float64Array(Math.max(2 * n, 2 * scratchNumbers.length));
      const sums = table.sums;
      for (let i = 0; i < 2 * n; i++) scratchNumbers[i] = sums[i];
      w.room(16 * n);
      w.buf.set(new Uint8Array(scratchNumbers.buffer, 0, 16 * n), w.at);
      w.at += 16 * n;
    }
  }
  w.buf.writeUInt32LE(hours, hoursAt);
  return { name: checkpointName(partition), lsn, bytes: sealed(w) };
}

/** Keys encoded in one turn; between slices the event loop runs. */
const WINDOW_SLICE = 8192;

/**
 * Every live idempotency key of the node, once, encoded into `w` (reset first), as of log
 * record `lsn` (the caller's last, taken in the same turn as the first slice). With
 * `pause`, the keys are encoded WINDOW_SLICE at a time with a pause between (a node can
 * hold IDEMPOTENCY_MAX keys for each of its partitions): a key changed meanwhile is
 * written as it is when reached, which recovery's replay of the keys of every record after
 * `lsn` makes right again (a key applied later is in the file and in the log; one reverted
 * or dropped later is forgotten again; one evicted or expired meanwhile may be missing, as
 * it was allowed to be).
 */
export async function encodeWindow(w: Writer, store: PartitionStore, lsn: number, at: number, pause?: () => Promise<void>): Promise<EncodedCheckpoint> {
  const keys = startWindow(w, store, lsn, at);
  const state = { count: 0 };
  while (!encodeKeys(w, keys, at, state, pause === undefined ? Infinity : WINDOW_SLICE)) await pause!();
  return finishWindow(w, lsn, state.count);
}

/** The same in one turn (at start, before anything else runs). */
export function encodeWindowSync(w: Writer, store: PartitionStore, lsn: number, at: number): EncodedCheckpoint {
  const keys = startWindow(w, store, lsn, at);
  const state = { count: 0 };
  encodeKeys(w, keys, at, state, Infinity);
  return finishWindow(w, lsn, state.count);
}

type WindowKeys = ReturnType<PartitionStore["windowKeys"]>;
/** Where the window's key count goes. */
const WINDOW_COUNT_AT = 4 + 1 + 8 + 8;

function startWindow(w: Writer, store: PartitionStore, lsn: number, at: number): WindowKeys {
  w.at = 0;
  w.u32(WINDOW_MAGIC);
  w.u8(FORMAT);
  w.f64(lsn);
  w.f64(at);
  w.u32(0); // the count, once known
  return store.windowKeys();
}

/** Up to `most` keys more; true once every key is written. */
function encodeKeys(w: Writer, keys: WindowKeys, at: number, state: { count: number }, most: number): boolean {
  for (let n = 0; n < most; n++) {
    const next = keys.next();
    if (next.done === true) return true;
    const { key, expires, bits, partitions } = next.value;
    if (expires <= at || partitions === 0) continue;
    let words = bits.length;
    while (words > 0 && bits[words - 1] === 0) words--;
    state.count++;
    w.str(key);
    w.f64(expires);
    w.u16(words);
    for (let i = 0; i < words; i++) w.u32(bits[i] >>> 0);
  }
  return false;
}

function finishWindow(w: Writer, lsn: number, count: number): EncodedCheckpoint {
  w.buf.writeUInt32LE(count, WINDOW_COUNT_AT);
  return { name: WINDOW_FILE, lsn, bytes: sealed(w) };
}

/** The writer's bytes with their CRC-32 appended (a view of its buffer). */
function sealed(w: Writer): Buffer {
  const crc = crc32(w.buf.subarray(0, w.at));
  w.u32(crc);
  return w.done();
}

/** Write `c` whole: a temporary file, synced, renamed over the old one. Returns its size. */
export async function writeCheckpoint(dir: string, c: EncodedCheckpoint): Promise<number> {
  const target = path.join(dir, c.name);
  const tmp = `${target}.tmp`;
  const handle = await fs.promises.open(tmp, "w");
  try {
    await handle.writeFile(c.bytes);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  // The rename is durable once the directory is synced: the caller does that once for all
  // the checkpoints it wrote, before it deletes the log they cover (Journal.checkpoint).
  await fs.promises.rename(tmp, target);
  return c.bytes.length;
}

/** The same, blocking: at start, before anything else runs. */
export function writeCheckpointSync(dir: string, c: EncodedCheckpoint): void {
  const target = path.join(dir, c.name);
  const tmp = `${target}.tmp`;
  const fd = fs.openSync(tmp, "w");
  try {
    fs.writeFileSync(fd, c.bytes);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, target);
}

/** What the checkpoints on disk gave the store at start. */
export interface RecoveredCheckpoints {
  /** Per partition loaded from a checkpoint: the last log record it covers, and when it was taken. */
  lsn: Map<number, number>;
  at: Map<number, number>;
  /** The window file's LSN (-1: there is none). */
  windowLsn: number;
  /** Without a window file: partitions whose keys came from their JSON checkpoint, with its LSN. */
  windowFrom: Map<number, number>;
  /** Partitions with a JSON checkpoint on disk (to be rewritten in binary, then removed). */
  legacy: Set<number>;
}

/**
 * Load every checkpoint in `dir` into the (empty) store; partitions outside 0..partitions-1
 * are skipped. A file that cannot be read stops the start with its name.
 */
export function recoverCheckpoints(dir: string, store: PartitionStore, partitions: number, now: number): RecoveredCheckpoints {
  const out: RecoveredCheckpoints = { lsn: new Map(), at: new Map(), windowLsn: -1, windowFrom: new Map(), legacy: new Set() };
  if (!fs.existsSync(dir)) return out;
  const binary = new Set<number>();
  const json = new Set<number>();
  let hasWindow = false;
  for (const name of fs.readdirSync(dir).sort()) {
    if (name.endsWith(".tmp")) {
      fs.rmSync(path.join(dir, name), { force: true }); // a checkpoint cut short by a crash; the old one (or the log) stands
      continue;
    }
    const m = /^(\d{5})\.(ckpt|json)$/.exec(name);
    if (name === WINDOW_FILE) hasWindow = true;
    if (m === null) continue;
    const p = Number(m[1]);
    if (p >= partitions) continue;
    (m[2] === "ckpt" ? binary : json).add(p);
  }
  if (hasWindow) {
    const file = path.join(dir, WINDOW_FILE);
    out.windowLsn = readFile(file, (bytes) => loadWindow(bytes, store, partitions, now));
  }
  for (const p of [...new Set([...binary, ...json])].sort((a, b) => a - b)) {
    const binFile = path.join(dir, checkpointName(p));
    const jsonFile = path.join(dir, jsonName(p));
    let old: JsonCheckpoint | null = null;
    if (json.has(p)) {
      old = readFile(jsonFile, (bytes) => parseJson(bytes, p));
      out.legacy.add(p);
      if (!hasWindow) {
        // The partition's keys as of its JSON checkpoint (the log after it brings the rest).
        for (const [key, expiresAt] of old.dedupe) store.rememberWindowKey(p, key, expiresAt, now);
        out.windowFrom.set(p, old.lsn);
      }
    }
    // With a JSON file too (a crash before it was removed): the later one is loaded.
    let loaded = binary.has(p) ? readFile(binFile, (bytes) => loadPartition(bytes, p, store, old === null ? -1 : old.lsn)) : null;
    if (loaded === null) loaded = loadJsonHours(store, old!);
    out.lsn.set(p, loaded.lsn);
    out.at.set(p, loaded.at);
  }
  return out;
}

function readFile<T>(file: string, use: (bytes: Buffer) => T): T {
  try {
    return use(fs.readFileSync(file));
  } catch (err) {
    throw new Error(`checkpoint ${file} cannot be read (${(err as Error).message}); see README "Operations: a corrupt log"`);
  }
}

/** The bytes before the CRC, once the CRC matches. */
function checked(bytes: Buffer, magic: number): Reader {
  if (bytes.length < 9) throw new Error(`${bytes.length} bytes, too short`);
  const end = bytes.length - 4;
  if (crc32(bytes.subarray(0, end)) !== bytes.readUInt32LE(end)) throw new Error("CRC mismatch: the file is damaged");
  const r = new Reader(bytes, 0, end);
  if (r.u32() !== magic) throw new Error("not a checkpoint of this kind");
  const format = r.u8();
  if (format !== FORMAT) throw new Error(`unknown checkpoint format ${format}`);
  return r;
}

/** Load a binary partition checkpoint unless it covers no more than `unlessAtMost`; its LSN and time, or null when not loaded. */
function loadPartition(bytes: Buffer, partition: number, store: PartitionStore, unlessAtMost: number): { lsn: number; at: number } | null {
  const r = checked(bytes, PARTITION_MAGIC);
  const p = r.u32();
  if (p !== partition) throw new Error(`it holds partition ${p}`);
  const lsn = r.f64();
  const at = r.f64();
  if (lsn <= unlessAtMost) return null;
  const hours = r.u32();
  for (let h = 0; h < hours; h++) {
    const hour = r.f64();
    const n = r.u32();
    const keys: string[] = new Array(n);
    for (let i = 0; i < n; i++) keys[i] = r.str();
    r.need(16 * n);
    const tx: number[] = new Array(n);
    const rx: number[] = new Array(n);
    for (let i = 0, o = r.at; i < n; i++, o += 16) {
      tx[i] = bytes.readDoubleLE(o);
      rx[i] = bytes.readDoubleLE(o + 8);
    }
    r.at += 16 * n;
    store.loadChunk({ partition, hours: [[hour, keys, tx, rx]], dedupe: [] });
  }
  if (r.at !== r.end) throw new Error(`${r.end - r.at} byte(s) after the last hour`);
  // A partition with no flow left is still hosted (as it was when checkpointed).
  store.partition(partition);
  return { lsn, at };
}

function loadWindow(bytes: Buffer, store: PartitionStore, partitions: number, now: number): number {
  const r = checked(bytes, WINDOW_MAGIC);
  const lsn = r.f64();
  r.f64(); // at
  const count = r.u32();
  for (let k = 0; k < count; k++) {
    const key = r.str();
    const expires = r.f64();
    const words = r.u16();
    for (let w = 0; w < words; w++) {
      let word = r.u32();
      while (word !== 0) {
        const bit = 31 - Math.clz32(word);
        word &= ~(1 << bit);
        const p = 32 * w + bit;
        if (p < partitions) store.rememberWindowKey(p, key, expires, now);
      }
    }
  }
  if (r.at !== r.end) throw new Error(`${r.end - r.at} byte(s) after the last key`);
  return lsn;
}

function parseJson(bytes: Buffer, partition: number): JsonCheckpoint {
  const c = JSON.parse(bytes.toString("utf8")) as JsonCheckpoint;
  if (c.partition !== partition) throw new Error(`it holds partition ${c.partition}`);
  return c;
}

function loadJsonHours(store: PartitionStore, c: JsonCheckpoint): { lsn: number; at: number } {
  store.loadChunk({ partition: c.partition, hours: c.hours, dedupe: [] });
  return { lsn: c.lsn, at: c.at };
}

/** Remove a partition's checkpoint (either format). */
export function removeCheckpoint(dir: string, partition: number): void {
  fs.rmSync(path.join(dir, checkpointName(partition)), { force: true });
  fs.rmSync(path.join(dir, jsonName(partition)), { force: true });
}

/** Remove a partition's JSON checkpoint (its binary one is durable). */
export function removeLegacyCheckpoint(dir: string, partition: number): void {
  fs.rmSync(path.join(dir, jsonName(partition)), { force: true });
}
