/**
 * Checkpoints: one file per partition (`checkpoints/<partition>.json`), a full copy of
 * the partition (the snapshot codec's hours, and its idempotency keys with their
 * absolute expiry) as of log record `lsn`. Written to a temporary file, synced, then
 * renamed over the old one, so a checkpoint on disk is always whole.
 */
import * as fs from "fs";
import * as path from "path";
import type { PartitionStore, SnapshotHour } from "../partition-store";

export interface CheckpointFile {
  partition: number;
  /** Every log record up to this LSN is in it. */
  lsn: number;
  /** Wall-clock ms when taken. */
  at: number;
  hours: SnapshotHour[];
  /** Idempotency keys with their expiry (wall-clock ms). */
  dedupe: [key: string, expiresAt: number][];
}

export function checkpointPath(dir: string, partition: number): string {
  return path.join(dir, `${String(partition).padStart(5, "0")}.json`);
}

/** The partition as it is now, synchronously (no write can interleave), with the LSN it covers. */
export function takeCheckpoint(store: PartitionStore, partition: number, lsn: number, now: number): CheckpointFile {
  const [chunk] = store.snapshot(partition, Number.MAX_SAFE_INTEGER);
  return { partition, lsn, at: now, hours: chunk.hours, dedupe: chunk.dedupe.map(([key, ttl]) => [key, now + ttl]) };
}

export async function writeCheckpoint(dir: string, file: CheckpointFile): Promise<number> {
  const target = checkpointPath(dir, file.partition);
  const tmp = `${target}.tmp`;
  const data = Buffer.from(JSON.stringify(file));
  const handle = await fs.promises.open(tmp, "w");
  try {
    await handle.writeFile(data);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  // The rename is durable once the directory is synced: the caller does that once for all
  // the checkpoints it wrote, before it deletes the log they cover (Journal.checkpoint).
  await fs.promises.rename(tmp, target);
  return data.length;
}

/** The same, blocking: at start, before anything else runs. */
export function writeCheckpointSync(dir: string, file: CheckpointFile): void {
  const target = checkpointPath(dir, file.partition);
  const tmp = `${target}.tmp`;
  const fd = fs.openSync(tmp, "w");
  try {
    fs.writeFileSync(fd, JSON.stringify(file));
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, target);
}

/** Every checkpoint in `dir`; a file that does not parse stops the start with its name. */
export function readCheckpoints(dir: string): CheckpointFile[] {
  if (!fs.existsSync(dir)) return [];
  const out: CheckpointFile[] = [];
  for (const name of fs.readdirSync(dir).sort()) {
    const file = path.join(dir, name);
    if (name.endsWith(".tmp")) {
      fs.rmSync(file, { force: true }); // a checkpoint cut short by a crash; the old one (or the log) stands
      continue;
    }
    if (!/^\d{5}\.json$/.test(name)) continue;
    try {
      out.push(JSON.parse(fs.readFileSync(file, "utf8")) as CheckpointFile);
    } catch (err) {
      throw new Error(`checkpoint ${file} cannot be read (${(err as Error).message}); see README "Operations: a corrupt log"`);
    }
  }
  return out;
}

/** Put a checkpoint into the store (the partition must be empty there). */
export function loadCheckpoint(store: PartitionStore, file: CheckpointFile, now: number): void {
  const dedupe = file.dedupe.filter(([, expiresAt]) => expiresAt > now).map(([key, expiresAt]): [string, number] => [key, expiresAt - now]);
  store.loadChunk({ partition: file.partition, hours: file.hours, dedupe });
}

export function removeCheckpoint(dir: string, partition: number): void {
  fs.rmSync(checkpointPath(dir, partition), { force: true });
}
