/// <reference lib="dom" />
/**
 * The flows explorer (GET /explorer.html), in a real headless browser (Debian's chromium
 * driven by playwright-core) against a real embedded node: the test posts known flows over
 * a few hours, computes the top talkers itself, and compares them with the ranking the page
 * shows (table rows, bars, totals) for the default query and after switching `by`, `metric`
 * and `n`; and checks the CSV link, the token prompt of a gateway with API tokens, and that
 * data is rendered as text.
 *
 * EXPLORER_SCREENSHOT=docs/explorer.png also saves a screenshot of the default view (the README's).
 */
import * as path from "path";
import type { Browser, Page } from "playwright-core";
import { flow, request, type Flow } from "../support/api-contract";
import { describeWithChromium, launchChromium } from "../support/browser";
import { bearer, tokensFile } from "../support/gateway-auth";
import { ROOT, startNode, type NodeProcess } from "../support/processes";

type ByField = "src_app" | "dest_app" | "vpc_id";
type Metric = "bytes_total" | "bytes_tx" | "bytes_rx";

interface Query {
  from: number;
  to: number;
  by: ByField[];
  metric: Metric;
  n: number;
}

interface Sums {
  bytes_tx: number;
  bytes_rx: number;
  bytes_total: number;
  flows: number;
}

interface Ranked {
  top: { key: string[]; sums: Sums }[];
  other: Sums & { groups: number };
  total: Sums & { groups: number };
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const zero = (): Sums => ({ bytes_tx: 0, bytes_rx: 0, bytes_total: 0, flows: 0 });
function add(into: Sums, s: Sums): void {
  into.bytes_tx += s.bytes_tx;
  into.bytes_rx += s.bytes_rx;
  into.bytes_total += s.bytes_total;
  into.flows += s.flows;
}

/** The test's own top-N of what it posted (issue 13): metric descending, ties by the `by` values ascending. */
function rank(flows: Flow[], q: Query): Ranked {
  const groups = new Map<string, { key: string[]; sums: Sums }>();
  const flowKeys = new Set<string>(); // a flow is one (src_app, dest_app, vpc_id, hour), however many records made it
  for (const f of flows) {
    if (f.hour < q.from || f.hour > q.to) continue;
    const key = q.by.map((b) => f[b]);
    const id = JSON.stringify(key);
    let g = groups.get(id);
    if (!g) groups.set(id, (g = { key, sums: zero() }));
    const isNewFlow = !flowKeys.has(JSON.stringify([f.src_app, f.dest_app, f.vpc_id, f.hour]));
    flowKeys.add(JSON.stringify([f.src_app, f.dest_app, f.vpc_id, f.hour]));
    add(g.sums, { bytes_tx: f.bytes_tx, bytes_rx: f.bytes_rx, bytes_total: f.bytes_tx + f.bytes_rx, flows: isNewFlow ? 1 : 0 });
  }
  const sorted = [...groups.values()].sort((a, b) => b.sums[q.metric] - a.sums[q.metric] || a.key.reduce((c, k, i) => c || cmp(k, b.key[i]), 0));
  const other = { ...zero(), groups: Math.max(0, sorted.length - q.n) };
  const total = { ...zero(), groups: sorted.length };
  sorted.forEach((g, i) => {
    if (i >= q.n) add(other, g.sums);
    add(total, g.sums);
  });
  return { top: sorted.slice(0, q.n), other, total };
}

/** The page's label of a group: "src → dest · vpc". */
function labelOf(key: string[], by: ByField[]): string {
  const value = (f: ByField) => key[by.indexOf(f)];
  const ends = (["src_app", "dest_app"] as ByField[]).filter((f) => by.includes(f)).map(value);
  return [...(ends.length ? [ends.join(" → ")] : []), ...(by.includes("vpc_id") ? [value("vpc_id")] : [])].join(" · ");
}

/** The query string the page sends for `q` (and shows as its own URL): `hour=N` for a single hour. */
function queryString(q: Query): string {
  const p = new URLSearchParams();
  if (q.from === q.to) p.set("hour", String(q.from));
  else {
    p.set("from", String(q.from));
    p.set("to", String(q.to));
  }
  p.set("by", q.by.join(","));
  p.set("metric", q.metric);
  p.set("n", String(q.n));
  return p.toString();
}

const utc = (hour: number) => new Date(hour * 3600 * 1000).toISOString().slice(0, 13).replace("T", " ") + ":00 UTC";
const numberShown = (text: string) => Number(text.replace(/,/g, ""));

/** What the page shows, read from its DOM by the ids and data attributes explorer.js documents. */
interface View {
  query: string;
  loads: number;
  rows: { rank: number; key: string[]; cells: Record<string, string> }[];
  bars: { rank: number; label: string; value: number; text: string }[];
  total: Record<string, string>;
  other: Record<string, string>;
  csv: string;
  status: string;
}

function view(page: Page): Promise<View> {
  return page.evaluate(() => {
    const all = (sel: string) => Array.from(document.querySelectorAll<HTMLElement>(sel));
    const fields = (root: Element | null) => {
      const out: Record<string, string> = {};
      root?.querySelectorAll<HTMLElement>("[data-field]").forEach((e) => (out[e.dataset.field ?? ""] = e.textContent ?? ""));
      return out;
    };
    return {
      query: document.body.dataset.query ?? "",
      loads: Number(document.body.dataset.loads ?? 0),
      rows: all("#top-rows tr[data-rank]").map((tr) => ({ rank: Number(tr.dataset.rank), key: JSON.parse(tr.dataset.key ?? "[]") as string[], cells: fields(tr) })),
      bars: Array.from(document.querySelectorAll<SVGGElement>("#chart g.bar")).map((g) => ({
        rank: Number(g.dataset.rank),
        label: g.dataset.label ?? "",
        value: Number(g.dataset.value),
        text: g.querySelector("text.value")?.textContent ?? "",
      })),
      total: fields(document.getElementById("total")),
      other: fields(document.getElementById("other")),
      csv: (document.getElementById("csv-link") as HTMLAnchorElement).href,
      status: document.getElementById("status")?.textContent ?? "",
    };
  });
}

/** Until the page shows the answer to `q`, then: its ranking, bars and totals are the model's. */
async function expectRanking(page: Page, url: string, flows: Flow[], q: Query): Promise<View> {
  const qs = queryString(q);
  await page.waitForFunction((want) => document.body.dataset.query === want, qs, { timeout: 15000 });
  const v = await view(page);
  const want = rank(flows, q);
  expect(v.query).toBe(qs);
  expect(v.rows.map((r) => [r.rank, r.key])).toEqual(want.top.map((g, i) => [i + 1, g.key]));
  v.rows.forEach((row, i) => {
    const g = want.top[i];
    q.by.forEach((f, j) => expect(row.cells[f]).toBe(g.key[j]));
    for (const f of ["bytes_tx", "bytes_rx", "bytes_total", "flows"] as const) expect([row.key, f, numberShown(row.cells[f])]).toEqual([g.key, f, g.sums[f]]);
  });
  // The bars: same order, labelled with the group, as long as the ranked metric.
  expect(v.bars.map((b) => [b.rank, b.label, b.value])).toEqual(want.top.map((g, i) => [i + 1, labelOf(g.key, q.by), g.sums[q.metric]]));
  for (const f of ["bytes_tx", "bytes_rx", "bytes_total", "flows", "groups"] as const) {
    expect(["total", f, numberShown(v.total[f])]).toEqual(["total", f, want.total[f]]);
    expect(["other", f, numberShown(v.other[f])]).toEqual(["other", f, want.other[f]]);
  }
  expect(v.csv).toBe(`${url}/flows/top?${qs}&format=csv`);
  expect(v.status).toMatch(new RegExp(`^Top ${want.top.length} of ${want.total.groups} groups`));
  return v;
}

/** A small deterministic PRNG (mulberry32): the same flows on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NEWEST = 494_520; // 2026-06-01 00:00 UTC
const DEFAULT_FROM = NEWEST - 23; // the default view: the last 24 hours up to the newest with data

/** Conversations between services over the four newest hours, with a different mix of sent and received bytes each. */
function knownFlows(): Flow[] {
  const rnd = random(13);
  const conversations: [string, string, string, number, number][] = [
    ["web", "api", "vpc-prod", 90e6, 420e6],
    ["api", "orders", "vpc-prod", 60e6, 140e6],
    ["api", "catalog", "vpc-prod", 25e6, 310e6],
    ["checkout", "payments", "vpc-prod", 40e6, 35e6],
    ["orders", "db", "vpc-prod", 160e6, 55e6],
    ["catalog", "cache", "vpc-prod", 12e6, 190e6],
    ["search", "catalog", "vpc-prod", 30e6, 95e6],
    ["auth", "db", "vpc-prod", 8e6, 22e6],
    ["web", "auth", "vpc-prod", 15e6, 9e6],
    ["metrics", "tsdb", "vpc-shared", 210e6, 4e6],
    ["logs", "storage", "vpc-shared", 260e6, 6e6],
    ["ci", "registry", "vpc-shared", 35e6, 150e6],
    ["web", "api", "vpc-stage", 9e6, 41e6],
    ["api", "db", "vpc-stage", 18e6, 12e6],
    ["loadtest", "web", "vpc-stage", 70e6, 20e6],
  ];
  const flows: Flow[] = [];
  for (let hour = NEWEST - 3; hour <= NEWEST; hour++) {
    for (const [src, dest, vpc, tx, rx] of conversations) {
      if (rnd() < 0.15) continue; // not every conversation every hour
      flows.push(flow(src, dest, vpc, hour, Math.round(tx * (0.5 + rnd())), Math.round(rx * (0.5 + rnd()))));
    }
  }
  // The first hour of the default range is in it (inclusive); the hour before is not, though it would top the list.
  flows.push(flow("batch", "warehouse", "vpc-shared", DEFAULT_FROM, 300e6, 250e6));
  flows.push(flow("backup", "archive", "vpc-shared", DEFAULT_FROM - 1, 9e12, 9e12));
  return flows;
}

// Names are data: these would run script, or a spreadsheet formula, if handled as markup or code.
const HOSTILE_HOUR = NEWEST - 200;
const HOSTILE: Flow[] = [
  flow(`<img src=x onerror="window.__xss=1">`, "=cmd()", `vpc,"quoted"`, HOSTILE_HOUR, 5000, 7000),
  flow("plain", "<b>bold</b>", "vpc-1", HOSTILE_HOUR, 100, 200),
  flow("plain", "&amp;", "vpc-1", HOSTILE_HOUR, 1, 2),
];

let browser: Browser;

async function openExplorer(url: string, query = ""): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  const res = await page.goto(`${url}/explorer.html${query}`);
  expect(res?.status()).toBe(200);
  expect(res?.headers()["content-type"]).toMatch(/^text\/html/);
  return { page, errors };
}

async function post(url: string, flows: Flow[], headers: Record<string, string> = {}): Promise<void> {
  for (let i = 0; i < flows.length; i += 1000) {
    const r = await request(`${url}/flows`, { method: "POST", json: flows.slice(i, i + 1000), headers });
    expect(r.status).toBe(200);
  }
}

describeWithChromium("flows explorer (GET /explorer.html) in headless chromium", () => {
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60000);
  afterAll(() => browser?.close());

  describe("embedded node with known flows", () => {
    let node: NodeProcess;
    const flows = knownFlows();
    beforeAll(async () => {
      node = await startNode({ NODEID: "explorer", PARTITIONS: "16" });
      await post(node.url, [...flows, ...HOSTILE]);
    });
    afterAll(() => node?.stop());

    test("its files are served with their content types, and the two pages link to each other", async () => {
      for (const [file, type] of [
        ["/explorer.html", /^text\/html; charset=utf-8$/i],
        ["/explorer.js", /^(application|text)\/javascript; charset=utf-8$/i],
        ["/explorer.css", /^text\/css; charset=utf-8$/i],
      ] as const) {
        const r = await fetch(`${node.url}${file}`);
        expect([file, r.status]).toEqual([file, 200]);
        expect(r.headers.get("content-type")).toMatch(type);
        expect(r.headers.get("content-security-policy")).toMatch(/default-src 'self'/);
        await r.text();
      }
      const page = await browser.newPage();
      await page.goto(`${node.url}/`);
      await page.click("#explorer-link");
      await page.waitForURL(/\/explorer\.html/);
      await page.waitForFunction(() => Number(document.body.dataset.loads ?? 0) >= 1, undefined, { timeout: 15000 });
      await page.click("#dashboard-link");
      await page.waitForFunction(() => Number(document.body.dataset.polls ?? 0) >= 1, undefined, { timeout: 15000 });
      expect(new URL(page.url()).pathname).toBe("/");
      await page.close();
    });

    test("shows the last 24 hours up to the newest with data, ranked as the data implies; then by other fields, metrics and n", async () => {
      // The data has teeth: the rankings by sent and received bytes differ, and the hour before the range would top it.
      const bySrc = (metric: Metric) => rank(flows, { from: DEFAULT_FROM, to: NEWEST, by: ["src_app"], metric, n: 10 }).top.map((g) => g.key[0]);
      expect(bySrc("bytes_rx")).not.toEqual(bySrc("bytes_total"));
      expect(rank(flows, { from: DEFAULT_FROM - 1, to: NEWEST, by: ["src_app"], metric: "bytes_total", n: 1 }).top[0].key).toEqual(["backup"]);
      expect(rank(flows, { from: DEFAULT_FROM, to: NEWEST, by: ["src_app", "dest_app"], metric: "bytes_total", n: 10 }).top.map((g) => g.key[0])).toContain("batch");

      const { page, errors } = await openExplorer(node.url);
      const defaults: Query = { from: DEFAULT_FROM, to: NEWEST, by: ["src_app", "dest_app"], metric: "bytes_total", n: 10 };
      const first = await expectRanking(page, node.url, flows, defaults);
      expect(first.rows).toHaveLength(10);
      expect(first.bars[0].text).toMatch(/^[\d.]+ (kB|MB|GB)$/);
      // Hours are shown as UTC date-times too; the page's own URL carries the query.
      expect(await page.inputValue("#from")).toBe(String(DEFAULT_FROM));
      expect(await page.inputValue("#to")).toBe(String(NEWEST));
      expect(await page.locator("#from-utc").textContent()).toBe(utc(DEFAULT_FROM));
      expect(await page.locator("#to-utc").textContent()).toBe(utc(NEWEST));
      expect(utc(NEWEST)).toBe("2026-06-01 00:00 UTC");
      expect(await page.locator("#result-range").textContent()).toBe(`· hours ${DEFAULT_FROM} (${utc(DEFAULT_FROM)}) to ${NEWEST} (${utc(NEWEST)}), 24 hours`);
      expect(await page.locator("#data-hours").textContent()).toBe(`Hours with data: ${HOSTILE_HOUR} (${utc(HOSTILE_HOUR)}) to ${NEWEST} (${utc(NEWEST)}).`);
      expect(new URL(page.url()).search).toBe(`?${queryString(defaults)}`);

      if (process.env.EXPLORER_SCREENSHOT) {
        const file = path.resolve(ROOT, process.env.EXPLORER_SCREENSHOT);
        await page.screenshot({ path: file, fullPage: true });
        console.log(`explorer: screenshot saved to ${file}`);
      }

      // The CSV link is this query's, and the gateway answers it with the same ranking.
      const csv = await fetch(first.csv);
      expect(csv.status).toBe(200);
      expect(csv.headers.get("content-type")).toMatch(/^text\/csv/);
      const lines = (await csv.text()).split(/\r?\n/).filter((l) => l !== "");
      expect(lines[0]).toMatch(/src_app.*dest_app.*bytes_total/);
      const want = rank(flows, defaults);
      want.top.forEach((g, i) => expect(lines[i + 1]).toContain(`${g.key[0]},${g.key[1]}`));
      // And every flow of those hours, as CSV: one row per posted flow in the range.
      const flowsCsv = await page.getAttribute("#flows-csv-link", "href");
      expect(flowsCsv).toBe(`flows?from=${DEFAULT_FROM}&to=${NEWEST}&format=csv`);
      const rangeCsv = await fetch(`${node.url}/${flowsCsv}`);
      expect(rangeCsv.headers.get("content-type")).toMatch(/^text\/csv/);
      const rangeRows = (await rangeCsv.text()).split("\r\n").filter((l) => l !== "");
      expect(rangeRows.length - 1).toBe(flows.filter((f) => f.hour >= DEFAULT_FROM && f.hour <= NEWEST).length);
      // Clicking it downloads that file (no token here: the browser follows the link).
      const [download] = await Promise.all([page.waitForEvent("download"), page.click("#csv-link")]);
      expect(download.url()).toBe(first.csv);
      expect(download.suggestedFilename()).toBe(`flows-top-${DEFAULT_FROM}-${NEWEST}.csv`); // the gateway's name

      // Switch `by` and `metric`: each choice runs the query at once.
      await page.selectOption("#by", "src_app");
      await expectRanking(page, node.url, flows, { ...defaults, by: ["src_app"] });
      await page.selectOption("#metric", "bytes_rx");
      const rx = await expectRanking(page, node.url, flows, { ...defaults, by: ["src_app"], metric: "bytes_rx" });
      expect(rx.rows.map((r) => r.key[0])).toEqual(bySrc("bytes_rx"));
      await page.selectOption("#by", "vpc_id");
      await page.selectOption("#metric", "bytes_tx");
      await expectRanking(page, node.url, flows, { ...defaults, by: ["vpc_id"], metric: "bytes_tx" });
      // n and the hours wait for Show: the three-field groups of the newest hour only, top 5.
      await page.selectOption("#by", "src_app,dest_app,vpc_id");
      await page.fill("#n", "5");
      await page.click("#preset-hour");
      const hour = await expectRanking(page, node.url, flows, { from: NEWEST, to: NEWEST, by: ["src_app", "dest_app", "vpc_id"], metric: "bytes_tx", n: 5 });
      expect(hour.rows).toHaveLength(5);
      expect(hour.csv).toContain("hour=" + NEWEST);
      // A typed range, then Show.
      await page.fill("#from", String(NEWEST - 2));
      await page.fill("#to", String(NEWEST - 1));
      expect(await page.locator("#from-utc").textContent()).toBe(utc(NEWEST - 2));
      await page.click("#run");
      await expectRanking(page, node.url, flows, { from: NEWEST - 2, to: NEWEST - 1, by: ["src_app", "dest_app", "vpc_id"], metric: "bytes_tx", n: 5 });
      // More than there are groups: no "other".
      await page.fill("#n", "1000");
      await page.click("#run");
      const everything = await expectRanking(page, node.url, flows, { from: NEWEST - 2, to: NEWEST - 1, by: ["src_app", "dest_app", "vpc_id"], metric: "bytes_tx", n: 1000 });
      expect(everything.other.groups).toBe("0");
      expect(errors).toEqual([]);
      await page.close();
    });

    test("names are rendered as text; a query in the page's URL is shown as given", async () => {
      const q: Query = { from: HOSTILE_HOUR, to: HOSTILE_HOUR, by: ["src_app", "dest_app", "vpc_id"], metric: "bytes_tx", n: 2 };
      const { page, errors } = await openExplorer(node.url, `?${queryString(q)}`);
      const v = await expectRanking(page, node.url, HOSTILE, q);
      expect(v.rows[0].key).toEqual([HOSTILE[0].src_app, HOSTILE[0].dest_app, HOSTILE[0].vpc_id]);
      expect(v.rows[0].cells.src_app).toBe(HOSTILE[0].src_app);
      expect(await page.inputValue("#by")).toBe("src_app,dest_app,vpc_id");
      expect(await page.inputValue("#metric")).toBe("bytes_tx");
      expect(await page.inputValue("#n")).toBe("2");
      expect(await page.locator("#result-range").textContent()).toBe(`· hour ${HOSTILE_HOUR} (${utc(HOSTILE_HOUR)})`);
      expect(await page.locator("img").count()).toBe(0);
      expect(await page.locator("#top-rows b").count()).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
      expect(errors).toEqual([]);
      await page.close();
    });
  });

  describe("a gateway with API tokens", () => {
    const READ = "explorer-read-token-0123456789";
    const INGEST = "explorer-ingest-token-0123456789";
    let node: NodeProcess;
    beforeAll(async () => {
      node = await startNode({ NODEID: "explorer-auth", PARTITIONS: "8", API_TOKENS_FILE: tokensFile([`viewer read ${READ}`, `agent ingest ${INGEST}`]) });
    });
    afterAll(() => node?.stop());

    test("asks for a read token (403 for one without the scope), keeps it in sessionStorage, and downloads the CSV with it", async () => {
      const { page, errors } = await openExplorer(node.url);
      await page.waitForSelector("#token-form:not([hidden])");
      expect(await page.locator("#status").textContent()).toBe("Waiting for an API token (GET /flows/hours answered 401)");
      await page.fill("#token-input", INGEST);
      await page.click("#token-form button");
      await page.waitForFunction(() => /lacks the read scope/.test(document.getElementById("token-label")?.textContent ?? ""));
      await page.fill("#token-input", READ);
      await page.click("#token-form button");
      // Nothing stored yet.
      await page.waitForFunction(() => /^No flows stored yet/.test(document.getElementById("status")?.textContent ?? ""));
      expect(await page.evaluate(() => sessionStorage.getItem("flowmesh.apiToken"))).toBe(READ);

      const flows = knownFlows();
      await post(node.url, flows, bearer(INGEST));
      await page.click("#preset-day");
      const v = await expectRanking(page, node.url, flows, { from: DEFAULT_FROM, to: NEWEST, by: ["src_app", "dest_app"], metric: "bytes_total", n: 10 });
      // A link cannot send the token: the page fetches the CSV with it and saves it.
      expect((await request(v.csv)).status).toBe(401);
      const [download] = await Promise.all([page.waitForEvent("download"), page.click("#csv-link")]);
      expect(download.suggestedFilename()).toBe(`flows-top-${DEFAULT_FROM}-${NEWEST}.csv`); // the gateway's name
      expect(download.url()).toMatch(/^blob:/);
      const text = await new Promise<string>((resolve, reject) => {
        download.createReadStream().then((stream) => {
          let out = "";
          stream.on("data", (b: Buffer) => (out += b.toString()));
          stream.on("end", () => resolve(out));
          stream.on("error", reject);
        }, reject);
      });
      const top = rank(flows, { from: DEFAULT_FROM, to: NEWEST, by: ["src_app", "dest_app"], metric: "bytes_total", n: 10 }).top;
      expect(text.split(/\r?\n/)[1]).toContain(`${top[0].key[0]},${top[0].key[1]}`);
      // Chromium logs each refused request (the 401 and the 403 above) as a console error; nothing else may fail.
      expect(errors.filter((e) => !/status of 40[13]/.test(e))).toEqual([]);
      await page.close();
    });
  });
});
