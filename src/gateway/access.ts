/**
 * Who may use which HTTP route: the scope each route needs, and whether the gateway
 * checks tokens at all (safe by default, like Redis' protected mode: without a tokens
 * file it serves only on a loopback address, unless the operator says AUTH=none).
 */
import type { Scope } from "./tokens";

/** Routes anyone may call: liveness and readiness probes carry no token. */
export const OPEN_ROUTES: ReadonlySet<string> = new Set(["GET /health", "GET /ready"]);

/** Write routes that take records; every other non-GET route is an operator's action. */
const INGEST_ROUTES: ReadonlySet<string> = new Set(["POST /flows"]);

/**
 * What an API route (`"<METHOD> <path>"` of the alias moleculer-web matched) needs:
 * "open", or a scope. A route added later is `read` if it is a GET and `admin`
 * otherwise, unless listed above: new routes are closed until someone opens them.
 */
export function routeAccess(route: string): Scope | "open" {
  if (OPEN_ROUTES.has(route)) return "open";
  if (INGEST_ROUTES.has(route)) return "ingest";
  return route.startsWith("GET ") || route.startsWith("HEAD ") ? "read" : "admin";
}

/** 127.0.0.0/8, ::1 (bare, bracketed or IPv4-mapped) and `localhost`: reachable from this machine only. */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  const v4 = h.startsWith("::ffff:") ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

export type AuthMode =
  /** Every API route but the open ones needs a token from the file. */
  | { kind: "tokens"; file: string }
  /** No tokens: every route is open, but operator actions (admin) are refused. */
  | { kind: "open"; because: "loopback" | "AUTH=none" };

/**
 * How the gateway guards its routes, or an Error saying why it must not start: bound to
 * an address others can reach, without tokens, and without AUTH=none.
 */
export function authMode(opts: { tokensFile: string | null; authNone: boolean; host: string; port: number }): AuthMode {
  if (opts.tokensFile !== null && opts.authNone) {
    throw new Error("AUTH=none and API_TOKENS_FILE are both set: unset one of them");
  }
  if (opts.tokensFile !== null) return { kind: "tokens", file: opts.tokensFile };
  if (opts.authNone) return { kind: "open", because: "AUTH=none" };
  if (isLoopback(opts.host)) return { kind: "open", because: "loopback" };
  throw new Error(
    `Refusing to serve HTTP on ${opts.host}:${opts.port} without API tokens: anyone who can reach it could write, read and delete flows. ` +
      `Give the gateway a tokens file, one token per line "<name> <scopes> <secret>" (e.g. "agents ingest $(openssl rand -hex 32)"), ` +
      `with API_TOKENS_FILE=/path/to/tokens; or bind it to 127.0.0.1 (HOST); or set AUTH=none if it is meant to be open (a trusted network).`,
  );
}

/** The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3): `invalid_token` when a token was given but is unknown. */
export function bearerChallenge(why: "missing" | "unknown" | string): string {
  return why === "unknown" ? 'Bearer realm="flowmesh", error="invalid_token"' : 'Bearer realm="flowmesh"';
}

/** The `WWW-Authenticate` header of a 403 for a token without the scope (RFC 6750 §3.1). */
export function scopeChallenge(scope: Scope): string {
  return `Bearer realm="flowmesh", error="insufficient_scope", scope="${scope}"`;
}
