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
import { decodeMessage, encodeMessage, selectedBatches, type Group, type SelectedGroup } from "../wire/group-codec";
import { PartitionStore, SumOverflowError, type ApplyResult, type RemovedFlow, type SubBatch } from "../partition-store";
import type { PlacementTable } from "../placement-store";
import { fenced, logUnwritable, staleTable, sumOverflow, wrongOwner, type ApplyParams, type GroupRefusal, type GroupResult, type ReplicateParams, type RevertParams } from "../protocol";
import type { PartitionRoles } from "./partition-roles";

/** Where applied changes are logged (src/durability/journal.ts); absent with DURABILITY=memory. */
export interface WriteJournal {
  refusal(): string | null;
  applied(batches: SubBatch[], t: number): void;
  appliedGroup(g: SelectedGroup, t: number): void;
  reverted(batches: SubBatch[], removed: RemovedFlow[], t: number): void;
  trimmed(hour: number, partitions: number[]): void;
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
  /** A forward of writes applied at `at` to these partitions leaves for `nodeID`: the returned function is told whether it was delivered (src/shard/catch-up.ts FollowerGaps). */
  forwarding(nodeID: string, partitions: readonly number[], at: number): (delivered: boolean) => void;
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
    const message = Buffer.isBuffer(params) ? decodeMessage(params) : params;
    const groups = message.groups.map((g) => g.group);
    const partitions: number[] = [];
    for (const g of groups) for (const b of g.batches) partitions.push(b.partition);
    const refused = new Set<number>(this.notServedAsPrimary(partitions, message.epoch));
    const journal = this.o.journal;
    const unwritable = journal?.refusal();
    if (unwritable) throw logUnwritable(unwritable);
    const results: GroupResult[] = new Array(groups.length);
    const applied: number[] = [];
    const epoch = this.o.table()?.epoch;
    const now = Date.now();
    for (let i = 0; i < groups.length; i++) {
      const group = groups[i];
      if (refused.size > 0) {
        const wrong = [...new Set(group.batches.filter((b) => refused.has(b.partition)).map((b) => b.partition))];
        if (wrong.length > 0) {
          results[i] = this.o.refusalOf(wrongOwner(wrong, epoch));
          continue;
        }
      }
      try {
        results[i] = this.applyGroup({ group, parts: undefined }, now);
        applied.push(i);
      } catch (err) {
        if (!(err instanceof SumOverflowError)) throw err;
        results[i] = this.o.refusalOf(sumOverflow(err.message, { flow: err.flow, field: err.field }));
      }
    }
    if (applied.length === 0) {
      await this.durable();
      return { results };
    }
    // Counted in the same turn as the ownership check: a release waits for these writes.
    const inflight = this.inflight;
    for (const i of applied) for (const b of groups[i].batches) inflight[b.partition]++;
    try {
      // Duplicates are forwarded too: a retry after a failed forward must reach the copies (they dedupe).
      await Promise.all([
        this.replicateToFollowers(
          applied.map((i) => groups[i]),
          epoch ?? 0,
          now,
        ).catch((err: unknown) => {
          this.o.counted.replicationFailed();
          for (const i of applied) results[i] = this.o.refusalOf(err as Error);
        }),
        this.durable(),
      ]);
    } finally {
      for (const i of applied) for (const b of groups[i].batches) inflight[b.partition]--;
    }
    return { results };
  }

  /**
   * Apply a group atomically and log, in the same turn, the parts applied (not those
   * skipped as duplicates): the bytes as received when it arrived encoded. Its answer
   * waits for durable() (a duplicate's too: its first copy may still be on its way).
   */
  private applyGroup(selected: SelectedGroup, now: number): ApplyResult {
    const journal = this.o.journal;
    const batches = selectedBatches(selected);
    const logged: SubBatch[] = [];
    const result = this.o.store.apply(batches, { now, applied: journal ? logged : undefined });
    this.o.counted.applied(result.records, result.duplicates);
    if (journal !== null && logged.length > 0) {
      const parts = logged.length === batches.length ? selected.parts : appliedParts(selected, logged);
      journal.appliedGroup({ group: selected.group, parts }, now);
    }
    return result;
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
    const message = decodeMessage(params);
    const now = Date.now();
    for (const selected of message.groups) {
      const all = selected.parts ?? selected.group.batches.map((_, i) => i);
      const ready: number[] = [];
      for (const i of all) {
        const b = selected.group.batches[i];
        const p = b.partition;
        if (!roles.acceptsForward(p)) throw wrongOwner([p], table?.epoch);
        // A newer table than the sender's that names another primary: the sender was replaced.
        if (table !== null && message.epoch < table.epoch && table.owners[p]?.[0] !== sender) throw wrongOwner([p], table.epoch);
        const queue = roles.queueOf(p);
        if (queue) queue.push(b);
        else ready.push(i);
      }
      if (ready.length > 0) this.applyGroup({ group: selected.group, parts: ready.length === selected.group.batches.length ? undefined : ready }, now);
    }
    await this.durable();
    return { groups: message.groups.length };
  }

  /** Undo keyed sub-batches this node applied (a sum refused elsewhere), here and on every copy. */
  async revert(params: RevertParams): Promise<{ reverted: number }> {
    const batches = params.groups.flatMap(fromMessage);
    const now = Date.now();
    const undone: SubBatch[] = [];
    const removed: RemovedFlow[] = [];
    const reverted = this.o.store.revert(batches, now, undone, removed);
    this.o.journal?.reverted(undone, removed, now);
    await Promise.all([params.copy ? undefined : this.revertOnFollowers(batches, now), this.durable()]);
    return { reverted };
  }

  /**
   * Remove every hour before `before` from every partition held here, durably (retention,
   * DELETE /flows). Answers the flows removed from partitions served as primary (a
   * gateway adds nodes up) and the hours removed.
   */
  async trimBefore(before: number): Promise<{ flows: number; hours: number[] }> {
    const journal = this.o.journal;
    const unwritable = journal?.refusal();
    if (unwritable) throw logUnwritable(unwritable);
    const partitions = [...this.o.store.partitions.keys()];
    const removed = this.o.store.trimBefore(before, partitions, (p) => this.o.roles.servesAsPrimary(p));
    if (removed.hours.length > 0) {
      journal?.trimmed(before, partitions);
      await this.durable();
    }
    return removed;
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

  /** One message per follower node: the groups as received, each naming the parts that node holds a copy of. */
  private async replicateToFollowers(groups: Group[], epoch: number, at: number): Promise<void> {
    const byNode = new Map<string, SelectedGroup[]>();
    const partitionsOf = new Map<string, Set<number>>();
    for (const group of groups) {
      for (const [n, parts] of this.byFollower(group.batches)) {
        let list = byNode.get(n);
        if (!list) {
          byNode.set(n, (list = []));
          partitionsOf.set(n, new Set());
        }
        list.push({ group, parts: parts.length === group.batches.length ? undefined : parts });
        const partitions = partitionsOf.get(n)!;
        for (const i of parts) partitions.add(group.batches[i].partition);
      }
    }
    await Promise.all(
      Array.from(byNode, ([nodeID, list]) => {
        return this.forward(nodeID, [...partitionsOf.get(nodeID)!], at, "replicate", encodeMessage(epoch, list));
      }),
    );
  }

  private async revertOnFollowers(batches: SubBatch[], at: number): Promise<void> {
    const perNode = this.byFollower(batches);
    await Promise.all(
      Array.from(perNode, ([nodeID, indexes]) => {
        return this.forward(nodeID, [...new Set(indexes.map((i) => batches[i].partition))], at, "revert", { groups: [toMessage(indexes.map((i) => batches[i]))], copy: true });
      }),
    );
  }

  /** Send a follower what it must apply, telling `forwarding` whether it arrived. */
  private async forward(nodeID: string, partitions: number[], at: number, action: "replicate" | "revert", params: ReplicateParams | RevertParams): Promise<void> {
    const settled = this.o.forwarding(nodeID, partitions, at);
    try {
      await this.o.send(nodeID, action, params);
    } catch (err) {
      settled(false);
      throw err;
    }
    settled(true);
  }

  /** Per follower node, the indexes of the sub-batches it holds a copy of. */
  private byFollower(batches: readonly SubBatch[]): Map<string, number[]> {
    const perNode = new Map<string, number[]>();
    batches.forEach((b, i) => {
      for (const n of this.o.followersOf(b.partition)) {
        let list = perNode.get(n);
        if (!list) perNode.set(n, (list = []));
        list.push(i);
      }
    });
    return perNode;
  }
}

/** The indexes in its group of a selection's sub-batches that `applied` holds (a subsequence of them). */
function appliedParts(selected: SelectedGroup, applied: readonly SubBatch[]): number[] {
  const batches = selected.group.batches;
  const out: number[] = [];
  let j = 0;
  for (const i of selected.parts ?? batches.keys()) {
    if (j < applied.length && batches[i] === applied[j]) {
      out.push(i);
      j++;
    }
  }
  return out;
}
