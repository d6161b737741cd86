/**
 * flows: the stateless coordinator of writes and reads. Validates, splits a batch
 * by partition, sends each primary node its sub-batches as one group (in a message it
 * may share with concurrent requests' groups: src/write-coalescer.ts), fans reads
 * out to every partition's primary and merges them in order. When an owner refuses
 * (the placement moved) or cannot be reached, it refreshes the table and retries the
 * refused part; sub-batches carry idempotency keys, so a retry never counts twice.
 */
import { randomUUID } from "crypto";
import { Readable } from "stream";
import type { Context, ServiceSchema } from "moleculer";
import FlowmeshMixin, { unavailablePartitions, type PlacementTable } from "../mixins/flowmesh.mixin";
import { metricsOf } from "../mixins/metrics";
import { groupByPrimary, packMessagesSized, partitionsByPrimary, placeRecords, splitOversized, toMessage, type FlowRecord, type PlacedBatches } from "../src/batching";
import type { FlowFilter } from "../src/flow-key";
import type { SubBatch } from "../src/partition-store";
import { RENDERED_MAX_BODY_BYTES, RenderedReadCache, filterKey, readVersionCache, type ReadVersions } from "../src/rendered-reads";
import { readSettings } from "../src/settings";
import { aggregateParams, groupByOf, ingestParams, isInvalid, refuseExpired, requestedHours, topParams, type Invalid } from "../src/validation";
import { WriteCoalescer } from "../src/write-coalescer";
import { encodeMessage } from "../src/wire/group-codec";
import {
  MESSAGE_BYTES,
  ShardActions,
  invalidParams,
  isFinal,
  noPrimary,
  partitionUnavailable,
  sumOverflow,
  type ApplyParams,
  type GroupResult,
  type GroupsParams,
  type HourBounds,
  type ReadAnswer,
} from "../src/protocol";
import { CSV_CONTENT_TYPE, csvStream } from "../src/query/csv";
import { collectRecords, flowCsvChunks, flowJsonChunks } from "../src/query/flow-render";
import { mergePaged, type Paged } from "../src/query/hour-merge";
import { ownerRead, readOwners, renderHour, type OwnerRead } from "../src/query/hour-read";
import { readRange, widestHours } from "../src/query/range";
import { TotalOverflowError, TOP_TOTALS, type FieldGroups, type TopMetric } from "../src/query/top";
import { rankSources } from "../src/query/group-merge";
import { GroupPages } from "../src/gateway/group-pages";

// Param schemas are fixed when the service is defined: limits come from the environment.
const limits = readSettings(process.env);
/** How long a request keeps retrying while partitions move or a node is replaced. */
const RETRY_WINDOW_MS = Number(process.env.RETRY_WINDOW_MS) || 8000;

/** One request's sub-batches for one node, stamped with the table they were placed by. */
interface WriteGroup {
  epoch: number;
  batches: SubBatch[];
  /** Every flow key needs no JSON escape (src/wire/group-codec.ts Group.plainKeys). */
  plainKeys: boolean;
}

/**
 * Partitions of the list that wait for a lost node (every copy is on nodes judged
 * lost): the request gets 503 at once rather than after the retry window.
 */
function refuseUnavailable(table: PlacementTable, partitions: Iterable<number>): void {
  if (table.lost.length === 0) return;
  const unavailable = new Set(unavailablePartitions(table));
  const hit = [...new Set(partitions)].filter((p) => unavailable.has(p));
  if (hit.length > 0) throw partitionUnavailable(hit, table.lost);
}

/** How an HTTP caller asked for the answer (set by the api service); broker callers set neither. */
interface RenderMeta {
  renderJson?: boolean;
  renderCsv?: boolean;
  $responseType?: string;
  $responseHeaders?: Record<string, string>;
}

/** A read's hours and filters, as flows.aggregate and flows.top take them. */
type HoursQuery = { hour?: number; from?: number; to?: number } & FlowFilter;

/** Checked parameters, or a ValidationError with their problems (400 over HTTP). */
function checked<T>(result: T | Invalid): T {
  if (isInvalid(result)) throw invalidParams(result.problems);
  return result;
}

function filterOf(params: HoursQuery): FlowFilter {
  const { src_app, dest_app, vpc_id } = params;
  return { src_app, dest_app, vpc_id };
}

/** Answer as CSV: its content type, and a file name for browsers that save it. */
function asCsv(meta: RenderMeta, name: string): void {
  meta.$responseType = CSV_CONTENT_TYPE;
  meta.$responseHeaders = { "Content-Disposition": `attachment; filename="${name}.csv"` };
}

/** Columns of GET /flows as CSV. */
const FLOW_COLUMNS = ["src_app", "dest_app", "vpc_id", "hour", "bytes_tx", "bytes_rx"];

const FlowsService: ServiceSchema = {
  name: "flows",
  mixins: [FlowmeshMixin],

  actions: {
    ingest: {
      params: ingestParams(limits),
      async handler(ctx: Context<{ flows: FlowRecord[]; idempotencyKey?: string }>) {
        const { flows } = ctx.params;
        refuseExpired(flows, this.flowmesh.retentionHours);
        const clustered = Boolean(this.broker.transit);
        // In a cluster every sub-batch carries a key, the client's or our own, so that our retries are exactly-once.
        const key = ctx.params.idempotencyKey ?? (clustered ? `flowmesh:${randomUUID()}` : undefined);
        const placed = placeRecords(flows, this.flowmesh.partitions, key);
        let batches = placed.batches;
        // No sub-batch of a request within a message's bytes can be over them.
        if (clustered && placed.bytes > MESSAGE_BYTES) batches = splitOversized(batches, MESSAGE_BYTES);
        // What each node applied, to undo it if another node refuses a sum (nothing may stay applied).
        const applied: [string, SubBatch[]][] = [];
        let refusal: unknown = null;
        await this.withRetries(batches.length, async (table: PlacementTable, pending: SubBatch[] | null) => {
          const todo = pending ?? batches;
          refuseUnavailable(
            table,
            todo.map((b) => b.partition),
          );
          const failed: SubBatch[] = [];
          let cause = "";
          await Promise.all(
            Array.from(groupByPrimary(todo, table.owners), async ([nodeID, list]) => {
              if (nodeID === undefined) return void failed.push(...list);
              // A request too large for one message goes as several groups, each atomic on its own.
              const groups: PlacedBatches[] = clustered ? packMessagesSized(list, MESSAGE_BYTES) : [{ batches: list, bytes: 0 }];
              const writer: WriteCoalescer<WriteGroup, GroupResult> = this.writerTo(nodeID);
              await Promise.all(
                groups.map(({ batches: group, bytes }) => {
                  const refused = (err: unknown) => {
                    if (isFinal(err)) refusal = err;
                    cause = (err as Error).message;
                    failed.push(...group);
                  };
                  return writer.submit({ epoch: table.epoch, batches: group, plainKeys: placed.plainKeys }, bytes).then((result) => {
                    if ("error" in result) refused(this.broker.errorRegenerator!.restore(result.error, { sender: nodeID }));
                    else applied.push([nodeID, group]);
                  }, refused);
                }),
              );
            }),
          );
          if (refusal !== null) return null;
          return failed.length === 0 ? null : { pending: failed, cause };
        });
        if (refusal !== null) {
          if (clustered) await this.revertApplied(ctx, applied);
          throw refusal;
        }
        return { accepted: flows.length };
      },
    },

    aggregate: {
      params: aggregateParams(limits),
      async handler(ctx: Context<{ hour: number } & FlowFilter, { renderJson?: boolean; $responseType?: string }>) {
        const query = ctx.params as HoursQuery;
        // Ranges, and CSV, are streamed hour by hour; one hour as JSON takes the path below (and its cache).
        const oneHourAsJson = query.hour !== undefined && query.from === undefined && query.to === undefined && !(ctx.meta as RenderMeta).renderCsv;
        if (!oneHourAsJson) return this.aggregateRange(ctx);
        const { hour, src_app, dest_app, vpc_id } = ctx.params;
        const filter: FlowFilter = { src_app, dest_app, vpc_id };
        // HTTP callers get the JSON bytes, which can be kept and served again while the hour is unchanged.
        const render = ctx.meta.renderJson === true;
        const cacheKey = hour + filterKey(filter);
        let body: Buffer | undefined;
        let sources: Paged[] = [];
        let version = "";
        await this.withRetries(this.flowmesh.partitions, async (table: PlacementTable) => {
          refuseUnavailable(table, table.owners.keys());
          const byNode = partitionsByPrimary(table.owners);
          if (byNode.has(undefined)) return { pending: null, cause: "unplaced partitions" };
          let cause = "";
          const read = (nodeID: string, partitions: number[], knownVersion?: number) =>
            this.readFrom(ctx, nodeID, { epoch: table.epoch, hour, filter, partitions, knownVersion }).catch((err: unknown) => {
              if (isFinal(err)) throw err;
              cause = (err as Error).message;
              return null;
            });
          const known: ReadVersions | undefined = render ? this.readVersions.get(cacheKey) : undefined;
          const answer = await readOwners(table.epoch, Array.from(byNode) as [string, number[]][], known, read, (v) => this.rendered.get(hour, filter, v));
          if (answer === null) return { pending: null, cause };
          if (render) this.readVersions.set(cacheKey, answer.known);
          if ("kept" in answer) body = answer.kept;
          else ({ sources, version } = answer);
          return null;
        });
        if (render && body !== undefined) {
          ctx.meta.$responseType = "application/json; charset=utf-8";
          return body;
        }
        if (!render) return collectRecords([{ hour, slices: mergePaged(sources) }]);
        ctx.meta.$responseType = "application/json; charset=utf-8";
        // Written as it is merged (memory does not grow with the hour); kept for the next read if small enough.
        return renderHour(hour, sources, RENDERED_MAX_BODY_BYTES, (chunks) => this.rendered.keep(hour, filter, version, chunks));
      },
    },

    /**
     * The top talkers over an hour or a range: each primary sums its partitions' flows per
     * group (flow-shard.groups), this gateway adds the partial sums up and ranks them.
     * Exact: a total past 2^53-1 is refused (422 SUM_OVERFLOW), never rounded.
     */
    top: {
      params: topParams(limits),
      async handler(ctx: Context<HoursQuery & { by?: string | string[]; metric: TopMetric; n: number }, RenderMeta>) {
        const { from, to } = checked(requestedHours(ctx.params, limits.maxRangeHours));
        const by = checked(groupByOf(ctx.params.by));
        const filter = filterOf(ctx.params);
        const partials: FieldGroups[][] = await this.askPrimaries((nodeID: string, partitions: number[], epoch: number) =>
          this.groupsFrom(ctx, nodeID, { epoch, partitions, from, to, filter, by, fieldPages: true, alignedPages: true }),
        );
        let answer;
        try {
          answer = rankSources(partials, { from, to, by, metric: ctx.params.metric, n: ctx.params.n });
        } catch (err) {
          if (err instanceof TotalOverflowError) throw sumOverflow(err.message, { from, to, filter, total: err.total });
          throw err;
        }
        if (!ctx.meta.renderCsv) return answer;
        asCsv(ctx.meta, `flows-top-${from}-${to}`);
        return csvStream([...by, ...TOP_TOTALS], [answer.top]);
      },
    },

    /** The newest and oldest hour holding data on any primary (null: no data at all). */
    hours: {
      async handler(ctx: Context) {
        const bounds: HourBounds[] = await this.askPrimaries((nodeID: string, partitions: number[], epoch: number) =>
          ctx.call<HourBounds, object>(ShardActions.hours, { epoch, partitions }, { nodeID }),
        );
        return widestHours(bounds);
      },
    },

    /**
     * Remove every hour before `before`, on every shard node and every copy, durably
     * (DELETE /flows?before=H, an admin's action). Answers what was removed.
     */
    deleteBefore: {
      visibility: "published",
      params: { before: { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER } },
      async handler(ctx: Context<{ before: number }>) {
        const { before } = ctx.params;
        const nodes: string[] = this.broker.transit ? this.shardNodes() : [this.broker.nodeID];
        const answers = await Promise.allSettled(nodes.map((nodeID) => ctx.call<{ flows: number; hours: number[] }, { before: number }>(ShardActions.trim, { before }, { nodeID })));
        const failed = nodes.filter((_, i) => answers[i].status === "rejected");
        if (failed.length > 0) throw noPrimary(0, `not every shard node removed the hours: ${failed.join(", ")}; repeat the request`);
        let flows = 0;
        const hours = new Set<number>();
        for (const a of answers) {
          if (a.status !== "fulfilled") continue;
          flows += a.value.flows;
          for (const h of a.value.hours) hours.add(h);
        }
        this.logger.warn(`DELETE before hour ${before}: ${flows} flow(s) in ${hours.size} hour(s) removed on ${nodes.length} shard node(s)`);
        return { before, flows, hours: [...hours].sort((a, b) => a - b) };
      },
    },
  },

  created() {
    this.writers = new Map<string, WriteCoalescer<WriteGroup, GroupResult>>();
    this.metrics = metricsOf(this.broker, "gateway");
    // Both keyed by what clients read (any hour, any filter), so both bounded (src/rendered-reads.ts).
    this.rendered = new RenderedReadCache();
    this.groupPages = new GroupPages();
    this.readVersions = readVersionCache();
  },

  methods: {
    /**
     * flows.aggregate over a range of hours (or one hour as CSV), hour by hour: HTTP
     * callers get it streamed as it is read, never whole in memory; broker callers the array.
     */
    async aggregateRange(ctx: Context<HoursQuery, RenderMeta>) {
      const { from, to } = checked(requestedHours(ctx.params, limits.maxRangeHours));
      const filter = filterOf(ctx.params);
      // Hours are read after this action has answered (with the stream): under a context of
      // their own, as the request's would time them out after its requestTimeout.
      const reader = this.broker.ContextFactory.create(this.broker);
      const hours = await readRange(from, to, (hour) => this.readHour(reader, hour, filter));
      if (ctx.meta.renderCsv) {
        asCsv(ctx.meta, `flows-${from}-${to}`);
        return Readable.from(flowCsvChunks(FLOW_COLUMNS, hours), { objectMode: false });
      }
      if (!ctx.meta.renderJson) return collectRecords(hours);
      ctx.meta.$responseType = "application/json; charset=utf-8";
      // A range reads each hour once: its fragments are not worth keeping (src/query/flow-render.ts).
      return Readable.from(flowJsonChunks(hours, from === to), { objectMode: false });
    },

    /** The first page of one hour's sorted flows from every partition's primary (the rest follows as it is merged). */
    async readHour(ctx: Context, hour: number, filter: FlowFilter): Promise<Paged[]> {
      return this.askPrimaries(async (nodeID: string, partitions: number[], epoch: number) => {
        const read: OwnerRead = await this.readFrom(ctx, nodeID, { epoch, hour, filter, partitions });
        return read.first as Paged;
      });
    },

    /**
     * Ask the primary of every partition about its partitions, as a read does: by the
     * newest table, again on a fresh one while owners move or cannot be reached (503 once
     * RETRY_WINDOW_MS is over; at once for partitions waiting for a lost node). One answer per node.
     */
    async askPrimaries<T>(ask: (nodeID: string, partitions: number[], epoch: number) => Promise<T>): Promise<T[]> {
      let answers: T[] = [];
      await this.withRetries(this.flowmesh.partitions, async (table: PlacementTable) => {
        refuseUnavailable(table, table.owners.keys());
        const byNode = partitionsByPrimary(table.owners);
        if (byNode.has(undefined)) return { pending: null, cause: "unplaced partitions" };
        let cause = "";
        const results = await Promise.all(
          Array.from(byNode as Map<string, number[]>, ([nodeID, partitions]) =>
            ask(nodeID, partitions, table.epoch).then(
              (answer) => ({ answer }),
              (err: unknown) => {
                if (isFinal(err)) throw err;
                cause = (err as Error).message;
                return null;
              },
            ),
          ),
        );
        if (results.some((r) => r === null)) return { pending: null, cause };
        answers = results.map((r) => r!.answer);
        return null;
      });
      return answers;
    },

    /** One primary's per-group sums for top-N, page by page. */
    async groupsFrom(ctx: Context, nodeID: string, params: GroupsParams): Promise<FieldGroups[]> {
      return (this.groupPages as GroupPages).read(nodeID, params, (p) => ctx.call(ShardActions.groups, p, { nodeID }));
    },

    /**
     * The writes to one shard node: concurrent requests' groups share its messages
     * (WRITES_IN_FLIGHT messages to a node unanswered at a time).
     */
    writerTo(nodeID: string): WriteCoalescer<WriteGroup, GroupResult> {
      let writer = this.writers.get(nodeID);
      if (writer === undefined) {
        const send = async (groups: WriteGroup[]): Promise<GroupResult[]> => {
          this.metrics.flowmesh_write_messages_total.increment();
          this.metrics.flowmesh_write_groups_total.increment(null, groups.length);
          let epoch = 0;
          for (const g of groups) epoch = Math.max(epoch, g.epoch);
          // To another process the groups go encoded once, as bytes (src/wire/group-codec.ts); in process, as they are.
          const message = { epoch, groups: groups.map((g) => ({ group: { batches: g.batches, plainKeys: g.plainKeys }, parts: undefined })) };
          const params: ApplyParams = nodeID === this.broker.nodeID ? message : encodeMessage(epoch, message.groups);
          const answer = (await this.broker.call(ShardActions.apply, params, { nodeID })) as { results: GroupResult[] };
          return answer.results;
        };
        writer = new WriteCoalescer<WriteGroup, GroupResult>(send, { maxInFlight: this.flowmesh.writesInFlight, maxBytes: MESSAGE_BYTES });
        this.writers.set(nodeID, writer);
      }
      return writer;
    },

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

    /** Undo what owners applied of a refused request; its keys are forgotten, so a corrected retry applies. */
    async revertApplied(ctx: Context, applied: [string, SubBatch[]][]): Promise<void> {
      await Promise.all(
        applied.map(([nodeID, batches]) =>
          ctx.call(ShardActions.revert, { groups: [toMessage(batches)] }, { nodeID }).catch((err: Error) => {
            this.logger.error(`Could not undo a refused write on ${nodeID}: ${err.message}`);
          }),
        ),
      );
    },

    /**
     * One owner's answer for the partitions: its version and first page (null if unchanged
     * since knownVersion); the page fetches the next from the owner's read cursor when the merge needs it.
     */
    async readFrom(
      ctx: Context,
      nodeID: string,
      params: { epoch: number; hour: number; filter: FlowFilter; partitions: number[]; knownVersion?: number },
    ): Promise<OwnerRead> {
      const answer = (await ctx.call(ShardActions.read, params, { nodeID })) as ReadAnswer;
      // Later pages are asked for while the answer streams, after this action has answered: not
      // under the request's context, whose time would run out with a slow client.
      return ownerRead(answer, (cursor) => this.broker.call(ShardActions.readMore, { cursor }, { nodeID }) as Promise<Buffer>);
    },
  },
};

export default FlowsService;
