/**
 * Flowmesh settings, read from the environment (one place; moleculer.config.ts
 * exposes them as `flowmesh` and services read them from there).
 */
export interface FlowmeshSettings {
  /** HTTP port of the gateway (PORT). */
  port: number;
  /** Interface the gateway binds (HOST). */
  host: string;
  /** Fixed number of partitions P (PARTITIONS); set when a cluster is created. */
  partitions: number;
  /** Copies of each partition, primary included (REPLICAS); capped by shard nodes, 1 embedded. */
  replicas: number;
  /** Records per batch, max (MAX_BATCH). */
  maxBatch: number;
  /** Characters (Unicode code points) per string field, max (MAX_STRING). */
  maxString: number;
  /** Request body bytes, max (BODY_LIMIT). */
  bodyLimit: number;
  /** Idempotency keys remembered per partition (IDEMPOTENCY_MAX). */
  idempotencyMax: number;
  /** Seconds an idempotency key is remembered (IDEMPOTENCY_TTL). */
  idempotencyTtlSeconds: number;
  /** Moleculer's metrics module and GET /metrics (METRICS=true|false). */
  metrics: boolean;
  /** Also serve /metrics on this port with Moleculer's own listener (METRICS_PORT); null: only through the gateway. */
  metricsPort: number | null;
  /** Moleculer's per-call request, event and transit metrics (METRICS_BUILTIN=true|false); they cost ~8 µs per action call. */
  metricsBuiltin: boolean;
  /** Write messages from a gateway to one shard node unanswered at a time (WRITES_IN_FLIGHT); writes meanwhile share the next. */
  writesInFlight: number;
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** Only `true` or `false`: moleculer-runner reads METRICS itself, and would take "0" as a number (enabled). */
function bool(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (raw === "true" || raw === "false") return raw === "true";
  throw new Error(`${name} must be true or false, got ${JSON.stringify(raw)}`);
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): FlowmeshSettings {
  return {
    port: int(env, "PORT", 3000, 0),
    host: env.HOST || "127.0.0.1",
    partitions: int(env, "PARTITIONS", 256, 1),
    replicas: int(env, "REPLICAS", 2, 1),
    maxBatch: int(env, "MAX_BATCH", 10000, 1),
    maxString: int(env, "MAX_STRING", 256, 1),
    bodyLimit: int(env, "BODY_LIMIT", 8 * 1024 * 1024, 1),
    idempotencyMax: int(env, "IDEMPOTENCY_MAX", 10000, 1),
    idempotencyTtlSeconds: int(env, "IDEMPOTENCY_TTL", 600, 1),
    metrics: bool(env, "METRICS", true),
    metricsPort: env.METRICS_PORT ? int(env, "METRICS_PORT", 0, 0) : null,
    metricsBuiltin: bool(env, "METRICS_BUILTIN", false),
    writesInFlight: int(env, "WRITES_IN_FLIGHT", 1, 1),
  };
}
