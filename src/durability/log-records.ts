/**
 * The write-ahead log's records (src/durability/journal.ts writes them, recovery and the
 * log tail read them). An applied group is binary, `0x01 | f64 time | selection | group`
 * (src/wire/group-codec.ts: the group's bytes as the gateway sent them, and which of its
 * parts applied here); the rest is JSON (starts with '{').
 */
import type { RemovedFlow, SnapshotChunk, SubBatch } from "../partition-store";
import { decodeLogged } from "../wire/group-codec";

export const APPLIED_GROUP = 0x01;

export type LogEntry =
  | { o: "apply"; t: number; b: SubBatch[] }
  | { o: "revert"; t: number; b: SubBatch[]; rm: RemovedFlow[] }
  | { o: "drop"; p: number }
  | { o: "load"; t: number; c: SnapshotChunk }
  | { o: "trim"; h: number; p: number[] };

export function decodeRecord(payload: Buffer): LogEntry {
  if (payload[0] === APPLIED_GROUP) return { o: "apply", t: payload.readDoubleLE(1), b: decodeLogged(payload.subarray(9)) };
  return JSON.parse(payload.toString("utf8")) as LogEntry;
}

/** The time of an applied group's record without decoding it (undefined: another kind). */
export function appliedAt(payload: Buffer): number | undefined {
  return payload[0] === APPLIED_GROUP ? payload.readDoubleLE(1) : undefined;
}

/** A JSON record of this kind, told by its first bytes (JSON.stringify writes `o` first). */
export function isKind(payload: Buffer, kind: LogEntry["o"]): boolean {
  const prefix = `{"o":"${kind}"`;
  return payload.length >= prefix.length && payload.toString("latin1", 0, prefix.length) === prefix;
}
