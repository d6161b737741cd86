/**
 * Parameter schemas of the public actions (fastest-validator syntax, plain data):
 * the one set of rules for HTTP and broker callers alike.
 */
import type { FlowmeshSettings } from "./settings";

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
  context.customs[rule.index] = { codePointsOver };
  const helpers = `context.customs[${rule.index}]`;
  const error = (type: string, field: string, actual: string, expected?: number) =>
    `errors.push({ type: ${JSON.stringify(type)}, message: ${JSON.stringify(messages[type])}, field: ${field}, actual: ${actual}` +
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

export function aggregateParams(settings: Pick<FlowmeshSettings, "maxString">) {
  const filter = () => ({ ...flowString(settings.maxString), optional: true });
  return { hour: safeCount, src_app: filter(), dest_app: filter(), vpc_id: filter() };
}

/** Canonical non-negative decimal integer, as an HTTP query may carry an hour. */
export function parseQueryInteger(raw: unknown): unknown {
  return typeof raw === "string" && /^(0|[1-9][0-9]*)$/.test(raw) ? Number(raw) : raw;
}
