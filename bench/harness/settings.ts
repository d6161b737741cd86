/** The bench's settings, from BENCH_* environment variables (bench/README.md, "Environment"). */
import * as fs from "fs";

/** A number from the environment, at least `min` (default: positive), or `fallback` when unset. */
export function envNumber(name: string, fallback: number, min = Number.MIN_VALUE): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a ${min === 0 ? "number >= 0" : "positive number"}, got "${raw}"`);
  return n;
}

/** A comma list from the environment, each item one of `known`; `fallback` when unset. */
export function envList(name: string, known: string[], fallback: string[] = known): string[] {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const list = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const unknown = list.filter((s) => !known.includes(s));
  if (unknown.length > 0) throw new Error(`${name}: unknown ${unknown.join(", ")} (known: ${known.join(", ")})`);
  return list;
}

export const DURATION_S = envNumber("BENCH_DURATION", 8);
export const WARMUP_S = envNumber("BENCH_WARMUP", 2);
/** Paired throughput rounds of a non-reference target (method step 2b). */
export const ROUNDS = Math.max(1, Math.round(envNumber("BENCH_ROUNDS", 5)));
export const ROUND_S = envNumber("BENCH_ROUND_S", 4);
export const CONNECTIONS = Math.round(envNumber("BENCH_CONNECTIONS", 10));
export const PIPELINING = 1;
export const GET_ROUNDS = Math.round(envNumber("BENCH_GET_ROUNDS", 20));
export const LOAD_CONCURRENCY = Math.round(envNumber("BENCH_LOAD_CONCURRENCY", 4));
export const CLUSTER_SETTLE_TIMEOUT_MS = envNumber("BENCH_SETTLE_TIMEOUT", 180) * 1000;
export const HANDOFF_TIMEOUT_MS = envNumber("BENCH_HANDOFF_TIMEOUT", 300) * 1000;
export const FAILOVER_TIMEOUT_MS = envNumber("BENCH_FAILOVER_TIMEOUT", 60) * 1000;
/** Distinct flows the restart scenario loads before stopping the node (whole POSTs of 1000). */
export const RESTART_FLOWS = Math.max(1000, Math.round(envNumber("BENCH_RESTART_FLOWS", 10_000_000) / 1000) * 1000);
/** How long a clean stop, or a start until /ready, may take in the restart scenario. */
export const RESTART_TIMEOUT_MS = envNumber("BENCH_RESTART_TIMEOUT", 300) * 1000;

export const NATS_SERVER = process.env.BENCH_NATS_SERVER || (fs.existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server");
/** "0": Go's default (one per CPU). */
export const NATS_GOMAXPROCS = String(Math.round(envNumber("BENCH_NATS_GOMAXPROCS", 1, 0)));
export const NATS_ENV: Record<string, string> = NATS_GOMAXPROCS === "0" ? {} : { GOMAXPROCS: NATS_GOMAXPROCS };
/** The throughput scenario's load generator (harness/generator.ts): "wrk" unless BENCH_GENERATOR=autocannon. */
export const GENERATOR_REQUESTED = ((): "wrk" | "autocannon" => {
  const list = envList("BENCH_GENERATOR", ["wrk", "autocannon"], ["wrk"]);
  if (list.length !== 1) throw new Error(`BENCH_GENERATOR names one generator (wrk or autocannon), got "${process.env.BENCH_GENERATOR}"`);
  return list[0] as "wrk" | "autocannon";
})();
/** wrk: count every status code with a Lua response() (wrk then parses each response for Lua: more CPU). */
export const WRK_STATUS_CODES = process.env.BENCH_WRK_STATUS_CODES === "1";
