/**
 * Flowmesh's own Prometheus series, registered in Moleculer's metric registry beside
 * Moleculer's process and Node.js metrics, and rendered at GET /metrics by
 * mixins/prometheus.reporter.ts. Each node reports its own series (scrape every node).
 *
 * The write path stays cheap: a few counter increments per request, never one per
 * record. Gauges, and counters the services keep as plain numbers anyway, are copied
 * into the registry only when /metrics is read, by collectors the services register.
 */
import type { Context, Middleware, ServiceBroker } from "moleculer";

export type Labels = Record<string, string>;
interface Counter {
  increment(labels?: Labels | null, value?: number): unknown;
  set(value: number, labels?: Labels | null): unknown;
}
interface Histogram {
  observe(value: number, labels?: Labels | null): unknown;
}

/**
 * Why a write (or read) was refused; `error` is anything unexpected. The gateway's own
 * refusals: `unauthorized` (401: no or unknown API token), `forbidden` (403: the token
 * lacks the scope), `too_many_requests` (429: MAX_INFLIGHT or the token's rate limit).
 */
export const REASONS = ["validation", "invalid_json", "too_large", "unsupported_media_type", "sum_overflow", "hour_expired", "unavailable", "unauthorized", "forbidden", "too_many_requests", "error"] as const;
export type Reason = (typeof REASONS)[number];
const READ_REASONS: readonly Reason[] = ["validation", "unavailable", "unauthorized", "forbidden", "too_many_requests", "error"];
const ROLES = ["primary", "replica"];
/** Seconds: a cached 100k-flow hour answers in tens of ms, a fan-out retrying a moved owner in seconds. */
const READ_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Definition {
  type: "counter" | "gauge" | "histogram";
  help: string;
  labels?: Record<string, readonly string[]>;
  buckets?: number[];
}

/** Every Flowmesh series, by the service group that reports it. The README lists them. */
export const DEFINITIONS = {
  /** Nodes running `flows` (and `api`): the gateway side. */
  gateway: {
    flowmesh_ingested_batches_total: { type: "counter", help: "Write requests (POST /flows, flows.ingest) this node accepted; retries with an Idempotency-Key count again" },
    flowmesh_ingested_records_total: { type: "counter", help: "Records in the write requests this node accepted" },
    flowmesh_rejected_batches_total: { type: "counter", help: "Write requests this node refused, by reason", labels: { reason: REASONS } },
    flowmesh_reads_total: { type: "counter", help: "Reads (GET /flows, flows.aggregate) this node answered" },
    flowmesh_rejected_reads_total: { type: "counter", help: "Reads this node refused, by reason", labels: { reason: READ_REASONS } },
    flowmesh_read_duration_seconds: { type: "histogram", help: "Time to answer a read, fan-out included (a streamed answer: until it starts)", buckets: READ_BUCKETS },
    flowmesh_write_messages_total: { type: "counter", help: "Write messages this node sent to shard nodes (concurrent requests share them)" },
    flowmesh_write_groups_total: { type: "counter", help: "Request parts carried by those messages (groups / messages = requests per message)" },
  },
  /** Every node: the placement table it acts on. */
  placement: {
    flowmesh_placement_epoch: { type: "gauge", help: "Epoch of the placement table this node acts on" },
    flowmesh_shard_nodes: { type: "gauge", help: "Live shard nodes this node sees" },
    flowmesh_partitions_without_primary: { type: "gauge", help: "Partitions without a primary in this node's table (writes to them get 503)" },
    flowmesh_partitions_under_replicated: { type: "gauge", help: "Partitions with fewer than R copies in this node's table" },
    flowmesh_partitions_unavailable: { type: "gauge", help: "Partitions whose every copy is on nodes judged lost: they answer 503 until one returns (or an operator forces them empty)" },
  },
  /** Nodes running `flow-shard`. */
  shard: {
    flowmesh_applied_records_total: { type: "counter", help: "Records applied on this node as primary (duplicates excluded)" },
    flowmesh_idempotency_hits_total: { type: "counter", help: "Sub-batches this node, as primary, skipped as already applied (a retry with the same key)" },
    flowmesh_partitions_owned: { type: "gauge", help: "Partitions placed on this node, by role", labels: { role: ROLES } },
    flowmesh_flows_held: { type: "gauge", help: "Flows held in this node's partitions, by role (replica includes copies being filled)", labels: { role: ROLES } },
    flowmesh_coordinator: { type: "gauge", help: "1 on the node that holds the coordinator's lease (decides placement), else 0" },
    flowmesh_fenced: { type: "gauge", help: "1 while this node may not serve as primary (stalled, or no recent round trip to NATS), else 0" },
    flowmesh_log_unwritable: { type: "gauge", help: "1 while this node's write-ahead log cannot be written (a full disk): writes are refused, else 0" },
    flowmesh_data_bytes: { type: "gauge", help: "Bytes in this node's data directory, by kind", labels: { kind: ["log", "checkpoints"] } },
    flowmesh_handoffs_in_progress: { type: "gauge", help: "Partition copies this node is sending now" },
    flowmesh_handoffs_total: { type: "counter", help: "Partition copies (snapshot handoffs) this node sent, by result", labels: { result: ["done", "failed"] } },
    flowmesh_handoff_flows_total: { type: "counter", help: "Flows sent in this node's completed handoffs" },
    flowmesh_replication_failures_total: { type: "counter", help: "Writes applied here as primary whose forward to a copy failed (the gateway retries them)" },
  },
} as const satisfies Record<string, Record<string, Definition>>;

export type Group = keyof typeof DEFINITIONS;
export type GroupMetrics<G extends Group> = { [K in keyof (typeof DEFINITIONS)[G]]: (typeof DEFINITIONS)[G][K] extends { type: "histogram" } ? Histogram : Counter };

const noop = { increment() {}, set() {}, observe() {} };

/** All combinations of a definition's label values, so every series exists (at 0) from the start. */
function labelSets(labels: Record<string, readonly string[]> | undefined): (Labels | null)[] {
  if (!labels) return [null];
  let sets: Labels[] = [{}];
  for (const [name, values] of Object.entries(labels)) sets = sets.flatMap((s) => values.map((v) => ({ ...s, [name]: v })));
  return sets;
}

/**
 * The group's metrics, registered on first use (several services of one node share
 * them). With metrics disabled (METRICS=false) every handle is a no-op.
 */
export function metricsOf<G extends Group>(broker: ServiceBroker, group: G): GroupMetrics<G> {
  const registry = broker.metrics as unknown as {
    isEnabled(): boolean;
    hasMetric(name: string): boolean;
    getMetric(name: string): Counter & Histogram;
    register(opts: object): Counter & Histogram;
  };
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(DEFINITIONS[group]) as [string, Definition][]) {
    if (!broker.isMetricsEnabled()) {
      out[name] = noop;
      continue;
    }
    if (!registry.hasMetric(name)) {
      const metric = registry.register({
        name,
        type: def.type,
        description: def.help,
        labelNames: Object.keys(def.labels ?? {}),
        ...(def.buckets ? { buckets: def.buckets, quantiles: false } : {}),
        rate: false,
      });
      if (def.type !== "histogram") for (const labels of labelSets(def.labels)) metric.set(0, labels);
    }
    out[name] = registry.getMetric(name);
  }
  return out as GroupMetrics<G>;
}

// ---- collectors: run when /metrics is rendered ----

const collectors = new WeakMap<object, Map<string, () => void>>();

/** Run `fn` before every rendering of this broker's metrics; one collector per key. */
export function onCollect(broker: ServiceBroker, key: string, fn: () => void): void {
  let map = collectors.get(broker);
  if (!map) collectors.set(broker, (map = new Map()));
  map.set(key, fn);
}

export function offCollect(broker: ServiceBroker, key: string, fn: () => void): void {
  const map = collectors.get(broker);
  if (map?.get(key) === fn) map.delete(key);
}

export function collect(broker: ServiceBroker): void {
  for (const fn of collectors.get(broker)?.values() ?? []) {
    try {
      fn();
    } catch (err) {
      broker.logger.warn(`Metrics collector failed: ${(err as Error).message}`);
    }
  }
}

// ---- the outcome of every write and read ----

/** The metric label for a refused request. */
export function reasonOf(err: unknown): Reason {
  const e = err as { name?: string; type?: string; code?: number } | null;
  if (e?.name === "ValidationError") return "validation";
  if (e?.type === "SUM_OVERFLOW") return "sum_overflow";
  if (e?.type === "HOUR_EXPIRED") return "hour_expired";
  if (e?.type === "PAYLOAD_TOO_LARGE") return "too_large";
  if (e?.type === "INVALID_JSON") return "invalid_json";
  if (e?.type === "UNSUPPORTED_MEDIA_TYPE") return "unsupported_media_type";
  if (e?.code === 401) return "unauthorized";
  if (e?.code === 403) return "forbidden";
  if (e?.code === 429) return "too_many_requests";
  if (e?.code === 503) return "unavailable";
  return "error";
}

type Handler = (ctx: Context<{ flows?: unknown[] }>) => Promise<unknown>;

/**
 * Broker middleware counting what `flows.ingest` and `flows.aggregate` answer. It must
 * wrap Moleculer's Validator (moleculer.config.ts lists it right after), so that
 * refused parameters are counted too, for HTTP and broker callers alike.
 */
const FlowmeshMetrics = {
  name: "FlowmeshMetrics",
  localAction(this: ServiceBroker, next: Handler, action: { name: string }): Handler {
    if (!this.isMetricsEnabled()) return next;
    if (action.name === "flows.ingest") {
      const m = metricsOf(this, "gateway");
      return (ctx) =>
        next(ctx).then(
          (res) => {
            m.flowmesh_ingested_batches_total.increment();
            m.flowmesh_ingested_records_total.increment(null, ctx.params.flows?.length ?? 0);
            return res;
          },
          (err) => {
            m.flowmesh_rejected_batches_total.increment({ reason: reasonOf(err) });
            throw err;
          },
        );
    }
    if (action.name === "flows.aggregate") {
      const m = metricsOf(this, "gateway");
      return (ctx) => {
        const started = performance.now();
        return next(ctx).then(
          (res) => {
            m.flowmesh_reads_total.increment();
            m.flowmesh_read_duration_seconds.observe((performance.now() - started) / 1000);
            return res;
          },
          (err) => {
            const reason = reasonOf(err);
            m.flowmesh_rejected_reads_total.increment({ reason: READ_REASONS.includes(reason) ? reason : "error" });
            throw err;
          },
        );
      };
    }
    return next;
  },
};

export const FlowmeshMetricsMiddleware = FlowmeshMetrics as unknown as Middleware;

/**
 * Moleculer's internal middlewares in Moleculer 0.14's own order (INTERNAL_MIDDLEWARES
 * in moleculer/src/service-broker.js), with Flowmesh's counter right outside the
 * Validator, and Moleculer's per-call "Metrics" middleware only when asked for
 * (METRICS_BUILTIN=true): it costs about 8 µs per action call. Used with
 * `internalMiddlewares: false`.
 */
export function brokerMiddlewares(builtinMetrics: boolean): (string | Middleware)[] {
  return [
    "ActionHook",
    "Validator",
    FlowmeshMetricsMiddleware,
    "Bulkhead",
    "Cacher",
    "ContextTracker",
    "CircuitBreaker",
    "Timeout",
    "Retry",
    "Fallback",
    "ErrorHandler",
    "Tracing",
    ...(builtinMetrics ? ["Metrics"] : []),
    "Debounce",
    "Throttle",
  ];
}
