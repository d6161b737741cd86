/**
 * What this shard node is to each partition: one record per partition in a named
 * state, changed only by the transition functions below (unit-tested one by one).
 *
 *   absent   --recovered-->    recovered (held from the data directory, not yet confirmed by a table)
 *   absent   --prepareCopy-->  loading   (a snapshot is arriving; forwarded writes queue)
 *   loading  --loaded------->  standby   (a full copy, not yet listed in the table)
 *   any listed state --adopt(table)--> primary | replica, as the table lists this node
 *   standby/loading stay while unlisted (the switch comes in a later table)
 *   primary  --release-->      released (stops serving; the switch follows)
 *   released --adopt(a table that no longer makes it primary)--> replica | absent
 *   primary/replica/released --adopt(table not listing it)--> absent (data dropped)
 *   recovered stays while unlisted: its primary may bring it up to date from its log
 *     (prepareCopy keeping the data, src/shard/handoff.ts) instead of a snapshot
 *   loading/standby/recovered --expire(abandoned)--> absent; released --expire--> as listed
 *     (a release whose switch never came: its coordinator died)
 *
 * Only `primary` serves reads and writes. Every state but `absent` and `recovered`
 * accepts forwarded writes (`loading` queues them): a copy applies what its primary sends even before it
 * has adopted the table that names that primary. No Moleculer, no clock of its own.
 */
import type { SubBatch } from "../partition-store";

export enum Role {
  Absent = 0,
  Loading = 1,
  Standby = 2,
  Replica = 3,
  Primary = 4,
  Released = 5,
  Recovered = 6,
}

export const ROLE_NAMES = ["absent", "loading", "standby", "replica", "primary", "released", "recovered"] as const;

/** This node's place in a table's row for a partition. */
export type Listing = "primary" | "replica" | null;

export class PartitionRoles {
  private readonly state: Uint8Array;
  /** When the current state began (ms). */
  private readonly since: Float64Array;
  private readonly queues = new Map<number, SubBatch[]>();

  constructor(readonly partitions: number) {
    this.state = new Uint8Array(partitions);
    this.since = new Float64Array(partitions);
  }

  role(p: number): Role {
    return this.state[p] as Role;
  }

  name(p: number): (typeof ROLE_NAMES)[number] {
    return ROLE_NAMES[this.state[p]];
  }

  servesAsPrimary(p: number): boolean {
    return this.state[p] === Role.Primary;
  }

  /** Holds (or is receiving) a copy: forwarded writes are applied or queued. */
  acceptsForward(p: number): boolean {
    const s = this.state[p];
    return s !== Role.Absent && s !== Role.Recovered;
  }

  /** Holds a complete copy it could snapshot from. */
  holdsCopy(p: number): boolean {
    const s = this.state[p];
    return s === Role.Primary || s === Role.Released || s === Role.Replica || s === Role.Standby;
  }

  /** Forwarded writes waiting for the snapshot (loading only). */
  queueOf(p: number): SubBatch[] | undefined {
    return this.queues.get(p);
  }

  /** When partition `p` entered its current state (ms): for a primary, since when it has served uninterrupted. */
  sinceOf(p: number): number {
    return this.since[p];
  }

  /** Partitions in the given state. */
  inState(role: Role): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.partitions; p++) if (this.state[p] === role) out.push(p);
    return out;
  }

  // ---- transitions ----

  /** Partitions read back from the data directory at start: held, serving nothing until a table says what they are. */
  recovered(partitions: number[], now: number): void {
    for (const p of partitions) {
      if (this.state[p] !== Role.Absent) throw new Error(`partition ${p}: recovered while ${this.name(p)}`);
      this.set(p, Role.Recovered, now);
    }
  }

  /**
   * A snapshot (the caller dropped the old data) or a log tail (a recovered copy, kept) is
   * about to arrive: a loading copy that queues forwarded writes.
   */
  prepareCopy(p: number, now: number): void {
    this.set(p, Role.Loading, now);
    this.queues.set(p, []);
  }

  /**
   * The last chunk arrived: a full copy, standby until a table lists it (or what the
   * table already says). Returns the writes queued meanwhile, to apply.
   */
  loaded(p: number, now: number, listing: Listing): SubBatch[] {
    if (this.state[p] !== Role.Loading) throw new Error(`partition ${p}: loaded while ${this.name(p)}`);
    const queue = this.queues.get(p) ?? [];
    this.queues.delete(p);
    this.set(p, listing === "primary" ? Role.Primary : listing === "replica" ? Role.Replica : Role.Standby, now);
    return queue;
  }

  /** Stop serving as primary until a table moves the primary elsewhere (the switch). */
  release(p: number, now: number): void {
    const s = this.state[p];
    if (s === Role.Released) return;
    if (s !== Role.Primary) throw new Error(`partition ${p}: release while ${this.name(p)}`);
    this.set(p, Role.Released, now);
  }

  /**
   * A table was adopted: `listing(p)` says where it puts this node. Returns the
   * partitions that became absent (their data is to be dropped).
   */
  adopt(listing: (p: number) => Listing, now: number): number[] {
    const dropped: number[] = [];
    for (let p = 0; p < this.partitions; p++) {
      const s = this.state[p] as Role;
      const l = listing(p);
      if (s === Role.Loading) continue; // its copy is not complete: only prepareCopy/loaded/expire move it
      if (s === Role.Released && l === "primary") continue; // the switch has not come yet
      if (l === "primary") {
        if (s !== Role.Primary) this.set(p, Role.Primary, now);
      } else if (l === "replica") {
        if (s !== Role.Replica) this.set(p, Role.Replica, now);
      } else if (s === Role.Primary || s === Role.Replica || s === Role.Released) {
        this.set(p, Role.Absent, now);
        dropped.push(p);
      }
    }
    return dropped;
  }

  /**
   * Copies that never became owners (after `abandonMs`), and releases never followed
   * by a switch (after `releaseMs`: their coordinator died; the next one plans anew).
   * A release falls back to what the table says. Returns the partitions that became absent.
   */
  expire(now: number, limits: { abandonMs: number; releaseMs: number }, listing: (p: number) => Listing): number[] {
    const dropped: number[] = [];
    for (let p = 0; p < this.partitions; p++) {
      const s = this.state[p];
      const age = now - this.since[p];
      if ((s === Role.Loading || s === Role.Standby || s === Role.Recovered) && age > limits.abandonMs) {
        if (listing(p) !== null) continue;
        this.queues.delete(p);
        this.set(p, Role.Absent, now);
        dropped.push(p);
      } else if (s === Role.Released && age > limits.releaseMs) {
        const l = listing(p);
        this.set(p, l === "primary" ? Role.Primary : l === "replica" ? Role.Replica : Role.Absent, now);
        if (l === null) dropped.push(p);
      }
    }
    return dropped;
  }

  private set(p: number, role: Role, now: number): void {
    this.state[p] = role;
    this.since[p] = now;
    if (role !== Role.Loading) this.queues.delete(p);
  }
}
