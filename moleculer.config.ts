/**
 * Moleculer broker configuration. moleculer-runner lets the environment override
 * any top-level key (TRANSPORTER, NAMESPACE, NODEID, LOGLEVEL, HEARTBEATINTERVAL,
 * HEARTBEATTIMEOUT, ...); Flowmesh's own settings (PORT, PARTITIONS, REPLICAS, ...)
 * are read by readSettings and exposed as `flowmesh`. See README "Configuration".
 */
import { MetricReporters, Serializers, type BrokerOptions } from "moleculer";
import { readSettings } from "./src/settings";
import GracefulLeave from "./mixins/graceful-leave.middleware";
import { brokerMiddlewares } from "./mixins/metrics";
import { FlowmeshPrometheusReporter } from "./mixins/prometheus.reporter";
import { createValidator } from "./mixins/validator";
import { BinaryPayloadSerializer } from "./mixins/binary.serializer";
import { transporterFromEnv } from "./src/nats-options";

const settings = readSettings(process.env);
// Moleculer's Prometheus reporter, minus its own port unless METRICS_PORT asks for one (mixins/prometheus.reporter.ts).
(MetricReporters as unknown as { register(name: string, value: unknown): void }).register("FlowmeshPrometheus", FlowmeshPrometheusReporter);
// Registered by name, as the reporter is: the broker's options (which any node can read with
// $node.options) then say "BinaryPayload" instead of holding the serializer and its broker.
(Serializers as unknown as { register(name: string, value: unknown): void }).register("BinaryPayload", BinaryPayloadSerializer);

// No transporter: the embedded single-process default. TRANSPORTER=nats://host:4222 joins a
// cluster; NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_CREDS and NATS_TLS_* add credentials
// and TLS (src/nats-options.ts). A bad combination stops the start here.
const transporter = transporterFromEnv(process.env);
// moleculer-runner lets the environment override top-level options: it would put the bare
// TRANSPORTER string back in place of these connection options, credentials and TLS lost.
if (typeof transporter === "object" && transporter !== null) delete process.env.TRANSPORTER;

const config: BrokerOptions & { flowmesh: ReturnType<typeof readSettings> } = {
  namespace: process.env.NAMESPACE || "flowmesh",
  nodeID: process.env.NODEID || null,
  transporter,
  logger: { type: "Console", options: { formatter: "short", colors: process.stdout.isTTY === true } },
  logLevel: (process.env.LOGLEVEL as BrokerOptions["logLevel"]) || "info",
  // JSON, except that a Buffer payload (a write message of the group codec) travels as its
  // own bytes (mixins/binary.serializer.ts); large payloads are chunked by Flowmesh itself.
  serializer: "BinaryPayload",
  // A lost node must be noticed in seconds, not Moleculer's default 30-60 s.
  heartbeatInterval: 1,
  heartbeatTimeout: 2.5,
  requestTimeout: 10 * 1000,
  retryPolicy: { enabled: false },
  // Calls to shard actions name their node (Flowmesh's placement decides ownership).
  // preferLocal keeps api -> flows in process: a request body never crosses NATS whole.
  registry: { strategy: "RoundRobin", preferLocal: true },
  // fastest-validator with Flowmesh's rule types (mixins/validator.ts).
  validator: createValidator(),
  // GET /metrics on the gateway (METRICS=false turns it off). Moleculer turns process
  // metrics off when NODE_ENV=test; Flowmesh always reports them.
  metrics: {
    enabled: settings.metrics,
    collectProcessMetrics: true,
    reporter: [
      {
        type: "FlowmeshPrometheus",
        // Not published: the OS user, home directory, addresses and the process's arguments.
        options: { port: settings.metricsPort, host: settings.host, excludes: ["os.user.*", "os.network.*", "process.arguments"] },
      },
    ],
  },
  tracing: { enabled: false },
  // $node.options (any node may ask another for its options) serializes what the options
  // reach, the broker's services included: arrays and buffers longer than this are named,
  // not listed (a write-ahead log's 1 MiB buffer made the answer pass NATS's 1 MB limit).
  maxSafeObjectSize: 1024,
  // The coordinator is the oldest live shard node.
  metadata: { startedAt: Date.now() },
  // SIGTERM/SIGINT: a shard node hands its partitions off before the broker stops.
  skipProcessEventRegistration: true,
  // Moleculer's internal middlewares are listed by hand (mixins/metrics.ts): Flowmesh's
  // request counters wrap the Validator, and Moleculer's per-call metrics are optional.
  internalMiddlewares: false,
  middlewares: [GracefulLeave, ...brokerMiddlewares(settings.metricsBuiltin)],
  flowmesh: settings,
};

export = config;
