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
import { deflateSync, gzipSync, gunzipSync, inflateSync } from "zlib";
import { expectedHour, request, type Flow } from "../support/api-contract";
import { rawRequest, type RawRequest, type RawResponse } from "../support/raw-http";
import { sleep, startNode, tempDataDir, type NodeProcess } from "../support/processes";

const MAX = Number.MAX_SAFE_INTEGER;
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : process.env.CI ? 20_240_612 : Math.floor(Math.random() * 2 ** 31);
const RUNS_SCALE = Number(process.env.FUZZ_RUNS) || 1;
/** FUZZ_LOG=file: every request and its answer as a JSON line (to find which request a ledger mismatch came from). */
const FUZZ_LOG = process.env.FUZZ_LOG;
const runs = (n: number) => Math.max(1, Math.round(n * RUNS_SCALE));

/** The node's limits, small so that the edges are cheap to reach. */
const BODY_LIMIT = 256 * 1024;
const MAX_BATCH = 100;
const MAX_STRING = 256;
/** DELETE /flows needs it: the fuzz never sends it, so no DELETE may succeed. */
const ADMIN_TOKEN = `fuzz-admin-${SEED}-never-sent`;
/** The fuzz's own hours: every record it sends is for one of these, or invalid. */
const BASE_HOUR = 700_000;
const FUZZ_HOURS = Array.from({ length: 8 }, (_, i) => BASE_HOUR + i);

// ---------------------------------------------------------------- the model

const isFlowString = (v: unknown): v is string => typeof v === "string" && v.length >= 1 && [...v].length <= MAX_STRING;
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= MAX;

/** The batch a parsed body is, if SPEC §2 accepts it: an array of 1..MAX_BATCH valid records, or one record. */
function validBatch(body: unknown): Flow[] | null {
  const list = Array.isArray(body) ? body : body !== null && typeof body === "object" ? [body] : null;
  if (list === null || list.length < 1 || list.length > MAX_BATCH) return null;
  const flows: Flow[] = [];
  for (const r of list) {
    if (typeof r !== "object" || r === null || Array.isArray(r)) return null;
    const { src_app, dest_app, vpc_id, hour, bytes_tx, bytes_rx } = r as Record<string, unknown>;
    if (!isFlowString(src_app) || !isFlowString(dest_app) || !isFlowString(vpc_id)) return null;
    if (!isCount(hour) || !isCount(bytes_tx) || !isCount(bytes_rx)) return null;
    // + 0: a -0 in the body is a 0 (and reads back as one).
    flows.push({ src_app, dest_app, vpc_id, hour: hour + 0, bytes_tx: bytes_tx + 0, bytes_rx: bytes_rx + 0 });
  }
  return flows;
}

/** What the node has applied, by the test's account: the records of every POST answered 200. */
class Ledger {
  readonly flows: Flow[] = [];
  private readonly sums = new Map<string, [number, number]>();
  private readonly key = (f: Flow) => JSON.stringify([f.hour, f.src_app, f.dest_app, f.vpc_id]);

  /** Whether applying flows would take a sum past 2^53-1 (422 SUM_OVERFLOW, nothing applied). */
  wouldOverflow(flows: Flow[]): boolean {
    const after = new Map<string, [number, number]>();
    for (const f of flows) {
      const k = this.key(f);
      const [tx, rx] = after.get(k) ?? this.sums.get(k) ?? [0, 0];
      if (tx + f.bytes_tx > MAX || rx + f.bytes_rx > MAX) return true;
      after.set(k, [tx + f.bytes_tx, rx + f.bytes_rx]);
    }
    return false;
  }

  add(flows: Flow[]): void {
    for (const f of flows) {
      if (!FUZZ_HOURS.includes(f.hour)) throw new Error(`the fuzz sent a valid record outside its hours: ${JSON.stringify(f)}`);
      const k = this.key(f);
      const [tx, rx] = this.sums.get(k) ?? [0, 0];
      this.sums.set(k, [tx + f.bytes_tx, rx + f.bytes_rx]);
      this.flows.push(f);
    }
  }
}

/** The body bytes the node reads: decompressed when the request says gzip/deflate and the bytes are. */
function decodedBody(body: Buffer, contentEncoding: string | undefined): Buffer {
  const encoding = (contentEncoding ?? "").trim().toLowerCase();
  try {
    if (encoding === "gzip" || encoding === "x-gzip") return gunzipSync(body);
    if (encoding === "deflate") return inflateSync(body);
  } catch {
    /* not compressed after all: the node reads the bytes as they are */
  }
  return body;
}

// ---------------------------------------------------------------- generators

/** Characters that have broken parsers, encoders and key schemes somewhere. */
const oddChar = fc.oneof(
  fc.constantFrom("\u0000", "\t", "\n", "\r", " ", "\u0001", "\u001f", "\u007f", "\u0085", "\u00a0", "\u00ff", "\u200b", "\u2028", "\ufeff", "\ufffd", "\uffff"),
  fc.constantFrom("🚀", "👩‍👩‍👧", "e\u0301", "Ω", "中", '"', "\\", "/", "%", "&", "=", "+", "?", "#", "[", "]", "{", "}", "|", " "),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)), // lone surrogates
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
);
const POOL = ["web", "db", "a", "b", "vpc-1", "__proto__", "constructor", "toString", "\u0000", "🚀", "\ud800", "\udfff", "a\u0000", "\u0000a"];
/** Strings a record may carry: mostly from a small pool (so keys repeat and sums add up), sometimes odd or at the length limit. */
const flowString = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...POOL) },
  { weight: 3, arbitrary: fc.string({ unit: oddChar, minLength: 1, maxLength: 10 }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(255, 256, 257), fc.constantFrom("x", "🚀", "\ud800", "\u0000")).map(([n, c]) => c.repeat(n)) },
);
/** A JSON value that is not what a field wants. */
const wrongTypeText = fc.constantFrom("null", "true", "false", "[]", "{}", '""', '"5"', "[1]", '{"a":1}', '["web"]', '{"__proto__":{"x":1}}', "[[[[[[[[[[[]]]]]]]]]]]");
/** Counts: small (sums repeat), near 2^53-1 (overflows), and other spellings of integers. */
const validCountText = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 1000 }).map(String) },
  { weight: 2, arbitrary: fc.constantFrom(String(MAX), String(MAX - 1), "4503599627370496", "0", "-0", "1e2", "1E2", "100.000", "9007199254740991.0000000001", "1e-400", "0e999999", "-0.0e-0") },
);
const invalidCountText = fc.oneof(
  fc.constantFrom("-1", "0.5", "1e-7", "4.9e-324", "9007199254740992", "9007199254740993", "123456789012345678901234567890", "1e400", "-1e400", "-0.0000001", `1${"0".repeat(400)}`, "9".repeat(5000), `0.${"0".repeat(400)}1`),
  wrongTypeText,
  fc.double({ noDefaultInfinity: false }).map((d) => JSON.stringify(d)), // NaN and infinities are written as null
);
/** Hours: the fuzz's own (in several spellings) or invalid ones, never a valid hour of anyone else's. */
const validHourText = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...FUZZ_HOURS).map(String) },
  { weight: 1, arbitrary: fc.constantFrom(...FUZZ_HOURS).chain((h) => fc.constantFrom(`${h}.0`, `${h}e0`, `${h / 10}e1`, `${h}.00000000000000001`)) },
);
const invalidHourText = fc.oneof(fc.constantFrom("-1", `${BASE_HOUR}.5`, `"${BASE_HOUR}"`, "1e400", "9007199254740992", "-0.5"), wrongTypeText);

const FIELDS = ["src_app", "dest_app", "vpc_id", "hour", "bytes_tx", "bytes_rx"] as const;
type Field = (typeof FIELDS)[number];
const validText: Record<Field, fc.Arbitrary<string>> = {
  src_app: flowString.map((s) => JSON.stringify(s)),
  dest_app: flowString.map((s) => JSON.stringify(s)),
  vpc_id: flowString.map((s) => JSON.stringify(s)),
  hour: validHourText,
  bytes_tx: validCountText,
  bytes_rx: validCountText,
};
const invalidStringText = fc.oneof(fc.constant('""'), wrongTypeText, fc.constantFrom(257, 300).map((n) => JSON.stringify("🚀".repeat(n))));
const invalidText: Record<Field, fc.Arbitrary<string>> = {
  src_app: invalidStringText,
  dest_app: invalidStringText,
  vpc_id: invalidStringText,
  hour: invalidHourText,
  bytes_tx: invalidCountText,
  bytes_rx: invalidCountText,
};

/** A record's members as [name, JSON text] pairs, written in order: duplicates and extras allowed. */
type Members = [string, string][];
const membersText = (m: Members) => `{${m.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;

const cleanMembers: fc.Arbitrary<Members> = fc.tuple(...FIELDS.map((f) => validText[f])).map((values) => FIELDS.map((f, i) => [f, values[i]] as [string, string]));
/** A record: mostly valid, or with fields broken, missing, repeated (the last one counts), or extra members. */
const recordText: fc.Arbitrary<string> = fc
  .record({
    members: cleanMembers,
    broken: fc.oneof({ weight: 4, arbitrary: fc.constant([] as [Field, string][]) }, { weight: 1, arbitrary: fc.array(fc.constantFrom(...FIELDS).chain((f) => invalidText[f].map((t) => [f, t] as [Field, string])), { minLength: 1, maxLength: 2 }) }),
    missing: fc.oneof({ weight: 12, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(...FIELDS) }),
    repeated: fc.oneof({ weight: 8, arbitrary: fc.constant([] as [Field, string][]) }, { weight: 1, arbitrary: fc.array(fc.constantFrom(...FIELDS).chain((f) => fc.oneof(validText[f], invalidText[f]).map((t) => [f, t] as [Field, string])), { minLength: 1, maxLength: 2 }) }),
    extra: fc.oneof(
      { weight: 8, arbitrary: fc.constant([] as Members) },
      {
        weight: 1,
        arbitrary: fc.array(fc.tuple(fc.constantFrom("__proto__", "constructor", "prototype", "Hour", "hour ", "", "x", "flows"), fc.oneof(wrongTypeText, validHourText, cleanMembers.map(membersText))), { minLength: 1, maxLength: 2 }),
      },
    ),
    reversed: fc.boolean(),
  })
  .map(({ members, broken, missing, repeated, extra, reversed }) => {
    let m: Members = members.map(([k, v]) => [k, broken.find(([f]) => f === k)?.[1] ?? v]);
    if (missing !== null) m = m.filter(([k]) => k !== missing);
    m = [...m, ...extra, ...repeated];
    return membersText(reversed ? m.reverse() : m);
  });

/** A batch of valid records, each in the fuzz's hours. */
const cleanBatchText = fc.array(cleanMembers.map(membersText), { minLength: 1, maxLength: 4 }).map((r) => `[${r.join(",")}]`);

/**
 * What a POST body is, as a compact description (a failure prints it; render() makes
 * the bytes): most are JSON text built from records, the rest malformed, deep, binary
 * or over the limit.
 */
type BodySpec =
  | { kind: "text"; text: string }
  | { kind: "nested"; open: string; close: string; depth: number; inner: string; balanced: boolean; at: "top" | "record" | "field" }
  | { kind: "truncated"; text: string; at: number }
  | { kind: "bytes"; text: string; insert: readonly number[]; at: number }
  | { kind: "oversize"; record: string };

const NESTINGS: [string, string][] = [
  ["[", "]"],
  ['{"a":', "}"],
  ['[{"src_app":', "}]"],
  ['{"__proto__":', "}"],
];
const bodySpec: fc.Arbitrary<BodySpec> = fc.oneof(
  { weight: 10, arbitrary: fc.array(recordText, { minLength: 1, maxLength: 8 }).map((r) => ({ kind: "text" as const, text: `[${r.join(",")}]` })) },
  { weight: 3, arbitrary: recordText.map((text) => ({ kind: "text" as const, text })) },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.constantFrom("[]", "{}", "null", "true", "0", '"[]"', "[null]", "[[]]", "[1,2]", '{"flows":[]}', " [ ] ", "\ufeff[]", "[]]", "[,]", "[1,]", "{'a':1}", "NaN", "[Infinity]", "undefined", "", " ", "\u0000"),
      fc.json().map((j) => j),
      recordText.map((r) => `[[${r}]]`),
      recordText.map((r) => `{"flows":[${r}]}`),
      recordText.map((r) => `[${r},[${r}]]`),
      recordText.map((r) => `[${r}] trailing`),
      recordText.map((r) => `[${r}] // comment`),
      fc.integer({ min: MAX_BATCH, max: MAX_BATCH + 2 }).chain((n) => cleanMembers.map((m) => `[${Array(n).fill(membersText(m)).join(",")}]`)),
    ).map((text) => ({ kind: "text" as const, text })),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      nesting: fc.constantFrom(...NESTINGS),
      depth: fc.constantFrom(2, 100, 1_000, 5_000, 20_000, 60_000),
      inner: fc.oneof(fc.constantFrom("1", "[]", "{}", '"x"', "null"), cleanMembers.map(membersText)),
      balanced: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      at: fc.constantFrom("top" as const, "record" as const, "field" as const),
    }).map(({ nesting, depth, inner, balanced, at }) => ({ kind: "nested" as const, open: nesting[0], close: nesting[1], depth, inner, balanced, at })),
  },
  { weight: 1, arbitrary: fc.tuple(cleanBatchText, fc.nat()).map(([text, n]) => ({ kind: "truncated" as const, text, at: n % text.length })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(cleanBatchText, fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf0, 0x9f, 0x9a], [0xc0, 0xaf], [0x00], [0xef, 0xbb, 0xbf]), fc.nat())
      .map(([text, insert, n]) => ({ kind: "bytes" as const, text, insert, at: n % text.length })),
  },
  { weight: 1, arbitrary: cleanMembers.map((m) => ({ kind: "oversize" as const, record: membersText(m) })) },
);

function render(spec: BodySpec): Buffer {
  switch (spec.kind) {
    case "text":
      return Buffer.from(spec.text, "utf8");
    case "nested": {
      const deep = spec.open.repeat(spec.depth) + spec.inner + (spec.balanced ? spec.close.repeat(spec.depth) : "");
      const valid = '"dest_app":"d","vpc_id":"v","hour":' + BASE_HOUR + ',"bytes_tx":1,"bytes_rx":1';
      if (spec.at === "top") return Buffer.from(deep, "utf8");
      // As a batch's element after a valid record, or as the value of a record's field.
      if (spec.at === "record") return Buffer.from(`[{"src_app":"s",${valid}},${deep}]`, "utf8");
      return Buffer.from(`[{"src_app":${deep},${valid}}]`, "utf8");
    }
    case "truncated":
      return Buffer.from(spec.text.slice(0, spec.at), "utf8");
    case "bytes": {
      // Bytes that are not UTF-8 (or a BOM, or NUL) in the middle of a valid batch's text.
      const text = Buffer.from(spec.text, "utf8");
      return Buffer.concat([text.subarray(0, spec.at), Buffer.from(spec.insert), text.subarray(spec.at)]);
    }
    case "oversize": {
      const count = Math.ceil(BODY_LIMIT / (spec.record.length + 1)) + 1;
      return Buffer.from(`[${Array(count).fill(spec.record).join(",")}]`, "utf8");
    }
  }
}

/** Header values: printable, or with bytes a header should not carry (NUL, DEL, Latin-1, UTF-8, very long). */
const headerNoise = fc.oneof(
  fc.string({ unit: "grapheme-ascii", maxLength: 20 }),
  fc.string({ unit: oddChar, maxLength: 8 }).map((s) => s.replace(/[\r\n]/g, "")),
  fc.constantFrom("", " ", "\u0000", "\u007f", "ü", "\u00ff", "🚀", "a".repeat(9000)),
);
const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom("application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.flows+json", " application/json ;x=y") },
  {
    weight: 3,
    arbitrary: fc.constantFrom("text/plain", "text/json", "application/jsonp", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "*/*", "application/", "json", "", "application/json, text/plain", "application/json\u0000", "application/jsön"),
  },
  { weight: 1, arbitrary: headerNoise },
);
const contentEncoding = fc.constantFrom("identity", "gzip", "deflate", "br", "compress", "x-gzip", "GZIP", "gzip, identity", "", "x-evil");
/** Real compression or not: the header may say gzip over plain JSON, or nothing over gzip. */
const compression = fc.constantFrom("none" as const, "gzip" as const, "deflate" as const);
const authorization = fc.oneof(
  fc.constantFrom("Bearer", "Bearer ", "Bearer x", "bearer x", "Basic Zm9vOmJhcg==", "Token abc", "Bearer a b", "Bearer \u00ff", `Bearer ${"t".repeat(9000)}`, `Bearer ${ADMIN_TOKEN.slice(0, -1)}`, `Bearer ${ADMIN_TOKEN}x`),
  headerNoise.map((s) => `Bearer ${s}`),
);
const KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;
/** A header value as the node reads it: HTTP drops spaces and tabs around it. */
const headerValue = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, "");
/** Idempotency-Key values that are not 1-128 visible ASCII characters (once spaces around them are dropped). */
const badKey = fc.oneof(fc.constantFrom("", " ", "a b", "k".repeat(129), "ü", "ключ", "🚀", "\u0000", "\t", "key\u007f", "a\u0000b"), headerNoise).filter((s) => !KEY_PATTERN.test(headerValue(s)));

interface HeaderSpec {
  contentType: string[]; // none, one, or duplicates
  compression: "none" | "gzip" | "deflate";
  contentEncoding: string | null;
  key: "none" | "unique" | { bad: string } | "twice";
  authorization: string[];
  extra: [string, string][];
  chunked: boolean;
}
const headerSpec: fc.Arbitrary<HeaderSpec> = fc.record({
  contentType: fc.oneof({ weight: 1, arbitrary: fc.constant([] as string[]) }, { weight: 6, arbitrary: contentType.map((t) => [t]) }, { weight: 1, arbitrary: fc.array(contentType, { minLength: 2, maxLength: 2 }) }),
  compression,
  contentEncoding: fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: contentEncoding }),
  key: fc.oneof(fc.constant("none" as const), fc.constant("unique" as const), badKey.map((bad) => ({ bad })), fc.constant("twice" as const)),
  authorization: fc.oneof({ weight: 2, arbitrary: fc.constant([] as string[]) }, { weight: 2, arbitrary: authorization.map((a) => [a]) }, { weight: 1, arbitrary: fc.array(authorization, { minLength: 2, maxLength: 2 }) }),
  extra: fc.array(
    fc.tuple(fc.oneof(fc.constantFrom("X-Forwarded-For", "Expect", "Accept", "Accept-Encoding", "Cookie", "Origin", "X-Http-Method-Override", "Content-Language"), fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/)), fc.oneof(headerNoise, fc.constantFrom("100-continue", "gzip", "*/*", "DELETE"))),
    { maxLength: 3 },
  ),
  chunked: fc.boolean(),
});

/** No lone surrogate (encodeURIComponent can write it). */
function isWellFormed(s: string): boolean {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}
const isPrintable = (s: string) => /^[\x20-\x7e]*$/.test(s);
const isJsonType = (t: string) => {
  const type = t.split(";", 1)[0].trim().toLowerCase();
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"));
};

// ---------------------------------------------------------------- the test

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
