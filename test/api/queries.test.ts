/**
 * Ranges, top-N, CSV and the hour bounds on the embedded node, against the model
 * computed from the posted records (test/support/query-model.ts).
 */
import { expectedHour, freshHour, request, flow, type Flow } from "../support/api-contract";
import { asCsvText, expectedRange, expectedTop, parseCsv, randomFlows, topQueryString, type TopQuery } from "../support/query-model";
import { startNode, type NodeProcess } from "../support/processes";

const MAX = Number.MAX_SAFE_INTEGER;
let node: NodeProcess;
/** Eight hours, the fourth and the last without data. */
const H0 = freshHour() + 10_000;
const HOURS = [H0, H0 + 1, H0 + 2, H0 + 4, H0 + 5, H0 + 6];
const posted: Flow[] = randomFlows(2500, HOURS, 42);

const get = (query: string, headers: Record<string, string> = {}) => request(`${node.url}${query}`, { headers });

beforeAll(async () => {
  node = await startNode({ NODEID: "queries", DURABILITY: "memory" });
  expect((await get("/flows/hours")).body).toEqual({ newest: null, oldest: null });
  for (let i = 0; i < posted.length; i += 1000) {
    const r = await request(`${node.url}/flows`, { method: "POST", json: posted.slice(i, i + 1000) });
    expect(r.status).toBe(200);
  }
});

afterAll(async () => {
  await node?.stop();
});

describe("GET /flows?from=A&to=B", () => {
  test("every hour's flows, ordered by hour then by (src_app, dest_app, vpc_id); hours without data add nothing", async () => {
    const r = await get(`/flows?from=${H0}&to=${H0 + 7}`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/json; charset=utf-8");
    // Streamed: no length known up front.
    expect(r.headers.get("transfer-encoding")).toBe("chunked");
    expect(r.body).toEqual(expectedRange(posted, H0, H0 + 7));
    expect(r.body.length).toBeGreaterThan(1000);
  });

  test("filters as for one hour; a range of one hour is that hour; a range without data is []", async () => {
    for (const filter of [{ src_app: "web" }, { dest_app: "a b", vpc_id: "vpc 3" }, { src_app: "=cmd()", dest_app: "🚀" }] as Record<string, string>[]) {
      const r = await get(`/flows?from=${H0 + 1}&to=${H0 + 5}&${new URLSearchParams(filter)}`);
      expect(r.body).toEqual(expectedRange(posted, H0 + 1, H0 + 5, filter));
    }
    expect((await get(`/flows?from=${H0 + 2}&to=${H0 + 2}`)).body).toEqual(expectedHour(posted, H0 + 2));
    expect((await get(`/flows?from=${H0 - 50}&to=${H0 - 1}`)).body).toEqual([]);
  });

  test("a range of MAX_RANGE_HOURS (744) is read; one hour more is 400", async () => {
    const r = await get(`/flows?from=${H0 - 737}&to=${H0 + 6}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual(expectedRange(posted, H0, H0 + 6));
    const over = await get(`/flows?from=${H0 - 738}&to=${H0 + 6}`);
    expect(over.status).toBe(400);
    expect(over.body).toMatchObject({ name: "ValidationError", code: 400, data: [{ type: "rangeHours", field: "to" }] });
  });

  test.each([
    ["from without to", `from=${H0}`],
    ["to without from", `to=${H0}`],
    ["hour with a range", `hour=${H0}&from=${H0}&to=${H0 + 1}`],
    ["hour with to", `hour=${H0}&to=${H0 + 1}`],
    ["from after to", `from=${H0 + 1}&to=${H0}`],
    ["a negative from", `from=-1&to=${H0}`],
    ["a non-integer to", `from=${H0}&to=1.5`],
    ["a word", `from=abc&to=${H0}`],
    ["from twice", `from=${H0}&from=${H0}&to=${H0}`],
    ["an unknown format", `from=${H0}&to=${H0}&format=xml`],
    ["nothing", ""],
  ])("%s is 400", async (_name, query) => {
    const r = await get(`/flows?${query}`);
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ name: "ValidationError", code: 400 });
  });
});

describe("GET /flows/top", () => {
  const queries: TopQuery[] = [];
  for (const metric of ["bytes_total", "bytes_tx", "bytes_rx"] as const) {
    queries.push({ from: H0, to: H0 + 7, by: ["src_app", "dest_app"], metric, n: 10 });
    queries.push({ from: H0 + 1, to: H0 + 4, by: ["vpc_id"], metric, n: 2 });
    queries.push({ from: H0, to: H0 + 6, by: ["dest_app", "vpc_id", "src_app"], metric, n: 25, filter: { vpc_id: "vpc-2" } });
  }
  test.each(queries.map((q) => [topQueryString(q), q]))("%s", async (_name, q) => {
    const r = await get(`/flows/top?${topQueryString(q as TopQuery)}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual(expectedTop(posted, q as TopQuery));
  });

  test("defaults: by src_app,dest_app, bytes_total, n 10; hour=N is a range of one hour", async () => {
    const r = await get(`/flows/top?hour=${H0 + 2}`);
    expect(r.body).toEqual(expectedTop(posted, { from: H0 + 2, to: H0 + 2, by: ["src_app", "dest_app"], metric: "bytes_total", n: 10 }));
    expect(Object.keys(r.body)).toEqual(["from", "to", "by", "metric", "top", "other", "total"]);
    expect(Object.keys(r.body.top[0])).toEqual(["src_app", "dest_app", "bytes_tx", "bytes_rx", "bytes_total", "flows"]);
  });

  test("n larger than the groups: every group, other empty; no data: an empty top", async () => {
    const r = await get(`/flows/top?from=${H0}&to=${H0 + 7}&by=vpc_id&n=1000`);
    expect(r.body.top).toHaveLength(3);
    expect(r.body.other).toEqual({ bytes_tx: 0, bytes_rx: 0, bytes_total: 0, flows: 0, groups: 0 });
    const none = await get(`/flows/top?hour=${H0 + 3}`);
    expect(none.body).toEqual({ from: H0 + 3, to: H0 + 3, by: ["src_app", "dest_app"], metric: "bytes_total", top: [], other: { bytes_tx: 0, bytes_rx: 0, bytes_total: 0, flows: 0, groups: 0 }, total: { bytes_tx: 0, bytes_rx: 0, bytes_total: 0, flows: 0, groups: 0 } });
  });

  test("a total past 2^53-1 is 422 SUM_OVERFLOW, never a rounded number", async () => {
    const h = H0 + 100;
    expect((await request(`${node.url}/flows`, { method: "POST", json: [flow("big", "one", "v", h, MAX - 5, 0), flow("big", "two", "v", h + 1, 10, 0)] })).status).toBe(200);
    const fits = await get(`/flows/top?hour=${h}&by=src_app`);
    expect(fits.body.total.bytes_total).toBe(MAX - 5);
    const over = await get(`/flows/top?from=${h}&to=${h + 1}&by=src_app`);
    expect(over.status).toBe(422);
    expect(over.body).toMatchObject({ code: 422, type: "SUM_OVERFLOW" });
  });

  test.each([
    ["an unknown by field", `hour=${H0}&by=hour`],
    ["a by field twice", `hour=${H0}&by=src_app,src_app`],
    ["an empty by", `hour=${H0}&by=`],
    ["an unknown metric", `hour=${H0}&metric=packets`],
    ["n 0", `hour=${H0}&n=0`],
    ["n over 1000", `hour=${H0}&n=1001`],
    ["n not an integer", `hour=${H0}&n=ten`],
    ["no hours", "by=src_app"],
    ["a range over MAX_RANGE_HOURS", `from=${H0}&to=${H0 + 744}`],
    ["hour with a range", `hour=${H0}&from=${H0}&to=${H0}`],
  ])("%s is 400", async (_name, query) => {
    const r = await get(`/flows/top?${query}`);
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ name: "ValidationError", code: 400 });
  });
});

describe("CSV", () => {
  const FLOW_COLUMNS = ["src_app", "dest_app", "vpc_id", "hour", "bytes_tx", "bytes_rx"] as const;
  const rowsOf = (flows: Flow[]) => flows.map((f) => FLOW_COLUMNS.map((c) => asCsvText(f[c])));

  test("GET /flows as CSV (format=csv, or Accept: text/csv): a header row, then the rows of the JSON answer", async () => {
    const range = await get(`/flows?from=${H0}&to=${H0 + 7}&format=csv`);
    expect(range.status).toBe(200);
    expect(range.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    expect(range.headers.get("transfer-encoding")).toBe("chunked");
    expect(parseCsv(range.body)).toEqual([[...FLOW_COLUMNS], ...rowsOf(expectedRange(posted, H0, H0 + 7))]);
    const hour = await get(`/flows?hour=${H0 + 1}&src_app=${encodeURIComponent("x,y")}`, { accept: "text/csv" });
    expect(hour.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    expect(parseCsv(hour.body)).toEqual([[...FLOW_COLUMNS], ...rowsOf(expectedHour(posted, H0 + 1).filter((f) => f.src_app === "x,y"))]);
    // Hostile names arrive quoted, formulas behind a single quote.
    expect(hour.body).toContain('"x,y"');
    const formulas = await get(`/flows?hour=${H0 + 1}&src_app=${encodeURIComponent("=cmd()")}&format=csv`);
    expect(formulas.body.split("\r\n")[1]).toMatch(/^"'=cmd\(\)",/);
    // An hour without data: the header alone.
    expect((await get(`/flows?hour=${H0 + 3}&format=csv`)).body).toBe("src_app,dest_app,vpc_id,hour,bytes_tx,bytes_rx\r\n");
    // format=json wins over Accept.
    expect((await get(`/flows?hour=${H0 + 1}&format=json`, { accept: "text/csv" })).body).toEqual(expectedHour(posted, H0 + 1));
  });

  test("GET /flows/top as CSV: by fields, bytes_tx, bytes_rx, bytes_total, flows; the top rows only", async () => {
    const q: TopQuery = { from: H0, to: H0 + 6, by: ["dest_app", "src_app"], metric: "bytes_rx", n: 20 };
    const r = await get(`/flows/top?${topQueryString(q)}`, { accept: "text/csv" });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    const want = expectedTop(posted, q);
    const columns = ["dest_app", "src_app", "bytes_tx", "bytes_rx", "bytes_total", "flows"];
    expect(parseCsv(r.body)).toEqual([columns, ...want.top.map((t) => columns.map((c) => asCsvText((t as Record<string, string | number>)[c])))]);
  });
});

test("GET /flows/hours: the newest and oldest hour with data", async () => {
  const r = await get("/flows/hours");
  expect(r.status).toBe(200);
  const hours = [...posted.map((f) => f.hour), H0 + 100, H0 + 101];
  expect(r.body).toEqual({ newest: Math.max(...hours), oldest: Math.min(...hours) });
});
