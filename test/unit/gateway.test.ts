/**
 * The gateway's access rules, in process: the tokens file's format and its errors, the
 * bearer check (401 / 403 / admitted), which routes need which scope, the loopback rule
 * that keeps a gateway without tokens off the network, the backpressure helpers, and the
 * gatekeeper that combines them per request.
 */
import { createHash } from "crypto";
import { authMode, isLoopback, routeAccess } from "../../src/gateway/access";
import { InflightLimit, RateLimit, ThrottledLog } from "../../src/gateway/backpressure";
import { Gatekeeper } from "../../src/gateway/gatekeeper";
import { bearerToken, parseTokens, TokenFileError, TokenSet } from "../../src/gateway/tokens";

const hex = (s: string) => createHash("sha256").update(s).digest("hex");
const SECRET_A = "agent-secret-0123456789";
const SECRET_R = "reader-secret-0123456789";
const SECRET_O = "ops-secret-0123456789abc";

const FILE = [
  "# Flowmesh API tokens",
  "",
  `agents   ingest        ${SECRET_A}`,
  `  dashboard read       sha256:${hex(SECRET_R)}  `,
  `ops      admin,read,ingest  sha256:${hex(SECRET_O).toUpperCase()}`,
  "   # an indented comment",
].join("\r\n");

function lineError(text: string): TokenFileError {
  try {
    parseTokens(text);
  } catch (err) {
    if (err instanceof TokenFileError) return err;
    throw err;
  }
  throw new Error("parsed without error");
}

describe("parseTokens", () => {
  test("reads names, scopes and secrets (plain or sha256:), skipping comments and blank lines; keeps only digests", () => {
    const tokens = parseTokens(FILE);
    expect(tokens.map((t) => [t.name, [...t.scopes].sort()])).toEqual([
      ["agents", ["ingest"]],
      ["dashboard", ["read"]],
      ["ops", ["admin", "ingest", "read"]],
    ]);
    expect(tokens[0].digest.toString("hex")).toBe(hex(SECRET_A));
    expect(tokens[1].digest.toString("hex")).toBe(hex(SECRET_R));
    expect(JSON.stringify(tokens)).not.toContain(SECRET_A);
  });

  test("an empty file (or only comments) is no tokens", () => {
    expect(parseTokens("")).toEqual([]);
    expect(parseTokens("# nothing yet\n\n")).toEqual([]);
  });

  test.each([
    ["two fields", `agents ingest`, 3, /3 fields/],
    ["four fields", `agents ingest ${SECRET_A} extra`, 3, /3 fields/],
    ["an unknown scope", `agents ingest,write ${SECRET_A}`, 3, /unknown scope "write"/],
    ["an empty scope", `agents ingest, ${SECRET_A}`, 3, /unknown scope ""/],
    ["a short secret", `agents ingest short`, 3, /shorter than 16/],
    ["a bad sha256", `agents ingest sha256:abc`, 3, /64 hex digits/],
    ["a bad name", `age/nts ingest ${SECRET_A}`, 3, /bad token name/],
    ["a name twice", `agents ingest ${SECRET_A}\nagents read ${SECRET_R}`, 4, /listed twice/],
    ["a secret twice", `agents ingest ${SECRET_A}\nother read sha256:${hex(SECRET_A)}`, 4, /same secret/],
  ])("%s stops with the line number", (_what, lines, line, message) => {
    const err = lineError(`# header\n\n${lines}`);
    expect(err.line).toBe(line);
    expect(err.message).toMatch(message);
  });

  test("an error never quotes the secret", () => {
    const err = lineError(`agents ingest ${SECRET_A} oops`);
    expect(err.message).not.toContain(SECRET_A);
  });
});

describe("bearerToken", () => {
  test.each([
    [undefined, null],
    ["", null],
    ["Bearer abc", "abc"],
    ["bearer abc", "abc"],
    ["BEARER  abc ", "abc"],
    ["Basic abc", null],
    ["Bearer", null],
    ["Bearer a b", null],
    ["Bearerabc", null],
  ])("%j -> %j", (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });
});

describe("TokenSet.check", () => {
  const set = new TokenSet(parseTokens(FILE));

  test("no header, another scheme, an unknown token: 401 (missing / unknown)", () => {
    expect(set.check(undefined, "read")).toEqual({ ok: false, status: 401, why: "missing" });
    expect(set.check(`Basic ${SECRET_R}`, "read")).toEqual({ ok: false, status: 401, why: "missing" });
    expect(set.check("Bearer not-a-token-at-all", "read")).toEqual({ ok: false, status: 401, why: "unknown" });
    // The digest is not the token: presenting the file's sha256 value does not work.
    expect(set.check(`Bearer sha256:${hex(SECRET_R)}`, "read")).toMatchObject({ status: 401, why: "unknown" });
    expect(set.check(`Bearer ${SECRET_R}x`, "read")).toMatchObject({ status: 401 });
  });

  test("a known token without the scope: 403 naming it; with the scope: admitted", () => {
    expect(set.check(`Bearer ${SECRET_R}`, "ingest")).toMatchObject({ ok: false, status: 403, scope: "ingest", token: { name: "dashboard" } });
    expect(set.check(`Bearer ${SECRET_R}`, "read")).toMatchObject({ ok: true, token: { name: "dashboard" } });
    expect(set.check(`Bearer ${SECRET_A}`, "ingest")).toMatchObject({ ok: true, token: { name: "agents" } });
    expect(set.check(`Bearer ${SECRET_A}`, "admin")).toMatchObject({ status: 403 });
    for (const scope of ["ingest", "read", "admin"] as const) expect(set.check(`bearer ${SECRET_O}`, scope)).toMatchObject({ ok: true, token: { name: "ops" } });
  });

  test("an empty set refuses everyone", () => {
    expect(new TokenSet([]).check(`Bearer ${SECRET_A}`, "read")).toMatchObject({ status: 401, why: "unknown" });
  });
});

describe("route access", () => {
  test("probes are open; POST /flows ingests; other GETs read; everything else is admin", () => {
    const routes = ["POST /flows", "GET /flows", "DELETE /flows", "GET /cluster", "GET /ready", "GET /health", "GET /metrics"];
    expect(Object.fromEntries(routes.map((r) => [r, routeAccess(r)]))).toEqual({
      "POST /flows": "ingest",
      "GET /flows": "read",
      "DELETE /flows": "admin",
      "GET /cluster": "read",
      "GET /ready": "open",
      "GET /health": "open",
      "GET /metrics": "read",
    });
    // A route added later is closed until listed: a GET reads, anything else is an operator's.
    expect(routeAccess("GET /something-new")).toBe("read");
    expect(routeAccess("POST /flows/bulk")).toBe("admin");
    expect(routeAccess("PUT /flows")).toBe("admin");
  });
});

describe("safe by default", () => {
  test.each([
    ["127.0.0.1", true],
    ["127.1.2.3", true],
    ["localhost", true],
    ["LOCALHOST", true],
    ["::1", true],
    ["[::1]", true],
    ["::ffff:127.0.0.1", true],
    ["0.0.0.0", false],
    ["::", false],
    ["10.0.0.5", false],
    ["128.0.0.1", false],
    ["127.0.0.1.example.com", false],
    ["my-host", false],
  ])("isLoopback(%j) is %j", (host, loopback) => {
    expect(isLoopback(host)).toBe(loopback);
  });

  test("without tokens: open on loopback, refused elsewhere unless AUTH=none; tokens win everywhere", () => {
    const base = { tokensFile: null, authNone: false, port: 3000 };
    expect(authMode({ ...base, host: "127.0.0.1" })).toEqual({ kind: "open", because: "loopback" });
    expect(() => authMode({ ...base, host: "0.0.0.0" })).toThrow(/Refusing to serve HTTP on 0\.0\.0\.0:3000 without API tokens.*API_TOKENS_FILE.*AUTH=none/);
    expect(authMode({ ...base, host: "0.0.0.0", authNone: true })).toEqual({ kind: "open", because: "AUTH=none" });
    expect(authMode({ ...base, host: "0.0.0.0", tokensFile: "/etc/flowmesh/tokens" })).toEqual({ kind: "tokens", file: "/etc/flowmesh/tokens" });
    expect(authMode({ ...base, host: "127.0.0.1", tokensFile: "/t" })).toEqual({ kind: "tokens", file: "/t" });
    expect(() => authMode({ ...base, host: "0.0.0.0", tokensFile: "/t", authNone: true })).toThrow(/both set/);
  });
});

describe("backpressure", () => {
  test("InflightLimit holds at most its limit; release is idempotent", () => {
    const limit = new InflightLimit(2);
    const a = limit.acquire();
    const b = limit.acquire();
    expect(a).not.toBeNull();
    expect(b).not.toBeNull();
    expect(limit.acquire()).toBeNull();
    a!();
    a!();
    expect(limit.inflight).toBe(1);
    const c = limit.acquire();
    expect(c).not.toBeNull();
    expect(limit.acquire()).toBeNull();
    b!();
    c!();
    expect(limit.inflight).toBe(0);
  });

  test("RateLimit counts per key per window and says how long to wait", () => {
    let t = 1_000_000;
    const rl = new RateLimit(2, 60_000, () => t);
    expect([rl.take("a"), rl.take("a"), rl.take("b")]).toEqual([0, 0, 0]);
    expect(rl.take("a")).toBe(60);
    t += 45_000;
    expect(rl.take("a")).toBe(15);
    t += 15_000; // the next window
    expect(rl.take("a")).toBe(0);
  });

  test("ThrottledLog writes at most a line per interval and counts the rest", () => {
    let t = 0;
    const lines: string[] = [];
    const log = new ThrottledLog((l) => lines.push(l), 1000, () => t);
    log.note("one");
    log.note("two");
    log.note("three");
    t = 1000;
    log.note("four");
    expect(lines).toEqual(["one", "four (and 2 more refusal(s) not logged since the last line)"]);
  });
});

describe("Gatekeeper", () => {
  const tokens = new TokenSet(parseTokens(FILE));

  test("with tokens: 401, 403 with the scope and name, else admitted with the token's name", () => {
    const keeper = new Gatekeeper(tokens, new InflightLimit(10), null);
    expect(keeper.admit("read", undefined)).toEqual({ ok: false, refusal: { status: 401, why: "missing" } });
    expect(keeper.admit("read", "Bearer nope-nope-nope-nope")).toEqual({ ok: false, refusal: { status: 401, why: "unknown" } });
    expect(keeper.admit("admin", `Bearer ${SECRET_R}`)).toEqual({ ok: false, refusal: { status: 403, scope: "admin", token: "dashboard" } });
    expect(keeper.admit("read", `Bearer ${SECRET_R}`)).toEqual({ ok: true, token: "dashboard", release: null });
  });

  test("without tokens: everything is admitted but admin, which nobody has", () => {
    const keeper = new Gatekeeper(null, new InflightLimit(10), null);
    expect(keeper.admit("read", undefined)).toEqual({ ok: true, token: null, release: null });
    expect(keeper.admit("ingest", undefined)).toMatchObject({ ok: true, token: null });
    expect(keeper.admit("admin", `Bearer ${SECRET_O}`)).toEqual({ ok: false, refusal: { status: 403, scope: "admin", token: null } });
  });

  test("writes hold a slot until released; reads never take one; refused requests take none", () => {
    const inflight = new InflightLimit(1);
    const keeper = new Gatekeeper(tokens, inflight, null);
    expect(keeper.admit("ingest", `Bearer ${SECRET_R}`)).toMatchObject({ ok: false });
    const first = keeper.admit("ingest", `Bearer ${SECRET_A}`);
    expect(first).toMatchObject({ ok: true, token: "agents" });
    expect(keeper.admit("ingest", `Bearer ${SECRET_A}`)).toEqual({ ok: false, refusal: { status: 429, why: "inflight", token: "agents", retryAfter: 1 } });
    expect(keeper.admit("read", `Bearer ${SECRET_R}`)).toMatchObject({ ok: true });
    if (first.ok) first.release?.();
    expect(keeper.admit("ingest", `Bearer ${SECRET_A}`)).toMatchObject({ ok: true });
  });

  test("the rate limit counts per token, after the token is checked", () => {
    const t = 0;
    const keeper = new Gatekeeper(tokens, new InflightLimit(10), new RateLimit(1, 60_000, () => t));
    expect(keeper.admit("read", `Bearer ${SECRET_R}`)).toMatchObject({ ok: true });
    expect(keeper.admit("read", `Bearer ${SECRET_R}`)).toEqual({ ok: false, refusal: { status: 429, why: "rate_limit", token: "dashboard", retryAfter: 60 } });
    // An unknown token is refused as such, and uses nobody's allowance.
    expect(keeper.admit("read", "Bearer nope-nope-nope-nope")).toMatchObject({ refusal: { status: 401 } });
    expect(keeper.admit("read", `Bearer ${SECRET_O}`)).toMatchObject({ ok: true, token: "ops" });
  });
});
