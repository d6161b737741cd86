/**
 * Fuzzed input (issue 12): property-based tests (fast-check) throw generated bodies,
 * headers, query strings and odd requests at a running embedded node, byte for byte
 * (test/support/raw-http.ts). Whatever comes in:
 *
 * - never a 5xx (not even a 503: nothing is unavailable in embedded mode), always an
 *   answer, and the node lives (/health 200 after every property);
 * - nothing applied by a request that was refused: every record the fuzz sends is for
 *   one of its own hours (FUZZ_HOURS) or invalid, the test keeps a ledger of the bodies
 *   answered 200, and at the end those hours, read back (and again after a restart),
 *   are exactly the ledger's sums;
 * - where the spec says what the answer is (a JSON body with clean headers, a GET with
 *   a well-formed query), it is that answer: a model of SPEC §2 predicts the status
 *   (200, 400, 413, 415, 422 SUM_OVERFLOW) and GETs return the ledger's flows.
 *
 * Seed: FUZZ_SEED=n repeats a run; under CI a fixed seed; otherwise a random one. It is
 * logged at the start, and fast-check prints it (with the failing input) on a failure.
 * FUZZ_RUNS=x multiplies the number of runs (default 1: about 15,000 requests); FUZZ_LOG=file
 * writes every request and answer to a file.
 */
import fc from "fast-check";
import { appendFileSync } from "fs";
import { deflateSync, gzipSync } from "zlib";
import { expectedHour, request } from "../support/api-contract";
import { rawRequest, type RawRequest, type RawResponse } from "../support/raw-http";
import { sleep, startNode, tempDataDir, type NodeProcess } from "../support/processes";
import {
  MAX,
  SEED,
  FUZZ_LOG,
  runs,
  BODY_LIMIT,
  MAX_BATCH,
  MAX_STRING,
  ADMIN_TOKEN,
  BASE_HOUR,
  FUZZ_HOURS,
  isFlowString,
  validBatch,
  decodedBody,
  oddChar,
  flowString,
  cleanBatchText,
  bodySpec,
  render,
  authorization,
  headerSpec,
  isWellFormed,
  isPrintable,
  isJsonType,
  Ledger,
} from "../support/fuzz-input";

describe(`fuzzed input (embedded; seed ${SEED})`, () => {
  let node: NodeProcess;
  const dataDir = tempDataDir("fuzz");
  const env = { NODEID: "fuzz", DATA_DIR: dataDir, BODY_LIMIT: String(BODY_LIMIT), MAX_BATCH: String(MAX_BATCH), MAX_STRING: String(MAX_STRING), ADMIN_TOKEN, LOGLEVEL: "warn" };
  const ledger = new Ledger();
  /** Answers per property and status, printed at the end. */
  const tally = new Map<string, Map<number, number>>();
  let requestsSent = 0;
  let keyCounter = 0;
  const uniqueKey = () => `fuzz-${SEED}-${++keyCounter}`;
  const fcOptions = (numRuns: number) => ({
    seed: SEED,
    numRuns,
    // The node keeps state: a shrink would replay requests against a changed ledger. The failing input is printed as generated.
    endOnFailure: true,
  });

  beforeAll(async () => {
    // eslint-disable-next-line no-console
    console.log(`fuzz: seed ${SEED} (FUZZ_SEED=${SEED} repeats this run), hours ${FUZZ_HOURS[0]}..${FUZZ_HOURS[FUZZ_HOURS.length - 1]}`);
    node = await startNode(env);
  });

  afterAll(async () => {
    await node?.stop();
  });

  const isDead = () => node.child.exitCode !== null || node.child.signalCode !== null;

  /** A property's requests found the node dead: start it again on the same data, so the next properties still run. */
  beforeEach(async () => {
    if (isDead()) node = await startNode(env);
  });

  const nodeLog = () => node.output().split("\n").filter((l) => !/^\s+at Array\.(join|toString)/.test(l)).slice(-40).join("\n");

  /** Send one request; any 5xx, no answer, or a dead node fails with the input, the answer and the node's log. */
  async function send(property: string, req: RawRequest): Promise<RawResponse> {
    requestsSent++;
    let res: RawResponse;
    const shown = () => `${req.method} ${req.target.slice(0, 300)} headers=${JSON.stringify(req.headers).slice(0, 600)} body(${req.body?.length ?? 0} bytes)=${JSON.stringify(req.body?.subarray(0, 300).toString("utf8") ?? null)}`;
    try {
      res = await rawRequest(node.port, req);
    } catch (err) {
      await sleep(200); // time for a dying node's last words and exit
      throw new Error(`${shown()}\n-> no answer (${(err as Error).message})${isDead() ? "; THE NODE DIED" : ""}\nnode log:\n${nodeLog()}`);
    }
    if (FUZZ_LOG) appendFileSync(FUZZ_LOG, JSON.stringify({ property, method: req.method, target: req.target, headers: req.headers, chunked: req.chunked, body: req.body?.toString("base64"), status: res.status, answer: res.body.subarray(0, 300).toString("utf8") }) + "\n");
    const byStatus = tally.get(property) ?? new Map<number, number>();
    tally.set(property, byStatus.set(res.status, (byStatus.get(res.status) ?? 0) + 1));
    if (res.status >= 500) {
      await sleep(200);
      throw new Error(`${shown()}\n-> ${res.status} ${res.body.subarray(0, 500).toString("utf8")}${isDead() ? "; THE NODE DIED" : ""}\nnode log:\n${nodeLog()}`);
    }
    return res;
  }

  /** A POST answered 200 applied its records: put them in the ledger (a 200 must say how many). */
  function recordAccepted(res: RawResponse, body: Buffer, contentEncoding: string | undefined): void {
    if (res.status !== 200) return;
    const answer = JSON.parse(res.body.toString("utf8")) as { accepted: number };
    const flows = validBatch(JSON.parse(decodedBody(body, contentEncoding).toString("utf8")));
    if (flows === null) throw new Error(`200 for a body the spec refuses: ${body.subarray(0, 500).toString("utf8")} -> ${res.body.toString("utf8")}`);
    expect(answer).toEqual({ accepted: flows.length });
    ledger.add(flows);
  }

  async function expectAlive(): Promise<void> {
    const health = await request(`${node.url}/health`);
    expect(health.status).toBe(200);
    expect(node.child.exitCode).toBeNull();
  }

  /** The status SPEC §2 gives a JSON POST with clean headers, given what was applied so far. */
  function expectedStatus(bytes: Buffer): number {
    if (bytes.length > BODY_LIMIT) return 413;
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString("utf8"));
    } catch {
      return 400;
    }
    const flows = validBatch(parsed);
    if (flows === null) return 400;
    return ledger.wouldOverflow(flows) ? 422 : 200;
  }

  test("POST bodies: malformed, deep, huge numbers, odd Unicode, wrong types, duplicate keys, over the limit", async () => {
    await fc.assert(
      fc.asyncProperty(bodySpec, fc.boolean(), async (spec, keyed) => {
        const body = render(spec);
        const headers: [string, string][] = [["Content-Type", "application/json"]];
        if (keyed) headers.push(["Idempotency-Key", uniqueKey()]);
        const expected = expectedStatus(body);
        const res = await send("POST bodies", { method: "POST", target: "/flows", headers, body });
        recordAccepted(res, body, undefined);
        if (res.status !== expected) throw new Error(`expected ${expected}, got ${res.status} ${res.body.subarray(0, 400).toString("utf8")}`);
      }),
      fcOptions(runs(5000)),
    );
    await expectAlive();
  }, 120_000);

  test("POST headers: Content-Type, Content-Encoding, Idempotency-Key, Authorization, chunked, duplicates, replays", async () => {
    let lastKeyed: { req: RawRequest; answer: string } | null = null;
    await fc.assert(
      fc.asyncProperty(headerSpec, cleanBatchText, fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }), async (h, text, replay) => {
        // A replay of an accepted request with its key: answered as the first time, applied once.
        if (replay && lastKeyed !== null) {
          const again = await send("POST headers", lastKeyed.req);
          expect([again.status, again.body.toString("utf8")]).toEqual([200, lastKeyed.answer]);
          return;
        }
        const plain = Buffer.from(text, "utf8");
        const body = h.compression === "gzip" ? gzipSync(plain) : h.compression === "deflate" ? deflateSync(plain) : plain;
        const headers: [string, string][] = h.contentType.map((t) => ["Content-Type", t]);
        if (h.contentEncoding !== null) headers.push(["Content-Encoding", h.contentEncoding]);
        let validKey: string | null = null;
        if (h.key === "unique") headers.push(["Idempotency-Key", (validKey = uniqueKey())]);
        else if (h.key === "twice") headers.push(["Idempotency-Key", uniqueKey()], ["Idempotency-Key", uniqueKey()]);
        else if (h.key !== "none") headers.push(["Idempotency-Key", h.key.bad]);
        for (const a of h.authorization) headers.push(["Authorization", a]);
        headers.push(...h.extra);
        const req: RawRequest = { method: "POST", target: "/flows", headers, body, chunked: h.chunked };
        const expected = expectedStatus(plain);
        const res = await send("POST headers", req);
        recordAccepted(res, body, h.contentEncoding ?? undefined);
        if (res.status === 200 && validKey !== null) lastKeyed = { req, answer: res.body.toString("utf8") };
        // Where the spec decides (printable headers, one type, no encoding, no extra headers), the answer is the spec's.
        const clean = h.contentType.length === 1 && h.contentEncoding === null && h.compression === "none" && h.key !== "twice" && h.extra.length === 0 && headers.every(([, v]) => isPrintable(v) && v.length < 1000);
        if (clean) {
          const want = !isJsonType(h.contentType[0]) ? 415 : typeof h.key === "object" ? 400 : expected;
          if (res.status !== want) throw new Error(`expected ${want}, got ${res.status} ${res.body.subarray(0, 400).toString("utf8")}`);
        }
      }),
      fcOptions(runs(4000)),
    );
    await expectAlive();
  }, 120_000);

  /** A query's parameters, as pairs: names repeated or bracketed, values well-formed or odd. */
  const queryParam = fc.oneof(
    { weight: 6, arbitrary: fc.tuple(fc.constantFrom("src_app", "dest_app", "vpc_id"), flowString.filter(isWellFormed)) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom("src_app", "dest_app", "vpc_id"), fc.constantFrom("", "🚀".repeat(257))) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom("foo", "__proto__", "constructor", "toString", "hour ", "HOUR", "src_app ", "renderJson", "$responseType"), fc.constantFrom("x", "1", "")) },
  );
  const hourParam = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...FUZZ_HOURS).map(String) },
    { weight: 1, arbitrary: fc.constantFrom("0", String(BASE_HOUR - 1), String(MAX)) },
    { weight: 3, arbitrary: fc.constantFrom("-1", "1.5", "1e3", "0x10", "+1", " 1", "1 ", "01", "", "abc", "99999999999999999999", "9007199254740992", `${BASE_HOUR}\u0000`, "٣", "1_000") },
  );
  const isCanonicalHour = (s: string) => /^(0|[1-9][0-9]*)$/.test(s) && Number(s) <= MAX;

  test("GET /flows queries: well-formed ones answer the ledger's flows, odd ones a 4xx", async () => {
    const wellFormed = fc.record({
      hour: fc.oneof({ weight: 8, arbitrary: hourParam.map((h) => [h]) }, { weight: 1, arbitrary: fc.constant([] as string[]) }, { weight: 1, arbitrary: fc.array(hourParam, { minLength: 2, maxLength: 2 }) }),
      params: fc.array(queryParam, { maxLength: 4 }),
      bracketed: fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom("src_app[]=x", "src_app[a]=b", "hour[]=1", "dest_app[0][1]=x", "__proto__[hour]=1", "constructor[prototype][x]=1") }),
    });
    const odd = fc.oneof(
      fc.constantFrom("", "?", "&&&", "=", "==", "hour", "hour=", "hour=%", "hour=%zz", "hour=%00", "hour=%ED%A0%80", `hour=${BASE_HOUR}&src_app=%ED%A0%80`, `hour=${BASE_HOUR}&src_app=%`, `hour=${BASE_HOUR}&src_app=%C0%AF`, `hour=${BASE_HOUR}#frag`, `hour=${BASE_HOUR};src_app=a`, `hour=${BASE_HOUR}&${"a=1&".repeat(1500)}`, `hour=${BASE_HOUR}&src_app=${"%F0%9F%9A%80".repeat(300)}`),
      fc.string({ unit: oddChar, maxLength: 30 }).map((s) => `hour=${BASE_HOUR}&src_app=${s.replace(/[\s#]/g, "")}`),
      fc.string({ unit: "grapheme-ascii", maxLength: 40 }).map((s) => s.replace(/[\s#]/g, "")),
    );
    const query = fc.oneof({ weight: 3, arbitrary: wellFormed.map((q) => ({ wellFormed: q })) }, { weight: 1, arbitrary: odd.map((raw) => ({ raw })) });
    await fc.assert(
      fc.asyncProperty(query, async (q) => {
        if ("raw" in q) {
          const res = await send("GET queries", { method: "GET", target: `/flows?${q.raw}`, headers: [] });
          if (res.status === 200) expect(Array.isArray(JSON.parse(res.body.toString("utf8")))).toBe(true);
          return;
        }
        const { hour, params, bracketed } = q.wellFormed;
        const pairs: [string, string][] = [...hour.map((h) => ["hour", h] as [string, string]), ...params];
        const target = `/flows?${[...pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`), ...(bracketed ? [bracketed] : [])].join("&")}`;
        const res = await send("GET queries", { method: "GET", target, headers: [] });
        // The spec's answer: one canonical hour, each filter once and 1-256 characters; other names are ignored.
        const filters: Record<string, string[]> = {};
        for (const [k, v] of params) if (k === "src_app" || k === "dest_app" || k === "vpc_id") (filters[k] ??= []).push(v);
        const filtersValid = Object.values(filters).every((vs) => vs.length === 1 && isFlowString(vs[0]));
        const bracketBreaks = bracketed !== null && /^(src_app|hour|dest_app)\[/.test(bracketed);
        const valid = hour.length === 1 && isCanonicalHour(hour[0]) && filtersValid && !bracketBreaks;
        if (!valid) {
          if (res.status !== 400) throw new Error(`expected 400, got ${res.status} ${res.body.subarray(0, 300).toString("utf8")}`);
          return;
        }
        if (res.status !== 200) throw new Error(`expected 200, got ${res.status} ${res.body.subarray(0, 300).toString("utf8")}`);
        const h = Number(hour[0]);
        const want = expectedHour(ledger.flows, h).filter((f) => Object.entries(filters).every(([k, [v]]) => f[k as "src_app"] === v));
        expect(JSON.parse(res.body.toString("utf8"))).toEqual(want);
      }),
      fcOptions(runs(4000)),
    );
    await expectAlive();
  }, 120_000);

  test("odd requests: methods, paths, DELETE without the admin token, absolute and traversal targets", async () => {
    const method = fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "FOO", "get", "M-SEARCH", "PROPFIND");
    const path = fc.constantFrom(
      "/flows",
      "/flows/",
      "//flows",
      "/FLOWS",
      "/flows/../flows",
      "/flows%00",
      "/flows?before=1",
      `/flows?before=${BASE_HOUR + 100}`,
      `/flows?before=${MAX}`,
      "/flows?before=-1",
      "/flows?before=x",
      `/flows?hour=${BASE_HOUR}`,
      "/",
      "/index.html",
      "/index.html%00.js",
      "/../package.json",
      "/%2e%2e/package.json",
      "/..%2f..%2fetc%2fpasswd",
      "/public/../../package.json",
      "/.env",
      "/health",
      "/ready",
      "/cluster",
      "/metrics",
      "/api",
      "*",
      `http://127.0.0.1/flows?hour=${BASE_HOUR}`,
      "/flöws",
      `/${"a".repeat(20_000)}`,
      "/%",
      "/flows?%",
    );
    await fc.assert(
      fc.asyncProperty(method, path, fc.option(authorization, { nil: undefined }), fc.option(cleanBatchText, { nil: undefined }), async (m, target, auth, text) => {
        const headers: [string, string][] = auth === undefined ? [] : [["Authorization", auth]];
        let body: Buffer | undefined;
        if (text !== undefined) {
          body = Buffer.from(text, "utf8");
          headers.push(["Content-Type", "application/json"]);
        }
        const res = await send("odd requests", { method: m, target, headers, body });
        if (m === "DELETE" && res.status < 300) throw new Error(`DELETE ${target} without the admin token answered ${res.status}: ${res.body.toString("utf8")}`);
        // A POST that succeeds (moleculer-web matches paths without regard to case: POST /FLOWS is POST /flows) applied its body, and says so.
        if (m === "POST" && res.status >= 200 && res.status < 300 && body !== undefined) {
          expect(res.status).toBe(200);
          recordAccepted(res, body, undefined);
        }
      }),
      fcOptions(runs(2000)),
    );
    await expectAlive();
  }, 120_000);

  test("nothing but the accepted bodies was applied: the fuzz's hours read back exactly, and again after a restart", async () => {
    const readBack = async () => {
      for (const h of FUZZ_HOURS) {
        const r = await request(`${node.url}/flows?hour=${h}`);
        expect(r.status).toBe(200);
        expect(r.body).toEqual(expectedHour(ledger.flows, h));
      }
    };
    await expectAlive();
    await readBack();
    expect(node.output()).not.toMatch(/unhandled|uncaught|FATAL/i);
    await node.stop();
    node = await startNode(env);
    await readBack();
    const lines = [...tally].map(([p, byStatus]) => `  ${p}: ${[...byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(" ")}`);
    // eslint-disable-next-line no-console
    console.log(`fuzz (seed ${SEED}): ${requestsSent} requests, ${ledger.flows.length} records accepted in ${FUZZ_HOURS.length} hours\n${lines.join("\n")}`);
  }, 60_000);
});
