/**
 * cluster: what the cluster looks like right now (`cluster.status`, `cluster.ready`),
 * gathered from the placement table and every shard node's counts.
 */
import type { Context, ServiceSchema } from "moleculer";
import FlowmeshMixin, { unavailablePartitions, type PlacementTable } from "../mixins/flowmesh.mixin";
import { partitionsShort, rolesOf } from "../src/placement";
import { ShardActions, notReady } from "../src/protocol";

interface ShardStats {
  nodeID: string;
  flows: number;
  partitions: Record<number, number>;
  loading: number[];
  ingested: { records: number; duplicates: number };
  handoffs: { partition: number; from: string; to: string; chunks: number; sent: number; flows: number; startedAt: number }[];
}

const ClusterService: ServiceSchema = {
  name: "cluster",
  mixins: [FlowmeshMixin],

  actions: {
    status: {
      async handler(ctx: Context) {
        const table: PlacementTable | null = this.placement ?? (await this.refreshPlacement());
        const owners = table?.owners ?? [];
        const shardNodes: string[] = this.broker.transit ? this.shardNodes() : [this.broker.nodeID];
        const stats = (
          await Promise.all(shardNodes.map((nodeID) => ctx.call<ShardStats, object>(ShardActions.stats, {}, { nodeID, timeout: 1000 }).catch(() => null)))
        ).filter((s): s is ShardStats => s !== null);
        const primaryFlows = new Map<number, number>();
        for (const s of stats) {
          for (const [p, n] of Object.entries(s.partitions)) if (owners[Number(p)]?.[0] === s.nodeID) primaryFlows.set(Number(p), n);
        }
        const replicas: number = this.copiesWanted(shardNodes.length);
        return {
          nodeID: this.broker.nodeID,
          namespace: this.broker.namespace,
          mode: this.broker.transit ? "cluster" : "embedded",
          coordinator: await this.coordinatorID().catch(() => null),
          epoch: table?.epoch ?? 0,
          partitionCount: this.flowmesh.partitions,
          replicas,
          nodes: stats.map((s) => ({
            nodeID: s.nodeID,
            flows: s.flows,
            primaryFlows: Object.entries(s.partitions).reduce((a, [p, n]) => (owners[Number(p)]?.[0] === s.nodeID ? a + n : a), 0),
            ...rolesOf(owners, s.nodeID),
            // Cumulative, since the node started: a client's rate is the difference of two reads.
            recordsIngested: s.ingested.records,
          })),
          partitions: owners.map((o, p) => ({ partition: p, primary: o[0] ?? null, replicas: o.slice(1), flows: primaryFlows.get(p) ?? 0 })),
          underReplicated: partitionsShort(owners, replicas).underReplicated,
          // Judged lost by the coordinator, still listed as the only holders of some partitions.
          lost: table?.lost ?? [],
          unavailable: table ? unavailablePartitions(table) : [],
          handoffs: stats.flatMap((s) => s.handoffs.map((h) => ({ ...h, progress: h.chunks === 0 ? 1 : h.sent / h.chunks }))),
        };
      },
    },

    /**
     * Ready when this node has a placement in which every partition has a primary that
     * is not judged lost; 503 otherwise (partitions waiting for a lost node say so).
     */
    ready: {
      async handler() {
        const table: PlacementTable | null = this.placement ?? (await this.refreshPlacement());
        if (table === null) throw notReady("No placement table yet", { missing: this.flowmesh.partitions });
        const missing = partitionsShort(table.owners, 1).withoutPrimary.length;
        if (missing > 0) throw notReady(`${missing} partition(s) have no primary`, { missing, epoch: table.epoch });
        const unavailable = unavailablePartitions(table);
        if (unavailable.length > 0) {
          throw notReady(`${unavailable.length} partition(s) wait for lost node(s) ${table.lost.join(", ")}: every copy is there`, {
            unavailable: unavailable.length,
            lost: table.lost,
            epoch: table.epoch,
          });
        }
        return { ready: true, epoch: table.epoch };
      },
    },
  },
};

export default ClusterService;
