/**
 * Checkpoints (src/durability/checkpoint.ts) through the journal that writes and loads
 * them: the binary format's round trip, damage detection, JSON checkpoints of earlier
 * versions, torn temporary files, and the windows' checkpoint lagging or leading a
 * partition's (a crash in the middle of a round).
 */
import * as fs from "fs";
import * as path from "path";
import { encodeWindow, recoverCheckpoints, writeCheckpoint } from "../../src/durability/checkpoint";
import { Journal } from "../../src/durability/journal";
import { Writer } from "../../src/wire/bytes";
import { listSegments } from "../../src/durability/wal";
import { PartitionStore, type RemovedFlow, type SubBatch } from "../../src/partition-store";
import { tempDataDir } from "../support/processes";

const quiet = { info: () => undefined, warn: () => undefined };
const options = { max: 100, ttlMs: 600_000 };
const tempDir = () => tempDataDir("ckpt");

function open(dir: string, segmentBytes?: number): { store: PartitionStore; journal: Journal } {
  const store = new PartitionStore(options);
  return { store, journal: new Journal({ dir, mode: "sync", partitions: 8, store, log: quiet, segmentBytes }) };
}

function applyLogged(store: PartitionStore, journal: Journal, batches: SubBatch[], now = Date.now()): void {
  const applied: SubBatch[] = [];
  store.apply(batches, { applied, now });
  journal.applied(applied, now);
}

/** Every flow of every hour and partition, as [partition, hour, key, tx, rx], sorted. */
function contents(store: PartitionStore): [number, number, string, number, number][] {
  const out: [number, number, string, number, number][] = [];
  for (const [id, p] of store.partitions) {
    for (const hour of p.hours.keys()) store.forEachFlow(id, hour, (key, tx, rx) => out.push([id, hour, key, tx, rx]));
  }
  return out.sort((a, b) => a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0));
}

const checkpoints = (dir: string) => fs.readdirSync(path.join(dir, "checkpoints")).sort();

/** Keys JSON or UTF-8 alone would not keep exact, or that stretch the length prefix. */
const hostile = [
  "plain  dest  vpc",
  "lone \ud800 high",
  "lone \udfff low",
  "\udc00\ud800 reversed pair",
  "astral 😀 \u{10ffff} 𝄞",
  'quote " backslash \\ slash /',
  "nul \u0000 unit sep \u001f del \u007f",
  "line\u2028sep\u2029",
  "x".repeat(84),
  "y".repeat(85),
  "é".repeat(300),
  "\ud800".repeat(200),
  "",
];

describe("checkpoints", () => {
  test("round trip in binary: hostile keys exact, sums up to 2^53-1, several hours, the idempotency windows", async () => {
    const dir = tempDir();
    let { store, journal } = open(dir);
    const batches: SubBatch[] = [];
    hostile.forEach((key, i) => {
      batches.push({ partition: i % 8, entries: [key, 100 + (i % 3), Number.MAX_SAFE_INTEGER - i, i], idempotencyKey: `req-${i % 4}` });
    });
    batches.push({ partition: 5, entries: ["other", 7, 1, 2, "another", 7, 3, 4], idempotencyKey: "req-\u0000-1" });
    batches.push({ partition: 6, entries: ["no key", 8, 5, 6] });
    applyLogged(store, journal, batches);
    const before = contents(store);
    expect((await journal.checkpoint(true)).partitions).toBe(8);
    await journal.close();
    expect(checkpoints(dir)).toEqual(["00000.ckpt", "00001.ckpt", "00002.ckpt", "00003.ckpt", "00004.ckpt", "00005.ckpt", "00006.ckpt", "00007.ckpt", "window.ckpt"]);
    // Only the checkpoints: the log they cover is gone, so nothing can come from it.
    for (const s of listSegments(path.join(dir, "wal"))) fs.writeFileSync(s.file, "");
    ({ store, journal } = open(dir));
    expect(contents(store)).toEqual(before);
    expect(store.flowCount()).toBe(hostile.length + 3);
    // Every key each partition applied is still a duplicate there, and only there.
    for (const b of batches) {
      if (b.idempotencyKey === undefined) continue;
      expect(store.partition(b.partition).hasApplied(b.idempotencyKey)).toBe(true);
    }
    expect(store.partition(7).hasApplied("req-0")).toBe(false); // partition 7 held hostile[7] only: req-3
    expect(store.partition(7).hasApplied("req-3")).toBe(true);
    await journal.close();
  });

  test("a damaged checkpoint (a flipped byte, a cut file) stops the start, naming the file", async () => {
    const dir = tempDir();
    const { store, journal } = open(dir);
    applyLogged(store, journal, [{ partition: 3, entries: ["a", 1, 2, 3, "b", 1, 4, 5], idempotencyKey: "k" }]);
    await journal.checkpoint(true);
    await journal.close();
    const file = path.join(dir, "checkpoints", "00003.ckpt");
    const good = fs.readFileSync(file);
    for (const damaged of [flip(good, 30), flip(good, good.length - 1), good.subarray(0, good.length - 7), good.subarray(0, 3)]) {
      fs.writeFileSync(file, damaged);
      expect(() => open(dir)).toThrow(/checkpoint .*00003\.ckpt cannot be read/);
      fs.rmSync(path.join(dir, "LOCK"), { force: true });
    }
    expect(() => (fs.writeFileSync(file, flip(good, 30)), open(dir))).toThrow(/CRC mismatch/);
    fs.rmSync(path.join(dir, "LOCK"), { force: true });
    fs.writeFileSync(file, good);
    const window = path.join(dir, "checkpoints", "window.ckpt");
    const goodWindow = fs.readFileSync(window);
    fs.writeFileSync(window, flip(goodWindow, goodWindow.length - 6));
    expect(() => open(dir)).toThrow(/checkpoint .*window\.ckpt cannot be read \(CRC mismatch/);
    fs.rmSync(path.join(dir, "LOCK"), { force: true });
    fs.writeFileSync(window, goodWindow);
    const again = open(dir);
    expect(again.store.read(1, {}).tx).toEqual([2, 4]);
    await again.journal.close();
  });

  test("a torn temporary file (a crash while writing a checkpoint) is ignored and removed", async () => {
    const dir = tempDir();
    let { store, journal } = open(dir);
    applyLogged(store, journal, [{ partition: 2, entries: ["a", 1, 2, 3], idempotencyKey: "k" }]);
    await journal.checkpoint(true);
    await journal.close();
    const ckpt = path.join(dir, "checkpoints");
    fs.writeFileSync(path.join(ckpt, "00002.ckpt.tmp"), fs.readFileSync(path.join(ckpt, "00002.ckpt")).subarray(0, 20));
    fs.writeFileSync(path.join(ckpt, "window.ckpt.tmp"), "torn");
    fs.writeFileSync(path.join(ckpt, "00005.ckpt.tmp"), "");
    ({ store, journal } = open(dir));
    expect(store.read(1, {}).tx).toEqual([2]);
    expect(store.partition(2).hasApplied("k")).toBe(true);
    expect(store.partitions.has(5)).toBe(false);
    expect(checkpoints(dir)).toEqual(["00002.ckpt", "window.ckpt"]);
    await journal.close();
  });

  test("a data directory of the JSON format still loads; the next round rewrites it in binary and removes the JSON files", async () => {
    const dir = tempDir();
    // As the previous version left it: a JSON checkpoint of partitions 1 and 2 covering
    // record 1 (whose log segment is gone), and record 2 after it in the log.
    let { store, journal } = open(dir, 1);
    const t1 = Date.now() - 1000;
    applyLogged(store, journal, [{ partition: 1, entries: ["a", 5, 10, 1], idempotencyKey: "k1" }, { partition: 2, entries: ["b\ud800", 5, 20, 2], idempotencyKey: "k1" }], t1);
    await journal.durable();
    for (const p of [1, 2]) {
      const [chunk] = store.snapshot(p, Number.MAX_SAFE_INTEGER);
      const old = { partition: p, lsn: 1, at: t1, hours: chunk.hours, dedupe: chunk.dedupe.map(([key, ttl]) => [key, Date.now() + ttl]) };
      fs.writeFileSync(path.join(dir, "checkpoints", `0000${p}.json`), JSON.stringify(old));
    }
    applyLogged(store, journal, [{ partition: 1, entries: ["a", 5, 1, 1], idempotencyKey: "k2" }]);
    await journal.durable();
    await journal.close();
    const segments = listSegments(path.join(dir, "wal"));
    expect(segments[0].firstLsn).toBe(1);
    fs.rmSync(segments[0].file);
    const expected = [[1, 5, "a", 11, 2], [2, 5, "b\ud800", 20, 2]];

    ({ store, journal } = open(dir, 1));
    expect(contents(store)).toEqual(expected);
    expect(store.partition(1).hasApplied("k1")).toBe(true); // from the JSON checkpoint only
    expect(store.partition(2).hasApplied("k1")).toBe(true);
    expect(store.partition(1).hasApplied("k2")).toBe(true); // from the log
    expect(store.partition(2).hasApplied("k2")).toBe(false);
    // Nothing changed since: the round still rewrites both, in binary, and the JSON files go.
    expect((await journal.checkpoint(true)).partitions).toBe(2);
    expect(checkpoints(dir)).toEqual(["00001.ckpt", "00002.ckpt", "window.ckpt"]);
    await journal.close();

    ({ store, journal } = open(dir, 1));
    expect(contents(store)).toEqual(expected);
    expect(store.partition(1).hasApplied("k1") && store.partition(2).hasApplied("k1") && store.partition(1).hasApplied("k2")).toBe(true);
    expect(store.partition(2).hasApplied("k2")).toBe(false);
    await journal.close();
  });

  test("a crash between a partition's binary checkpoint and the removal of its JSON one: the later one loads, keys from the JSON", async () => {
    const dir = tempDir();
    let { store, journal } = open(dir);
    applyLogged(store, journal, [{ partition: 1, entries: ["a", 5, 10, 1], idempotencyKey: "k1" }]);
    await journal.durable();
    const [chunk] = store.snapshot(1, Number.MAX_SAFE_INTEGER);
    const json = JSON.stringify({ partition: 1, lsn: 1, at: Date.now(), hours: chunk.hours, dedupe: chunk.dedupe.map(([key, ttl]) => [key, Date.now() + ttl]) });
    applyLogged(store, journal, [{ partition: 1, entries: ["a", 5, 1, 1], idempotencyKey: "k2" }]);
    await journal.checkpoint(true);
    await journal.close();
    // The binary checkpoint (record 2) landed, the windows' did not, the JSON one (record 1) is still there.
    fs.rmSync(path.join(dir, "checkpoints", "window.ckpt"));
    fs.writeFileSync(path.join(dir, "checkpoints", "00001.json"), json);
    ({ store, journal } = open(dir));
    expect(contents(store)).toEqual([[1, 5, "a", 11, 2]]);
    expect(store.partition(1).hasApplied("k1") && store.partition(1).hasApplied("k2")).toBe(true);
    await journal.checkpoint(true);
    expect(checkpoints(dir)).toEqual(["00001.ckpt", "window.ckpt"]);
    await journal.close();
  });

  test("the windows' checkpoint older than a partition's (a crash mid-round): the keys of the records between come from the log", async () => {
    const dir = tempDir();
    let { store, journal } = open(dir);
    applyLogged(store, journal, [{ partition: 1, entries: ["a", 5, 1, 1], idempotencyKey: "k0" }]);
    await journal.checkpoint(true);
    const oldWindow = fs.readFileSync(path.join(dir, "checkpoints", "window.ckpt"));
    // After the windows' checkpoint: a key applied, another applied then reverted, a partition dropped and loaded again.
    applyLogged(store, journal, [{ partition: 1, entries: ["a", 5, 2, 2], idempotencyKey: "kx" }, { partition: 3, entries: ["c", 5, 1, 1], idempotencyKey: "kx" }]);
    applyLogged(store, journal, [{ partition: 1, entries: ["r", 5, 7, 7], idempotencyKey: "kr" }]);
    const undone: SubBatch[] = [];
    const removed: RemovedFlow[] = [];
    store.revert([{ partition: 1, entries: ["r", 5, 7, 7], idempotencyKey: "kr" }], Date.now(), undone, removed);
    journal.reverted(undone, removed, Date.now());
    store.drop(3);
    journal.droppedPartition(3);
    const chunk = { partition: 3, hours: [[5, ["c"], [1], [1]]] as [number, string[], number[], number[]][], dedupe: [["kl", 600_000]] as [string, number][] };
    store.loadChunk(chunk);
    journal.loaded(chunk, Date.now());
    await journal.checkpoint(true);
    await journal.close();
    const expected = contents(store);
    fs.writeFileSync(path.join(dir, "checkpoints", "window.ckpt"), oldWindow);

    ({ store, journal } = open(dir));
    expect(contents(store)).toEqual(expected);
    expect(store.partition(1).hasApplied("k0")).toBe(true);
    expect(store.partition(1).hasApplied("kx")).toBe(true);
    expect(store.partition(1).hasApplied("kr")).toBe(false);
    expect(store.partition(3).hasApplied("kx")).toBe(false); // dropped since
    expect(store.partition(3).hasApplied("kl")).toBe(true);
    // A retry of kx is a duplicate (counted once); a retry of the reverted kr applies.
    expect(store.apply([{ partition: 1, entries: ["a", 5, 2, 2], idempotencyKey: "kx" }]).duplicates).toBe(1);
    expect(store.apply([{ partition: 1, entries: ["r", 5, 7, 7], idempotencyKey: "kr" }]).duplicates).toBe(0);
    await journal.close();
  });

  test("the windows' checkpoint newer than a partition's (its rename lost in a crash): a replayed revert still subtracts", async () => {
    const dir = tempDir();
    let { store, journal } = open(dir);
    applyLogged(store, journal, [{ partition: 1, entries: ["a", 5, 1, 1], idempotencyKey: "k0" }]);
    applyLogged(store, journal, [{ partition: 1, entries: ["a", 5, 5, 5], idempotencyKey: "kr" }]);
    await journal.checkpoint(true);
    // The partition's checkpoint covers the write, the windows' one will cover its revert.
    const oldPartition = fs.readFileSync(path.join(dir, "checkpoints", "00001.ckpt"));
    const undone: SubBatch[] = [];
    store.revert([{ partition: 1, entries: ["a", 5, 5, 5], idempotencyKey: "kr" }], Date.now(), undone, []);
    journal.reverted(undone, [], Date.now());
    await journal.checkpoint(true);
    await journal.close();
    fs.writeFileSync(path.join(dir, "checkpoints", "00001.ckpt"), oldPartition);
    ({ store, journal } = open(dir));
    expect(contents(store)).toEqual([[1, 5, "a", 1, 1]]);
    expect(store.partition(1).hasApplied("k0")).toBe(true);
    expect(store.partition(1).hasApplied("kr")).toBe(false);
    await journal.close();
  });

  test("the windows are encoded a slice at a time: every key present throughout is written, with its partitions", async () => {
    const store = new PartitionStore({ max: 5000, ttlMs: 600_000 });
    const now = Date.now();
    for (let i = 0; i < 20_000; i++) store.partition(i % 8).rememberApplied(`key-${i}`, now);
    for (let i = 0; i < 3_000; i++) store.partition((i + 1) % 8).rememberApplied(`key-${i}`, now); // in two partitions
    let pauses = 0;
    const file = await encodeWindow(new Writer(1024), store, 42, now, async () => {
      pauses++;
      // Meanwhile: a key added, one moved to the back (another partition), one forgotten.
      store.partition(3).rememberApplied(`late-${pauses}`, now + 1000);
      store.partition(0).rememberApplied("key-19999", now + 1000); // its home is 7
      store.partition(0).forget("key-0");
    });
    expect(pauses).toBeGreaterThan(1);
    const dir = tempDir();
    await writeCheckpoint(dir, file);
    const loaded = new PartitionStore({ max: 5000, ttlMs: 600_000 });
    expect(recoverCheckpoints(dir, loaded, 8, Date.now()).windowLsn).toBe(42);
    for (let i = 1; i < 20_000; i++) {
      const home = i % 8;
      expect(loaded.partition(home).hasApplied(`key-${i}`)).toBe(true);
      expect(loaded.partition((home + 1) % 8).hasApplied(`key-${i}`)).toBe(i < 3_000 || i === 19_999);
      expect(loaded.partition((home + 2) % 8).hasApplied(`key-${i}`)).toBe(false);
    }
    expect(loaded.partition(1).hasApplied("key-0")).toBe(true);
    expect(loaded.partition(3).hasApplied("late-1")).toBe(true);
  });
});

function flip(bytes: Buffer, at: number): Buffer {
  const out = Buffer.from(bytes);
  out[at] ^= 0x40;
  return out;
}
