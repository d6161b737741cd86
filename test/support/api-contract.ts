/**
 * The HTTP API contract (SPEC §2), as a suite any deployment must pass: the
 * embedded node and the cluster (through any of its gateways) run the same tests.
 */
const MAX = Number.MAX_SAFE_INTEGER;

import type { FlowRecord } from "../../src/batching";

export type Flow = FlowRecord;

export interface Reply {
  status: number;
  headers: Headers;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function request(url: string, init: RequestInit & { json?: unknown } = {}): Promise<Reply> {
  const { json, ...rest } = init;
  const headers = new Headers(rest.headers);
  let body = rest.body;
  if (json !== undefined) {
    body = JSON.stringify(json);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
  }
  const res = await fetch(url, { ...rest, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

export function flow(src_app: string, dest_app: string, vpc_id: string, hour: number, bytes_tx: number, bytes_rx: number): Flow {
  return { src_app, dest_app, vpc_id, hour, bytes_tx, bytes_rx };
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** What GET /flows?hour=h must answer after `flows` were accepted: the test's own model. */
export function expectedHour(flows: Flow[], hour: number): Flow[] {
  const sums = new Map<string, Flow>();
  for (const f of flows) {
    if (f.hour !== hour) continue;
    const k = JSON.stringify([f.src_app, f.dest_app, f.vpc_id]);
    const s = sums.get(k);
    if (s) {
      s.bytes_tx += f.bytes_tx;
      s.bytes_rx += f.bytes_rx;
    } else sums.set(k, { ...f });
  }
  return [...sums.values()].sort((a, b) => cmp(a.src_app, b.src_app) || cmp(a.dest_app, b.dest_app) || cmp(a.vpc_id, b.vpc_id));
}

let nextHour = 100000 + Math.floor(Math.random() * 1000) * 100;
/** A fresh hour per test, so tests never see each other's data. */
export const freshHour = () => nextHour++;

export function apiContract(gateways: () => string[]): void {
  let turn = 0;
  /** Each request goes to the next gateway: any gateway serves the whole API. */
  const gw = () => {
    const all = gateways();
    return all[turn++ % all.length];
  };
  const post = (body: unknown, headers: Record<string, string> = {}) => request(`${gw()}/flows`, { method: "POST", json: body, headers });
  const get = (query: string) => request(`${gw()}/flows?${query}`);
  const hourOf = async (hour: number) => {
    const r = await get(`hour=${hour}`);
    expect(r.status).toBe(200);
    return r.body as Flow[];
  };

  describe("POST /flows and GET /flows", () => {
    test("sums bytes per flow and hour, answers accepted, orders by src, dest, vpc", async () => {
      const h = freshHour();
      const h2 = freshHour();
      const batch = [
        flow("web", "db", "vpc-1", h, 10, 20),
        flow("api", "db", "vpc-1", h, 1, 2),
        flow("web", "db", "vpc-1", h, 5, 5),
        flow("web", "cache", "vpc-1", h, 7, 0),
        flow("web", "db", "vpc-0", h, 3, 3),
        flow("web", "db", "vpc-1", h2, 100, 100),
      ];
      const r = await post(batch);
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ accepted: 6 });
      const again = await post([flow("api", "db", "vpc-1", h, 1, 1)]);
      expect(again.body).toEqual({ accepted: 1 });
      expect(await hourOf(h)).toEqual([
        flow("api", "db", "vpc-1", h, 2, 3),
        flow("web", "cache", "vpc-1", h, 7, 0),
        flow("web", "db", "vpc-0", h, 3, 3),
        flow("web", "db", "vpc-1", h, 15, 25),
      ]);
      expect(await hourOf(h2)).toEqual([flow("web", "db", "vpc-1", h2, 100, 100)]);
    });

    test("a single object is a batch of one", async () => {
      const h = freshHour();
      const r = await post(flow("a", "b", "c", h, 1, 2));
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ accepted: 1 });
      expect(await hourOf(h)).toEqual([flow("a", "b", "c", h, 1, 2)]);
    });

    test("an hour without data is []", async () => {
      expect(await hourOf(freshHour())).toEqual([]);
    });

    test("strings are data: __proto__, constructor, emoji, NUL, tabs, separators never collide", async () => {
      const h = freshHour();
      const batch = [
        flow("__proto__", "constructor", "toString", h, 1, 1),
        flow("constructor", "__proto__", "hasOwnProperty", h, 2, 2),
        flow("🚀 app", "db\tprimary", "vpc 1", h, 3, 3),
        flow("a\u0000\u0001b", "c", "d", h, 4, 4),
        flow("a", "b\u0000\u0001c", "d", h, 5, 5),
        flow("a\u0000", "\u0001b", "c\u0000d", h, 6, 6),
        flow("a", "\u0000\u0001b", "c\u0000d", h, 7, 7),
        flow("a|b", "c", "d", h, 8, 8),
        flow("a", "b|c", "d", h, 9, 9),
        flow("a\u0000", "b", "c", h, 10, 10),
        flow("a", "b", "c", h, 11, 11),
        flow("a\uffff", "b", "c", h, 12, 12),
      ];
      expect((await post(batch)).status).toBe(200);
      const got = await hourOf(h);
      expect(got).toEqual(expectedHour(batch, h));
      expect(got).toHaveLength(batch.length);
    });

    test("filters match exactly", async () => {
      const h = freshHour();
      const batch = [flow("x", "y", "v1", h, 1, 1), flow("x", "z", "v1", h, 2, 2), flow("w", "y", "v2", h, 3, 3), flow("xx", "y", "v1", h, 4, 4)];
      await post(batch);
      expect((await get(`hour=${h}&src_app=x`)).body).toEqual([batch[0], batch[1]]);
      expect((await get(`hour=${h}&dest_app=y&vpc_id=v1`)).body).toEqual([batch[0], batch[3]]);
      expect((await get(`hour=${h}&src_app=${encodeURIComponent("w")}&dest_app=y&vpc_id=v2`)).body).toEqual([batch[2]]);
      expect((await get(`hour=${h}&src_app=nobody`)).body).toEqual([]);
    });

    test("sums are exact up to 2^53-1", async () => {
      const h = freshHour();
      await post([flow("big", "b", "c", h, MAX - 1, 0), flow("big", "b", "c", h, 1, MAX)]);
      expect(await hourOf(h)).toEqual([flow("big", "b", "c", h, MAX, MAX)]);
    });

    test("a sum that would pass 2^53-1 is refused with a 4xx and applies nothing", async () => {
      const h = freshHour();
      await post([flow("big", "b", "c", h, MAX - 1, 5)]);
      const others = Array.from({ length: 50 }, (_, i) => flow(`other-${i}`, "b", "c", h, 1, 1));
      const r = await post([...others, flow("big", "b", "c", h, 2, 0)], { "Idempotency-Key": `overflow-${h}` });
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(r.body.type).toBe("SUM_OVERFLOW");
      expect(r.body.message).toMatch(/2\^53/);
      // Nothing applied anywhere, also on the other owner nodes of a cluster.
      expect(await hourOf(h)).toEqual([flow("big", "b", "c", h, MAX - 1, 5)]);
      // A corrected retry with the same key applies.
      const fixed = await post(others, { "Idempotency-Key": `overflow-${h}` });
      expect(fixed.status).toBe(200);
    });
  });

  describe("bad input applies nothing and gets a clear 4xx", () => {
    const good = (h: number) => flow("ok", "ok", "ok", h, 1, 1);
    const cases: [string, (h: number) => unknown, string[]][] = [
      ["missing field", (h) => ({ src_app: "a", dest_app: "b", hour: h, bytes_tx: 1, bytes_rx: 1 }), ["vpc_id"]],
      ["number as string", (h) => ({ ...good(h), bytes_tx: "5" }), ["bytes_tx"]],
      ["negative bytes", (h) => ({ ...good(h), bytes_rx: -1 }), ["bytes_rx"]],
      ["fractional bytes", (h) => ({ ...good(h), bytes_tx: 1.5 }), ["bytes_tx"]],
      ["unsafe integer", (h) => ({ ...good(h), bytes_tx: 2 ** 53 }), ["bytes_tx"]],
      ["negative hour", () => ({ ...good(0), hour: -1 }), ["hour"]],
      ["hour as string", (h) => ({ ...good(h), hour: String(h) }), ["hour"]],
      ["empty string", (h) => ({ ...good(h), src_app: "" }), ["src_app"]],
      ["string of 257 characters", (h) => ({ ...good(h), dest_app: "x".repeat(257) }), ["dest_app"]],
      ["string as number", (h) => ({ ...good(h), vpc_id: 7 }), ["vpc_id"]],
      ["null record", () => null, [""]],
      ["two bad fields", (h) => ({ ...good(h), src_app: null, bytes_rx: "x" }), ["src_app", "bytes_rx"]],
    ];
    test.each(cases)("%s: 400 names the record index and field", async (_name, bad, fields) => {
      const h = freshHour();
      const r = await post([good(h), good(h), bad(h), good(h)]);
      expect(r.status).toBe(400);
      expect(r.body).toMatchObject({ name: "ValidationError", code: 400, type: "VALIDATION_ERROR" });
      const named = (r.body.data as { index: number; record_field: string | null; field: string }[]).filter((d) => d.index === 2);
      expect(named.length).toBeGreaterThan(0);
      for (const f of fields) if (f) expect(named.map((d) => d.record_field)).toContain(f);
      expect((r.body.data as { index: number }[]).every((d) => d.index === 2)).toBe(true);
      expect(await hourOf(h)).toEqual([]);
    });

    test("256 emoji is within the limit (characters, not UTF-16 units); 257 is not", async () => {
      const h = freshHour();
      const ok = await post([flow("🙂".repeat(256), "b", "c", h, 1, 1)]);
      expect(ok.status).toBe(200);
      const bad = await post([flow("🙂".repeat(257), "b", "c", h, 1, 1)]);
      expect(bad.status).toBe(400);
      expect(await hourOf(h)).toEqual([flow("🙂".repeat(256), "b", "c", h, 1, 1)]);
    });

    test("every bad record is named", async () => {
      const h = freshHour();
      const batch = [good(h), { ...good(h), hour: -1 }, good(h), { ...good(h), bytes_tx: "1" }, { ...good(h), vpc_id: "" }];
      const r = await post(batch);
      expect(r.status).toBe(400);
      expect(new Set((r.body.data as { index: number }[]).map((d) => d.index))).toEqual(new Set([1, 3, 4]));
      expect(await hourOf(h)).toEqual([]);
    });

    test("an empty array, a JSON scalar and an over-long batch are 400", async () => {
      for (const body of [[], 5, "flows", null, true]) {
        const r = await post(body);
        expect(r.status).toBe(400);
        expect(r.body.name).toBe("ValidationError");
      }
      const h = freshHour();
      const tooMany = Array.from({ length: 10001 }, () => good(h));
      const r = await post(tooMany);
      expect(r.status).toBe(400);
      expect(await hourOf(h)).toEqual([]);
    });

    test("a body that is not JSON is 400, and the node keeps serving", async () => {
      const h = freshHour();
      for (const text of ["{", "[{\"src_app\": \"a\",", "not json", "", "\u0000\u0001", "[1,2,]"]) {
        const r = await request(`${gw()}/flows`, { method: "POST", body: text, headers: { "content-type": "application/json" } });
        expect(r.status).toBe(400);
        expect(r.body).toMatchObject({ code: 400, type: "INVALID_JSON" });
      }
      expect((await request(`${gw()}/health`)).status).toBe(200);
      expect(await hourOf(h)).toEqual([]);
    });

    test("a content type that is not JSON is 415", async () => {
      const h = freshHour();
      const body = JSON.stringify([good(h)]);
      for (const type of ["text/plain", "application/x-www-form-urlencoded", ""]) {
        const r = await request(`${gw()}/flows`, { method: "POST", body, headers: type ? { "content-type": type } : {} });
        expect(r.status).toBe(415);
        expect(r.body).toMatchObject({ code: 415, type: "UNSUPPORTED_MEDIA_TYPE" });
      }
      const ok = await request(`${gw()}/flows`, { method: "POST", body, headers: { "content-type": "application/json; charset=utf-8" } });
      expect(ok.status).toBe(200);
    });

    test("a body over 8 MiB is 413", async () => {
      const h = freshHour();
      const body = JSON.stringify([{ ...good(h), src_app: "x".repeat(200), pad: "y".repeat(9 * 1024 * 1024) }]);
      const r = await request(`${gw()}/flows`, { method: "POST", body, headers: { "content-type": "application/json" } });
      expect(r.status).toBe(413);
      expect(r.body).toMatchObject({ code: 413, type: "PAYLOAD_TOO_LARGE" });
      expect(await hourOf(h)).toEqual([]);
    });

    test.each(["", "-1", "1.5", "abc", "1e3", " 1", "0x10", "99999999999999999999"])("GET /flows?hour=%s is 400", async (hour) => {
      const r = await get(`hour=${encodeURIComponent(hour)}`);
      expect(r.status).toBe(400);
      expect(r.body.name).toBe("ValidationError");
    });

    test("GET /flows without hour is 400", async () => {
      const r = await request(`${gw()}/flows`);
      expect(r.status).toBe(400);
    });
  });

  describe("Idempotency-Key", () => {
    test("a retry with the same key is applied once and answers as the first did", async () => {
      const h = freshHour();
      const batch = Array.from({ length: 300 }, (_, i) => flow(`s${i % 37}`, `d${i % 11}`, "v", h, i, 1));
      const key = `key-${h}-${Math.random()}`;
      const first = await post(batch, { "Idempotency-Key": key });
      const second = await post(batch, { "Idempotency-Key": key });
      expect(first.status).toBe(200);
      expect(second.status).toBe(200);
      expect(second.body).toEqual(first.body);
      expect(await hourOf(h)).toEqual(expectedHour(batch, h));
      const other = await post(batch, { "Idempotency-Key": key + "-2" });
      expect(other.status).toBe(200);
      expect(await hourOf(h)).toEqual(expectedHour([...batch, ...batch], h));
    });

    test.each(["", "x".repeat(129), "has space", "ünïcode"])("a bad key %j is 400 and applies nothing", async (key) => {
      const h = freshHour();
      // fetch refuses non-Latin-1 header values, so send raw bytes through the header as latin1
      const r = await post([flow("ok", "ok", "ok", h, 1, 1)], { "Idempotency-Key": key === "ünïcode" ? Buffer.from(key, "utf8").toString("latin1") : key });
      expect(r.status).toBe(400);
      expect(await hourOf(h)).toEqual([]);
    });
  });

  describe("operations", () => {
    test("GET /health and GET /ready answer 200", async () => {
      expect((await request(`${gw()}/health`)).status).toBe(200);
      const ready = await request(`${gw()}/ready`);
      expect(ready.status).toBe(200);
      expect(ready.body.ready).toBe(true);
    });

    test("GET /cluster shows nodes, epoch and every partition's primary and flow count", async () => {
      const h = freshHour();
      await post([flow("c1", "c2", "c3", h, 1, 1)]);
      const r = await request(`${gw()}/cluster`);
      expect(r.status).toBe(200);
      expect(r.body.epoch).toBeGreaterThan(0);
      expect(r.body.partitions).toHaveLength(r.body.partitionCount);
      for (const p of r.body.partitions) expect(typeof p.primary).toBe("string");
      const total = (r.body.partitions as { flows: number }[]).reduce((a, p) => a + p.flows, 0);
      expect(total).toBe((r.body.nodes as { primaryFlows: number }[]).reduce((a, n) => a + n.primaryFlows, 0));
      expect(total).toBeGreaterThan(0);
    });

    test("unknown routes are 404", async () => {
      expect((await request(`${gw()}/nope`)).status).toBe(404);
    });
  });
}
