/**
 * Shared by Flowmesh's services: the settings, the placement table this node acts
 * on, and who the coordinator is.
 *
 * In the embedded default (no transporter) the local node owns every partition from
 * the start. In a cluster the coordinator (the oldest live shard node) publishes each
 * new table as the `flowmesh.placement` event; a node keeps the table with the highest
 * epoch it has seen, and asks for it when it starts or when an owner refuses its work.
 */
import type { Context, ServiceSchema } from "moleculer";
import { partitionsShort, placePartitions, type Owners } from "../src/placement";
import { readSettings, type FlowmeshSettings } from "../src/settings";
import { metricsOf, offCollect, onCollect } from "./metrics";

export interface PlacementTable {
  /** Rises with every new table the coordinator publishes. */
  epoch: number;
  /** owners[p] = [primary, ...replicas]. */
  owners: Owners;
  /** Node that published it. */
  coordinator: string;
  /**
   * Start time of each owner's process when the table was made: a node restarted under
   * the same id is a new incarnation with none of the old one's state.
   */
  incarnations: Record<string, number>;
}

export const SHARD_SERVICE = "flow-shard";
export const PLACEMENT_EVENT = "flowmesh.placement";

export function settingsOf(broker: { options: object }): FlowmeshSettings {
  return (broker.options as { flowmesh?: FlowmeshSettings }).flowmesh ?? readSettings(process.env);
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

const FlowmeshMixin: Partial<ServiceSchema> = {
  events: {
    [PLACEMENT_EVENT](ctx: Context<PlacementTable>) {
      this.adoptPlacement(ctx.params);
    },
  },

  methods: {
    /** Keep the table if it is newer than ours; true when adopted. */
    adoptPlacement(table: PlacementTable): boolean {
      const current: PlacementTable | null = this.placement;
      if (current !== null && table.epoch <= current.epoch) return false;
      this.placement = table;
      if (typeof this.placementChanged === "function") this.placementChanged(table, current);
      if (this.broker.transit) logAdopted(this as never);
      return true;
    },

    /** Live shard nodes, oldest first (by start time, then id). */
    shardNodes(): string[] {
      const registry = this.broker.registry as unknown as Registry;
      const withShard = new Set<string>(
        registry
          .getServiceList({ onlyAvailable: true, skipInternal: true })
          .filter((s) => s.name === SHARD_SERVICE)
          .map((s) => s.nodeID),
      );
      const nodes = registry.getNodeList({ onlyAvailable: true, withServices: false }).filter((n) => withShard.has(n.id));
      const started = (n: NodeInfo) => n.metadata?.startedAt ?? 0;
      nodes.sort((a, b) => started(a) - started(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      return nodes.map((n) => n.id);
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

    coordinatorID(): string | null {
      if (!this.broker.transit) return this.broker.nodeID;
      return this.shardNodes()[0] ?? null;
    },

    /** Ask the shard nodes for their table; adopt the newest. */
    async refreshPlacement(): Promise<PlacementTable | null> {
      if (!this.broker.transit) return this.placement;
      const nodes: string[] = this.shardNodes().filter((n: string) => n !== this.broker.nodeID);
      const coordinator = this.coordinatorID();
      // The coordinator's table is the newest there is; ask it first and the others only if it fails.
      const order = coordinator && nodes.includes(coordinator) ? [coordinator, ...nodes.filter((n) => n !== coordinator)] : nodes;
      for (const nodeID of order.slice(0, 3)) {
        try {
          const table = (await this.broker.call(`${SHARD_SERVICE}.placement`, {}, { nodeID, timeout: 2000 })) as PlacementTable | null;
          if (table) {
            this.adoptPlacement(table);
            return this.placement;
          }
        } catch {
          /* try the next node */
        }
      }
      return this.placement;
    },
  },

  created() {
    this.flowmesh = settingsOf(this.broker);
    this.placement = this.broker.transit
      ? null
      : ({ epoch: 1, owners: placePartitions([this.broker.nodeID], this.flowmesh.partitions, 1), coordinator: this.broker.nodeID, incarnations: {} } satisfies PlacementTable);
  },

  started() {
    // Gauges of the table this node acts on, computed when /metrics is read (one collector per node).
    const m = metricsOf(this.broker, "placement");
    this.collectPlacement = () => {
      const shardNodes = this.broker.transit ? this.shardNodes().length : 1;
      const short = this.placement ? partitionsShort(this.placement.owners, this.copiesWanted(shardNodes)) : null;
      m.flowmesh_placement_epoch.set(this.placement?.epoch ?? 0);
      m.flowmesh_shard_nodes.set(shardNodes);
      m.flowmesh_partitions_without_primary.set(short ? short.withoutPrimary.length : this.flowmesh.partitions);
      m.flowmesh_partitions_under_replicated.set(short ? short.underReplicated.length : this.flowmesh.partitions);
    };
    onCollect(this.broker, "placement", this.collectPlacement);
    if (!this.broker.transit) return;
    // Safety net for a missed broadcast: tables are small and epochs tell which is newer.
    this.placementRefreshTimer = setInterval(() => this.refreshPlacement().catch(() => undefined), 2000);
    this.placementRefreshTimer.unref();
    this.refreshPlacement().catch(() => undefined);
  },

  stopped() {
    offCollect(this.broker, "placement", this.collectPlacement);
    if (this.placementRefreshTimer) clearInterval(this.placementRefreshTimer);
  },
};

export default FlowmeshMixin;
