import * as fs from "fs";
import * as path from "path";
import { Journal } from "../../src/durability/journal";
import { CorruptLogError, listSegments, readLog, Wal } from "../../src/durability/wal";
import { PartitionStore, type RemovedFlow, type SubBatch } from "../../src/partition-store";
import { tempDataDir } from "../support/processes";

const quiet = { info: () => undefined, warn: () => undefined };
const tempDir = () => tempDataDir("unit");

function records(dir: string): string[] {
  const out: string[] = [];
  readLog(dir, (_, p) => out.push(p.toString()), () => undefined);
  return out;
}

/** Ten records `r1-yyy...` .. `r10-yyy...`, each written on its own, in segments of 100 bytes: a new segment every two records. */
async function writeTenSegmented(dir: string, filler: string): Promise<Wal> {
  const wal = await writeLog(dir, [], 100);
  for (let i = 1; i <= 10; i++) {
    wal.append(Buffer.from(`r${i}-${filler.repeat(40)}`));
    await wal.durable();
  }
  return wal;
}

async function writeLog(dir: string, payloads: string[], segmentBytes = 1 << 20): Promise<Wal> {
  const wal = new Wal({ dir, mode: "sync", nextLsn: 1, segmentBytes, intervalMs: 1000, warn: () => undefined });
  for (const p of payloads) wal.append(Buffer.from(p));
  await wal.durable();
  return wal;
}

describe("write-ahead log", () => {
  test("records come back in order, across segments, with their LSNs", async () => {
    const dir = tempDir();
    const wal = await writeLog(dir, [], 64);
    for (let i = 1; i <= 20; i++) {
      expect(wal.append(Buffer.from(`record ${i} ${"x".repeat(20)}`))).toBe(i);
      await wal.durable(i);
    }
    await wal.close();
    expect(listSegments(dir).length).toBeGreaterThan(3);
    const lsns: number[] = [];
    const next = readLog(dir, (lsn, p) => {
      lsns.push(lsn);
      expect(p.toString()).toMatch(new RegExp(`^record ${lsn} `));
    }, () => undefined);
    expect(lsns).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(next).toBe(21);
  });

  test("a torn last record is dropped with a warning and the file cut back to the last whole one", async () => {
    const dir = tempDir();
    await (await writeLog(dir, ["one", "two", "three"])).close();
    const [segment] = listSegments(dir);
    const whole = fs.statSync(segment.file).size;
    fs.truncateSync(segment.file, whole - 2); // a crash in the middle of writing "three"
    const warnings: string[] = [];
    const out: string[] = [];
    expect(readLog(dir, (_, p) => out.push(p.toString()), (w) => warnings.push(w))).toBe(3);
    expect(out).toEqual(["one", "two"]);
    expect(warnings.join()).toMatch(/torn last record/);
    expect(fs.statSync(segment.file).size).toBe(whole - 8 - 5);
  });

  test("a damaged record before the tail stops recovery, naming the file and offset", async () => {
    const dir = tempDir();
    await (await writeLog(dir, ["alpha", "beta", "gamma"])).close();
    const [segment] = listSegments(dir);
    const data = fs.readFileSync(segment.file);
    data[8 + 1] ^= 0xff; // a bit flip inside "alpha"
    fs.writeFileSync(segment.file, data);
    let error: unknown;
    try {
      records(dir);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(CorruptLogError);
    expect((error as CorruptLogError).file).toBe(segment.file);
    expect((error as CorruptLogError).offset).toBe(0);
    expect(String(error)).toMatch(/checksum mismatch/);
  });

  test("appends after a reopen continue the numbering; whole segments below an LSN are deleted", async () => {
    const dir = tempDir();
    await (await writeTenSegmented(dir, "y")).close();
    const next = readLog(dir, () => undefined, () => undefined);
    const wal = new Wal({ dir, mode: "interval", nextLsn: next, segmentBytes: 100, intervalMs: 1000, warn: () => undefined });
    expect(wal.append(Buffer.from("r11"))).toBe(11);
    await wal.durable();
    const before = listSegments(dir);
    expect(await wal.deleteBefore(7)).toBeGreaterThan(0);
    const after = listSegments(dir);
    expect(after.length).toBeLessThan(before.length);
    // What is left still starts at a segment boundary at or below 7 and reads through to 11.
    expect(after[0].firstLsn).toBeLessThanOrEqual(7);
    await wal.close();
    const out: number[] = [];
    readLog(dir, (lsn) => out.push(lsn), () => undefined);
    expect(out[out.length - 1]).toBe(11);
  });

  test("recent records are read back from where this process wrote them, across segments, until their segment is deleted", async () => {
    const dir = tempDir();
    const wal = await writeTenSegmented(dir, "z");
    const read = (from: number, to: number, maxBytes = 1 << 20) => {
      const out: string[] = [];
      const bytes = wal.readRecent(from, to, maxBytes, (lsn, p) => out.push(`${lsn}:${p.toString().split("-")[0]}`));
      return bytes === null ? null : out;
    };
    expect(read(3, 7)).toEqual(["3:r3", "4:r4", "5:r5", "6:r6", "7:r7"]);
    expect(read(8, 7)).toEqual([]);
    expect(read(3, 7, 50)).toBeNull(); // more than maxBytes from there on
    expect(() => read(3, 11)).toThrow(/not written yet/);
    await wal.deleteBefore(7);
    expect(read(1, 10)).toBeNull(); // its segment is gone
    expect(read(9, 10)).toEqual(["9:r9", "10:r10"]);
    await wal.close();
    // Another process (a restart) knows nothing it did not write itself.
    const reopened = new Wal({ dir, mode: "sync", nextLsn: readLog(dir, () => undefined, () => undefined), segmentBytes: 100, intervalMs: 1000, warn: () => undefined });
    expect(reopened.readRecent(9, 10, 1 << 20, () => undefined)).toBeNull();
    await reopened.close();
  });
});

describe("journal: recovery and checkpoints", () => {
  const options = { max: 100, ttlMs: 600_000 };
  const batch = (partition: number, key: string, tx: number, idempotencyKey?: string): SubBatch => ({ partition, entries: [key, 7, tx, 1], idempotencyKey });

  /** Apply as the write path does: to memory, then log what was applied. */
  function applyLogged(store: PartitionStore, journal: Journal, batches: SubBatch[]): void {
    const applied: SubBatch[] = [];
    store.apply(batches, { applied });
    journal.applied(applied, Date.now());
  }

  async function reopen(dir: string): Promise<{ store: PartitionStore; journal: Journal }> {
    const store = new PartitionStore(options);
    return { store, journal: new Journal({ dir, mode: "sync", partitions: 8, store, log: quiet }) };
  }

  test("state and the idempotency window come back after a crash (log only), and again after a checkpoint", async () => {
    const dir = tempDir();
    let { store, journal } = await reopen(dir);
    const incarnation = journal.incarnation;
    applyLogged(store, journal, [batch(1, "a", 10, "k1"), batch(2, "b", 5, "k1")]);
    await journal.durable();
    // No close: as after kill -9 (the lock file names a dead process... here our own: reopen in-process).
    ({ store, journal } = await reopen(dir));
    expect(journal.incarnation).toBe(incarnation);
    expect(journal.recovered).toEqual([1, 2]);
    expect(store.read(7, {}).tx).toEqual([10, 5]);
    expect(store.apply([batch(1, "a", 10, "k1")]).duplicates).toBe(1);

    applyLogged(store, journal, [batch(1, "a", 1, "k2")]);
    expect((await journal.checkpoint(true)).partitions).toBe(2);
    applyLogged(store, journal, [batch(3, "c", 4, "k3")]);
    await journal.durable();
    await journal.close();
    ({ store, journal } = await reopen(dir));
    expect(store.read(7, {}).tx).toEqual([11, 5, 4]);
    expect(store.apply([batch(1, "a", 1, "k2"), batch(3, "c", 4, "k3")]).duplicates).toBe(2);
    await journal.close();
  });

  test("rounds by log size wait for as much log as the last round wrote (checkpoint bytes stay at most the log's)", async () => {
    const dir = tempDir();
    const store = new PartitionStore(options);
    const journal = new Journal({ dir, mode: "sync", partitions: 8, store, log: quiet, checkpointBytes: 200, checkpointMs: 3_600_000 });
    // Many flows in every partition: a round writes far more than 200 bytes.
    for (let i = 0; i < 400; i++) applyLogged(store, journal, [batch(i % 8, `flow-${i}-${"x".repeat(30)}`, 1)]);
    await journal.durable();
    const first = await journal.checkpoint();
    expect(first.partitions).toBe(8);
    const roundBytes = fs.readdirSync(path.join(dir, "checkpoints")).reduce((n, f) => n + fs.statSync(path.join(dir, "checkpoints", f)).size, 0);
    expect(roundBytes).toBeGreaterThan(10_000);
    // More than checkpointBytes of log, less than the last round wrote: not due yet.
    let logged = 0;
    for (let i = 0; logged < 1_000; i++, logged += 60) applyLogged(store, journal, [batch(i % 8, `a-${i}`, 1)]);
    await journal.durable();
    expect((await journal.checkpoint()).partitions).toBe(0);
    // Once the log since the last round passes what it wrote: due.
    for (let i = 0; logged < roundBytes + 1_000; i++, logged += 60) applyLogged(store, journal, [batch(i % 8, `b-${i}`, 1)]);
    await journal.durable();
    expect((await journal.checkpoint()).partitions).toBe(8);
    await journal.close();
  });

  test("checkpoints let the log go: segments every partition's checkpoint covers are deleted", async () => {
    const dir = tempDir();
    const store = new PartitionStore(options);
    const journal = new Journal({ dir, mode: "sync", partitions: 8, store, log: quiet, segmentBytes: 256 });
    for (let i = 0; i < 40; i++) {
      applyLogged(store, journal, [batch(i % 8, `key-${i}`, i + 1)]);
      await journal.durable();
    }
    const segmentsBefore = listSegments(path.join(dir, "wal")).length;
    const { segmentsDeleted } = await journal.checkpoint(true);
    expect(segmentsDeleted).toBeGreaterThan(0);
    expect(listSegments(path.join(dir, "wal")).length).toBe(segmentsBefore - segmentsDeleted);
    await journal.close();
    const again = new PartitionStore(options);
    const reopened = new Journal({ dir, mode: "sync", partitions: 8, store: again, log: quiet, segmentBytes: 256 });
    expect(again.flowCount()).toBe(40);
    expect(again.read(7, {}).tx.reduce((a, b) => a + b, 0)).toBe((40 * 41) / 2);
    await reopened.close();
  });

  test("a dropped partition stays dropped; a revert stays reverted", async () => {
    const dir = tempDir();
    let { store, journal } = await reopen(dir);
    applyLogged(store, journal, [batch(4, "gone", 1, "k"), batch(5, "kept", 2, "k")]);
    await journal.checkpoint(true);
    expect(fs.existsSync(path.join(dir, "checkpoints", "00004.ckpt"))).toBe(true);
    store.drop(4);
    journal.droppedPartition(4);
    const undone: SubBatch[] = [];
    const removed: RemovedFlow[] = [];
    store.revert([batch(5, "kept", 2, "k")], Date.now(), undone, removed);
    expect(removed).toEqual([[5, 7, "kept"]]);
    journal.reverted(undone, removed, Date.now());
    await journal.durable();
    ({ store, journal } = await reopen(dir));
    expect(store.partitions.has(4)).toBe(false);
    expect(store.read(7, {}).keys).toEqual([]);
    await journal.checkpoint(true);
    expect(fs.existsSync(path.join(dir, "checkpoints", "00004.ckpt"))).toBe(false);
    await journal.close();
  });

  test("a log cut short behind its checkpoints (a power cut with DURABILITY=interval) never reuses a covered LSN", async () => {
    const dir = tempDir();
    let { store, journal } = await reopen(dir);
    for (const [i, key] of ["a", "b", "c"].entries()) {
      applyLogged(store, journal, [batch(1, key, i + 1)]);
    }
    await journal.checkpoint(true); // covers record 3
    await journal.close();
    const [segment] = listSegments(path.join(dir, "wal"));
    const first = fs.readFileSync(segment.file);
    fs.writeFileSync(segment.file, first.subarray(0, 8 + first.readUInt32LE(0))); // only record 1 survived
    const warnings: string[] = [];
    store = new PartitionStore(options);
    journal = new Journal({ dir, mode: "sync", partitions: 8, store, log: { info: () => undefined, warn: (w) => warnings.push(w) } });
    expect(warnings.join()).toMatch(/starting the log at 4/);
    applyLogged(store, journal, [batch(1, "d", 10)]);
    await journal.durable();
    await journal.close();
    ({ store, journal } = await reopen(dir));
    expect(store.read(7, {}).tx).toEqual([1, 2, 3, 10]);
    await journal.close();
  });

  test("trimmed hours stay trimmed after a restart (retention, DELETE /flows)", async () => {
    const dir = tempDir();
    let { store, journal } = await reopen(dir);
    applyLogged(store, journal, [{ partition: 1, entries: ["old", 5, 1, 1, "new", 9, 2, 2] }, { partition: 2, entries: ["older", 3, 4, 4] }]);
    await journal.checkpoint(true);
    const removed = store.trimBefore(9, [...store.partitions.keys()], (p) => p === 1);
    expect(removed).toEqual({ flows: 1, hours: [3, 5] });
    journal.trimmed(9, [1, 2]);
    await journal.durable();
    ({ store, journal } = await reopen(dir));
    expect(store.oldestHour()).toBe(9);
    expect(store.flowCount()).toBe(1);
    await journal.close();
  });

  test("a directory written with another partition count is refused; a live process's directory too", async () => {
    const dir = tempDir();
    const { journal } = await reopen(dir);
    await journal.close();
    expect(() => new Journal({ dir, mode: "sync", partitions: 16, store: new PartitionStore(options), log: quiet })).toThrow(/PARTITIONS=8.*PARTITIONS=16/);
    fs.writeFileSync(path.join(dir, "LOCK"), String(process.ppid));
    expect(() => new Journal({ dir, mode: "sync", partitions: 8, store: new PartitionStore(options), log: quiet })).toThrow(/in use by process/);
  });
});
