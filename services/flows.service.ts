/**
 * flows: the stateless coordinator of writes and reads. Validates, splits a batch
 * by partition, sends each owner node one message with its sub-batches, fans reads
 * out to every partition's primary and merges them in order. When an owner refuses
 * (the placement moved) or cannot be reached, it refreshes the table and retries the
 * refused part; sub-batches carry idempotency keys, so a retry never counts twice.
 */
import { randomUUID } from "crypto";
import { Errors, type Context, type ServiceSchema } from "moleculer";
import FlowmeshMixin, { SHARD_SERVICE, type PlacementTable } from "../mixins/flowmesh.mixin";
import { groupByPrimary, packMessages, partitionsByPrimary, splitByPartition, splitOversized, type FlowRecord } from "../src/batching";
import { toFlowRecords, type FlowFilter } from "../src/flow-key";
import { mergeRuns, type FlowRun, type SubBatch } from "../src/partition-store";
import { readSettings } from "../src/settings";
import { aggregateParams, ingestParams } from "../src/validation";
import { MESSAGE_BYTES } from "./flow-shard.service";

// Param schemas are fixed when the service is defined: limits come from the environment.
const limits = readSettings(process.env);
/** How long a request keeps retrying while partitions move or a node is replaced. */
const RETRY_WINDOW_MS = Number(process.env.RETRY_WINDOW_MS) || 8000;

function noPrimary(partitions: number, cause?: string): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(
    `No reachable primary for ${partitions} partition(s); retry shortly${cause ? ` (${cause})` : ""}`,
    503,
    "NO_PRIMARY",
    { partitions },
  );
}

/** Bad input or a refused sum: retrying cannot help. */
function isFinal(err: unknown): boolean {
  const e = err as Errors.MoleculerError;
  return typeof e?.code === "number" && e.code >= 400 && e.code < 500 && e.type !== "WRONG_OWNER";
}

interface ReadPage {
  run: FlowRun;
  cursor: string | null;
}

const FlowsService: ServiceSchema = {
  name: "flows",
  mixins: [FlowmeshMixin],

  actions: {
    ingest: {
      params: ingestParams(limits),
      async handler(ctx: Context<{ flows: FlowRecord[]; idempotencyKey?: string }>) {
        const { flows } = ctx.params;
        const clustered = Boolean(this.broker.transit);
        // In a cluster every sub-batch carries a key, the client's or our own, so that our retries are exactly-once.
        const key = ctx.params.idempotencyKey ?? (clustered ? `flowmesh:${randomUUID()}` : undefined);
        let batches = splitByPartition(flows, this.flowmesh.partitions, key);
        if (clustered) batches = splitOversized(batches, MESSAGE_BYTES);
        await this.withRetries(batches.length, async (table: PlacementTable, pending: SubBatch[] | null) => {
          const todo = pending ?? batches;
          const failed: SubBatch[] = [];
          let cause = "";
          await Promise.all(
            Array.from(groupByPrimary(todo, table.owners), async ([nodeID, list]) => {
              if (nodeID === undefined) return void failed.push(...list);
              const messages = clustered ? packMessages(list, MESSAGE_BYTES) : [list];
              await Promise.all(
                messages.map((message) =>
                  ctx.call(`${SHARD_SERVICE}.apply`, { epoch: table.epoch, batches: message }, { nodeID }).catch((err) => {
                    if (isFinal(err)) throw err;
                    cause = (err as Error).message;
                    failed.push(...message);
                  }),
                ),
              );
            }),
          );
          return failed.length === 0 ? null : { pending: failed, cause };
        });
        return { accepted: flows.length };
      },
    },

    aggregate: {
      params: aggregateParams(limits),
      async handler(ctx: Context<{ hour: number } & FlowFilter>) {
        const { hour, src_app, dest_app, vpc_id } = ctx.params;
        const filter: FlowFilter = { src_app, dest_app, vpc_id };
        let runs: FlowRun[] = [];
        await this.withRetries(this.flowmesh.partitions, async (table: PlacementTable) => {
          const byNode = partitionsByPrimary(table.owners);
          if (byNode.has(undefined)) return { pending: null, cause: "unplaced partitions" };
          let cause = "";
          const results = await Promise.all(
            Array.from(byNode, ([nodeID, partitions]) =>
              this.readFrom(ctx, nodeID as string, { epoch: table.epoch, hour, filter, partitions }).catch((err: unknown) => {
                if (isFinal(err)) throw err;
                cause = (err as Error).message;
                return null;
              }),
            ),
          );
          if (results.some((r) => r === null)) return { pending: null, cause };
          runs = results as FlowRun[];
          return null;
        });
        const run = mergeRuns(runs);
        return toFlowRecords(hour, run.keys, run.tx, run.rx);
      },
    },
  },

  methods: {
    /**
     * Run attempt(table, pending) until it reports nothing left, refreshing the
     * placement between attempts; 503 with the last cause when the window runs out.
     */
    async withRetries(
      size: number,
      attempt: (table: PlacementTable, pending: SubBatch[] | null) => Promise<{ pending: SubBatch[] | null; cause: string } | null>,
    ): Promise<void> {
      const deadline = Date.now() + RETRY_WINDOW_MS;
      let pending: SubBatch[] | null = null;
      let delay = 10;
      for (;;) {
        const table: PlacementTable | null = this.placement ?? (await this.refreshPlacement());
        let cause = "no placement yet";
        if (table !== null) {
          const left = await attempt(table, pending);
          if (left === null) return;
          pending = left.pending;
          cause = left.cause;
        }
        if (Date.now() + delay > deadline) throw noPrimary(pending?.length ?? size, cause);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 250);
        await this.refreshPlacement();
      }
    },

    /** One owner's sorted flows for the partitions, following its read cursor page by page. */
    async readFrom(ctx: Context, nodeID: string, params: { epoch: number; hour: number; filter: FlowFilter; partitions: number[] }): Promise<FlowRun> {
      let page = (await ctx.call(`${SHARD_SERVICE}.read`, params, { nodeID })) as ReadPage;
      if (page.cursor === null) return page.run;
      const run: FlowRun = { keys: page.run.keys, tx: page.run.tx, rx: page.run.rx };
      while (page.cursor !== null) {
        page = (await ctx.call(`${SHARD_SERVICE}.readMore`, { cursor: page.cursor }, { nodeID })) as ReadPage;
        for (let i = 0; i < page.run.keys.length; i++) {
          run.keys.push(page.run.keys[i]);
          run.tx.push(page.run.tx[i]);
          run.rx.push(page.run.rx[i]);
        }
      }
      return run;
    },
  },
};

export default FlowsService;
