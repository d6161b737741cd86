/**
 * A shard node's write path, as primary and as copy.
 *
 * Primary (`apply`): the whole message is refused while this node is fenced (it cannot
 * tell its table is current) or when the gateway's table is newer than its own (it
 * re-reads first). Each group is then applied atomically on its own: a group touching a
 * partition this node does not serve as primary, or whose sum would pass 2^53-1, is
 * refused alone. The applied groups are forwarded to every other copy and the answer
 * waits for their acks, so an acknowledged write is on every copy.
 *
 * Copy (`replicate`): applies what a primary forwards, unless this node knows a newer
 * table in which the sender is not the primary: a primary that was paused, or cut off,
 * and replaced meanwhile gets no ack, so it acknowledges nothing after its replacement.
 *
 * No Moleculer: `send`, the fence and the table are handed in.
 */
import { fromMessage, toMessage } from "../batching";
import { PartitionStore, SumOverflowError, type RemovedFlow, type SubBatch } from "../partition-store";
import type { PlacementTable } from "../placement-store";
import { fenced, logUnwritable, staleTable, sumOverflow, wrongOwner, type ApplyParams, type GroupRefusal, type GroupResult, type ReplicateParams, type RevertParams } from "../protocol";
import type { PartitionRoles } from "./partition-roles";

/** Where applied changes are logged (src/durability/journal.ts); absent with DURABILITY=memory. */
export interface WriteJournal {
  refusal(): string | null;
  applied(batches: SubBatch[], t: number): void;
  reverted(batches: SubBatch[], removed: RemovedFlow[], t: number): void;
  durable(): Promise<void>;
}

export interface WritePathOptions {
  store: PartitionStore;
  journal: WriteJournal | null;
  roles: PartitionRoles;
  table(): PlacementTable | null;
  /** Why this node may not serve as primary right now, or null. */
  fenceReason(): string | null;
  /** A caller knows a newer table: re-read it (in the background). */
  behind(): void;
  /** Every other node that must receive the partition's writes (its copies and copies being made). */
  followersOf(partition: number): string[];
  send(nodeID: string, action: "replicate" | "revert", params: ReplicateParams | RevertParams): Promise<unknown>;
  /** A group's error in the form the caller restores. */
  refusalOf(err: Error): GroupRefusal;
  /** Metrics sink. */
  counted: { applied(records: number, duplicates: number): void; replicationFailed(): void };
}

export class WritePath {
  /** Writes under way per partition (a release waits for them). */
  private readonly inflight: Int32Array;

  constructor(private readonly o: WritePathOptions) {
    this.inflight = new Int32Array(o.roles.partitions);
  }

  /**
   * Throws when this node may not serve as primary at all (fenced, or behind the
   * caller); else the given partitions it does not serve as primary.
   */
  notServedAsPrimary(partitions: readonly number[], callerEpoch: number | undefined): number[] {
    const why = this.o.fenceReason();
    if (why !== null) throw fenced(why);
    const table = this.o.table();
    const mine = table?.epoch ?? 0;
    if (callerEpoch !== undefined && callerEpoch > mine) {
      this.o.behind();
      throw staleTable(mine, callerEpoch);
    }
    const roles = this.o.roles;
    return partitions.filter((p) => !roles.servesAsPrimary(p));
  }

  async apply(params: ApplyParams): Promise<{ results: GroupResult[] }> {
    const groups = params.groups.map(fromMessage);
    const partitions: number[] = [];
    for (const g of groups) for (const b of g) partitions.push(b.partition);
    const refused = new Set<number>(this.notServedAsPrimary(partitions, params.epoch));
    const journal = this.o.journal;
    const unwritable = journal?.refusal();
    if (unwritable) throw logUnwritable(unwritable);
    const results: GroupResult[] = new Array(groups.length);
    const applied: number[] = [];
    const epoch = this.o.table()?.epoch;
    const now = Date.now();
    const logged: SubBatch[] = [];
    for (let i = 0; i < groups.length; i++) {
      const group = groups[i];
      if (refused.size > 0) {
        const wrong = [...new Set(group.filter((b) => refused.has(b.partition)).map((b) => b.partition))];
        if (wrong.length > 0) {
          results[i] = this.o.refusalOf(wrongOwner(wrong, epoch));
          continue;
        }
      }
      try {
        const result = this.o.store.apply(group, { now, applied: journal ? logged : undefined });
        this.o.counted.applied(result.records, result.duplicates);
        results[i] = result;
        applied.push(i);
      } catch (err) {
        if (!(err instanceof SumOverflowError)) throw err;
        results[i] = this.o.refusalOf(sumOverflow(err.message, { flow: err.flow, field: err.field }));
      }
    }
    // Logged in the same turn as applied; answered only once on disk (a duplicate too: its first copy may still be on its way).
    journal?.applied(logged, now);
    if (applied.length === 0) {
      await this.durable();
      return { results };
    }
    // Counted in the same turn as the ownership check: a release waits for these writes.
    const inflight = this.inflight;
    for (const i of applied) for (const b of groups[i]) inflight[b.partition]++;
    try {
      // Duplicates are forwarded too: a retry after a failed forward must reach the copies (they dedupe).
      await Promise.all([
        this.toFollowers(
          "replicate",
          applied.map((i) => groups[i]),
          epoch ?? 0,
        ).catch((err: unknown) => {
          this.o.counted.replicationFailed();
          for (const i of applied) results[i] = this.o.refusalOf(err as Error);
        }),
        this.durable(),
      ]);
    } finally {
      for (const i of applied) for (const b of groups[i]) inflight[b.partition]--;
    }
    return { results };
  }

  /**
   * A copy's write path, group by group. A refusal fails the whole message: the
   * primary fails its groups, and their retries are recognised by key where applied.
   */
  async replicate(params: ReplicateParams, sender: string): Promise<{ groups: number }> {
    const table = this.o.table();
    const roles = this.o.roles;
    const journal = this.o.journal;
    const unwritable = journal?.refusal();
    if (unwritable) throw logUnwritable(unwritable);
    const now = Date.now();
    for (const message of params.groups) {
      const ready: SubBatch[] = [];
      for (const b of fromMessage(message)) {
        const p = b.partition;
        if (!roles.acceptsForward(p)) throw wrongOwner([p], table?.epoch);
        // A newer table than the sender's that names another primary: the sender was replaced.
        if (table !== null && params.epoch < table.epoch && table.owners[p]?.[0] !== sender) throw wrongOwner([p], table.epoch);
        const queue = roles.queueOf(p);
        if (queue) queue.push(b);
        else ready.push(b);
      }
      const logged: SubBatch[] = [];
      this.o.store.apply(ready, { now, applied: journal ? logged : undefined });
      journal?.applied(logged, now);
    }
    await this.durable();
    return { groups: params.groups.length };
  }

  /** Undo keyed sub-batches this node applied (a sum refused elsewhere), here and on every copy. */
  async revert(params: RevertParams): Promise<{ reverted: number }> {
    const batches = params.groups.flatMap(fromMessage);
    const now = Date.now();
    const undone: SubBatch[] = [];
    const removed: RemovedFlow[] = [];
    const reverted = this.o.store.revert(batches, now, undone, removed);
    this.o.journal?.reverted(undone, removed, now);
    await Promise.all([params.copy ? undefined : this.toFollowers("revert", [batches], this.o.table()?.epoch ?? 0), this.durable()]);
    return { reverted };
  }

  /** Everything logged so far is durable; a log that cannot be written refuses the write (503, final for the gateway). */
  private async durable(): Promise<void> {
    const journal = this.o.journal;
    if (journal === null) return;
    try {
      await journal.durable();
    } catch (err) {
      throw logUnwritable(journal.refusal() ?? `the write-ahead log failed (${(err as Error).message})`);
    }
  }

  /** Resolves when no write to the partition is under way here. */
  async drained(partition: number): Promise<void> {
    while (this.inflight[partition] > 0) await new Promise((r) => setTimeout(r, 2));
  }

  /** One message per follower node, carrying the groups (or their parts) it holds a copy of. */
  private async toFollowers(action: "replicate" | "revert", groups: SubBatch[][], epoch: number): Promise<void> {
    let byNode: Map<string, SubBatch[][]> | null = null;
    for (const group of groups) {
      let perNode: Map<string, SubBatch[]> | null = null;
      for (const b of group) {
        for (const n of this.o.followersOf(b.partition)) {
          perNode ??= new Map();
          let list = perNode.get(n);
          if (!list) perNode.set(n, (list = []));
          list.push(b);
        }
      }
      if (perNode === null) continue;
      byNode ??= new Map();
      for (const [n, list] of perNode) {
        let lists = byNode.get(n);
        if (!lists) byNode.set(n, (lists = []));
        lists.push(list);
      }
    }
    if (byNode === null) return;
    await Promise.all(
      Array.from(byNode, ([nodeID, lists]) =>
        this.o.send(nodeID, action, action === "replicate" ? { epoch, groups: lists.map(toMessage) } : { groups: lists.map(toMessage), copy: true }),
      ),
    );
  }
}
