/**
 * Parameter schemas of the public actions (fastest-validator syntax, plain data):
 * the one set of rules for HTTP and broker callers alike.
 */
import { DEFAULT_GROUP_BY, GROUP_FIELDS, TOP_METRICS, type GroupField } from "./query/top";
import { oldestKeptHour, type FlowmeshSettings } from "./settings";
import { hourExpired } from "./protocol";
import type { FlowRecord } from "./batching";

/** Unicode code points in s, counting only as far as needed. */
function codePointsOver(s: string, max: number): boolean {
  if (s.length <= max) return false; // a code point is at least one UTF-16 unit
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    if (++n > max) return true;
  }
  return false;
}

/**
 * An offending value as an error shows it: a structure is named, never echoed. A client's
 * deeply nested body would otherwise overflow the stack twice over (fastest-validator
 * renders `actual` into the message, the gateway serialises the error): a 500, or a crash.
 */
function shown(value: unknown): unknown {
  return typeof value === "object" && value !== null ? (Array.isArray(value) ? "array" : "object") : value;
}

/** fastest-validator error shape pushed by custom checks. */
interface CheckError {
  type: string;
  expected?: unknown;
  actual?: unknown;
}

function flowString(max: number) {
  return {
    type: "string",
    min: 1,
    custom: (value: string, errors: CheckError[]) => {
      if (typeof value === "string" && codePointsOver(value, max)) errors.push({ type: "stringMax", expected: max, actual: value.length });
      return value;
    },
  };
}

const safeCount = { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER };

/** The fastest-validator rule type of a batch of flow records; register it with addFlowRules. */
export const FLOW_RECORDS = "flowRecords";

/** Schema of a "flowRecords" rule: the batch size limits and the string limit in code points. */
export interface FlowRecordsSchema {
  type: typeof FLOW_RECORDS;
  min: number;
  max: number;
  maxString: number;
}

/**
 * Code generator of the "flowRecords" rule (fastest-validator's rule-type interface,
 * `validator.add(FLOW_RECORDS, flowRecordsRule)`). It checks what an "array" rule
 * { min, max, items: "object" with props { string min 1 + a code-point max } x 3 and
 * { number integer min 0 max 2^53-1 } x 3 } checks, with the same error types, fields
 * (`flows[3].src_app`) and messages, in one generated loop. It exists for speed: the
 * generic rules call a bound function per record and per field and build each
 * record's field name even when it is valid, about 10x the cost of this loop on a
 * batch of 1000 records (a third of a request's time on the embedded node).
 */
export function flowRecordsRule(
  rule: { index: number; schema: FlowRecordsSchema; messages: Record<string, string> },
  _path: unknown,
  context: { customs: Record<number, unknown> },
): { source: string } {
  const { schema, messages } = rule;
  const max = Math.floor(schema.maxString);
  // The generated code reaches our helpers through fastest-validator's per-rule slot.
  context.customs[rule.index] = { codePointsOver, shown };
  const helpers = `context.customs[${rule.index}]`;
  const error = (type: string, field: string, actual: string, expected?: number) =>
    `errors.push({ type: ${JSON.stringify(type)}, message: ${JSON.stringify(messages[type])}, field: ${field}, actual: ${helpers}.shown(${actual})` +
    (expected === undefined ? "" : `, expected: ${expected}`) +
    " });";
  // Field names are built only for an error.
  const item = 'path + "[" + i + "]"';
  const prop = (name: string) => `${item} + ".${name}"`;
  const required = (name: string) => `if (v === undefined || v === null) { ${error("required", prop(name), "v")} }`;
  const text = (name: string) => `
      v = r.${name};
      ${required(name)}
      else if (typeof v !== "string") { ${error("string", prop(name), "v")} }
      else if (v.length < 1) { ${error("stringMin", prop(name), "v.length", 1)} }
      else if (v.length > ${max} && ${helpers}.codePointsOver(v, ${max})) { ${error("stringMax", prop(name), "v.length", max)} }`;
  const count = (name: string) => `
      v = r.${name};
      ${required(name)}
      else if (typeof v !== "number" || isNaN(v) || !isFinite(v)) { ${error("number", prop(name), "v")} }
      else {
        if (v < 0) { ${error("numberMin", prop(name), "v", 0)} }
        if (v > ${Number.MAX_SAFE_INTEGER}) { ${error("numberMax", prop(name), "v", Number.MAX_SAFE_INTEGER)} }
        if (v % 1 !== 0) { ${error("numberInteger", prop(name), "v")} }
      }`;
  return {
    source: `
      if (!Array.isArray(value)) { ${error("array", "field", "value")} return value; }
      var len = value.length;
      if (len < ${Math.floor(schema.min)}) { ${error("arrayMin", "field", "len", Math.floor(schema.min))} }
      if (len > ${Math.floor(schema.max)}) { ${error("arrayMax", "field", "len", Math.floor(schema.max))} }
      var path = field ? field : "";
      var r, v;
      for (var i = 0; i < len; i++) {
        r = value[i];
        if (typeof r !== "object" || r === null || Array.isArray(r)) { ${error("object", item, "r")} continue; }
        ${text("src_app")}
        ${text("dest_app")}
        ${text("vpc_id")}
        ${count("hour")}
        ${count("bytes_tx")}
        ${count("bytes_rx")}
      }
      return value;`,
  };
}

/** Registers Flowmesh's rule types on a fastest-validator instance (see moleculer.config.ts). */
export function addFlowRules(validator: { add(type: string, fn: unknown): void }): void {
  validator.add(FLOW_RECORDS, flowRecordsRule);
}

/** Visible ASCII, 1-128 characters (SPEC §2). */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;

export function ingestParams(settings: Pick<FlowmeshSettings, "maxString" | "maxBatch">) {
  return {
    flows: { type: FLOW_RECORDS, min: 1, max: settings.maxBatch, maxString: settings.maxString } satisfies FlowRecordsSchema,
    idempotencyKey: { type: "string", optional: true, pattern: IDEMPOTENCY_KEY_PATTERN, messages: { stringPattern: "The 'idempotencyKey' (Idempotency-Key header) must be 1-128 visible ASCII characters." } },
  };
}

/** The hours and exact-match filters of a read: `hour`, or `from` and `to` (checked together by requestedHours). */
function hoursAndFilters(settings: Pick<FlowmeshSettings, "maxString">) {
  const filter = () => ({ ...flowString(settings.maxString), optional: true });
  const hour = { ...safeCount, optional: true };
  return { hour, from: hour, to: hour, src_app: filter(), dest_app: filter(), vpc_id: filter() };
}

export function aggregateParams(settings: Pick<FlowmeshSettings, "maxString">) {
  return hoursAndFilters(settings);
}

/** Most groups a top-N query answers. */
export const MAX_TOP_N = 1000;

export function topParams(settings: Pick<FlowmeshSettings, "maxString">) {
  return {
    ...hoursAndFilters(settings),
    // A comma list as HTTP sends it, or an array from broker callers; checked by groupByOf.
    by: { type: "multi", optional: true, rules: [{ type: "string" }, { type: "array", items: "string" }] },
    metric: { type: "enum", values: [...TOP_METRICS], default: "bytes_total" },
    n: { type: "number", integer: true, min: 1, max: MAX_TOP_N, default: 10 },
  };
}

/** A parameter problem in fastest-validator's shape (HTTP answers 400 with the list). */
export interface ParamProblem {
  type: string;
  field: string;
  message: string;
  actual?: unknown;
  expected?: unknown;
}

/** Parameters that do not fit together: their problems (see checked in services/flows.service.ts). */
export interface Invalid {
  problems: ParamProblem[];
}

function invalid(problem: ParamProblem): Invalid {
  return { problems: [problem] };
}

export function isInvalid(value: unknown): value is Invalid {
  return typeof value === "object" && value !== null && "problems" in value;
}

/**
 * The hours a read asks for, as { from, to } (inclusive): `hour` alone, or `from` and `to`
 * together with from <= to and at most maxRangeHours hours; else the problems.
 */
export function requestedHours(p: { hour?: number; from?: number; to?: number }, maxRangeHours: number): { from: number; to: number } | Invalid {
  const { hour, from, to } = p;
  if (hour !== undefined) {
    if (from === undefined && to === undefined) return { from: hour, to: hour };
    return invalid({ type: "forbidden", field: from !== undefined ? "from" : "to", message: "Give either hour=N or from=A&to=B, not both." });
  }
  if (from === undefined && to === undefined) return invalid({ type: "required", field: "hour", message: "The 'hour' field is required (or 'from' and 'to' for a range of hours)." });
  if (from === undefined || to === undefined) {
    const missing = from === undefined ? "from" : "to";
    return invalid({ type: "required", field: missing, message: `The '${missing}' field is required with '${missing === "from" ? "to" : "from"}': a range gives both.` });
  }
  if (from > to) return invalid({ type: "rangeOrder", field: "to", message: `The range is empty: 'from' (${from}) is after 'to' (${to}).`, actual: to, expected: from });
  if (to - from + 1 > maxRangeHours) {
    return invalid({ type: "rangeHours", field: "to", message: `The range holds ${to - from + 1} hours; at most ${maxRangeHours} (MAX_RANGE_HOURS) are read at once.`, actual: to - from + 1, expected: maxRangeHours });
  }
  return { from, to };
}

/** The fields a top-N query groups by (a comma list or an array; default src_app,dest_app), or the problems. */
export function groupByOf(by: string | string[] | undefined): GroupField[] | Invalid {
  if (by === undefined) return [...DEFAULT_GROUP_BY];
  const fields = typeof by === "string" ? by.split(",") : by;
  const known = new Set<string>(GROUP_FIELDS);
  const wrong = fields.filter((f) => !known.has(f));
  if (fields.length === 0 || wrong.length > 0) {
    return invalid({ type: "groupBy", field: "by", message: `The 'by' field lists ${GROUP_FIELDS.join(", ")} (one or more, comma-separated); got ${JSON.stringify(by)}.`, actual: by });
  }
  if (new Set(fields).size !== fields.length) return invalid({ type: "groupBy", field: "by", message: `The 'by' field names a field twice: ${JSON.stringify(by)}.`, actual: by });
  return fields as GroupField[];
}

/** Canonical non-negative decimal integer, as an HTTP query may carry an hour. */
export function parseQueryInteger(raw: unknown): unknown {
  return typeof raw === "string" && /^(0|[1-9][0-9]*)$/.test(raw) ? Number(raw) : raw;
}

/** Throws 422 HOUR_EXPIRED (the first such record named) when a record is for an hour RETENTION_HOURS no longer keeps: the whole request is refused. */
export function refuseExpired(flows: readonly FlowRecord[], retentionHours: number | null, nowMs = Date.now()): void {
  const oldest = oldestKeptHour(retentionHours, nowMs);
  if (oldest === null) return;
  const index = flows.findIndex((f) => f.hour < oldest);
  if (index >= 0) throw hourExpired(index, flows[index].hour, oldest);
}
