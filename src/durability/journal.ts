/**
 * A node's durable state in its data directory: the partitions' checkpoints plus the
 * write-ahead log of everything applied since (src/durability/wal.ts). Memory stays the
 * serving store; every change to it (an applied group, a revert, a dropped partition, a
 * loaded snapshot chunk) is appended to the log in the same turn, and a write is
 * answered only once `durable()` says its record is on disk (as DURABILITY promises).
 *
 * Recovery, at start: every checkpoint, then the log records after each partition's
 * checkpoint, in order (a replayed group keeps its own time, so the idempotency window
 * comes back as it was; the windows have a checkpoint of their own, and of a record a
 * partition's checkpoint covers but theirs does not, only its keys are replayed).
 * Checkpoints are taken partition by partition in the background, the windows' last;
 * log segments every checkpoint covers are deleted.
 *
 * The directory also holds `meta.json` (the partition count it was written with: another
 * one is refused; and the node's durable identity, its incarnation, which survives a
 * restart with the same directory) and a lock file naming the process that uses it.
 *
 * No Moleculer here.
 */
import * as fs from "fs";
import * as path from "path";
import type { PartitionStore, RemovedFlow, SnapshotChunk, SubBatch } from "../partition-store";
import { encodeLogged, selectedBatches, type SelectedGroup } from "../wire/group-codec";
import { Writer } from "../wire/bytes";
import { encodePartition, encodeWindow, encodeWindowSync, recoverCheckpoints, removeCheckpoint, removeLegacyCheckpoint, writeCheckpoint, writeCheckpointSync } from "./checkpoint";
import { APPLIED_GROUP, decodeRecord, type LogEntry } from "./log-records";
import { readTail, Timeline, type TailEntry, type TailLimits } from "./log-tail";
import { listSegments, readLog, RECORD_HEADER, syncDir, syncDirAsync, Wal, type SyncMode } from "./wal";

/** A checkpoint encoder's buffer to start with, and past which it is not kept between rounds. */
const SCRATCH_BYTES = 64 * 1024;
const SCRATCH_KEEP_BYTES = 16 * 1024 * 1024;

/** The most log between two rounds of checkpoints, whatever the last round wrote. */
const MAX_LOG_BETWEEN_ROUNDS = 256 * 1024 * 1024;

export interface JournalOptions {
  dir: string;
  mode: SyncMode;
  partitions: number;
  store: PartitionStore;
  log: { info(msg: string): void; warn(msg: string): void };
  /** A new log segment past this size (default 64 MiB). */
  segmentBytes?: number;
  /** Checkpoint changed partitions this often (default 60 s), or sooner once the log passes `checkpointBytes`. */
  checkpointMs?: number;
  checkpointBytes?: number;
}

interface Meta {
  format: 1;
  partitions: number;
  incarnation: number;
  createdAt: string;
}

export class Journal {
  readonly incarnation: number;
  /** Partitions recovered from disk at start. */
  readonly recovered: number[];
  private readonly wal: Wal;
  private readonly checkpointDir: string;
  /** Per partition: LSN its checkpoint covers (-1: none), LSN of its last record, first record since it was (re)created. */
  private readonly checkpointLsn: Float64Array;
  private readonly lastLsn: Float64Array;
  private readonly firstLsn: Float64Array;
  /** Per partition: time of the newest change recovered from disk (-Infinity: none). */
  private readonly recoveredAt: Float64Array;
  /** (LSN, time) of the records this process wrote: where a partition's log tail starts. */
  private readonly timeline = new Timeline();
  private readonly dropped = new Set<number>();
  /**
   * The idempotency windows' checkpoint (src/durability/checkpoint.ts): the LSN it covers
   * (-1: none yet), and per partition the LSN its keys on disk cover (recovery replays the
   * keys of records after it that the partition's checkpoint covers).
   */
  private windowLsn = -1;
  private readonly windowBase: Float64Array;
  /** Partitions whose checkpoint on disk is still JSON (an older version's): rewritten by the next round. */
  private readonly legacy: Set<number>;
  /** Where checkpoints are encoded (one at a time). */
  private scratch = new Writer(SCRATCH_BYTES);
  private checkpointing = false;
  private timer: NodeJS.Timeout | null = null;
  private bytesSinceCheckpoint = 0;
  /** Bytes the last round's checkpoints took. */
  private lastRoundBytes = 0;

  constructor(private readonly o: JournalOptions) {
    fs.mkdirSync(o.dir, { recursive: true });
    lockDirectory(o.dir);
    this.incarnation = readOrCreateMeta(o.dir, o.partitions).incarnation;
    this.checkpointDir = path.join(o.dir, "checkpoints");
    fs.mkdirSync(this.checkpointDir, { recursive: true });
    const P = o.partitions;
    this.checkpointLsn = new Float64Array(P).fill(-1);
    this.lastLsn = new Float64Array(P).fill(-1);
    this.firstLsn = new Float64Array(P).fill(-1);
    this.recoveredAt = new Float64Array(P).fill(-Infinity);

    const started = Date.now();
    const recovered = recoverCheckpoints(this.checkpointDir, o.store, P, Date.now());
    for (const [p, lsn] of recovered.lsn) this.checkpointLsn[p] = lsn;
    for (const [p, at] of recovered.at) this.recoveredAt[p] = at;
    this.windowLsn = recovered.windowLsn;
    this.windowBase = new Float64Array(P).fill(recovered.windowLsn);
    for (const [p, lsn] of recovered.windowFrom) this.windowBase[p] = lsn;
    this.legacy = recovered.legacy;
    let records = 0;
    const walDir = path.join(o.dir, "wal");
    let nextLsn = readLog(walDir, (lsn, payload) => {
      records++;
      this.replay(lsn, decodeRecord(payload));
    }, o.log.warn);
    // Checkpoints only cover records already durable, so the log reaches at least as far,
    // unless DURABILITY=interval lost its last second to a power cut. New records must
    // never reuse an LSN a checkpoint covers: start over from fresh checkpoints then.
    const covered = Math.max(this.windowLsn, ...this.checkpointLsn);
    if (covered >= nextLsn) {
      o.log.warn(`Write-ahead log ends at record ${nextLsn - 1}, before checkpoints that cover record ${covered}: checkpointing every partition and starting the log at ${covered + 1}`);
      const at = Date.now();
      for (const p of o.store.partitions.keys()) {
        writeCheckpointSync(this.checkpointDir, encodePartition(this.scratch, o.store, p, covered, at));
        this.checkpointLsn[p] = covered;
        this.firstLsn[p] = this.lastLsn[p] = -1;
      }
      writeCheckpointSync(this.checkpointDir, encodeWindowSync(this.scratch, o.store, covered, at));
      this.windowLsn = covered;
      syncDir(this.checkpointDir);
      for (const p of this.legacy) removeLegacyCheckpoint(this.checkpointDir, p);
      this.legacy.clear();
      for (const segment of listSegments(walDir)) fs.rmSync(segment.file, { force: true });
      nextLsn = covered + 1;
    }
    this.wal = new Wal({ dir: walDir, mode: o.mode, nextLsn, segmentBytes: o.segmentBytes ?? 64 * 1024 * 1024, intervalMs: 1000, warn: o.log.warn });
    this.recovered = [...o.store.partitions.keys()].sort((a, b) => a - b);
    if (this.recovered.length > 0 || records > 0) {
      o.log.info(`Recovered ${o.store.flowCount()} flows in ${this.recovered.length} partition(s) from ${o.dir} (checkpoints + ${records} log record(s)) in ${Date.now() - started} ms`);
    }
  }

  /** Why writes must be refused now (the log cannot be written), or null. Asked before a write touches memory. */
  refusal(): string | null {
    const err = this.wal.failed;
    return err === null ? null : `the write-ahead log cannot be written (${(err as NodeJS.ErrnoException).code ?? err.message}); reads go on, writes resume when it can`;
  }

  /** Applied sub-batches, not received encoded (a copy's queued writes). */
  applied(batches: SubBatch[], t: number): void {
    if (batches.length > 0) this.appliedGroup({ group: { batches }, parts: undefined }, t);
  }

  /** The applied parts of a group: its bytes as received (or encoded now), and the selection. */
  appliedGroup(g: SelectedGroup, t: number): void {
    // Built in place: the log's header, then kind and time, then selection and group (one buffer, one copy at most).
    const record = encodeLogged(g, RECORD_HEADER + 9);
    record[RECORD_HEADER] = APPLIED_GROUP;
    record.writeDoubleLE(t, RECORD_HEADER + 1);
    this.bytesSinceCheckpoint += record.length;
    const lsn = this.wal.appendRecord(record);
    this.timeline.note(lsn, t);
    this.touch(lsn, selectedBatches(g));
  }

  /** `removed`: the flows the revert removed (created by the reverted request, back at zero). */
  reverted(batches: SubBatch[], removed: RemovedFlow[], t: number): void {
    if (batches.length > 0) this.append({ o: "revert", t, b: batches, rm: removed }, batches);
  }

  droppedPartition(p: number): void {
    this.append({ o: "drop", p }, [{ partition: p }]);
    this.firstLsn[p] = -1;
    this.lastLsn[p] = -1;
    this.dropped.add(p);
  }

  /** Every hour before `hour` was removed from these partitions (retention, DELETE /flows). */
  trimmed(hour: number, partitions: number[]): void {
    if (partitions.length > 0) this.append({ o: "trim", h: hour, p: partitions }, partitions.map((partition) => ({ partition })));
  }

  loaded(chunk: SnapshotChunk, t: number): void {
    this.append({ o: "load", t, c: chunk }, [{ partition: chunk.partition }]);
  }

  /** Resolves once everything appended so far is durable. */
  durable(): Promise<void> {
    return this.wal.durable();
  }

  /** Time of the newest change to partition `p` read back from disk at start (-Infinity: none). */
  recoveredChangeAt(p: number): number {
    return this.recoveredAt[p];
  }

  /** The last record appended: a log tail taken now reaches up to it. */
  get lastRecordLsn(): number {
    return this.wal.lastLsn;
  }

  /**
   * Partition `p`'s entries logged since `fromTime` (this node's clock) up to record
   * `toLsn`, once that is written (src/durability/log-tail.ts), or why not.
   */
  async tail(p: number, fromTime: number, toLsn: number, limits: TailLimits): Promise<{ entries: TailEntry[]; bytes: number } | { refused: string }> {
    await this.wal.durable(toLsn);
    return readTail(this.wal, this.timeline, p, fromTime, toLsn, limits);
  }

  /** Checkpoint changed partitions every `checkpointMs` (and sooner when the log grows). */
  start(): void {
    const every = this.o.checkpointMs ?? 60_000;
    this.timer = setInterval(() => void this.checkpoint().catch((err: Error) => this.o.log.warn(`Checkpoint failed: ${err.message}`)), Math.min(every, 5000));
    this.timer.unref();
  }

  /**
   * Write a checkpoint of every partition changed since its last one, one partition at a
   * time, then delete what the log no longer needs. `force`: regardless of the schedule.
   */
  async checkpoint(force = false): Promise<{ partitions: number; segmentsDeleted: number }> {
    const every = this.o.checkpointMs ?? 60_000;
    // Rounds by log size wait for at least as much log as the last round wrote (a round
    // rewrites every changed partition whole, and the idempotency windows), up to
    // MAX_LOG_BETWEEN_ROUNDS, which bounds the log a restart after a crash replays.
    const logBytes = Math.min(MAX_LOG_BETWEEN_ROUNDS, Math.max(this.o.checkpointBytes ?? 64 * 1024 * 1024, this.lastRoundBytes));
    const due = force || this.bytesSinceCheckpoint >= logBytes || Date.now() - this.lastRound >= every;
    // A forced round (a clean stop) waits for a round under way, then covers what it missed.
    while (force && this.checkpointing) await new Promise((r) => setTimeout(r, 20));
    if (this.checkpointing || !due) return { partitions: 0, segmentsDeleted: 0 };
    this.checkpointing = true;
    this.lastRound = Date.now();
    this.bytesSinceCheckpoint = 0;
    let written = 0;
    let roundBytes = 0;
    try {
      const rewritten: number[] = [];
      for (const p of this.o.store.partitions.keys()) {
        if (this.lastLsn[p] <= this.checkpointLsn[p] && !this.legacy.has(p)) continue;
        // Synchronous: the copy and the LSN it covers are taken in the same turn. It is
        // written once that LSN is durable: a checkpoint never covers a record the log may lose.
        const file = encodePartition(this.scratch, this.o.store, p, this.wal.lastLsn, Date.now());
        await this.wal.durable(file.lsn);
        roundBytes += await writeCheckpoint(this.checkpointDir, file);
        // Dropped while it was being written: its file must not outlive the drop.
        if (!this.o.store.partitions.has(p)) removeCheckpoint(this.checkpointDir, p);
        else {
          this.checkpointLsn[p] = file.lsn;
          if (this.legacy.has(p)) rewritten.push(p);
        }
        written++;
        await new Promise((r) => setImmediate(r));
      }
      // The windows last: their LSN is at least every partition checkpoint's.
      if (written > 0 || this.wal.lastLsn > this.windowLsn) {
        const file = await encodeWindow(this.scratch, this.o.store, this.wal.lastLsn, Date.now(), () => new Promise((r) => setImmediate(r)));
        await this.wal.durable(file.lsn);
        roundBytes += await writeCheckpoint(this.checkpointDir, file);
        if (this.scratch.buf.length > SCRATCH_KEEP_BYTES) this.scratch = new Writer(SCRATCH_BYTES);
        // One directory sync makes this round's renames durable, before the log they cover goes.
        await syncDirAsync(this.checkpointDir);
        this.windowLsn = file.lsn;
      }
      // A JSON checkpoint goes once its partition's binary one (and the windows) are durable.
      for (const p of rewritten) {
        removeLegacyCheckpoint(this.checkpointDir, p);
        this.legacy.delete(p);
      }
      // A dropped partition's checkpoint goes once its drop record is durable.
      if (this.dropped.size > 0) {
        await this.wal.durable();
        for (const p of this.dropped) {
          if (!this.o.store.partitions.has(p)) {
            removeCheckpoint(this.checkpointDir, p);
            this.checkpointLsn[p] = -1;
          }
        }
        this.dropped.clear();
        syncDir(this.checkpointDir);
      }
      this.lastRoundBytes = roundBytes;
      // Keys replayed at recovery come from the log after the windows' checkpoint: kept too.
      return { partitions: written, segmentsDeleted: await this.wal.deleteBefore(Math.min(this.neededFrom(), this.windowLsn + 1)) };
    } finally {
      this.checkpointing = false;
    }
  }

  private lastRound = Date.now();

  /** Disk bytes: log segments and checkpoints. */
  diskBytes(): { log: number; checkpoints: number } {
    let checkpoints = 0;
    for (const f of fs.readdirSync(this.checkpointDir)) checkpoints += fs.statSync(path.join(this.checkpointDir, f)).size;
    return { log: this.wal.diskBytes(), checkpoints };
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.wal.close();
    unlockDirectory(this.o.dir);
  }

  /** The first LSN recovery needs: before it, every hosted partition's records are in its checkpoint. */
  private neededFrom(): number {
    let need = this.wal.lastLsn + 1;
    for (const p of this.o.store.partitions.keys()) {
      const from = this.checkpointLsn[p] >= 0 ? this.checkpointLsn[p] + 1 : this.firstLsn[p];
      if (from >= 0 && from < need) need = from;
    }
    return need;
  }

  private append(entry: LogEntry, touched: readonly { partition: number }[]): void {
    this.appendPayload(Buffer.from(JSON.stringify(entry)), touched);
  }

  private appendPayload(payload: Buffer, touched: readonly { partition: number }[]): void {
    this.bytesSinceCheckpoint += payload.length;
    const lsn = this.wal.append(payload);
    this.timeline.note(lsn, Date.now());
    this.touch(lsn, touched);
  }

  /** Record `lsn` holds changes to these partitions. */
  private touch(lsn: number, touched: readonly { partition: number }[]): void {
    for (const { partition: p } of touched) {
      if (this.firstLsn[p] < 0) this.firstLsn[p] = lsn;
      this.lastLsn[p] = lsn;
    }
  }

  private replay(lsn: number, e: LogEntry): void {
    const store = this.o.store;
    const fresh = (p: number) => lsn > this.checkpointLsn[p];
    const at = "t" in e ? e.t : -Infinity;
    // Covered by the partition's checkpoint, not by the keys on disk: only the record's effect on the keys.
    const keysOnly = (p: number) => !fresh(p) && lsn > this.windowBase[p];
    const touch = (p: number) => {
      if (this.firstLsn[p] < 0) this.firstLsn[p] = lsn;
      this.lastLsn[p] = lsn;
      if (at > this.recoveredAt[p]) this.recoveredAt[p] = at;
    };
    switch (e.o) {
      case "apply": {
        const batches = e.b.filter((b) => fresh(b.partition));
        if (batches.length > 0) store.apply(batches, { now: e.t, replay: true });
        for (const b of batches) touch(b.partition);
        for (const b of e.b) if (b.idempotencyKey !== undefined && keysOnly(b.partition)) store.partitions.get(b.partition)?.rememberApplied(b.idempotencyKey, e.t);
        return;
      }
      case "revert": {
        const batches = e.b.filter((b) => fresh(b.partition));
        // The log holds only sub-batches that were reverted: their keys may be gone already
        // from keys loaded as of a later record (the windows' checkpoint), the sums are not.
        for (const b of batches) if (b.idempotencyKey !== undefined) store.partitions.get(b.partition)?.rememberApplied(b.idempotencyKey, e.t);
        store.revert(batches, e.t);
        for (const b of e.b) if (b.idempotencyKey !== undefined && keysOnly(b.partition)) store.partitions.get(b.partition)?.forget(b.idempotencyKey);
        store.removeEmpty((e.rm ?? []).filter(([p]) => fresh(p)));
        for (const b of batches) touch(b.partition);
        return;
      }
      case "drop":
        if (fresh(e.p)) {
          store.drop(e.p);
          this.firstLsn[e.p] = -1;
          this.lastLsn[e.p] = -1;
          this.recoveredAt[e.p] = -Infinity;
          this.dropped.add(e.p);
        } else if (keysOnly(e.p)) store.forgetWindow(e.p);
        return;
      case "trim": {
        const partitions = e.p.filter(fresh);
        store.trimBefore(e.h, partitions);
        for (const p of partitions) touch(p);
        return;
      }
      case "load":
        if (fresh(e.c.partition)) {
          const elapsed = Date.now() - e.t;
          store.loadChunk({ ...e.c, dedupe: e.c.dedupe.filter(([, ttl]) => ttl > elapsed).map(([k, ttl]): [string, number] => [k, ttl - elapsed]) });
          touch(e.c.partition);
        } else if (keysOnly(e.c.partition)) {
          const now = Date.now();
          for (const [key, ttl] of e.c.dedupe) store.rememberWindowKey(e.c.partition, key, e.t + ttl, now);
        }
        return;
    }
  }
}

function readOrCreateMeta(dir: string, partitions: number): Meta {
  const file = path.join(dir, "meta.json");
  if (fs.existsSync(file)) {
    const meta = JSON.parse(fs.readFileSync(file, "utf8")) as Meta;
    if (meta.partitions !== partitions) {
      throw new Error(`DATA_DIR ${dir} was written with PARTITIONS=${meta.partitions}, this node has PARTITIONS=${partitions}: refusing to start (use the cluster's value, or another DATA_DIR)`);
    }
    return meta;
  }
  const meta: Meta = { format: 1, partitions, incarnation: Date.now(), createdAt: new Date().toISOString() };
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(meta));
  const fd = fs.openSync(tmp, "r");
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  syncDir(dir);
  return meta;
}

/** One process per data directory: a lock file with its pid (a dead process's lock is taken over). */
function lockDirectory(dir: string): void {
  const file = path.join(dir, "LOCK");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: "wx" });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(fs.readFileSync(file, "utf8"));
      if (pid === process.pid) return;
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new Error(`DATA_DIR ${dir} is in use by process ${pid}: give each node its own DATA_DIR`);
      }
      fs.rmSync(file, { force: true });
    }
  }
  throw new Error(`cannot lock DATA_DIR ${dir}`);
}

function unlockDirectory(dir: string): void {
  const file = path.join(dir, "LOCK");
  try {
    if (Number(fs.readFileSync(file, "utf8")) === process.pid) fs.rmSync(file, { force: true });
  } catch {
    /* already gone */
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  // A killed process nobody has reaped yet (a zombie) still answers signal 0.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}
