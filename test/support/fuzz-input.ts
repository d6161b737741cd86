/**
 * The fuzz's input (test/api/fuzz.test.ts): generators of request bodies, headers and
 * queries (fast-check arbitraries), and the model of SPEC §2 that predicts their answers.
 */
import fc from "fast-check";
import { gunzipSync, inflateSync } from "zlib";
import type { Flow } from "./api-contract";

export const MAX = Number.MAX_SAFE_INTEGER;
export const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : process.env.CI ? 20_240_612 : Math.floor(Math.random() * 2 ** 31);
export const RUNS_SCALE = Number(process.env.FUZZ_RUNS) || 1;
/** FUZZ_LOG=file: every request and its answer as a JSON line (to find which request a ledger mismatch came from). */
export const FUZZ_LOG = process.env.FUZZ_LOG;
export const runs = (n: number) => Math.max(1, Math.round(n * RUNS_SCALE));

/** The node's limits, small so that the edges are cheap to reach. */
export const BODY_LIMIT = 256 * 1024;
export const MAX_BATCH = 100;
export const MAX_STRING = 256;
/** DELETE /flows needs it: the fuzz never sends it, so no DELETE may succeed. */
export const ADMIN_TOKEN = `fuzz-admin-${SEED}-never-sent`;
/** The fuzz's own hours: every record it sends is for one of these, or invalid. */
export const BASE_HOUR = 700_000;
export const FUZZ_HOURS = Array.from({ length: 8 }, (_, i) => BASE_HOUR + i);

// ---------------------------------------------------------------- the model

export const isFlowString = (v: unknown): v is string => typeof v === "string" && v.length >= 1 && [...v].length <= MAX_STRING;
export const isCount = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= MAX;

/** The batch a parsed body is, if SPEC §2 accepts it: an array of 1..MAX_BATCH valid records, or one record. */
export function validBatch(body: unknown): Flow[] | null {
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
export class Ledger {
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
export function decodedBody(body: Buffer, contentEncoding: string | undefined): Buffer {
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
export const oddChar = fc.oneof(
  fc.constantFrom("\u0000", "\t", "\n", "\r", " ", "\u0001", "\u001f", "\u007f", "\u0085", "\u00a0", "\u00ff", "\u200b", "\u2028", "\ufeff", "\ufffd", "\uffff"),
  fc.constantFrom("🚀", "👩‍👩‍👧", "e\u0301", "Ω", "中", '"', "\\", "/", "%", "&", "=", "+", "?", "#", "[", "]", "{", "}", "|", " "),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)), // lone surrogates
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
);
export const POOL = ["web", "db", "a", "b", "vpc-1", "__proto__", "constructor", "toString", "\u0000", "🚀", "\ud800", "\udfff", "a\u0000", "\u0000a"];
/** Strings a record may carry: mostly from a small pool (so keys repeat and sums add up), sometimes odd or at the length limit. */
export const flowString = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...POOL) },
  { weight: 3, arbitrary: fc.string({ unit: oddChar, minLength: 1, maxLength: 10 }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(255, 256, 257), fc.constantFrom("x", "🚀", "\ud800", "\u0000")).map(([n, c]) => c.repeat(n)) },
);
/** A JSON value that is not what a field wants. */
export const wrongTypeText = fc.constantFrom("null", "true", "false", "[]", "{}", '""', '"5"', "[1]", '{"a":1}', '["web"]', '{"__proto__":{"x":1}}', "[[[[[[[[[[[]]]]]]]]]]]");
/** Counts: small (sums repeat), near 2^53-1 (overflows), and other spellings of integers. */
export const validCountText = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 1000 }).map(String) },
  { weight: 2, arbitrary: fc.constantFrom(String(MAX), String(MAX - 1), "4503599627370496", "0", "-0", "1e2", "1E2", "100.000", "9007199254740991.0000000001", "1e-400", "0e999999", "-0.0e-0") },
);
export const invalidCountText = fc.oneof(
  fc.constantFrom("-1", "0.5", "1e-7", "4.9e-324", "9007199254740992", "9007199254740993", "123456789012345678901234567890", "1e400", "-1e400", "-0.0000001", `1${"0".repeat(400)}`, "9".repeat(5000), `0.${"0".repeat(400)}1`),
  wrongTypeText,
  fc.double({ noDefaultInfinity: false }).map((d) => JSON.stringify(d)), // NaN and infinities are written as null
);
/** Hours: the fuzz's own (in several spellings) or invalid ones, never a valid hour of anyone else's. */
export const validHourText = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...FUZZ_HOURS).map(String) },
  { weight: 1, arbitrary: fc.constantFrom(...FUZZ_HOURS).chain((h) => fc.constantFrom(`${h}.0`, `${h}e0`, `${h / 10}e1`, `${h}.00000000000000001`)) },
);
export const invalidHourText = fc.oneof(fc.constantFrom("-1", `${BASE_HOUR}.5`, `"${BASE_HOUR}"`, "1e400", "9007199254740992", "-0.5"), wrongTypeText);

export const FIELDS = ["src_app", "dest_app", "vpc_id", "hour", "bytes_tx", "bytes_rx"] as const;
export type Field = (typeof FIELDS)[number];
export const validText: Record<Field, fc.Arbitrary<string>> = {
  src_app: flowString.map((s) => JSON.stringify(s)),
  dest_app: flowString.map((s) => JSON.stringify(s)),
  vpc_id: flowString.map((s) => JSON.stringify(s)),
  hour: validHourText,
  bytes_tx: validCountText,
  bytes_rx: validCountText,
};
export const invalidStringText = fc.oneof(fc.constant('""'), wrongTypeText, fc.constantFrom(257, 300).map((n) => JSON.stringify("🚀".repeat(n))));
export const invalidText: Record<Field, fc.Arbitrary<string>> = {
  src_app: invalidStringText,
  dest_app: invalidStringText,
  vpc_id: invalidStringText,
  hour: invalidHourText,
  bytes_tx: invalidCountText,
  bytes_rx: invalidCountText,
};

/** A record's members as [name, JSON text] pairs, written in order: duplicates and extras allowed. */
export type Members = [string, string][];
export const membersText = (m: Members) => `{${m.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;

export const cleanMembers: fc.Arbitrary<Members> = fc.tuple(...FIELDS.map((f) => validText[f])).map((values) => FIELDS.map((f, i) => [f, values[i]] as [string, string]));
/** A record: mostly valid, or with fields broken, missing, repeated (the last one counts), or extra members. */
export const recordText: fc.Arbitrary<string> = fc
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
export const cleanBatchText = fc.array(cleanMembers.map(membersText), { minLength: 1, maxLength: 4 }).map((r) => `[${r.join(",")}]`);

/**
 * What a POST body is, as a compact description (a failure prints it; render() makes
 * the bytes): most are JSON text built from records, the rest malformed, deep, binary
 * or over the limit.
 */
export type BodySpec =
  | { kind: "text"; text: string }
  | { kind: "nested"; open: string; close: string; depth: number; inner: string; balanced: boolean; at: "top" | "record" | "field" }
  | { kind: "truncated"; text: string; at: number }
  | { kind: "bytes"; text: string; insert: readonly number[]; at: number }
  | { kind: "oversize"; record: string };

export const NESTINGS: [string, string][] = [
  ["[", "]"],
  ['{"a":', "}"],
  ['[{"src_app":', "}]"],
  ['{"__proto__":', "}"],
];
export const bodySpec: fc.Arbitrary<BodySpec> = fc.oneof(
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

export function render(spec: BodySpec): Buffer {
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
export const headerNoise = fc.oneof(
  fc.string({ unit: "grapheme-ascii", maxLength: 20 }),
  fc.string({ unit: oddChar, maxLength: 8 }).map((s) => s.replace(/[\r\n]/g, "")),
  fc.constantFrom("", " ", "\u0000", "\u007f", "ü", "\u00ff", "🚀", "a".repeat(9000)),
);
export const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom("application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.flows+json", " application/json ;x=y") },
  {
    weight: 3,
    arbitrary: fc.constantFrom("text/plain", "text/json", "application/jsonp", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "*/*", "application/", "json", "", "application/json, text/plain", "application/json\u0000", "application/jsön"),
  },
  { weight: 1, arbitrary: headerNoise },
);
export const contentEncoding = fc.constantFrom("identity", "gzip", "deflate", "br", "compress", "x-gzip", "GZIP", "gzip, identity", "", "x-evil");
/** Real compression or not: the header may say gzip over plain JSON, or nothing over gzip. */
export const compression = fc.constantFrom("none" as const, "gzip" as const, "deflate" as const);
export const authorization = fc.oneof(
  fc.constantFrom("Bearer", "Bearer ", "Bearer x", "bearer x", "Basic Zm9vOmJhcg==", "Token abc", "Bearer a b", "Bearer \u00ff", `Bearer ${"t".repeat(9000)}`, `Bearer ${ADMIN_TOKEN.slice(0, -1)}`, `Bearer ${ADMIN_TOKEN}x`),
  headerNoise.map((s) => `Bearer ${s}`),
);
export const KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;
/** A header value as the node reads it: HTTP drops spaces and tabs around it. */
export const headerValue = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, "");
/** Idempotency-Key values that are not 1-128 visible ASCII characters (once spaces around them are dropped). */
export const badKey = fc.oneof(fc.constantFrom("", " ", "a b", "k".repeat(129), "ü", "ключ", "🚀", "\u0000", "\t", "key\u007f", "a\u0000b"), headerNoise).filter((s) => !KEY_PATTERN.test(headerValue(s)));

export interface HeaderSpec {
  contentType: string[]; // none, one, or duplicates
  compression: "none" | "gzip" | "deflate";
  contentEncoding: string | null;
  key: "none" | "unique" | { bad: string } | "twice";
  authorization: string[];
  extra: [string, string][];
  chunked: boolean;
}
export const headerSpec: fc.Arbitrary<HeaderSpec> = fc.record({
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
export function isWellFormed(s: string): boolean {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}
export const isPrintable = (s: string) => /^[\x20-\x7e]*$/.test(s);
export const isJsonType = (t: string) => {
  const type = t.split(";", 1)[0].trim().toLowerCase();
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"));
};

// ---------------------------------------------------------------- the test
