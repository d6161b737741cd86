/**
 * flow-shard: the stateful actor host, as wiring. The partitions placed on this node
 * live in a PartitionStore; what this node is to each of them is a named state
 * (src/shard/partition-roles.ts); the write path, reads, handoff, liveness and fencing,
 * the coordinator's lease, its decision and the runner that carries it out are plain
 * modules under src/shard/, handed `send`, the clock and metrics from here.
 */
import { randomUUID } from "crypto";
import * as path from "path";
import { performance } from "perf_hooks";
import type { Context, ServiceSchema } from "moleculer";
import FlowmeshMixin, { natsClientOf, placementBucketOf, type NatsClient, type PlacementTable } from "../mixins/flowmesh.mixin";
import { metricsOf, offCollect, onCollect } from "../mixins/metrics";
import { PartitionStore } from "../src/partition-store";
import { oldestKeptHour } from "../src/settings";
import { encodeJson, LEASE_KEY, type KeyValue, type PlacementStore } from "../src/placement-store";
import { rolesOf } from "../src/placement";
import {
  SHARD_SERVICE,
  ShardActions,
  notCoordinator,
  type ApplyParams,
  type GroupRefusal,
  type GroupsMoreParams,
  type GroupsParams,
  type HoursParams,
  type LoadChunkParams,
  type ReadParams,
  type LoadTailParams,
  type PrepareCopyParams,
  type ReplicateParams,
  type RevertParams,
} from "../src/protocol";
import { Journal } from "../src/durability/journal";
import { FollowerGaps } from "../src/shard/catch-up";
import { CoordinatorRunner } from "../src/shard/coordinator-runner";
import { Handoff } from "../src/shard/handoff";
import { CoordinatorLease, type LeaseValue } from "../src/shard/lease";
import { Liveness, type Beat } from "../src/shard/liveness";
import { PartitionRoles, Role, type Listing } from "../src/shard/partition-roles";
import { ShardQueries } from "../src/query/shard-queries";
import { ReadPath } from "../src/shard/read-path";
import { WritePath } from "../src/shard/write-path";

export { MESSAGE_BYTES, type GroupResult } from "../src/protocol";

/** Partitions moved at the same time. */
const HANDOFF_CONCURRENCY = Number(process.env.HANDOFF_CONCURRENCY) || 4;
/** A copy that never became an owner is abandoned after this. */
const ABANDON_MS = 60_000;
/** A release never followed by a switch (its coordinator died) is undone after this. */
const RELEASE_MS = 10_000;
/**
 * A paged read's cursor is dropped after this long unused. A gateway streams an hour as
 * fast as its client takes it, and reads a range's next hour ahead: a slow client can
 * leave a cursor idle for a while (cursors are also bounded in number: src/shard/read-path.ts).
 */
const READ_CURSOR_MS = 120_000;
/** A top-N answer's cursor (flow-shard.groups), dropped after this long unused. */
const GROUPS_CURSOR_MS = 30_000;
/** Beats (and NATS round trips) per second. */
const BEAT_MS = 250;

const FlowShardService: ServiceSchema = {
  name: SHARD_SERVICE,
  mixins: [FlowmeshMixin],

  actions: {
    /** Primary write path (from `flows`): one result per group (src/shard/write-path.ts). */
    apply: {
      visibility: "public",
      handler(ctx: Context<ApplyParams>) {
        return (this.writePath as WritePath).apply(ctx.params);
      },
    },

    /** A copy's write path: what a primary forwards. */
    replicate: {
      visibility: "public",
      handler(ctx: Context<ReplicateParams>) {
        return (this.writePath as WritePath).replicate(ctx.params, ctx.nodeID ?? this.broker.nodeID);
      },
    },

    /** Undo keyed sub-batches (the gateway's answer to a sum refused on another node), here and on every copy. */
    revert: {
      visibility: "public",
      handler(ctx: Context<RevertParams>) {
        return (this.writePath as WritePath).revert(ctx.params);
      },
    },

    /** Before a snapshot or a log tail arrives: a loading copy that queues forwarded writes. */
    prepareCopy: {
      visibility: "public",
      handler(ctx: Context<PrepareCopyParams>) {
        return (this.handoff as Handoff).prepareCopy(ctx.params);
      },
    },

    loadTail: {
      visibility: "public",
      handler(ctx: Context<LoadTailParams>) {
        return (this.handoff as Handoff).loadTail(ctx.params);
      },
    },

    loadChunk: {
      visibility: "public",
      handler(ctx: Context<LoadChunkParams>) {
        return (this.handoff as Handoff).loadChunk(ctx.params);
      },
    },

    /** On a primary: give `to` a copy (snapshot + writes meanwhile). Resolves when `to` holds it. */
    addCopy: {
      visibility: "public",
      timeout: 0,
      handler(ctx: Context<{ partition: number; to: string }>) {
        return (this.handoff as Handoff).addCopy(ctx.params.partition, ctx.params.to);
      },
    },

    /** On the old primary: stop serving the partition, once its writes in flight are done. */
    release: {
      visibility: "public",
      async handler(ctx: Context<{ partition: number }>) {
        const { partition } = ctx.params;
        (this.roles as PartitionRoles).release(partition, Date.now());
        await (this.writePath as WritePath).drained(partition);
        return { ok: true };
      },
    },

    /** The sorted flows of an hour over the given partitions: the run in process; to a remote caller, pages as bytes (src/wire/run-codec.ts). */
    read: {
      visibility: "public",
      handler(ctx: Context<ReadParams>) {
        return (this.readPath as ReadPath).read(ctx.params, ctx.nodeID !== this.broker.nodeID);
      },
    },

    /** The next page (bytes) of a remote read. */
    readMore: {
      visibility: "public",
      handler(ctx: Context<{ cursor: string }>) {
        return (this.readPath as ReadPath).readMore(ctx.params.cursor);
      },
    },

    /**
     * Top-N's share of a primary: per-group sums of its partitions' flows over a range of
     * hours, fenced as reads are; paged when the caller is remote (`{ cursor, page }` asks for a page).
     */
    groups: {
      visibility: "public",
      handler(ctx: Context<GroupsParams | GroupsMoreParams>) {
        return (this.queries as ShardQueries).answer(ctx.params, ctx.nodeID !== this.broker.nodeID);
      },
    },

    /** The oldest and newest hour the given partitions hold, fenced as reads are. */
    hours: {
      visibility: "public",
      handler(ctx: Context<HoursParams>) {
        return (this.queries as ShardQueries).hours(ctx.params);
      },
    },

    /**
     * Remove every hour before `before` from every partition held here, durably (DELETE
     * /flows, and retention). Answers the flows removed from partitions it is primary of
     * (so a gateway can add nodes up) and the hours removed.
     */
    trim: {
      visibility: "public",
      params: { before: { type: "number", integer: true, min: 0 } },
      handler(ctx: Context<{ before: number }>) {
        return this.trimBefore(ctx.params.before);
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
          loading: (this.roles as PartitionRoles).inState(Role.Loading),
          ingested: this.ingested,
          handoffs: [...(this.handoff as Handoff).active.values()],
        };
      },
    },

    /** On the coordinator: move every partition off `nodeID`; resolves when it owns none. */
    leave: {
      visibility: "public",
      timeout: 0,
      handler(ctx: Context<{ nodeID: string }>) {
        const lease = this.lease as CoordinatorLease | undefined;
        if (!lease?.holds()) throw notCoordinator(lease?.holderNode ?? null);
        return (this.runner as CoordinatorRunner).drain(ctx.params.nodeID);
      },
    },

    /**
     * The operator's explicit choice (logged): partitions waiting for lost nodes (all of
     * them, or those named) give up their data and start empty on live nodes.
     */
    forceEmpty: {
      visibility: "published",
      params: { partitions: { type: "array", items: { type: "number", integer: true, min: 0 }, optional: true } },
      async handler(ctx: Context<{ partitions?: number[] }>) {
        const lease = this.lease as CoordinatorLease | undefined;
        if (!lease?.holds()) {
          const coordinator: string | null = await this.coordinatorID();
          if (coordinator === null || coordinator === this.broker.nodeID) throw notCoordinator(coordinator);
          return ctx.call(ShardActions.forceEmpty, ctx.params, { nodeID: coordinator });
        }
        return (this.runner as CoordinatorRunner).forceEmpty(ctx.params.partitions);
      },
    },
  },

  events: {
    "$node.connected"() {
      this.reconcileSoon();
    },
    "$node.disconnected"(ctx: Context<{ node: { id: string } }>) {
      (this.handoff as Handoff).nodeGone(ctx.params.node.id);
      this.reconcileSoon();
    },
    "$services.changed"() {
      this.reconcileSoon();
    },
  },

  methods: {
    /** A group's error in the form Moleculer itself sends a thrown error in (restored by flows). */
    refusalOf(err: Error): GroupRefusal {
      return { error: this.broker.errorRegenerator!.extractPlainError(err) };
    },

    /** Where a table puts this node for partition p (a table naming an earlier process under this id lists it nowhere). */
    listing(table: PlacementTable | null, p: number): Listing {
      if (table === null) return null;
      const me = this.broker.nodeID;
      const i = table.owners[p]?.indexOf(me) ?? -1;
      if (i < 0) return null;
      if (this.broker.transit && table.incarnations[me] !== undefined && table.incarnations[me] !== this.incarnation) return null;
      return i === 0 ? "primary" : "replica";
    },

    /** A table was adopted: roles follow it, partitions this node no longer holds are dropped. */
    tableAdopted(table: PlacementTable, previous: PlacementTable | null) {
      this.dropPartitions((this.roles as PartitionRoles).adopt((p) => this.listing(table, p), Date.now()));
      (this.handoff as Handoff).tableAdopted(table, previous);
    },

    dropPartitions(partitions: number[]) {
      for (const p of partitions) {
        (this.store as PartitionStore).drop(p);
        (this.journal as Journal | null)?.droppedPartition(p);
      }
    },

    /**
     * The data directory (DURABILITY sync or interval): recover what it holds before
     * anything else touches the store. Its incarnation is the node's: a node restarted
     * with the same directory is the same node, back with its copies.
     */
    openJournal(): Journal | null {
      const { durability, dataDir, partitions } = this.flowmesh;
      if (durability === "memory") return null;
      const dir = path.resolve(dataDir ?? (this.broker.transit ? path.join("data", this.broker.nodeID) : "data"));
      const journal = new Journal({ dir, mode: durability, partitions, store: this.store, log: this.logger });
      this.logger.info(`Data directory ${dir} (DURABILITY=${durability})`);
      return journal;
    },

    /** Why this node may not serve as primary now (null: it may). */
    fenceReason(): string | null {
      if (!this.broker.transit) return null;
      const liveness = this.liveness as Liveness | undefined;
      if (!liveness) return "starting";
      return liveness.serving() ? null : liveness.fenceReason();
    },

    /** Why this node may not decide placement now (null: it may). */
    blockedReason(): string | null {
      if (!(this.lease as CoordinatorLease | undefined)?.holds()) return "not the coordinator";
      const fence = this.fenceReason();
      if (fence !== null) return fence;
      // After a stall (or its start, or a NATS outage) its peers' beats and views need a moment to come back.
      if ((this.liveness as Liveness).recentlyStalled(this.suspectMs)) return "this node was stalled or cut off moments ago";
      return null;
    },

    decisionInput() {
      const liveness = this.liveness as Liveness;
      return {
        me: this.broker.nodeID,
        partitions: this.flowmesh.partitions,
        replicas: this.flowmesh.replicas,
        alive: liveness.alive(),
        views: liveness.views(),
        ready: new Set<string>(this.shardNodes()),
        blocked: this.blockedReason(),
        now: Date.now(),
      };
    },

    reconcileSoon() {
      if (!(this.lease as CoordinatorLease | undefined)?.holds()) return;
      setImmediate(() => (this.runner as CoordinatorRunner).reconcile().catch((err: Error) => this.logger.warn("reconcile failed:", err.message)));
    },

    async trimBefore(before: number): Promise<{ flows: number; hours: number[] }> {
      const removed = await (this.writePath as WritePath).trimBefore(before);
      if (removed.hours.length > 0) this.logger.info(`Removed hours before ${before}: ${removed.hours.length} hour(s), ${removed.flows} flow(s) as primary`);
      return removed;
    },

    /** RETENTION_HOURS: drop what has aged out (every copy does it on its own clock). */
    applyRetention() {
      const oldest = oldestKeptHour(this.flowmesh.retentionHours);
      if (oldest === null) return;
      const held = (this.store as PartitionStore).oldestHour();
      if (held !== null && held < oldest) this.trimBefore(oldest).catch((err: Error) => this.logger.warn(`Retention: ${err.message}`));
    },

    /** Called on SIGTERM after leaving: a checkpoint of every changed partition (the next start reads little log). */
    async checkpointAll(): Promise<void> {
      const journal = this.journal as Journal | null;
      if (!journal) return;
      const started = Date.now();
      const { partitions } = await journal.checkpoint(true);
      if (partitions > 0) this.logger.info(`Checkpointed ${partitions} partition(s) in ${Date.now() - started} ms before stopping`);
    },

    /** Called on SIGTERM (mixins/graceful-leave.middleware.ts): hand every partition off first. */
    async leaveCluster(): Promise<void> {
      const table: PlacementTable | null = this.placement;
      if (!this.broker.transit || table === null) return;
      const me = this.broker.nodeID;
      if (!table.owners.some((row) => row.includes(me))) return;
      if (this.shardNodes().filter((n: string) => n !== me).length === 0) {
        this.logger.warn("Last shard node leaving: its partitions go with it");
        return;
      }
      for (let attempt = 0; ; attempt++) {
        try {
          const lease = this.lease as CoordinatorLease | undefined;
          const result = lease?.holds()
            ? await (this.runner as CoordinatorRunner).drain(me)
            : await this.broker.call(ShardActions.leave, { nodeID: me }, { nodeID: (await this.coordinatorID()) ?? me, timeout: 0 });
          this.logger.info(`Handed all partitions off (epoch ${(result as { epoch: number }).epoch})`);
          return;
        } catch (err) {
          // The lease may be changing hands: ask again, for a while.
          if (attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    },

    /** Beats, the fence's round trips and the lease, on NATS and the placement bucket. */
    async startCoordination(client: NatsClient, kv: KeyValue) {
      const me = this.broker.nodeID;
      const store = this.placementStore as PlacementStore;
      const beats = `${this.broker.namespace || "flowmesh"}.flowmesh.beats`;
      const liveness = new Liveness({
        me,
        incarnation: this.incarnation,
        run: randomUUID(),
        publish: (beat: Beat) => client.publish(beats, encodeJson(beat)),
        ping: () => withTimeout(client.flush(), this.fenceMs, "NATS round trip"),
        now: () => performance.now(),
        suspectMs: this.suspectMs,
        fenceMs: this.fenceMs,
        onGap: async (gapMs: number) => {
          await store.refresh();
          if (gapMs > this.suspectMs && Number.isFinite(gapMs)) this.logger.warn(`Stalled or cut off for ${Math.round(gapMs)} ms: placement re-read (epoch ${store.table?.epoch}) before serving again`);
        },
      });
      this.beatSub = client.subscribe(beats, {
        callback: (err, msg) => {
          if (err) return;
          try {
            liveness.receive(JSON.parse(Buffer.from(msg.data).toString()) as Beat);
          } catch {
            /* not a beat */
          }
        },
      });
      this.liveness = liveness;
      const leaseValue: LeaseValue = { node: me, incarnation: this.incarnation };
      this.lease = new CoordinatorLease({
        me: leaseValue,
        now: () => performance.now(),
        leaseMs: this.suspectMs,
        store: {
          get: async () => {
            const e = await kv.get(LEASE_KEY);
            return e === null ? null : { revision: e.revision, value: e.operation === "PUT" ? e.json<LeaseValue>() : null };
          },
          create: (v) => kv.create(LEASE_KEY, encodeJson(v)),
          update: (v, rev) => kv.update(LEASE_KEY, encodeJson(v), rev),
        },
      });
      let wasCoordinator = false;
      const tick = () =>
        liveness
          .tick()
          .catch(() => undefined)
          .then(() => {
            const holds = (this.lease as CoordinatorLease).holds();
            if (holds !== wasCoordinator) this.logger.info(holds ? `Coordinator: ${me} holds the lease` : `${me} is no longer the coordinator`);
            wasCoordinator = holds;
            this.reconcileSoon();
          });
      this.beatTimer = setInterval(tick, BEAT_MS);
      const leaseTick = () => (this.lease as CoordinatorLease).tick().catch(() => undefined);
      this.leaseTimer = setInterval(leaseTick, Math.round(this.suspectMs / 3));
      void tick();
      void leaseTick();
    },
  },

  created() {
    const { partitions } = this.flowmesh;
    this.incarnation = (this.broker.metadata as { startedAt?: number }).startedAt ?? Date.now();
    /** Silence after which a node is judged gone (Moleculer's heartbeat timeout), and the fence below it. */
    this.suspectMs = (this.broker.options.heartbeatTimeout ?? 2.5) * 1000;
    this.fenceMs = this.suspectMs / 2;
    this.store = new PartitionStore({ max: this.flowmesh.idempotencyMax, ttlMs: this.flowmesh.idempotencyTtlSeconds * 1000 });
    this.roles = new PartitionRoles(partitions);
    this.journal = this.openJournal();
    if (this.journal) {
      this.incarnation = (this.journal as Journal).incarnation;
      (this.roles as PartitionRoles).recovered((this.journal as Journal).recovered, Date.now());
    }
    /** Cumulative, as primary: records applied (the ingest rate on /cluster) and sub-batches skipped as duplicates (/metrics). */
    this.ingested = { records: 0, duplicates: 0 };
    this.metrics = metricsOf(this.broker, "shard");
    const send = (nodeID: string, action: keyof typeof ShardActions, params: object, timeout?: number) =>
      this.broker.call(ShardActions[action], params, timeout === undefined ? { nodeID } : { nodeID, timeout });
    const table = () => this.placement as PlacementTable | null;
    const store = this.placementStore as PlacementStore;
    this.followerGaps = new FollowerGaps((p) => (this.roles as PartitionRoles).sinceOf(p));
    this.handoff = new Handoff({
      me: this.broker.nodeID,
      store: this.store,
      journal: this.journal,
      roles: this.roles,
      table,
      listing: (p) => this.listing(table(), p),
      send,
      now: () => Date.now(),
      gaps: this.followerGaps,
      dedupe: { ttlMs: this.flowmesh.idempotencyTtlSeconds * 1000, maxKeys: this.flowmesh.idempotencyMax },
      log: this.logger,
      counted: {
        done: (flows) => {
          this.metrics.flowmesh_handoffs_total.increment({ result: "done" });
          this.metrics.flowmesh_handoff_flows_total.increment(null, flows);
        },
        failed: () => this.metrics.flowmesh_handoffs_total.increment({ result: "failed" }),
      },
    });
    this.writePath = new WritePath({
      store: this.store,
      journal: this.journal,
      roles: this.roles,
      table,
      fenceReason: () => this.fenceReason(),
      behind: () => void store.refresh().catch(() => undefined),
      followersOf: (p) => (this.handoff as Handoff).followersOf(p),
      send,
      forwarding: (nodeID, partitions, at) => (this.followerGaps as FollowerGaps).sending(nodeID, partitions, at),
      refusalOf: (err) => this.refusalOf(err),
      counted: {
        applied: (records, duplicates) => {
          this.ingested.records += records;
          this.ingested.duplicates += duplicates;
        },
        replicationFailed: () => this.metrics.flowmesh_replication_failures_total.increment(),
      },
    });
    this.readPath = new ReadPath({
      store: this.store,
      notServedAsPrimary: (partitions, epoch) => (this.writePath as WritePath).notServedAsPrimary(partitions, epoch),
      confirmLatest: () => (this.broker.transit ? store.confirmLatest() : Promise.resolve(store.table)),
      now: () => Date.now(),
      cursorMs: READ_CURSOR_MS,
    });
    this.queries = new ShardQueries({
      store: this.store,
      confirmServing: (partitions, epoch) => (this.readPath as ReadPath).confirmServing(partitions, epoch),
      now: () => Date.now(),
      cursorMs: GROUPS_CURSOR_MS,
    });
    this.runner = new CoordinatorRunner({
      me: this.broker.nodeID,
      store,
      input: () => this.decisionInput(),
      runOf: (nodeID) => (this.liveness as Liveness | undefined)?.runOf(nodeID),
      mayWrite: () => this.blockedReason(),
      call: (nodeID, action, params) => send(nodeID, action, params, 0) as Promise<{ flows?: number }>,
      concurrency: HANDOFF_CONCURRENCY,
      log: this.logger,
    });
    this.stopFollowing = store.onChange((t, previous) => this.tableAdopted(t, previous));
    if (store.table !== null) this.tableAdopted(store.table, null);
  },

  async started() {
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
      m.flowmesh_coordinator.set(!this.broker.transit || (this.lease as CoordinatorLease | undefined)?.holds() ? 1 : 0);
      m.flowmesh_fenced.set(this.fenceReason() === null ? 0 : 1);
      const journal = this.journal as Journal | null;
      m.flowmesh_log_unwritable.set(journal?.refusal() ? 1 : 0);
      const disk = journal?.diskBytes() ?? { log: 0, checkpoints: 0 };
      m.flowmesh_data_bytes.set(disk.log, { kind: "log" });
      m.flowmesh_data_bytes.set(disk.checkpoints, { kind: "checkpoints" });
      m.flowmesh_handoffs_in_progress.set((this.handoff as Handoff).active.size);
      m.flowmesh_applied_records_total.set(this.ingested.records);
      m.flowmesh_idempotency_hits_total.set(this.ingested.duplicates);
    };
    onCollect(this.broker, "shard", this.collectShard);
    this.tickTimer = setInterval(() => {
      const now = Date.now();
      this.dropPartitions((this.roles as PartitionRoles).expire(now, { abandonMs: ABANDON_MS, releaseMs: RELEASE_MS }, (p) => this.listing(this.placement, p)));
      (this.handoff as Handoff).expire(now, ABANDON_MS);
      (this.readPath as ReadPath).expire(now);
    }, 1000);
    this.tickTimer.unref();
    this.retentionTimer = setInterval(() => this.applyRetention(), 30_000);
    this.retentionTimer.unref();
    this.applyRetention();
    (this.journal as Journal | null)?.start();
    if (!this.broker.transit) return;
    const client = natsClientOf(this.broker);
    if (client === null) throw new Error("flow-shard needs the NATS transporter's client");
    const kv = await placementBucketOf(this.broker);
    await this.startCoordination(client, kv);
  },

  async stopped() {
    offCollect(this.broker, "shard", this.collectShard);
    clearInterval(this.tickTimer);
    clearInterval(this.retentionTimer);
    clearInterval(this.beatTimer);
    clearInterval(this.leaseTimer);
    this.beatSub?.unsubscribe();
    this.stopFollowing?.();
    // A checkpoint at a clean stop makes the next start read less log.
    const journal = this.journal as Journal | null;
    await journal?.checkpoint(true).catch((err: Error) => this.logger.warn(`Checkpoint at stop failed: ${err.message}`));
    await journal?.close();
  },
};

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export default FlowShardService;
