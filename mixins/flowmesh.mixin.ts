/**
 * Shared by Flowmesh's services: the settings, the placement table this node acts
 * on, and where it comes from.
 *
 * In the embedded default (no transporter) the local node owns every partition from
 * the start, in a fixed table. In a cluster the table lives in the NATS JetStream
 * key-value bucket of the namespace (src/placement-store.ts): one PlacementStore per
 * node, shared by its services, follows it (watch, reads on demand, a poll as a safety
 * net). Only the coordinator (the lease holder, services/flow-shard.service.ts)
 * writes it, by compare-and-set.
 */
import type { ServiceBroker, ServiceSchema } from "moleculer";
import { partitionsShort, placePartitions } from "../src/placement";
import { LEASE_KEY, HISTORY, PlacementStore, bucketName, type KeyValue, type PlacementTable } from "../src/placement-store";
import { SHARD_SERVICE } from "../src/protocol";
import { readSettings, type FlowmeshSettings } from "../src/settings";
import { metricsOf, offCollect, onCollect } from "./metrics";

export type { PlacementTable } from "../src/placement-store";
export { SHARD_SERVICE } from "../src/protocol";

export function settingsOf(broker: { options: object }): FlowmeshSettings {
  return (broker.options as { flowmesh?: FlowmeshSettings }).flowmesh ?? readSettings(process.env);
}

/** The nats 2.x client behind Moleculer's NATS transporter (the part used here). */
export interface NatsClient {
  jetstream(): { views: { kv(name: string, opts?: object): Promise<KeyValue> } };
  flush(): Promise<void>;
  publish(subject: string, data?: Uint8Array): void;
  subscribe(subject: string, opts?: { callback?: (err: Error | null, msg: { data: Uint8Array }) => void }): { unsubscribe(): void };
  status?: () => AsyncIterable<{ type: string }>;
}

export function natsClientOf(broker: ServiceBroker): NatsClient | null {
  return (broker.transit as unknown as { tx?: { client?: NatsClient } } | undefined)?.tx?.client ?? null;
}

interface Shared {
  store: PlacementStore;
  kv: Promise<KeyValue> | null;
}

/** One placement store (and bucket handle) per node, whichever of its services asks first. */
const shared = new WeakMap<object, Shared>();

function sharedOf(broker: ServiceBroker, partitions: number): Shared {
  let s = shared.get(broker);
  if (!s) {
    const initial: PlacementTable | null = broker.transit
      ? null
      : { epoch: 1, owners: placePartitions([broker.nodeID], partitions, 1), lost: [], coordinator: broker.nodeID, incarnations: {}, why: "embedded", at: Date.now() };
    s = { store: new PlacementStore(initial), kv: null };
    shared.set(broker, s);
  }
  return s;
}

/** The namespace's placement bucket (created on first use); attaches the node's store to it once. */
export function placementBucketOf(broker: ServiceBroker): Promise<KeyValue> {
  const s = sharedOf(broker, settingsOf(broker).partitions);
  s.kv ??= (async () => {
    const client = natsClientOf(broker);
    if (client === null) throw new Error("placement needs the NATS transporter");
    let kv: KeyValue;
    try {
      kv = await client.jetstream().views.kv(bucketName(broker.namespace), { history: HISTORY });
    } catch (err) {
      throw new Error(`cannot open the placement bucket (nats-server must run with JetStream: nats-server -js -sd DIR): ${(err as Error).message}`);
    }
    await s.store.attach(kv);
    return kv;
  })();
  return s.kv;
}

/** Per node: the last placement epoch logged, and the table waiting to be logged. */
const epochLogs = new WeakMap<object, { logged: number; timer: NodeJS.Timeout | null }>();
const EPOCH_LOG_MS = 1000;

/**
 * Log the tables a node adopts, at most one line a second: a rebalance publishes one
 * epoch per partition moved. One log per node, whichever of its services adopts first.
 */
function logAdopted(service: { broker: { nodeID: string }; logger: { info(msg: string): void }; placement: PlacementTable | null }): void {
  let state = epochLogs.get(service.broker);
  if (!state) epochLogs.set(service.broker, (state = { logged: 0, timer: null }));
  const s = state;
  if (s.timer !== null) return;
  s.timer = setTimeout(() => {
    s.timer = null;
    const table = service.placement;
    if (table === null || table.epoch <= s.logged) return;
    const previous = s.logged;
    s.logged = table.epoch;
    const me = service.broker.nodeID;
    // The coordinator logs its own decisions (new cluster, rebalances, lost nodes).
    if (table.coordinator === me) return;
    let primaries = 0;
    let replicas = 0;
    for (const o of table.owners) {
      const i = o.indexOf(me);
      if (i === 0) primaries++;
      else if (i > 0) replicas++;
    }
    const from = previous > 0 && table.epoch > previous + 1 ? ` (from epoch ${previous})` : "";
    const here = primaries + replicas > 0 ? `; here ${primaries} primary, ${replicas} replica partition(s)` : "";
    service.logger.info(`Placement epoch ${table.epoch} adopted from coordinator ${table.coordinator}${from}${here}`);
  }, EPOCH_LOG_MS);
  s.timer.unref();
}

/** The part of Moleculer's registry used here (getNodeList is missing from its typings). */
interface Registry {
  getServiceList(opts: object): { name: string; nodeID: string }[];
  getNodeList(opts: object): NodeInfo[];
}

interface NodeInfo {
  id: string;
  available: boolean;
  metadata?: { startedAt?: number };
}

/** Partitions whose every owner is listed as lost: they wait (503) for one to return. */
export function unavailablePartitions(table: PlacementTable): number[] {
  if (table.lost.length === 0) return [];
  const lost = new Set(table.lost);
  const out: number[] = [];
  table.owners.forEach((row, p) => {
    if (row.length > 0 && row.every((n) => lost.has(n))) out.push(p);
  });
  return out;
}

const FlowmeshMixin: Partial<ServiceSchema> = {
  methods: {
    /** Shard nodes Moleculer's registry lists as available (callable), by id. */
    shardNodes(): string[] {
      const registry = this.broker.registry as unknown as Registry;
      const withShard = new Set<string>(
        registry
          .getServiceList({ onlyAvailable: true, skipInternal: true })
          .filter((s) => s.name === SHARD_SERVICE)
          .map((s) => s.nodeID),
      );
      return registry
        .getNodeList({ onlyAvailable: true, withServices: false })
        .filter((n) => withShard.has(n.id))
        .map((n) => n.id)
        .sort();
    },

    /** The start time a node announces (moleculer.config.ts metadata). */
    incarnationOf(nodeID: string): number | undefined {
      if (nodeID === this.broker.nodeID) return (this.broker.metadata as { startedAt?: number }).startedAt;
      const node = (this.broker.registry as unknown as { nodes: { get(id: string): NodeInfo | undefined } }).nodes.get(nodeID);
      return node?.metadata?.startedAt;
    },

    /** Copies each partition should have: REPLICAS, capped by the shard nodes there are (1 embedded). */
    copiesWanted(shardNodes: number): number {
      return this.broker.transit ? Math.min(this.flowmesh.replicas, Math.max(shardNodes, 1)) : 1;
    },

    /** The node holding the coordinator's lease, as the bucket says (null: none yet). */
    async coordinatorID(): Promise<string | null> {
      if (!this.broker.transit) return this.broker.nodeID;
      const kv: KeyValue = await placementBucketOf(this.broker);
      const entry = await kv.get(LEASE_KEY);
      return entry && entry.operation === "PUT" ? (entry.json<{ node: string }>().node ?? null) : null;
    },

    /** Read the table from the bucket; adopt it if newer. */
    async refreshPlacement(): Promise<PlacementTable | null> {
      if (!this.broker.transit) return this.placement;
      await placementBucketOf(this.broker);
      return (this.placementStore as PlacementStore).refresh();
    },
  },

  created() {
    this.flowmesh = settingsOf(this.broker);
    this.placementStore = sharedOf(this.broker, this.flowmesh.partitions).store;
    // The node's one table, whichever service reads it.
    Object.defineProperty(this, "placement", { get: () => (this.placementStore as PlacementStore).table, configurable: true });
  },

  async started() {
    // Gauges of the table this node acts on, computed when /metrics is read (one collector per node).
    const m = metricsOf(this.broker, "placement");
    this.collectPlacement = () => {
      const shardNodes = this.broker.transit ? this.shardNodes().length : 1;
      const table: PlacementTable | null = this.placement;
      const short = table ? partitionsShort(table.owners, this.copiesWanted(shardNodes)) : null;
      m.flowmesh_placement_epoch.set(table?.epoch ?? 0);
      m.flowmesh_shard_nodes.set(shardNodes);
      m.flowmesh_partitions_without_primary.set(short ? short.withoutPrimary.length : this.flowmesh.partitions);
      m.flowmesh_partitions_under_replicated.set(short ? short.underReplicated.length : this.flowmesh.partitions);
      m.flowmesh_partitions_unavailable.set(table ? unavailablePartitions(table).length : 0);
    };
    onCollect(this.broker, "placement", this.collectPlacement);
    if (!this.broker.transit) return;
    this.stopLogging = (this.placementStore as PlacementStore).onChange(() => logAdopted(this as never));
    await placementBucketOf(this.broker);
    // Safety net for a watch that missed an update: a read of one key every 2 s.
    this.placementRefreshTimer = setInterval(() => this.refreshPlacement().catch(() => undefined), 2000);
    this.placementRefreshTimer.unref();
  },

  stopped() {
    offCollect(this.broker, "placement", this.collectPlacement);
    if (this.placementRefreshTimer) clearInterval(this.placementRefreshTimer);
    this.stopLogging?.();
  },
};

export default FlowmeshMixin;
