/**
 * flow-shard: the stateful actor host. Runs the partitions placed on this node and
 * applies their sub-batches; serves their hours to reads.
 */
import { Errors, type Context, type ServiceSchema } from "moleculer";
import FlowmeshMixin from "../mixins/flowmesh.mixin";
import { PartitionStore, SumOverflowError, type SubBatch } from "../src/partition-store";
import type { FlowFilter } from "../src/flow-key";

const FlowShardService: ServiceSchema = {
  name: "flow-shard",
  mixins: [FlowmeshMixin],

  actions: {
    /** Apply sub-batches atomically (all or nothing). Internal: reached by `flows`. */
    apply: {
      visibility: "public",
      handler(ctx: Context<{ epoch: number; batches: SubBatch[] }>) {
        try {
          return this.store.apply(ctx.params.batches);
        } catch (err) {
          if (err instanceof SumOverflowError) {
            throw new Errors.MoleculerClientError(err.message, 422, "SUM_OVERFLOW", { flow: err.flow, field: err.field });
          }
          throw err;
        }
      },
    },

    /** The sorted flows of an hour over the given partitions. */
    read: {
      visibility: "public",
      handler(ctx: Context<{ epoch: number; hour: number; filter: FlowFilter; partitions: number[] }>) {
        const { hour, filter, partitions } = ctx.params;
        return this.store.read(hour, filter, partitions);
      },
    },

    /** Flow counts of the hosted partitions. */
    stats: {
      visibility: "public",
      handler() {
        const partitions: Record<number, number> = {};
        for (const [id, p] of (this.store as PartitionStore).partitions) partitions[id] = p.flowCount;
        return { nodeID: this.broker.nodeID, flows: this.store.flowCount(), partitions };
      },
    },
  },

  created() {
    this.store = new PartitionStore({ max: this.flowmesh.idempotencyMax, ttlMs: this.flowmesh.idempotencyTtlSeconds * 1000 });
  },
};

export default FlowShardService;
