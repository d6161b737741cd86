/**
 * flows: the stateless coordinator of writes and reads. Validates, splits a batch
 * by partition, sends each owner node one message with its sub-batches, fans reads
 * out to every partition's primary and merges them in order.
 */
import { Errors, type Context, type ServiceSchema } from "moleculer";
import FlowmeshMixin, { type PlacementTable } from "../mixins/flowmesh.mixin";
import { groupByPrimary, partitionsByPrimary, splitByPartition, type FlowRecord } from "../src/batching";
import { toFlowRecords, type FlowFilter } from "../src/flow-key";
import { mergeRuns, type FlowRun } from "../src/partition-store";
import { readSettings } from "../src/settings";
import { aggregateParams, ingestParams } from "../src/validation";

// Param schemas are fixed when the service is defined: limits come from the environment.
const limits = readSettings(process.env);

function noPrimary(partitions: number): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(`No reachable primary for ${partitions} partition(s); retry shortly`, 503, "NO_PRIMARY", { partitions });
}

const FlowsService: ServiceSchema = {
  name: "flows",
  mixins: [FlowmeshMixin],

  actions: {
    ingest: {
      params: ingestParams(limits),
      async handler(ctx: Context<{ flows: FlowRecord[]; idempotencyKey?: string }>) {
        const { flows, idempotencyKey } = ctx.params;
        const table: PlacementTable | null = this.placement;
        if (table === null) throw noPrimary(this.flowmesh.partitions);
        const byNode = groupByPrimary(splitByPartition(flows, this.flowmesh.partitions, idempotencyKey), table.owners);
        if (byNode.has(undefined)) throw noPrimary(byNode.get(undefined)!.length);
        await Promise.all(
          Array.from(byNode, ([nodeID, batches]) => ctx.call("flow-shard.apply", { epoch: table.epoch, batches }, { nodeID })),
        );
        return { accepted: flows.length };
      },
    },

    aggregate: {
      params: aggregateParams(limits),
      async handler(ctx: Context<{ hour: number } & FlowFilter>) {
        const { hour, src_app, dest_app, vpc_id } = ctx.params;
        const table: PlacementTable | null = this.placement;
        if (table === null) throw noPrimary(this.flowmesh.partitions);
        const byNode = partitionsByPrimary(table.owners);
        if (byNode.has(undefined)) throw noPrimary(byNode.get(undefined)!.length);
        const filter: FlowFilter = { src_app, dest_app, vpc_id };
        const runs: FlowRun[] = await Promise.all(
          Array.from(byNode, ([nodeID, partitions]) => ctx.call<FlowRun, object>("flow-shard.read", { epoch: table.epoch, hour, filter, partitions }, { nodeID })),
        );
        const run = mergeRuns(runs);
        return toFlowRecords(hour, run.keys, run.tx, run.rx);
      },
    },
  },
};

export default FlowsService;
