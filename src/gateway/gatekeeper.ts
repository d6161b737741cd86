/**
 * The gateway's decision for one API request, before its body is read: is the token
 * known and does it have the route's scope (src/gateway/tokens.ts), is the token within
 * its rate limit, and for writes, is there a MAX_INFLIGHT slot (src/gateway/backpressure.ts).
 * Pure of HTTP: the api service turns a refusal into its error, metric and log line.
 */
import type { InflightLimit, RateLimit } from "./backpressure";
import type { Scope, TokenSet } from "./tokens";

export type Refusal =
  /** No bearer token, or an unknown one. */
  | { status: 401; why: "missing" | "unknown" }
  /** A token without the scope; `token` null: the gateway has no tokens, so nobody has `admin`. */
  | { status: 403; scope: Scope; token: string | null }
  /** Over the token's rate limit, or every write slot taken; retry after `retryAfter` seconds. */
  | { status: 429; why: "rate_limit" | "inflight"; token: string | null; retryAfter: number };

export type Admission =
  /** `token`: the token's name (null without tokens); `release`: call when the request ends (writes hold a slot). */
  | { ok: true; token: string | null; release: (() => void) | null }
  | { ok: false; refusal: Refusal };

export class Gatekeeper {
  constructor(
    /** null: no tokens file (open on loopback or with AUTH=none). Replaced whole on reload. */
    public tokens: TokenSet | null,
    readonly inflight: InflightLimit,
    readonly rateLimit: RateLimit | null,
  ) {}

  admit(scope: Scope, authorization: string | undefined): Admission {
    let token: string | null = null;
    if (this.tokens !== null) {
      const verdict = this.tokens.check(authorization, scope);
      if (!verdict.ok) {
        return { ok: false, refusal: verdict.status === 401 ? { status: 401, why: verdict.why } : { status: 403, scope, token: verdict.token.name } };
      }
      token = verdict.token.name;
      const wait = this.rateLimit?.take(token) ?? 0;
      if (wait > 0) return { ok: false, refusal: { status: 429, why: "rate_limit", token, retryAfter: wait } };
    } else if (scope === "admin") {
      // Operator actions need a token with the admin scope: without a tokens file there is none.
      return { ok: false, refusal: { status: 403, scope, token: null } };
    }
    if (scope !== "ingest") return { ok: true, token, release: null };
    const release = this.inflight.acquire();
    if (release === null) return { ok: false, refusal: { status: 429, why: "inflight", token, retryAfter: 1 } };
    return { ok: true, token, release };
  }
}
