import Validator from "fastest-validator";
import { addFlowRules, ingestParams } from "../../src/validation";

/**
 * The "flowRecords" rule against the generic fastest-validator schema it replaces
 * (array of objects of string/number rules plus a code-point check): same verdicts,
 * same errors, on valid and invalid batches.
 */
const MAX_STRING = 8;
const MAX_BATCH = 5;

function codePoints(s: string): number {
  return Array.from(s).length;
}

function genericParams() {
  const str = () => ({
    type: "string",
    min: 1,
    custom: (value: string, errors: { type: string; expected?: unknown; actual?: unknown }[]) => {
      if (typeof value === "string" && codePoints(value) > MAX_STRING) errors.push({ type: "stringMax", expected: MAX_STRING, actual: value.length });
      return value;
    },
  });
  const count = { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER };
  return {
    flows: {
      type: "array",
      min: 1,
      max: MAX_BATCH,
      items: { type: "object", props: { src_app: str(), dest_app: str(), vpc_id: str(), hour: count, bytes_tx: count, bytes_rx: count } },
    },
  };
}

const v = new Validator({ useNewCustomCheckerFunction: true });
addFlowRules(v);
const fast = v.compile(ingestParams({ maxString: MAX_STRING, maxBatch: MAX_BATCH }));
const generic = new Validator({ useNewCustomCheckerFunction: true }).compile(genericParams());

type Problem = { type: string; field?: string; message?: string; expected?: unknown; actual?: unknown };
/** The rule names an offending structure ("array", "object") where the generic schema echoes it (a deep one overflowed the stack). */
const shownActual = (v: unknown) => (typeof v === "object" && v !== null ? (Array.isArray(v) ? "array" : "object") : v);
const normal = (r: unknown) =>
  r === true ? true : (r as Problem[]).map((p) => ({ type: p.type, field: p.field, message: p.message, expected: p.expected, actual: shownActual(p.actual) })).sort((a, b) => (String(a.field) + a.type < String(b.field) + b.type ? -1 : 1));

const good = { src_app: "a", dest_app: "b", vpc_id: "c", hour: 1, bytes_tx: 2, bytes_rx: 3 };

const cases: [string, unknown][] = [
  ["a valid batch", [good, { ...good, src_app: "\u{1F600}".repeat(MAX_STRING), hour: Number.MAX_SAFE_INTEGER }]],
  ["extra fields", [{ ...good, extra: 1 }]],
  ["empty batch", []],
  ["too many records", Array.from({ length: MAX_BATCH + 1 }, () => good)],
  ["not an array", { ...good }],
  ["a string", "x"],
  ["non-object records", [1, "x", [good], true]],
  ["missing and null fields", [{ ...good, src_app: undefined, hour: null }]],
  ["wrong types", [{ ...good, dest_app: 5, bytes_tx: "5", vpc_id: {} , bytes_rx: true }]],
  ["empty string", [{ ...good, vpc_id: "" }]],
  ["too long, in code points", [{ ...good, src_app: "x".repeat(MAX_STRING + 1) }, { ...good, dest_app: "\u{1F600}".repeat(MAX_STRING + 1) }]],
  ["surrogate pairs within the limit", [{ ...good, dest_app: "\u{1F600}".repeat(MAX_STRING - 1) + "x" }]],
  ["a lone surrogate counts once", [{ ...good, dest_app: "\ud800".repeat(MAX_STRING + 1) }]],
  ["bad numbers", [{ ...good, hour: -1, bytes_tx: 1.5, bytes_rx: Number.MAX_SAFE_INTEGER + 2 }, { ...good, hour: NaN, bytes_tx: Infinity, bytes_rx: -0.5 }]],
  ["errors in several records", [good, { ...good, src_app: "" }, good, { ...good, bytes_rx: -1 }]],
];

describe("flowRecords rule", () => {
  test.each(cases)("%s: same result as the generic schema", (_name, flows) => {
    expect(normal(fast({ flows }))).toEqual(normal(generic({ flows })));
  });

  test("null records are named by index (the generic schema reports them as missing)", () => {
    const r = fast({ flows: [good, null] }) as Problem[];
    expect(r).toEqual([expect.objectContaining({ type: "object", field: "flows[1]", actual: null })]);
  });

  test("a missing batch is required", () => {
    expect(normal(fast({}))).toEqual([expect.objectContaining({ type: "required", field: "flows" })]);
  });

  test("valid batches pass and are left unchanged", () => {
    const flows = [{ ...good }, { ...good, src_app: "toString", vpc_id: "\u0000\t" }];
    const copy = JSON.parse(JSON.stringify(flows));
    expect(fast({ flows })).toBe(true);
    expect(flows).toEqual(copy);
  });
});
