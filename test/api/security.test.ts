/// <reference lib="dom" />
/**
 * API tokens over HTTP, against real node processes (embedded): which token may use
 * which route (401 / 403 / 200, with WWW-Authenticate and moleculer-web's error JSON),
 * open probes and static files, refusals counted in /metrics and logged with the token's
 * name but never a secret, rotation by SIGHUP, and the safe default: a gateway without
 * tokens serves only on a loopback address unless AUTH=none. The dashboard asks for a
 * read token in a real browser when the API answers 401.
 */
import * as fs from "fs";
import type { Browser } from "playwright-core";
import { flow, freshHour, request } from "../support/api-contract";
import { describeWithChromium, launchChromium } from "../support/browser";
import { bearer, sha256Hex, startExpectingExit, tokensFile } from "../support/gateway-auth";
import { parseExposition, sampleValue } from "../support/prometheus";
import { sleep, startNode, waitFor, type NodeProcess } from "../support/processes";

const AGENT = "agent-7f3c9a1e5b2d4c6e8a0b";
const READER = "reader-2b4d6f8a0c1e3a5c7e9f";
const OPS = "ops-9e8d7c6b5a4f3e2d1c0b";
const ALL = "all-1a2b3c4d5e6f7a8b9c0d";
const UNKNOWN = "unknown-0000000000000000";
const SECRETS = [AGENT, READER, OPS, ALL];

const TOKEN_LINES = [
  "# name  scopes  secret",
  `agent   ingest  ${AGENT}`,
  `reader  read    sha256:${sha256Hex(READER)}`,
  "",
  `ops     admin   ${OPS}`,
  `all     ingest,read,admin  ${ALL}`,
];

describe("API tokens (API_TOKENS_FILE)", () => {
  let node: NodeProcess;
  let file: string;
  const url = () => node.url;

  beforeAll(async () => {
    file = tokensFile(TOKEN_LINES);
    node = await startNode({ NODEID: "security-tokens", API_TOKENS_FILE: file });
  });
  afterAll(() => node?.stop());

  const call = (method: string, path: string, token: string | null, json?: unknown) => request(`${url()}${path}`, { method, headers: bearer(token), json });

  test("each route answers each token as its scopes say", async () => {
    const h = freshHour();
    const routes: [string, string, unknown, Record<string, number>][] = [
      // method, path, body, status by token (none / unknown / agent / reader / ops / all)
      ["POST", "/flows", [flow("sec", "db", "v", h, 1, 1)], { none: 401, unknown: 401, agent: 200, reader: 403, ops: 403, all: 200 }],
      ["GET", `/flows?hour=${h}`, undefined, { none: 401, unknown: 401, agent: 403, reader: 200, ops: 403, all: 200 }],
      ["GET", "/cluster", undefined, { none: 401, unknown: 401, agent: 403, reader: 200, ops: 403, all: 200 }],
      ["GET", "/metrics", undefined, { none: 401, unknown: 401, agent: 403, reader: 200, ops: 403, all: 200 }],
      ["DELETE", `/flows?before=${h - 50}`, undefined, { none: 401, unknown: 401, agent: 403, reader: 403, ops: 200, all: 200 }],
      ["GET", "/health", undefined, { none: 200, unknown: 200, agent: 200, reader: 200, ops: 200, all: 200 }],
      ["GET", "/ready", undefined, { none: 200, unknown: 200, agent: 200, reader: 200, ops: 200, all: 200 }],
    ];
    const tokens: Record<string, string | null> = { none: null, unknown: UNKNOWN, agent: AGENT, reader: READER, ops: OPS, all: ALL };
    const seen: string[] = [];
    const want: string[] = [];
    for (const [method, path, body, expected] of routes) {
      for (const [who, token] of Object.entries(tokens)) {
        const r = await call(method, path, token, body);
        seen.push(`${method} ${path} ${who} ${r.status}`);
        want.push(`${method} ${path} ${who} ${expected[who]}`);
      }
    }
    expect(seen).toEqual(want);
    // Two tokens with ingest wrote; only they.
    expect((await call("GET", `/flows?hour=${h}`, READER)).body).toEqual([flow("sec", "db", "v", h, 2, 2)]);
  });

  test("401: WWW-Authenticate: Bearer, moleculer-web's error JSON; unknown tokens are invalid_token", async () => {
    const missing = await call("GET", "/cluster", null);
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe('Bearer realm="flowmesh"');
    expect(missing.body).toEqual({ name: "MoleculerClientError", message: expect.stringMatching(/Authorization: Bearer/), code: 401, type: "UNAUTHORIZED", data: { why: "missing" } });
    const unknown = await call("GET", "/cluster", UNKNOWN);
    expect(unknown.headers.get("www-authenticate")).toBe('Bearer realm="flowmesh", error="invalid_token"');
    expect(unknown.body).toMatchObject({ code: 401, type: "UNAUTHORIZED", data: { why: "unknown" } });
    expect(JSON.stringify(unknown.body)).not.toContain(UNKNOWN);
    // Other schemes, and the file's sha256 value itself, are not tokens.
    for (const authorization of [`Basic ${READER}`, `Bearer sha256:${sha256Hex(READER)}`, `Bearer ${READER} extra`, "Bearer"]) {
      expect((await request(`${url()}/cluster`, { headers: { authorization } })).status).toBe(401);
    }
    // The scheme is case-insensitive (RFC 7235).
    expect((await request(`${url()}/cluster`, { headers: { authorization: `bearer ${READER}` } })).status).toBe(200);
  });

  test("403 names the missing scope and the token, never the secret", async () => {
    const r = await call("POST", "/flows", READER, [flow("a", "b", "c", freshHour(), 1, 1)]);
    expect(r.status).toBe(403);
    expect(r.headers.get("www-authenticate")).toBe('Bearer realm="flowmesh", error="insufficient_scope", scope="ingest"');
    expect(r.body).toEqual({ name: "MoleculerClientError", message: "Token 'reader' lacks the ingest scope that POST /flows needs", code: 403, type: "FORBIDDEN", data: { scope: "ingest", token: "reader" } });
  });

  test("a route matched another way (case, trailing slash) is guarded the same", async () => {
    const body = [flow("case", "b", "c", freshHour(), 1, 1)];
    for (const path of ["/FLOWS", "/flows/", "/Flows/"]) {
      expect([path, (await call("POST", path, null, body)).status]).toEqual([path, 401]);
      expect([path, (await call("POST", path, READER, body)).status]).toEqual([path, 403]);
    }
    expect((await call("GET", "/CLUSTER", null)).status).toBe(401);
  });

  test("the dashboard's files load without a token; unknown URLs are 404", async () => {
    for (const file of ["/", "/index.html", "/dashboard.js", "/dashboard.css"]) {
      const r = await fetch(`${url()}${file}`);
      expect([file, r.status]).toEqual([file, 200]);
      await r.text();
    }
    expect((await call("GET", "/nope", null)).status).toBe(404);
  });

  test("a refused body is not read: 401 on a POST over BODY_LIMIT, before 413", async () => {
    const big = "x".repeat(9 * 1024 * 1024);
    const r = await request(`${url()}/flows`, { method: "POST", body: big, headers: { "content-type": "application/json" } });
    expect(r.status).toBe(401);
    expect((await call("GET", "/health", null)).status).toBe(200);
  });

  test("refusals are counted by reason in /metrics (reads and writes apart)", async () => {
    const metrics = async () => parseExposition((await call("GET", "/metrics", READER)).body as string);
    const v = (f: Awaited<ReturnType<typeof metrics>>, name: string, reason: string) => sampleValue(f, name, { node_id: "security-tokens", reason });
    const before = await metrics();
    const h = freshHour();
    await call("POST", "/flows", null, [flow("m", "b", "c", h, 1, 1)]);
    await call("POST", "/flows", UNKNOWN, [flow("m", "b", "c", h, 1, 1)]);
    await call("POST", "/flows", READER, [flow("m", "b", "c", h, 1, 1)]);
    await call("DELETE", "/flows?before=1", AGENT);
    await call("GET", `/flows?hour=${h}`, null);
    await call("GET", "/cluster", AGENT);
    const after = await metrics();
    const delta = (name: string, reason: string) => v(after, name, reason) - v(before, name, reason);
    expect(delta("flowmesh_rejected_batches_total", "unauthorized")).toBe(2);
    expect(delta("flowmesh_rejected_batches_total", "forbidden")).toBe(2);
    expect(delta("flowmesh_rejected_reads_total", "unauthorized")).toBe(1);
    expect(delta("flowmesh_rejected_reads_total", "forbidden")).toBe(1);
    expect(delta("flowmesh_rejected_batches_total", "error")).toBe(0);
  });

  test("the log names the refused token, never a secret", async () => {
    await sleep(1100); // refusals are logged at most once a second
    await call("GET", "/cluster", AGENT);
    await waitFor("the refusal's log line", async () => /Refused 403 GET \/cluster from \S+ token 'agent'/.test(node.output()), 5000);
    for (const secret of [...SECRETS, UNKNOWN]) expect(node.output()).not.toContain(secret);
  });

  test("SIGHUP re-reads the file: a new token works, a removed one gets 401; a bad file keeps the tokens in use", async () => {
    const NEW = "rotated-5f4e3d2c1b0a9f8e7d6c";
    expect((await call("GET", "/cluster", NEW)).status).toBe(401);
    // reader is replaced by reader2; the rest stay.
    fs.writeFileSync(file, TOKEN_LINES.filter((l) => !l.startsWith("reader")).concat(`reader2 read ${NEW}`).join("\n") + "\n");
    node.child.kill("SIGHUP");
    await waitFor("the new token to work", async () => (await call("GET", "/cluster", NEW)).status === 200, 10000);
    expect((await call("GET", "/cluster", READER)).status).toBe(401);
    expect((await call("POST", "/flows", AGENT, [flow("r", "b", "c", freshHour(), 1, 1)])).status).toBe(200);

    // A malformed line: the reload is refused with its line number, and the tokens in use stay.
    fs.writeFileSync(file, `reader2 read ${NEW}\nbroken-line-without-secret read\n`);
    node.child.kill("SIGHUP");
    await waitFor("the reload's error", async () => /API tokens NOT reloaded.*line 2/.test(node.output()), 10000);
    expect((await call("GET", "/cluster", NEW)).status).toBe(200);
    expect((await call("POST", "/flows", AGENT, [flow("r", "b", "c", freshHour(), 1, 1)])).status).toBe(200);
    expect(node.child.exitCode).toBeNull();
    expect(node.output()).not.toContain(NEW);
  });
});

describe("without a tokens file", () => {
  test("on loopback (the default) every route is open as before, but DELETE /flows is refused", async () => {
    const node = await startNode({ NODEID: "security-open" });
    try {
      const h = freshHour();
      expect((await request(`${node.url}/flows`, { method: "POST", json: [flow("o", "b", "c", h, 1, 1)] })).status).toBe(200);
      expect((await request(`${node.url}/flows?hour=${h}`)).status).toBe(200);
      expect((await request(`${node.url}/cluster`)).status).toBe(200);
      const del = await request(`${node.url}/flows?before=${h}`, { method: "DELETE", headers: bearer("anything-at-all-here") });
      expect(del.status).toBe(403);
      expect(del.body).toMatchObject({ type: "FORBIDDEN", message: expect.stringMatching(/API_TOKENS_FILE/) });
      expect((await request(`${node.url}/flows?hour=${h}`)).body).toHaveLength(1);
    } finally {
      await node.stop();
    }
  });

  test("bound to 0.0.0.0 it refuses to start, saying how to add tokens", async () => {
    const { code, output } = await startExpectingExit({ NODEID: "security-exposed", HOST: "0.0.0.0" });
    expect(code).toBe(1);
    expect(output).toMatch(/Refusing to serve HTTP on 0\.0\.0\.0:\d+ without API tokens/);
    expect(output).toMatch(/API_TOKENS_FILE=/);
    expect(output).toMatch(/AUTH=none/);
  });

  test("bound to 0.0.0.0 with AUTH=none it starts and serves openly", async () => {
    const node = await startNode({ NODEID: "security-authnone", HOST: "0.0.0.0", AUTH: "none" });
    try {
      expect((await request(`${node.url}/cluster`)).status).toBe(200);
    } finally {
      await node.stop();
    }
  });

  test("bound to 0.0.0.0 with a tokens file it starts and asks for tokens", async () => {
    const node = await startNode({ NODEID: "security-exposed-tokens", HOST: "0.0.0.0", API_TOKENS_FILE: tokensFile(TOKEN_LINES) });
    try {
      expect((await request(`${node.url}/cluster`)).status).toBe(401);
      expect((await request(`${node.url}/cluster`, { headers: bearer(READER) })).status).toBe(200);
    } finally {
      await node.stop();
    }
  });

  test("a malformed tokens file stops the start with its line number; so does a missing one", async () => {
    const bad = await startExpectingExit({ NODEID: "security-badfile", API_TOKENS_FILE: tokensFile([`agent ingest ${AGENT}`, "# ok", `reader read,write ${READER}`]) });
    expect(bad.code).toBe(1);
    expect(bad.output).toMatch(/line 3: unknown scope "write"/);
    expect(bad.output).not.toContain(READER);
    const missing = await startExpectingExit({ NODEID: "security-nofile", API_TOKENS_FILE: "/nonexistent/flowmesh-tokens" });
    expect(missing.code).toBe(1);
    expect(missing.output).toMatch(/ENOENT.*\/nonexistent\/flowmesh-tokens/);
  });
});

describeWithChromium("the dashboard with API tokens", () => {
  let browser: Browser;
  let node: NodeProcess;
  beforeAll(async () => {
    [browser, node] = await Promise.all([launchChromium(), startNode({ NODEID: "security-dashboard", API_TOKENS_FILE: tokensFile(TOKEN_LINES), PARTITIONS: "16" })]);
  }, 60000);
  afterAll(async () => {
    await browser?.close();
    await node?.stop();
  });

  test("asks for a read token on 401, keeps it for the tab, and polls with it", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));
    const authorizations: Promise<string | undefined>[] = [];
    page.on("request", (r) => {
      if (r.url().endsWith("/cluster")) authorizations.push(r.allHeaders().then((h) => h["authorization"]));
    });
    await page.goto(`${node.url}/`);
    const form = page.locator("#token-form");
    await form.waitFor({ state: "visible", timeout: 10000 });
    expect(await page.locator("#status").getAttribute("data-state")).toBe("auth");

    // A token without the read scope: asked again, saying why.
    await page.fill("#token-input", AGENT);
    await page.click("#token-form button[type=submit]");
    await page.waitForFunction(() => /lacks the read scope/.test(document.getElementById("token-label")?.textContent ?? ""), undefined, { timeout: 10000 });

    await page.fill("#token-input", READER);
    await page.click("#token-form button[type=submit]");
    await page.waitForFunction(() => Number(document.body.dataset.polls ?? 0) >= 2, undefined, { timeout: 10000 });
    expect(await form.isHidden()).toBe(true);
    expect(await page.locator("#partitions [data-partition]").count()).toBe(16);
    expect(await page.evaluate(() => sessionStorage.getItem("flowmesh.apiToken"))).toBe(READER);
    const sent = await Promise.all(authorizations);
    expect(sent[0]).toBeUndefined();
    expect(sent[sent.length - 1]).toBe(`Bearer ${READER}`);

    // A reload in the same tab polls with the kept token, without asking.
    await page.reload();
    await page.waitForFunction(() => Number(document.body.dataset.polls ?? 0) >= 1, undefined, { timeout: 10000 });
    expect(await form.isHidden()).toBe(true);
    expect(errors).toEqual([]);
    await context.close();
  });
});
