/**
 * API tokens (API_TOKENS_FILE): parsing the file and checking a request's
 * `Authorization: Bearer <token>` against it. Pure: the gateway reads the file and
 * turns a refusal into its HTTP error.
 *
 * File format, one token per line: `<name> <scopes> <secret>`
 *   - name: what logs and rate limits call the token (never the secret);
 *   - scopes: a comma list of `ingest`, `read`, `admin`;
 *   - secret: the token itself, or `sha256:<64 hex>` of it (the file then holds no usable secret).
 * `#` starts a comment line; blank lines are ignored. Any other line that does not fit
 * is an error naming its line number: a half-read file must never serve.
 *
 * Only SHA-256 digests are kept in memory. A presented token is hashed and compared with
 * every known digest by timingSafeEqual, without stopping at a match: the time taken says
 * nothing about which bytes matched, nor which token did.
 */
import { createHash, timingSafeEqual } from "crypto";

export const SCOPES = ["ingest", "read", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

export interface ApiToken {
  name: string;
  scopes: ReadonlySet<Scope>;
  /** SHA-256 of the secret. */
  digest: Buffer;
}

/** A line of the tokens file that does not fit the format; `line` counts from 1. */
export class TokenFileError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
    this.name = "TokenFileError";
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const HASHED = /^sha256:([0-9a-fA-F]{64})$/;
/** Visible ASCII: what an HTTP header carries unchanged. */
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;
/** Shorter secrets are guessable; `openssl rand -hex 32` makes a good one. */
export const MIN_SECRET_LENGTH = 16;

export function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

function parseScopes(field: string, line: number): Set<Scope> {
  const scopes = new Set<Scope>();
  for (const s of field.split(",")) {
    if (!(SCOPES as readonly string[]).includes(s)) {
      throw new TokenFileError(line, `unknown scope ${JSON.stringify(s)} (scopes: a comma list of ${SCOPES.join(", ")})`);
    }
    scopes.add(s as Scope);
  }
  return scopes;
}

function parseSecret(field: string, line: number): Buffer {
  const hashed = HASHED.exec(field);
  if (hashed) return Buffer.from(hashed[1], "hex");
  if (field.startsWith("sha256:")) throw new TokenFileError(line, "a sha256: secret must be 64 hex digits (sha256sum of the token)");
  if (!VISIBLE_ASCII.test(field)) throw new TokenFileError(line, "the secret must be visible ASCII characters (it travels in an HTTP header)");
  if (field.length < MIN_SECRET_LENGTH) throw new TokenFileError(line, `the secret is shorter than ${MIN_SECRET_LENGTH} characters (make one with: openssl rand -hex 32)`);
  return sha256(field);
}

/** The tokens a file lists. Throws TokenFileError at the first line that does not fit. */
export function parseTokens(text: string): ApiToken[] {
  const tokens: ApiToken[] = [];
  const names = new Set<string>();
  const digests = new Set<string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const content = lines[i].trim();
    if (content === "" || content.startsWith("#")) continue;
    const fields = content.split(/\s+/);
    if (fields.length !== 3) {
      // Never echo the line: it may hold a secret.
      throw new TokenFileError(line, `expected 3 fields "<name> <scopes> <secret>", found ${fields.length}`);
    }
    const [name, scopeField, secretField] = fields;
    if (!NAME.test(name)) throw new TokenFileError(line, `bad token name ${JSON.stringify(name)} (letters, digits and . _ @ -, up to 64)`);
    if (names.has(name)) throw new TokenFileError(line, `token name ${JSON.stringify(name)} is listed twice`);
    const scopes = parseScopes(scopeField, line);
    const digest = parseSecret(secretField, line);
    const hex = digest.toString("hex");
    if (digests.has(hex)) throw new TokenFileError(line, `token ${JSON.stringify(name)} has the same secret as an earlier line`);
    names.add(name);
    digests.add(hex);
    tokens.push({ name, scopes, digest });
  }
  return tokens;
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive); null for anything else. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer +(\S+) *$/i.exec(header);
  return m ? m[1] : null;
}

export type Verdict =
  | { ok: true; token: ApiToken }
  /** 401: no bearer token, or one that is not listed. */
  | { ok: false; status: 401; why: "missing" | "unknown" }
  /** 403: a listed token without the scope the route needs. */
  | { ok: false; status: 403; token: ApiToken; scope: Scope };

export class TokenSet {
  constructor(readonly tokens: readonly ApiToken[]) {}

  get size(): number {
    return this.tokens.length;
  }

  /** Who presents `authorization`, and whether it may use a route that needs `scope`. */
  check(authorization: string | undefined, scope: Scope): Verdict {
    const presented = bearerToken(authorization);
    if (presented === null) return { ok: false, status: 401, why: "missing" };
    const digest = sha256(presented);
    let found: ApiToken | null = null;
    for (const token of this.tokens) {
      // Every digest is compared, whatever matched before: constant time over the list.
      if (timingSafeEqual(digest, token.digest)) found = token;
    }
    if (found === null) return { ok: false, status: 401, why: "unknown" };
    if (!found.scopes.has(scope)) return { ok: false, status: 403, token: found, scope };
    return { ok: true, token: found };
  }
}
