/**
 * Carries out the coordinator's decisions (src/shard/coordinator.ts) on the node that
 * holds the lease: writes tables by compare-and-set, and moves partitions (copies made
 * by the current primary, the old primary released, then the switch written). One
 * reconciliation at a time; a lost compare-and-set re-reads and decides again.
 *
 * Right before every write it asks `mayWrite()` again (the lease still held, no stall,
 * NATS reachable): a decision is never written by a node that stopped being allowed to
 * make it while it was being carried out.
 *
 * No Moleculer: `call` and the logger are handed in.
 */
import { CasConflict, type PlacementStore, type TableContent } from "../placement-store";
import type { PartitionChange } from "../transition";
import { ownerNodes } from "../transition";
import { decide, forcedEmpty, switched, type CoordinatorInput } from "./coordinator";

export interface RunnerLog {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

export interface RunnerOptions {
  me: string;
  store: PlacementStore;
  /** Everything the decision needs but the table (read from the store each round). */
  input(): Omit<CoordinatorInput, "table" | "leaving">;
  /** The process a live node runs now (from its beats; undefined: silent). */
  runOf(nodeID: string): string | undefined;
  /** null when this node may write a table right now; else why not. */
  mayWrite(): string | null;
  call(nodeID: string, action: "addCopy" | "release", params: { partition: number; to?: string }): Promise<{ flows?: number }>;
  concurrency: number;
  log: RunnerLog;
}

export class CoordinatorRunner {
  /**
   * Nodes handing their partitions off, with the process doing it. A node that comes
   * back under the same id (and data directory) after leaving is another process, and
   * welcome again: the entry lasts only while that process beats.
   */
  private readonly leaving = new Map<string, string | undefined>();
  private running: Promise<void> | null = null;
  private again = false;
  private lastWait = "";
  /** One table write at a time (switches of concurrent handoffs included). */
  private writing: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: RunnerOptions) {}

  get busy(): boolean {
    return this.running !== null;
  }

  /** Bring placement to the decision's target; resolves when this round (and any asked for meanwhile) is done. */
  reconcile(): Promise<void> {
    if (this.running !== null) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.once();
        } while (this.again);
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  private async once(): Promise<void> {
    for (const [node, run] of this.leaving) if (this.o.runOf(node) !== run) this.leaving.delete(node);
    const decision = decide({ ...this.o.input(), table: this.o.store.table, leaving: new Set(this.leaving.keys()) });
    if (decision.kind !== "wait") this.lastWait = "";
    switch (decision.kind) {
      case "idle":
        return;
      case "wait":
        if (decision.reason !== this.lastWait && !decision.reason.startsWith("not the coordinator")) this.o.log.info(`Placement: no decision (${decision.reason})`);
        this.lastWait = decision.reason;
        return;
      case "write": {
        const table = await this.write(() => decision);
        if (table !== null) this.o.log.warn(`Placement epoch ${table.epoch}: ${decision.log}`);
        this.again = true;
        return;
      }
      case "move":
        await this.move(decision.changes, decision.log);
        return;
    }
  }

  /**
   * Compare-and-set one table, computed by `make` when its turn comes (against the
   * table of that moment); null (and another round) when it lost, was moot, or may
   * not be written now.
   */
  private write(make: () => { content: TableContent; basedOn: number | null } | null): Promise<{ epoch: number } | null> {
    const run = this.writing.then(async () => {
      const next = make();
      if (next === null) return null;
      const { content, basedOn } = next;
      const why = this.o.mayWrite();
      if (why !== null) {
        this.o.log.info(`Placement: not written (${why}): ${content.why}`);
        return null;
      }
      try {
        return await this.o.store.write(content, basedOn);
      } catch (err) {
        if (err instanceof CasConflict) {
          this.o.log.info(`Placement: ${err.message}; deciding again`);
          this.again = true;
          return null;
        }
        throw err;
      }
    });
    this.writing = run.catch(() => undefined);
    return run;
  }

  private async move(changes: PartitionChange[], log: string): Promise<void> {
    this.o.log.info(`Placement: ${log}, ${this.o.concurrency} at a time`);
    const started = Date.now();
    const startEpoch = this.o.store.table?.epoch ?? 0;
    let moved = 0;
    let flows = 0;
    const failed: string[] = [];
    const queue = [...changes];
    const worker = async () => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        if (this.o.mayWrite() !== null) return;
        try {
          flows += await this.applyChange(c);
          moved++;
        } catch (err) {
          failed.push(`${c.partition} (${(err as Error).message})`);
        }
      }
    };
    await Promise.all(Array.from({ length: this.o.concurrency }, worker));
    this.o.log.info(
      `Rebalance round done in ${Date.now() - started} ms: ${moved} of ${changes.length} partition(s) moved, ${flows} flows copied, epoch ${startEpoch} -> ${this.o.store.table?.epoch}` +
        (failed.length > 0 ? `; ${failed.length} to retry` : ""),
    );
    if (failed.length > 0) {
      this.o.log.warn(`Not moved yet, retrying: partition ${failed.slice(0, 3).join(", ")}${failed.length > 3 ? ", ..." : ""}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    if (moved > 0 || failed.length > 0) this.again = true;
  }

  /** Make the change's copies, release the old primary, write the switch; resolves with the flows copied. */
  private async applyChange(c: PartitionChange): Promise<number> {
    let flows = 0;
    for (const to of c.fills) {
      const copied = await this.o.call(c.from[0], "addCopy", { partition: c.partition, to });
      flows += copied.flows ?? 0;
    }
    if (c.releaseFrom) await this.o.call(c.releaseFrom, "release", { partition: c.partition });
    for (let attempt = 0; attempt < 5; attempt++) {
      let stale = false;
      const written = await this.write(() => {
        const table = this.o.store.table;
        if (table === null) return null;
        const { alive, me, now } = this.o.input();
        const content = switched(table, c, me, alive, now);
        stale = content === null;
        return content === null ? null : { content, basedOn: table.epoch };
      });
      if (written !== null) return flows;
      if (stale) throw new Error("its owners changed meanwhile");
      if (this.o.mayWrite() !== null) throw new Error("no longer the coordinator");
    }
    throw new Error("the table kept changing");
  }

  /** Move everything off a node (SIGTERM). Resolves when it owns no partition. */
  async drain(nodeID: string): Promise<{ epoch: number }> {
    this.leaving.set(nodeID, this.o.runOf(nodeID));
    this.o.log.info(`${nodeID} is leaving: handing its partitions off`);
    const deadline = Date.now() + 10 * 60 * 1000;
    let lastReport = Date.now();
    let drained = false;
    try {
      while (Date.now() < deadline) {
        const owners = this.o.store.table?.owners ?? [];
        if (!ownerNodes(owners).has(nodeID)) {
          drained = true;
          return { epoch: this.o.store.table?.epoch ?? 0 };
        }
        if (Date.now() - lastReport > 5000) {
          lastReport = Date.now();
          this.o.log.warn(`Still draining ${nodeID}: ${owners.filter((o) => o.includes(nodeID)).length} partition(s) left`);
        }
        const others = [...this.o.input().alive.keys()].filter((n) => !this.leaving.has(n));
        if (others.length === 0) throw new Error("no other shard node to hand off to");
        await this.reconcile();
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`could not drain ${nodeID}`);
    } finally {
      if (!drained) this.leaving.delete(nodeID);
    }
  }


  /** The operator's force-empty: waiting partitions start empty on live nodes. */
  async forceEmpty(partitions?: number[]): Promise<{ epoch: number; partitions: number[] }> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const table = this.o.store.table;
      if (table === null) throw new Error("no placement table yet");
      const { alive, me, now } = this.o.input();
      const forced = forcedEmpty(table, alive, me, now, partitions);
      if (forced === null) return { epoch: table.epoch, partitions: [] };
      const written = await this.write(() => ({ content: forced.content, basedOn: table.epoch }));
      if (written !== null) {
        this.o.log.warn(`Placement epoch ${written.epoch}: ${forced.content.why}`);
        void this.reconcile();
        return { epoch: written.epoch, partitions: forced.partitions };
      }
      const why = this.o.mayWrite();
      if (why !== null) throw new Error(why);
    }
    throw new Error("the table kept changing");
  }
}
