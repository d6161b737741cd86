/**
 * Catching a returning copy up from its primary's log tail (src/shard/catch-up.ts,
 * src/durability/log-tail.ts, src/shard/handoff.ts): when it is safe, what the tail
 * holds, and, end to end in one process with real data directories, that the copy ends
 * equal to the primary's (nothing missing, nothing counted twice) whichever way it is
 * refilled.
 */
import * as fs from "fs";
import * as path from "path";
import { Journal } from "../../src/durability/journal";
import { PartitionStore, type SubBatch } from "../../src/partition-store";
import type { PlacementTable } from "../../src/placement-store";
import { FollowerGaps, tailStart, CLOCK_MARGIN_MS, type RecoveredCopy } from "../../src/shard/catch-up";
import { Handoff } from "../../src/shard/handoff";
import { PartitionRoles, Role } from "../../src/shard/partition-roles";
import { tempDataDir } from "../support/processes";

const quiet = { info: () => undefined, warn: () => undefined };
const tempDir = () => tempDataDir("catch-up");

const PARTITIONS = 4;
const dedupe = { max: 1000, ttlMs: 600_000 };
/** Times in the recent past (the idempotency windows expire keys against the real clock). */
const T0 = Date.now() - 120_000;
let keyNo = 0;
const write = (partition: number, flow: string, tx: number): SubBatch => ({ partition, entries: [flow, 7, tx, 1], idempotencyKey: `k${keyNo++}` });

/** Apply as the write path does: to memory, then log what applied, at `t`. */
function applyLogged(store: PartitionStore, journal: Journal, batches: SubBatch[], t: number): void {
  const applied: SubBatch[] = [];
  store.apply(batches, { now: t, applied });
  journal.applied(applied, t);
}

/** A partition's flows as `hour/key -> [tx, rx]`. */
function contents(store: PartitionStore, p: number): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  for (const chunk of store.snapshot(p, Number.MAX_SAFE_INTEGER)) for (const [hour, keys, tx, rx] of chunk.hours) keys.forEach((k, i) => (out[`${hour}/${k}`] = [tx[i], rx[i]]));
  return out;
}

describe("tailStart: when a recovered copy may be caught up, and from when", () => {
  const copy = (changedAt: number): RecoveredCopy => ({ changedAt, ttlMs: 600_000, maxKeys: 10_000 });

  test("from the earliest write it may lack, or a margin before its newest change", () => {
    expect(tailStart({ primarySince: 0, gapFrom: 50_000, copy: copy(60_000), now: 70_000 })).toBe(50_000);
    expect(tailStart({ primarySince: 0, gapFrom: Infinity, copy: copy(60_000), now: 70_000 })).toBe(60_000 - CLOCK_MARGIN_MS);
  });

  test("never from before this node became primary (the copy may have been primary then, or missed another primary's writes)", () => {
    expect(tailStart({ primarySince: 59_000, gapFrom: Infinity, copy: copy(60_000), now: 70_000 })).toBeNull();
    expect(tailStart({ primarySince: 40_000, gapFrom: 30_000, copy: copy(60_000), now: 70_000 })).toBeNull();
  });

  test("never when the copy has no change to go by, or its keys from then may have expired", () => {
    expect(tailStart({ primarySince: 0, gapFrom: Infinity, copy: copy(-Infinity), now: 70_000 })).toBeNull();
    expect(tailStart({ primarySince: 0, gapFrom: 10_000, copy: copy(60_000), now: 10_000 + 600_000 })).toBeNull();
  });
});

describe("FollowerGaps: what each follower may lack", () => {
  test("a failed forward marks its earliest write; one under way counts until it is answered; a delivered one does not", () => {
    let term = 1;
    const gaps = new FollowerGaps(() => term);
    const ok = gaps.sending("b", [0, 1], 100);
    const lost = gaps.sending("b", [1], 200);
    const open = gaps.sending("b", [2], 300);
    expect(gaps.gapFrom(0, "b")).toBe(100); // under way
    ok(true);
    lost(false);
    expect(gaps.gapFrom(0, "b")).toBe(Infinity);
    expect(gaps.gapFrom(1, "b")).toBe(200);
    expect(gaps.gapFrom(2, "b")).toBe(300);
    expect(gaps.gapFrom(1, "c")).toBe(Infinity);
    open(true);
    expect(gaps.gapFrom(2, "b")).toBe(Infinity);
    // A table that drops the follower: it lacks everything from then on.
    gaps.left(0, "b", 400);
    expect(gaps.gapFrom(0, "b")).toBe(400);
    // A snapshot or a tail sent now: forgotten.
    gaps.filled(1, "b");
    expect(gaps.gapFrom(1, "b")).toBe(Infinity);
    // Another term as primary: the old marks say nothing.
    term = 2;
    expect(gaps.gapFrom(0, "b")).toBe(Infinity);
  });
});

describe("partition roles: a recovered copy waits to be caught up", () => {
  test("kept while unlisted (not dropped), dropped once abandoned, taken over by a table that lists it", () => {
    const roles = new PartitionRoles(3);
    roles.recovered([0, 1, 2], 0);
    expect(roles.adopt(() => null, 1)).toEqual([]);
    expect(roles.inState(Role.Recovered)).toEqual([0, 1, 2]);
    expect(roles.acceptsForward(0)).toBe(false);
    roles.adopt((p) => (p === 2 ? "replica" : null), 2);
    expect(roles.name(2)).toBe("replica");
    roles.prepareCopy(1, 3); // a log tail is coming: loading, its data kept by the caller
    expect(roles.expire(60_001, { abandonMs: 60_000, releaseMs: 10_000 }, () => null)).toEqual([0]);
    expect(roles.name(1)).toBe("loading");
  });
});

describe("journal.tail: a partition's log since a time", () => {
  test("only that partition's entries from that time (trims whatever their time), refused past the limits or before the timeline", async () => {
    const store = new PartitionStore(dedupe);
    const journal = new Journal({ dir: tempDir(), mode: "sync", partitions: PARTITIONS, store, log: quiet });
    for (let i = 0; i < 20; i++) applyLogged(store, journal, [write(0, "a", 1), write(1, "b", 2)], T0 + i * 1000);
    journal.trimmed(5, [1]);
    journal.trimmed(6, [2]);
    const end = journal.lastRecordLsn;
    const limits = { maxBytes: 1 << 20, maxKeys: 100 };
    const tail = await journal.tail(1, T0 + 15_000, end, limits);
    if ("refused" in tail) throw new Error(tail.refused);
    expect(tail.entries.map((e) => (e.o === "apply" ? `${e.o}@${e.t - T0}:${e.b.map((b) => b.partition).join()}` : e.o === "trim" ? `${e.o}<${e.h}` : e.o))).toEqual(["apply@15000:1", "apply@16000:1", "apply@17000:1", "apply@18000:1", "apply@19000:1", "trim<5"]);
    expect(await journal.tail(1, T0 + 500, end, limits)).toEqual({ refused: expect.stringMatching(/timeline/) });
    expect(await journal.tail(1, T0 + 15_000, end, { maxBytes: 100, maxKeys: 100 })).toEqual({ refused: expect.stringMatching(/over 100 bytes/) });
    expect(await journal.tail(1, T0 + 15_000, end, { maxBytes: 1 << 20, maxKeys: 3 })).toEqual({ refused: expect.stringMatching(/more than 3 writes/) });
    await journal.close();
  });
});

describe("handoff to a returning copy, end to end (two data directories, the wire as JSON)", () => {
  /** Node "a" (primary of every partition, B its follower) and node "b" (restarted from its data directory). */
  async function scenario(bWasPrimary: boolean) {
    const table: PlacementTable = { epoch: 2, owners: Array.from({ length: PARTITIONS }, () => ["a", "b"]), incarnations: {} } as unknown as PlacementTable;
    const aStore = new PartitionStore(dedupe);
    const aJournal = new Journal({ dir: tempDir(), mode: "sync", partitions: PARTITIONS, store: aStore, log: quiet });
    const bDir = tempDir();
    let bStore = new PartitionStore(dedupe);
    let bJournal = new Journal({ dir: bDir, mode: "sync", partitions: PARTITIONS, store: bStore, log: quiet });
    const aRoles = new PartitionRoles(PARTITIONS);
    const gaps = new FollowerGaps((p) => aRoles.sinceOf(p));
    // a has been primary since T0 (or, when b was primary until it died, only since after that).
    const aSince = bWasPrimary ? T0 + 31_000 : T0;
    aRoles.adopt(() => "primary", aSince);

    // Writes both hold (b's copy of them is on its disk), then a forward to b fails (b dies),
    // then a table without b, and writes only a has.
    const both = (t: number) => {
      const batches = [write(0, "x", 10), write(0, `f${t}`, 1), write(1, "y", 3)];
      applyLogged(aStore, aJournal, batches.map((b) => ({ ...b })), t);
      applyLogged(bStore, bJournal, batches.map((b) => ({ ...b })), t);
    };
    for (let t = T0 + 1000; t <= T0 + 30_000; t += 1000) {
      both(t);
      if (t === T0 + 20_000) {
        // A forward that never reached b (b went on receiving the next ones): b lacks it.
        applyLogged(aStore, aJournal, [write(0, "x", 5)], t + 500);
        gaps.sending("b", [0], t + 500)(false);
      }
    }
    const lastShared = [write(0, "x", 100)];
    applyLogged(aStore, aJournal, lastShared.map((b) => ({ ...b })), T0 + 30_500);
    applyLogged(bStore, bJournal, lastShared.map((b) => ({ ...b })), T0 + 30_500); // b applied it, but the ack never came back
    gaps.sending("b", [0], T0 + 30_500)(false);
    await bJournal.durable();
    // b is killed: its journal is not closed (no checkpoint), only what is on disk counts.
    for (let t = T0 + 32_000; t <= T0 + 40_000; t += 1000) applyLogged(aStore, aJournal, [write(0, "x", 1000), write(0, "z", 1), write(2, "w", 5)], t);
    gaps.left(0, "b", T0 + 33_000);
    gaps.left(1, "b", T0 + 33_000);

    bStore = new PartitionStore(dedupe);
    fs.rmSync(path.join(bDir, "LOCK"));
    bJournal = new Journal({ dir: bDir, mode: "sync", partitions: PARTITIONS, store: bStore, log: quiet });
    const bRoles = new PartitionRoles(PARTITIONS);
    bRoles.recovered(bJournal.recovered, T0 + 41_000);

    const now = () => T0 + 42_000;
    const counted = { done: () => undefined, failed: () => undefined };
    const logged: string[] = [];
    const b = new Handoff({ me: "b", store: bStore, journal: bJournal, roles: bRoles, table: () => null, listing: () => null, send: () => Promise.reject(new Error("b sends nothing")), now, gaps: new FollowerGaps(() => 0), dedupe: { ttlMs: dedupe.ttlMs, maxKeys: dedupe.max }, log: quiet, counted });
    const wire = (params: unknown) => JSON.parse(JSON.stringify(params)) as never;
    const a = new Handoff({
      me: "a", store: aStore, journal: aJournal, roles: aRoles, table: () => table, listing: () => "primary", now, gaps, dedupe: { ttlMs: dedupe.ttlMs, maxKeys: dedupe.max }, counted,
      log: { info: (m: string) => logged.push(m) },
      send: async (_node, action, params) => (action === "prepareCopy" ? b.prepareCopy(wire(params)) : action === "loadTail" ? b.loadTail(wire(params)) : b.loadChunk(wire(params))),
    });
    const results = [];
    for (let p = 0; p < 3; p++) results.push(await a.addCopy(p, "b"));
    for (let p = 0; p < 3; p++) expect(contents(bStore, p)).toEqual(contents(aStore, p));
    expect(contents(bStore, 0)["7/x"]).toEqual([30 * 10 + 5 + 100 + 9 * 1000, 30 + 1 + 1 + 9]);
    await aJournal.close();
    await bJournal.close();
    return { results, logged };
  }

  test("a copy that was the primary's follower gets only the tail it lacks; what it already held is not counted twice", async () => {
    const { results, logged } = await scenario(false);
    // 0: from the forward that failed at 20.5 s (10 writes it lacks, 11 it holds); 1: nothing missed, 3 it holds; 2: b never held it (a snapshot).
    expect(results.map((r) => ("tail" in r ? `tail ${r.tail}` : "snapshot"))).toEqual(["tail 21", "tail 3", "snapshot"]);
    expect(logged.join("\n")).toMatch(/caught up from the log tail/);
  });

  test("a copy that was itself primary until it died is refilled by snapshot", async () => {
    const { results, logged } = await scenario(true);
    expect(results.map((r) => ("tail" in r ? "tail" : "snapshot"))).toEqual(["snapshot", "snapshot", "snapshot"]);
    expect(logged.join("\n")).toMatch(/gets a snapshot, not the log tail \(it may lack older writes/);
  });
});
