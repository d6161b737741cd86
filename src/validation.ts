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

export function recordSchema(settings: Pick<FlowmeshSettings, "maxString">) {
  // One rule object per field: fastest-validator binds a custom check to its rule object.
  const str = () => flowString(settings.maxString);
  return {
    type: "object",
    // null passes here and is named by the array's check below: fastest-validator
    // would report a null item as the whole array missing.
    nullable: true,
    props: { src_app: str(), dest_app: str(), vpc_id: str(), hour: safeCount, bytes_tx: safeCount, bytes_rx: safeCount },
  };
}

function noNullRecords(value: unknown, errors: (CheckError & { field: string })[]) {
  if (Array.isArray(value)) {
    value.forEach((r, i) => {
      if (r === null) errors.push({ type: "object", field: `flows[${i}]`, actual: r });
    });
  }
  return value;
}

/** Visible ASCII, 1-128 characters (SPEC §2). */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;

export function ingestParams(settings: Pick<FlowmeshSettings, "maxString" | "maxBatch">) {
  return {
    flows: { type: "array", min: 1, max: settings.maxBatch, items: recordSchema(settings), custom: noNullRecords },
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
