/**
 * cluster: what the cluster looks like right now (`cluster.status`, `cluster.ready`).
 */
import { Errors, type Context, type ServiceSchema } from "moleculer";
import FlowmeshMixin, { type PlacementTable } from "../mixins/flowmesh.mixin";

interface ShardStats {
  nodeID: string;
  flows: number;
  partitions: Record<number, number>;
}

const ClusterService: ServiceSchema = {
  name: "cluster",
  mixins: [FlowmeshMixin],

  actions: {
    status: {
      async handler(ctx: Context) {
        const table: PlacementTable | null = this.placement;
        const owners = table?.owners ?? [];
        const shardNodes = Array.from(new Set(owners.flatMap((o) => o)));
        const stats: ShardStats[] = await Promise.all(shardNodes.map((nodeID) => ctx.call<ShardStats, object>("flow-shard.stats", {}, { nodeID })));
        const flowsByPartition = new Map<number, number>();
        for (const s of stats) for (const [p, n] of Object.entries(s.partitions)) flowsByPartition.set(Number(p), n);
        return {
          nodeID: this.broker.nodeID,
          mode: this.broker.transit ? "cluster" : "embedded",
          coordinator: this.coordinator ?? this.broker.nodeID,
          epoch: table?.epoch ?? 0,
          partitionCount: this.flowmesh.partitions,
          replicas: owners[0]?.length ?? 0,
          nodes: stats.map((s) => ({
            nodeID: s.nodeID,
            flows: s.flows,
            primaries: owners.filter((o) => o[0] === s.nodeID).length,
            replicas: owners.filter((o) => o.indexOf(s.nodeID) > 0).length,
          })),
          partitions: owners.map((o, p) => ({ partition: p, primary: o[0] ?? null, replicas: o.slice(1), flows: flowsByPartition.get(p) ?? 0 })),
          handoffs: [],
        };
      },
    },

    /** Resolves when this node has a placement in which every partition has a primary; 503 otherwise. */
    ready: {
      handler() {
        const table: PlacementTable | null = this.placement;
        const missing = table === null ? this.flowmesh.partitions : table.owners.filter((o) => o.length === 0).length;
        if (missing > 0) throw new Errors.MoleculerRetryableError(`${missing} partition(s) have no primary`, 503, "NOT_READY", { missing });
        return { ready: true, epoch: table!.epoch };
      },
    },
  },
};

export default ClusterService;
