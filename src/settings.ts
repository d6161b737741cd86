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
  /** Where a shard node keeps its partitions (DATA_DIR); null: ./data embedded, ./data/<NODEID> in a cluster. */
  dataDir: string | null;
  /** When a write is acknowledged (DURABILITY): on disk on every copy, written to the OS, or memory only. */
  durability: Durability;
  /** Hours kept (RETENTION_HOURS): older ones are dropped everywhere and refused; null keeps every hour. */
  retentionHours: number | null;
  /** API tokens with their scopes (API_TOKENS_FILE, re-read on SIGHUP); null: no tokens (see authNone). */
  apiTokensFile: string | null;
  /**
   * AUTH=none: serve without tokens even on a non-loopback HOST. Without it and without
   * API_TOKENS_FILE, a gateway binds only to a loopback address (it refuses to start otherwise).
   */
  authNone: boolean;
  /** Write requests a gateway holds at a time (MAX_INFLIGHT); the next gets 429 with Retry-After. */
  maxInflight: number;
  /** Requests per minute per API token (RATE_LIMIT_PER_MIN), over every route; null: no limit. */
  rateLimitPerMin: number | null;
  /** Hours one range read or top-N query may span (MAX_RANGE_HOURS; default 744, a month). */
  maxRangeHours: number;
}

/** The hour now, as records count hours: whole hours since the Unix epoch. */
export function currentHour(nowMs = Date.now()): number {
  return Math.floor(nowMs / 3_600_000);
}

/** The oldest hour kept under RETENTION_HOURS (null: no retention). */
export function oldestKeptHour(retentionHours: number | null, nowMs = Date.now()): number | null {
  return retentionHours === null ? null : currentHour(nowMs) - retentionHours;
}

export const DURABILITY_MODES = ["sync", "interval", "memory"] as const;
export type Durability = (typeof DURABILITY_MODES)[number];

function oneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, values: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if ((values as readonly string[]).includes(raw)) return raw as T;
  throw new Error(`${name} must be one of ${values.join(", ")}, got ${JSON.stringify(raw)}`);
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

/** AUTH: `none` or unset; anything else is a typo that must not open or close the gateway by accident. */
function authNone(env: NodeJS.ProcessEnv): boolean {
  const raw = env.AUTH;
  if (raw === undefined || raw === "") return false;
  if (raw === "none") return true;
  throw new Error(`AUTH must be none (serve without API tokens) or unset, got ${JSON.stringify(raw)}`);
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
    writesInFlight: int(env, "WRITES_IN_FLIGHT", 4, 1),
    dataDir: env.DATA_DIR || null,
    durability: oneOf(env, "DURABILITY", DURABILITY_MODES, "sync"),
    retentionHours: env.RETENTION_HOURS ? int(env, "RETENTION_HOURS", 0, 1) : null,
    apiTokensFile: env.API_TOKENS_FILE || null,
    authNone: authNone(env),
    maxInflight: int(env, "MAX_INFLIGHT", 64, 1),
    rateLimitPerMin: env.RATE_LIMIT_PER_MIN ? int(env, "RATE_LIMIT_PER_MIN", 0, 1) : null,
    maxRangeHours: int(env, "MAX_RANGE_HOURS", 744, 1),
  };
}
