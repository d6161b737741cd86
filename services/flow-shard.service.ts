/**
 * flow-shard: the stateful actor host. Runs the partitions placed on this node:
 * applies writes as a primary and forwards them synchronously to the partition's
 * other copies, applies forwarded writes as a copy, serves reads, streams snapshots to
 * new copies, and, on the coordinator (the oldest shard node), moves partitions
 * between nodes. The algorithm is in src/transition.ts; this is its plumbing.
 */
import { randomUUID } from "crypto";
import { Errors, type Context, type ServiceSchema } from "moleculer";
import FlowmeshMixin, { PLACEMENT_EVENT, SHARD_SERVICE, type PlacementTable } from "../mixins/flowmesh.mixin";
import { metricsOf, offCollect, onCollect } from "../mixins/metrics";
import { fromMessage, pageOfRun, toMessage, type WriteMessage } from "../src/batching";
import type { FlowFilter } from "../src/flow-key";
import { PartitionStore, SumOverflowError, type ApplyResult, type FlowRun, type SnapshotChunk, type SubBatch } from "../src/partition-store";
import { rebalancePartitions, rolesOf } from "../src/placement";
import { ownerNodes, planTransition, withoutNodes, type PartitionChange } from "../src/transition";

/** Under NATS's default 1 MB payload limit, with room for Moleculer's envelope. */
export const MESSAGE_BYTES = 512 * 1024;
/** Partitions moved at the same time. */
const HANDOFF_CONCURRENCY = Number(process.env.HANDOFF_CONCURRENCY) || 4;
/** A copy that never became an owner, or a release never followed by a new table, is abandoned after this. */
const ABANDON_MS = 60_000;
const READ_CURSOR_MS = 30_000;

function wrongOwner(partitions: number[], epoch: number | undefined): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(`Not the serving owner of partition(s) ${partitions.slice(0, 8).join(", ")}${partitions.length > 8 ? ", ..." : ""}`, 503, "WRONG_OWNER", { partitions, epoch });
}

/**
 * A group of a write message refused on its own (its request's, not the message's):
 * the error as Moleculer's own plain form (its error regenerator), restored by the caller.
 */
export interface GroupRefusal {
  error: Errors.PlainMoleculerError;
}
/** flow-shard.apply answers one of these per group, in order. */
export type GroupResult = ApplyResult | GroupRefusal;

interface Handoff {
  partition: number;
  from: string;
  to: string;
  chunks: number;
  sent: number;
  flows: number;
  startedAt: number;
}

interface ReadCursor {
  run: FlowRun;
  offset: number;
  expires: number;
}

const FlowShardService: ServiceSchema = {
  name: SHARD_SERVICE,
  mixins: [FlowmeshMixin],

  actions: {
    /**
     * Primary write path (from `flows`): apply each group atomically, forward the applied
     * ones to the copies, then answer one result per group. Groups are separate requests:
     * one refused (an owner that moved, a sum past 2^53-1) leaves the others applied.
     */
    apply: {
      visibility: "public",
      async handler(ctx: Context<{ epoch: number } & WriteMessage>) {
        const groups = ctx.params.groups.map(fromMessage);
        const partitions: number[] = [];
        for (const g of groups) for (const b of g) partitions.push(b.partition);
        const refused = new Set<number>(this.notServedAsPrimary(partitions));
        const results: GroupResult[] = new Array(groups.length);
        const applied: number[] = [];
        for (let i = 0; i < groups.length; i++) {
          const group = groups[i];
          if (refused.size > 0) {
            const wrong = [...new Set(group.filter((b) => refused.has(b.partition)).map((b) => b.partition))];
            if (wrong.length > 0) {
              results[i] = this.refusalOf(wrongOwner(wrong, this.placement?.epoch));
              continue;
            }
          }
          try {
            const result = this.store.apply(group);
            this.ingested.records += result.records;
            this.ingested.duplicates += result.duplicates;
            results[i] = result;
            applied.push(i);
          } catch (err) {
            if (!(err instanceof SumOverflowError)) throw err;
            results[i] = this.refusalOf(new Errors.MoleculerClientError(err.message, 422, "SUM_OVERFLOW", { flow: err.flow, field: err.field }));
          }
        }
        if (applied.length === 0) return { results };
        // Counted in the same tick as the ownership check: a release waits for these writes.
        const inflight: Int32Array = this.inflight;
        for (const i of applied) for (const b of groups[i]) inflight[b.partition]++;
        try {
          // Duplicates are forwarded too: a retry after a failed forward must reach the copies (they dedupe).
          await this.toFollowers(
            "replicate",
            applied.map((i) => groups[i]),
          ).catch((err: unknown) => {
            this.metrics.flowmesh_replication_failures_total.increment();
            for (const i of applied) results[i] = this.refusalOf(err as Error);
          });
        } finally {
          for (const i of applied) for (const b of groups[i]) inflight[b.partition]--;
        }
        return { results };
      },
    },

    /**
     * Undo keyed sub-batches this node applied (the gateway's answer to a sum refused on
     * another node), here and on every copy.
     */
    revert: {
      visibility: "public",
      async handler(ctx: Context<WriteMessage & { copy?: boolean }>) {
        const batches = ctx.params.groups.flatMap(fromMessage);
        const { copy } = ctx.params;
        const reverted = this.store.revert(batches);
        if (!copy) await this.toFollowers("revert", [batches], { copy: true });
        return { reverted };
      },
    },

    /**
     * A copy's write path: apply what a primary forwards (queued while the copy is
     * loading), group by group. A refusal fails the message: the primary fails its
     * groups, and their retries are recognised by key where they were applied.
     */
    replicate: {
      visibility: "public",
      handler(ctx: Context<WriteMessage>) {
        for (const message of ctx.params.groups) {
          const now: SubBatch[] = [];
          for (const b of fromMessage(message)) {
            const queue = this.loading.get(b.partition);
            if (queue) queue.push(b);
            else if (this.holdsCopy(b.partition)) now.push(b);
            else throw wrongOwner([b.partition], this.placement?.epoch);
          }
          this.store.apply(now);
        }
        return { groups: ctx.params.groups.length };
      },
    },

    /** Before a snapshot arrives: start a fresh copy and queue forwarded writes. */
    prepareCopy: {
      visibility: "public",
      handler(ctx: Context<{ partition: number }>) {
        const { partition } = ctx.params;
        this.store.drop(partition);
        this.store.partition(partition);
        this.loading.set(partition, []);
        this.awaitingSwitch.set(partition, Date.now());
        return { ok: true };
      },
    },

    /** A snapshot chunk; the last one also applies the writes queued meanwhile. */
    loadChunk: {
      visibility: "public",
      handler(ctx: Context<{ chunk: SnapshotChunk; last: boolean }>) {
        const { chunk, last } = ctx.params;
        const queue = this.loading.get(chunk.partition);
        if (!queue) throw new Errors.MoleculerError(`Partition ${chunk.partition} is not being loaded here`, 409, "NOT_LOADING");
        this.store.loadChunk(chunk);
        if (last) {
          this.loading.delete(chunk.partition);
          if (queue.length > 0) this.store.apply(queue);
        }
        return { flows: this.store.partitions.get(chunk.partition)?.flowCount ?? 0 };
      },
    },

    /** On a primary: give `to` a copy (snapshot + writes meanwhile). Resolves when `to` holds it. */
    addCopy: {
      visibility: "public",
      timeout: 0,
      async handler(ctx: Context<{ partition: number; to: string }>) {
        const { partition, to } = ctx.params;
        if (!this.holdsCopy(partition)) throw wrongOwner([partition], this.placement?.epoch);
        await ctx.call(`${SHARD_SERVICE}.prepareCopy`, { partition }, { nodeID: to });
        // Snapshot and start forwarding in the same tick: every write is in one or the other.
        const chunks: SnapshotChunk[] = this.store.snapshot(partition, MESSAGE_BYTES);
        let copies = this.pendingCopies.get(partition);
        if (!copies) this.pendingCopies.set(partition, (copies = new Map()));
        copies.set(to, Date.now());
        const flows = this.store.partitions.get(partition)?.flowCount ?? 0;
        const handoff: Handoff = { partition, from: this.broker.nodeID, to, chunks: chunks.length, sent: 0, flows, startedAt: Date.now() };
        const id = randomUUID();
        this.handoffs.set(id, handoff);
        try {
          for (let i = 0; i < chunks.length; i++) {
            await ctx.call(`${SHARD_SERVICE}.loadChunk`, { chunk: chunks[i], last: i === chunks.length - 1 }, { nodeID: to });
            handoff.sent = i + 1;
          }
          const ms = Date.now() - handoff.startedAt;
          this.metrics.flowmesh_handoffs_total.increment({ result: "done" });
          this.metrics.flowmesh_handoff_flows_total.increment(null, flows);
          this.logger.debug(`Copied partition ${partition} to ${to}: ${flows} flows in ${chunks.length} chunk(s), ${ms} ms`);
          return { partition, to, flows, chunks: chunks.length, ms };
        } catch (err) {
          copies.delete(to);
          this.metrics.flowmesh_handoffs_total.increment({ result: "failed" });
          throw err;
        } finally {
          this.handoffs.delete(id);
        }
      },
    },

    /** On the old primary: stop serving the partition, once its writes in flight are done. */
    release: {
      visibility: "public",
      async handler(ctx: Context<{ partition: number }>) {
        const { partition } = ctx.params;
        this.released.set(partition, Date.now());
        while (this.inflight[partition] > 0) await new Promise((r) => setTimeout(r, 2));
        return { ok: true };
      },
    },

    /** The sorted flows of an hour over the given partitions; paged when the caller is remote. */
    read: {
      visibility: "public",
      handler(ctx: Context<{ epoch: number; hour: number; filter: FlowFilter; partitions: number[]; knownVersion?: number }>) {
        const { hour, filter, partitions, knownVersion } = ctx.params;
        const refused = this.notServedAsPrimary(partitions);
        if (refused.length > 0) throw wrongOwner(refused, this.placement?.epoch);
        // The caller may hold this hour already rendered: say so instead of sending it again.
        const version: number = this.store.hourVersion(hour, partitions);
        if (knownVersion === version) return { unchanged: true, version, run: null, cursor: null };
        const run: FlowRun = this.store.read(hour, filter, partitions);
        if (ctx.nodeID === this.broker.nodeID) return { run, cursor: null, version };
        return { ...this.firstPage(run), version };
      },
    },

    readMore: {
      visibility: "public",
      handler(ctx: Context<{ cursor: string }>) {
        const cursor: ReadCursor | undefined = this.cursors.get(ctx.params.cursor);
        if (!cursor) throw new Errors.MoleculerRetryableError("Read cursor expired", 503, "CURSOR_EXPIRED");
        const { run, next } = pageOfRun(cursor.run, cursor.offset, MESSAGE_BYTES);
        cursor.offset = next;
        if (next >= cursor.run.keys.length) this.cursors.delete(ctx.params.cursor);
        return { run, cursor: next >= cursor.run.keys.length ? null : ctx.params.cursor };
      },
    },

    placement: {
      visibility: "public",
      handler() {
        return this.placement;
      },
    },

    /** Flow counts of the held partitions and handoffs this node is sending. */
    stats: {
      visibility: "public",
      handler() {
        const partitions: Record<number, number> = {};
        for (const [id, p] of (this.store as PartitionStore).partitions) partitions[id] = p.flowCount;
        return {
          nodeID: this.broker.nodeID,
          flows: this.store.flowCount(),
          partitions,
          loading: [...this.loading.keys()],
          ingested: this.ingested,
          handoffs: [...(this.handoffs as Map<string, Handoff>).values()],
        };
      },
    },

    /** On the coordinator: move every partition off `nodeID`; resolves when it owns none. */
    leave: {
      visibility: "public",
      timeout: 0,
      async handler(ctx: Context<{ nodeID: string }>) {
        return this.drain(ctx.params.nodeID);
      },
    },
  },

  events: {
    /**
     * Back on NATS after an outage, every peer looks silent until its next heartbeat:
     * hold off judging who is gone, or a cluster-wide outage would read as everyone dying.
     */
    "$transporter.connected"() {
      this.holdOffJudging();
    },
    "$node.connected"() {
      this.reconcileSoon();
    },
    "$node.disconnected"(ctx: Context<{ node: { id: string } }>) {
      const gone = ctx.params.node.id;
      for (const copies of this.pendingCopies.values()) copies.delete(gone);
      // A node that left may come back under the same id: it is welcome again then.
      this.leaving.delete(gone);
      this.reconcileSoon();
    },
    "$services.changed"() {
      this.reconcileSoon();
    },
  },

  methods: {
    /** A group's error as data, in the form Moleculer itself sends a thrown error in (restored by flows). */
    refusalOf(err: Error): GroupRefusal {
      return { error: this.broker.errorRegenerator!.extractPlainError(err) };
    },

    /** The table lists this process (not an earlier one under the same node id) as an owner. */
    listedInTable(table: PlacementTable): boolean {
      return !this.broker.transit || table.incarnations[this.broker.nodeID] === this.incarnationOf(this.broker.nodeID);
    },

    /** Of the given partitions, those this node may not serve as primary now (one table check for all). */
    notServedAsPrimary(partitions: number[]): number[] {
      const table: PlacementTable | null = this.placement;
      if (table === null || !this.listedInTable(table)) return partitions.slice();
      const me = this.broker.nodeID;
      return partitions.filter((p) => table.owners[p]?.[0] !== me || this.released.has(p) || this.loading.has(p));
    },


    holdsCopy(partition: number): boolean {
      const table: PlacementTable | null = this.placement;
      const owner = table !== null && table.owners[partition]?.includes(this.broker.nodeID) && this.listedInTable(table);
      return owner || (this.awaitingSwitch.has(partition) && !this.loading.has(partition));
    },

    /** Every other copy of the partition: its owners, and nodes being given a copy. */
    followersOf(partition: number): string[] {
      const owners: string[] = this.placement?.owners[partition] ?? [];
      const pending: Map<string, number> | undefined = this.pendingCopies.get(partition);
      if (owners.length <= 1 && !pending) return [];
      const me = this.broker.nodeID;
      const out = owners.filter((n) => n !== me);
      if (pending) for (const n of pending.keys()) if (n !== me && !out.includes(n)) out.push(n);
      return out;
    },

    /**
     * Send groups of sub-batches to every other copy of their partitions (replicate, or
     * revert): one message per copy node, holding each group's sub-batches it keeps. A
     * message is a part of one that reached this node, so it is within MESSAGE_BYTES too.
     */
    async toFollowers(action: "replicate" | "revert", groups: SubBatch[][], extra: object = {}): Promise<void> {
      let byNode: Map<string, SubBatch[][]> | null = null;
      for (const group of groups) {
        let perNode: Map<string, SubBatch[]> | null = null;
        for (const b of group) {
          for (const n of this.followersOf(b.partition) as string[]) {
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
      await Promise.all(Array.from(byNode, ([nodeID, lists]) => this.broker.call(`${SHARD_SERVICE}.${action}`, { groups: lists.map(toMessage), ...extra }, { nodeID })));
    },

    firstPage(run: FlowRun) {
      const first = pageOfRun(run, 0, MESSAGE_BYTES);
      if (first.next >= run.keys.length) return { run, cursor: null };
      const id = randomUUID();
      this.cursors.set(id, { run, offset: first.next, expires: Date.now() + READ_CURSOR_MS } satisfies ReadCursor);
      return { run: first.run, cursor: id };
    },

    /** A new table: forget what it makes moot, drop partitions this node no longer holds. */
    placementChanged(table: PlacementTable) {
      const me = this.broker.nodeID;
      for (const p of [...this.released.keys()]) if (table.owners[p]?.[0] !== me) this.released.delete(p);
      for (const p of [...this.awaitingSwitch.keys()]) if (table.owners[p]?.includes(me)) this.awaitingSwitch.delete(p);
      for (const [p, copies] of this.pendingCopies as Map<number, Map<string, number>>) {
        for (const n of [...copies.keys()]) if (table.owners[p]?.includes(n)) copies.delete(n);
        if (copies.size === 0) this.pendingCopies.delete(p);
      }
      for (const p of [...this.store.partitions.keys()]) {
        if (!table.owners[p]?.includes(me) && !this.awaitingSwitch.has(p) && !this.loading.has(p)) this.store.drop(p);
      }
    },

    /** Periodic housekeeping: abandoned copies, releases and read cursors. */
    expire() {
      const now = Date.now();
      for (const [p, since] of this.awaitingSwitch as Map<number, number>) {
        if (now - since > ABANDON_MS) {
          this.awaitingSwitch.delete(p);
          this.loading.delete(p);
          if (!this.placement?.owners[p]?.includes(this.broker.nodeID)) this.store.drop(p);
        }
      }
      for (const [p, since] of this.released as Map<number, number>) if (now - since > ABANDON_MS) this.released.delete(p);
      for (const copies of this.pendingCopies.values() as IterableIterator<Map<string, number>>) {
        for (const [n, since] of copies) if (now - since > ABANDON_MS) copies.delete(n);
      }
      for (const [id, c] of this.cursors as Map<string, ReadCursor>) if (c.expires < now) this.cursors.delete(id);
    },

    holdOffJudging() {
      this.quietUntil = Date.now() + 3 * (this.broker.options.heartbeatTimeout ?? 3) * 1000;
    },

    /**
     * Moleculer's registry keeps expiring peers while this node's own NATS connection
     * is down (the NATS v2 client reconnects by itself, silently): the coordinator
     * must not mistake its own outage for everyone else's death. Follow the client's status.
     */
    watchNatsConnection() {
      const client = (this.broker.transit as unknown as { tx?: { client?: { status?: () => AsyncIterable<{ type: string }> } } })?.tx?.client;
      if (!client?.status) return;
      (async () => {
        for await (const s of client.status!()) {
          if (s.type === "disconnect") {
            this.natsDown = true;
            this.logger.warn("Lost NATS: placement decisions on hold");
          } else if (s.type === "reconnect") {
            this.natsDown = false;
            this.holdOffJudging();
            this.logger.info("NATS is back: waiting for peers' heartbeats before judging who is gone");
          }
        }
      })().catch(() => undefined);
    },

    // ---- coordinator ----

    publish(owners: string[][], why: string): PlacementTable {
      const incarnations: Record<string, number> = {};
      for (const n of ownerNodes(owners)) incarnations[n] = this.incarnationOf(n) ?? 0;
      const table: PlacementTable = { epoch: (this.placement?.epoch ?? 0) + 1, owners, coordinator: this.broker.nodeID, incarnations };
      this.adoptPlacement(table);
      this.broker.broadcast(PLACEMENT_EVENT, table);
      this.logger.debug(`epoch ${table.epoch}: ${why}`);
      return table;
    },

    reconcileSoon() {
      if (!this.broker.transit || !this.started_) return;
      setImmediate(() => this.reconcile().catch((err: Error) => this.logger.warn("reconcile failed", err.message)));
    },

    /** Bring the placement to the balanced target for the live shard nodes. One at a time. */
    async reconcile(): Promise<void> {
      if (this.coordinatorID() !== this.broker.nodeID) {
        this.wasCoordinator = false;
        return;
      }
      if (this.reconciling) {
        this.reconcileAgain = true;
        return;
      }
      this.reconciling = true;
      try {
        do {
          this.reconcileAgain = false;
          await this.reconcileOnce();
        } while (this.reconcileAgain);
      } finally {
        this.reconciling = false;
      }
    },

    async reconcileOnce(): Promise<void> {
      const { partitions, replicas } = this.flowmesh;
      if (this.natsDown || Date.now() < this.quietUntil) return;
      const alive: string[] = this.shardNodes();
      const live = alive.filter((n) => !this.leaving.has(n));
      if (!this.settled) return;
      if (this.placement === null) {
        if (live.length === 0) return;
        this.publish(rebalancePartitions(null, live, partitions, replicas), `new cluster on ${live.join(", ")}`);
        this.logger.info(`Placement epoch ${this.placement.epoch}: new cluster, ${partitions} partitions on ${live.join(", ")}`);
        this.wasCoordinator = true;
        return;
      }
      if (!this.wasCoordinator) {
        // Taking over: a fresh epoch from this coordinator supersedes anything half-done by the last.
        this.wasCoordinator = true;
        this.publish(this.placement.owners, "coordinator takeover");
        this.logger.info(`Coordinator ${this.broker.nodeID} took over at epoch ${this.placement.epoch}`);
      }
      // Gone: dead, or restarted (a new incarnation holds none of the old state).
      const table: PlacementTable = this.placement;
      const gone = new Set([...ownerNodes(table.owners)].filter((n) => !alive.includes(n) || this.incarnationOf(n) !== table.incarnations[n]));
      if (gone.size > 0) {
        const before: string[][] = this.placement.owners;
        this.publish(withoutNodes(before, gone), `lost ${[...gone].join(", ")}`);
        const after: string[][] = this.placement.owners;
        const promoted = after.filter((o, p) => o.length > 0 && gone.has(before[p][0])).length;
        const orphaned = after.filter((o, p) => o.length === 0 && before[p].length > 0).length;
        const short = after.filter((o, p) => o.length < before[p].length).length;
        this.logger.warn(
          `Lost ${[...gone].join(", ")}: ${promoted} replica(s) promoted to primary, ${short} partition(s) short of a copy until re-made, epoch ${this.placement.epoch}` +
            (orphaned > 0 ? `; ${orphaned} partition(s) had no other copy and restart empty (REPLICAS=1?)` : ""),
        );
      }
      if (live.length === 0) return;
      const target = rebalancePartitions(this.placement.owners, live, partitions, replicas);
      const changes = planTransition(this.placement.owners, target);
      if (changes.length === 0) return;
      const fills = changes.reduce((a, c) => a + c.fills.length, 0);
      const startEpoch = this.placement.epoch;
      this.logger.info(
        `Rebalancing ${changes.length} partition(s) onto ${live.join(", ")} from epoch ${startEpoch}: ${fills} cop${fills === 1 ? "y" : "ies"} to make, ${HANDOFF_CONCURRENCY} at a time`,
      );
      const started = Date.now();
      let moved = 0;
      let flows = 0;
      const failed: string[] = [];
      const queue = [...changes];
      const worker = async () => {
        for (let c = queue.shift(); c; c = queue.shift()) {
          try {
            const copied: number = await this.applyChange(c);
            flows += copied;
            moved++;
          } catch (err) {
            failed.push(`${c.partition} (${(err as Error).message})`);
          }
        }
      };
      await Promise.all(Array.from({ length: HANDOFF_CONCURRENCY }, worker));
      this.logger.info(
        `Rebalance done in ${Date.now() - started} ms: ${moved} partition(s) moved, ${flows} flows copied, epoch ${startEpoch} -> ${this.placement.epoch}` +
          (failed.length > 0 ? `; ${failed.length} to retry` : ""),
      );
      if (failed.length > 0) {
        this.logger.warn(`Not moved yet, retrying: partition ${failed.slice(0, 3).join(", ")}${failed.length > 3 ? ", ..." : ""}`);
        this.reconcileAgain = true;
      }
    },

    /** Make the change's copies, switch ownership; resolves with the flows copied. */
    async applyChange(c: PartitionChange): Promise<number> {
      let flows = 0;
      for (const to of c.fills) {
        const copied = (await this.broker.call(`${SHARD_SERVICE}.addCopy`, { partition: c.partition, to }, { nodeID: c.from[0], timeout: 0 })) as { flows: number };
        flows += copied.flows;
      }
      if (c.releaseFrom) await this.broker.call(`${SHARD_SERVICE}.release`, { partition: c.partition }, { nodeID: c.releaseFrom });
      const owners = this.placement.owners.slice();
      owners[c.partition] = c.to;
      this.publish(owners, `partition ${c.partition}: ${c.from.join(",")} -> ${c.to.join(",")}`);
      return flows;
    },

    /** Move everything off a node (SIGTERM). Resolves when it owns no partition. */
    async drain(nodeID: string): Promise<{ epoch: number }> {
      this.leaving.add(nodeID);
      this.logger.info(`${nodeID} is leaving: handing its partitions off`);
      const deadline = Date.now() + 10 * 60 * 1000;
      let lastReport = Date.now();
      while (Date.now() < deadline) {
        if (Date.now() - lastReport > 5000) {
          lastReport = Date.now();
          const owned = (this.placement?.owners ?? []).filter((o: string[]) => o.includes(nodeID)).length;
          this.logger.warn(`Still draining ${nodeID}: ${owned} partition(s) left, coordinator ${this.coordinatorID()}, reconciling ${this.reconciling}, shard nodes ${this.shardNodes().join(",")}`);
        }
        await this.reconcile();
        if (!ownerNodes(this.placement?.owners ?? []).has(nodeID)) return { epoch: this.placement.epoch };
        if (this.shardNodes().filter((n: string) => !this.leaving.has(n)).length === 0) throw new Error("no other shard node to hand off to");
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`could not drain ${nodeID}`);
    },

    /** Called on SIGTERM (mixins/graceful-leave.middleware.ts). */
    async leaveCluster(): Promise<void> {
      if (!this.broker.transit || !this.placement) return;
      const me = this.broker.nodeID;
      if (!ownerNodes(this.placement.owners).has(me)) return;
      if (this.shardNodes().filter((n: string) => n !== me).length === 0) {
        this.logger.warn("Last shard node leaving: its partitions go with it");
        return;
      }
      const coordinator = this.coordinatorID();
      const result = coordinator === me ? await this.drain(me) : await this.broker.call(`${SHARD_SERVICE}.leave`, { nodeID: me }, { nodeID: coordinator, timeout: 0 });
      this.logger.info(`Handed all partitions off (epoch ${(result as { epoch: number }).epoch})`);
    },
  },

  created() {
    this.store = new PartitionStore({ max: this.flowmesh.idempotencyMax, ttlMs: this.flowmesh.idempotencyTtlSeconds * 1000 });
    this.loading = new Map<number, SubBatch[]>();
    this.awaitingSwitch = new Map<number, number>();
    this.pendingCopies = new Map<number, Map<string, number>>();
    this.released = new Map<number, number>();
    /** Writes under way per partition (a release waits for them). */
    this.inflight = new Int32Array(this.flowmesh.partitions);
    this.handoffs = new Map<string, Handoff>();
    /** Cumulative, as primary: records applied (the ingest rate on /cluster) and sub-batches skipped as duplicates (/metrics). */
    this.ingested = { records: 0, duplicates: 0 };
    this.metrics = metricsOf(this.broker, "shard");
    this.cursors = new Map<string, ReadCursor>();
    this.leaving = new Set<string>();
    this.reconciling = false;
    this.reconcileAgain = false;
    this.quietUntil = 0;
    this.natsDown = false;
    this.wasCoordinator = false;
    this.settled = !this.broker.transit;
  },

  started() {
    // /metrics: copied from what this service keeps anyway, when it is read.
    this.collectShard = () => {
      const m = this.metrics;
      const me = this.broker.nodeID;
      const owners: string[][] = this.placement?.owners ?? [];
      const { primaries, replicas } = rolesOf(owners, me);
      let primaryFlows = 0;
      let replicaFlows = 0;
      for (const [p, part] of (this.store as PartitionStore).partitions) {
        if (owners[p]?.[0] === me) primaryFlows += part.flowCount;
        else replicaFlows += part.flowCount;
      }
      m.flowmesh_partitions_owned.set(primaries, { role: "primary" });
      m.flowmesh_partitions_owned.set(replicas, { role: "replica" });
      m.flowmesh_flows_held.set(primaryFlows, { role: "primary" });
      m.flowmesh_flows_held.set(replicaFlows, { role: "replica" });
      m.flowmesh_coordinator.set(this.coordinatorID() === me ? 1 : 0);
      m.flowmesh_handoffs_in_progress.set(this.handoffs.size);
      m.flowmesh_applied_records_total.set(this.ingested.records);
      m.flowmesh_idempotency_hits_total.set(this.ingested.duplicates);
    };
    onCollect(this.broker, "shard", this.collectShard);
    if (!this.broker.transit) return;
    this.started_ = true;
    // Before deciding anything as coordinator, give discovery a moment and learn the current table.
    this.settleTimer = setTimeout(async () => {
      this.watchNatsConnection();
      await this.refreshPlacement().catch(() => undefined);
      this.settled = true;
      this.reconcileSoon();
    }, Number(process.env.SETTLE_MS) || 1500);
    this.tickTimer = setInterval(() => {
      this.expire();
      this.reconcileSoon();
    }, 1000);
    this.tickTimer.unref();
  },

  stopped() {
    offCollect(this.broker, "shard", this.collectShard);
    clearTimeout(this.settleTimer);
    clearInterval(this.tickTimer);
  },
};

export default FlowShardService;
