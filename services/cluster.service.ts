/**
 * cluster: what the cluster looks like right now (`cluster.status`, `cluster.ready`),
 * gathered from the placement table and every shard node's counts.
 */
import { Errors, type Context, type ServiceSchema } from "moleculer";
import FlowmeshMixin, { SHARD_SERVICE, type PlacementTable } from "../mixins/flowmesh.mixin";
import { partitionsShort, rolesOf } from "../src/placement";

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
          await Promise.all(shardNodes.map((nodeID) => ctx.call<ShardStats, object>(`${SHARD_SERVICE}.stats`, {}, { nodeID, timeout: 1000 }).catch(() => null)))
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
          coordinator: this.coordinatorID(),
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
          handoffs: stats.flatMap((s) => s.handoffs.map((h) => ({ ...h, progress: h.chunks === 0 ? 1 : h.sent / h.chunks }))),
        };
      },
    },

    /** Ready when this node has a placement in which every partition has a primary; 503 otherwise. */
    ready: {
      async handler() {
        const table: PlacementTable | null = this.placement ?? (await this.refreshPlacement());
        const missing = table === null ? this.flowmesh.partitions : partitionsShort(table.owners, 1).withoutPrimary.length;
        if (missing > 0) throw new Errors.MoleculerRetryableError(`${missing} partition(s) have no primary`, 503, "NOT_READY", { missing });
        return { ready: true, epoch: table!.epoch };
      },
    },
  },
};

export default ClusterService;
