/// <reference lib="dom" />
/**
 * The dashboard at GET /, in a real headless browser (Debian's chromium driven by
 * playwright-core) against real Flowmesh processes: an embedded node, then a cluster of
 * three shard nodes that a fourth joins while it holds data. What the page shows is
 * compared with what GET /cluster answers.
 */
import type { Browser, Page } from "playwright-core";
import { request } from "../support/api-contract";
import { describeWithChromium, launchChromium } from "../support/browser";
import { bearer, tokensFile } from "../support/gateway-auth";
import { describeWithNats, startCluster, startNode, waitFor, waitForSettled, type Cluster, type NodeProcess } from "../support/processes";

interface ClusterStatus {
  nodeID: string;
  mode: string;
  coordinator: string;
  epoch: number;
  partitionCount: number;
  nodes: { nodeID: string; flows: number; primaries: number; replicas: number; recordsIngested: number }[];
  partitions: { partition: number; primary: string | null; replicas: string[]; flows: number }[];
  underReplicated: number[];
  handoffs: { partition: number; from: string; to: string; chunks: number; sent: number; progress: number }[];
}

/** What the page shows, read from its DOM by the ids and data attributes it documents. */
interface View {
  polls: number;
  epoch: number;
  mode: string;
  nodes: { id: string; coordinator: boolean; text: string; primaries: string; flows: string; rate: string }[];
  cells: { partition: number; primary: string; replicas: string[]; text: string }[];
  handoffs: HandoffSeen[];
}

interface HandoffSeen {
  partition: number;
  from: string;
  to: string;
  progress: number;
  bar: number;
  text: string;
  visible?: boolean;
}

async function status(url: string, headers: Record<string, string> = {}): Promise<ClusterStatus> {
  const r = await request(`${url}/cluster`, { headers });
  expect(r.status).toBe(200);
  return r.body as ClusterStatus;
}

function view(page: Page): Promise<View> {
  return page.evaluate(() => {
    const all = (sel: string) => Array.from(document.querySelectorAll<HTMLElement>(sel));
    const field = (row: HTMLElement, name: string) => row.querySelector(`[data-field="${name}"]`)?.textContent ?? "";
    return {
      polls: Number(document.body.dataset.polls ?? 0),
      epoch: Number(document.body.dataset.epoch ?? -1),
      mode: document.getElementById("mode")?.textContent ?? "",
      nodes: all("#node-rows tr[data-node-id]").map((tr) => ({
        id: tr.dataset.nodeId ?? "",
        coordinator: tr.dataset.coordinator === "true",
        text: tr.querySelector(".node-id")?.textContent ?? "",
        primaries: field(tr, "primaries"),
        flows: field(tr, "flows"),
        rate: field(tr, "rate"),
      })),
      cells: all("#partitions [data-partition]").map((c) => ({
        partition: Number(c.dataset.partition),
        primary: c.dataset.primary ?? "",
        replicas: JSON.parse(c.dataset.replicas ?? "[]") as string[],
        text: c.textContent ?? "",
      })),
      handoffs: all("#handoffs li[data-handoff]").map((li) => ({
        partition: Number(li.dataset.partition),
        from: li.dataset.from ?? "",
        to: li.dataset.to ?? "",
        progress: Number(li.dataset.progress),
        bar: (li.querySelector("progress") as HTMLProgressElement | null)?.value ?? -1,
        text: li.textContent ?? "",
      })),
    };
  });
}

/** The page's placement, as /cluster gives it: [partition, primary, replicas]. */
const placementOf = (s: ClusterStatus) => s.partitions.map((p) => [p.partition, p.primary ?? "", p.replicas]);
const placementShown = (v: View) => v.cells.map((c) => [c.partition, c.primary, c.replicas]);
const numberShown = (text: string) => Number(text.replace(/,/g, ""));

/** Until the page has rendered the epoch /cluster answers now, and the same placement. */
async function waitForPageToMatch(page: Page, url: string, timeoutMs = 15000, headers: Record<string, string> = {}): Promise<{ v: View; s: ClusterStatus }> {
  let last: { v: View; s: ClusterStatus } | undefined;
  try {
    return await waitFor(
      "the dashboard to show what /cluster answers",
      async () => {
        const s = await status(url, headers);
        const v = await view(page);
        last = { v, s };
        if (v.epoch !== s.epoch) return false;
        if (JSON.stringify(placementShown(v)) !== JSON.stringify(placementOf(s))) return false;
        const ids = new Set(s.nodes.map((n) => n.nodeID));
        if (v.nodes.length !== ids.size || v.nodes.some((n) => !ids.has(n.id))) return false;
        return { v, s };
      },
      timeoutMs,
      250,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last view ${JSON.stringify(last?.v.nodes)} epoch ${last?.v.epoch}, /cluster epoch ${last?.s.epoch}`);
  }
}

/** Before the page's script runs: collects every handoff the page renders, and the highest total ingest rate it shows. */
const RECORD_HANDOFFS = `
  window.__handoffsSeen = [];
  document.addEventListener("DOMContentLoaded", () => {
    const list = document.getElementById("handoffs");
    new MutationObserver(() => {
      for (const li of list.querySelectorAll("li[data-handoff]")) {
        const bar = li.querySelector("progress");
        window.__handoffsSeen.push({
          partition: Number(li.dataset.partition), from: li.dataset.from, to: li.dataset.to,
          progress: Number(li.dataset.progress), bar: bar ? bar.value : -1, text: li.textContent,
          visible: li.offsetParent !== null && li.getBoundingClientRect().height > 0,
        });
      }
    }).observe(list, { childList: true });
    const rate = document.getElementById("total-rate");
    window.__maxRate = 0;
    new MutationObserver(() => {
      window.__maxRate = Math.max(window.__maxRate, Number(rate.textContent.replace(/[^0-9]/g, "")) || 0);
    }).observe(rate, { childList: true });
  });
`;

let browser: Browser;

async function openDashboard(url: string, query = ""): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  await page.addInitScript(RECORD_HANDOFFS);
  const res = await page.goto(`${url}/${query}`);
  expect(res?.status()).toBe(200);
  expect(res?.headers()["content-type"]).toMatch(/^text\/html/);
  await page.waitForFunction(() => Number(document.body.dataset.polls ?? 0) >= 1, undefined, { timeout: 10000 });
  return { page, errors };
}

describeWithChromium("dashboard (GET /) in headless chromium", () => {
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60000);
  afterAll(() => browser?.close());

  describe("embedded node", () => {
    // Node ids are data: this one would run script if the page put it into HTML unescaped.
    const NODEID = `emb<img src=x onerror="window.__xss=1">&"'`;
    let node: NodeProcess;
    beforeAll(async () => {
      node = await startNode({ NODEID, PARTITIONS: "64" });
    });
    afterAll(() => node?.stop());

    test("static files are served with their content types; the API routes are unchanged", async () => {
      for (const [file, type] of [
        ["/", /^text\/html; charset=utf-8$/i],
        ["/index.html", /^text\/html; charset=utf-8$/i],
        ["/dashboard.js", /^(application|text)\/javascript; charset=utf-8$/i],
        ["/dashboard.css", /^text\/css; charset=utf-8$/i],
      ] as const) {
        const r = await fetch(`${node.url}${file}`);
        expect([file, r.status]).toEqual([file, 200]);
        expect(r.headers.get("content-type")).toMatch(type);
        expect(r.headers.get("x-content-type-options")).toBe("nosniff");
        await r.text();
      }
      expect((await request(`${node.url}/nope.js`)).status).toBe(404);
      expect((await request(`${node.url}/health`)).body).toEqual({ status: "ok" });
      expect((await request(`${node.url}/ready`)).status).toBe(200);
      expect((await request(`${node.url}/cluster`)).body.mode).toBe("embedded");
      expect((await request(`${node.url}/flows?hour=1`)).body).toEqual([]);
    });

    test("renders the node id (escaped), the coordinator, all P partitions, flows and the ingest rate", async () => {
      const { page, errors } = await openDashboard(node.url);
      const { v, s } = await waitForPageToMatch(page, node.url);
      expect(v.mode).toBe("embedded");
      expect(v.nodes).toHaveLength(1);
      expect(v.nodes[0]).toMatchObject({ id: NODEID, text: NODEID, coordinator: true, primaries: "64" });
      expect(v.cells).toHaveLength(64);
      expect(v.cells.map((c) => c.text)).toEqual(Array.from({ length: 64 }, (_, i) => String(i)));
      expect(v.cells.every((c) => c.primary === NODEID && c.replicas.length === 0)).toBe(true);
      expect(s.nodes[0].nodeID).toBe(NODEID);
      expect(await page.locator("#coordinator").textContent()).toBe(NODEID);
      expect(await page.locator("#partition-count").textContent()).toBe("64");
      expect(await page.locator("#status").textContent()).toMatch(/^Live · refreshed every 1 s/);
      // The id was rendered as text: no <img> was made from it, no script ran.
      expect(await page.locator("img").count()).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();

      // Writes show as flows held and as a rate (the difference of two polls of recordsIngested).
      let posted = 0;
      let writing = true;
      const writer = (async () => {
        for (let b = 0; writing; b++) {
          const batch = Array.from({ length: 1000 }, (_, i) => ({ src_app: `s${b}-${i}`, dest_app: "d", vpc_id: "v", hour: 7, bytes_tx: 1, bytes_rx: 1 }));
          const r = await request(`${node.url}/flows`, { method: "POST", json: batch });
          expect(r.status).toBe(200);
          posted += 1000;
          await new Promise((res) => setTimeout(res, 50));
        }
      })();
      try {
        await page.waitForFunction(() => Number(document.querySelector('#node-rows tr [data-field="rate"]')?.textContent?.replace(/,/g, "")) > 0, undefined, { timeout: 15000 });
      } finally {
        writing = false;
        await writer;
      }
      expect(posted).toBeGreaterThan(0);
      await waitFor("flows held to show every posted record", async () => numberShown((await view(page)).nodes[0].flows) === posted, 10000, 200);
      expect((await status(node.url)).nodes[0].flows).toBe(posted);
      expect(numberShown((await page.locator("#total-flows").textContent()) ?? "")).toBe(posted);
      expect(errors).toEqual([]);
      await page.close();
    });

    test("shows that /cluster cannot be read, and recovers", async () => {
      const { page } = await openDashboard(node.url);
      await page.route("**/cluster", (route) => route.abort());
      await page.waitForFunction(() => document.getElementById("status")?.dataset.state === "error", undefined, { timeout: 10000 });
      expect(await page.locator("#status").textContent()).toMatch(/Cannot read \/cluster/);
      // The last data stays on the page.
      expect(await page.locator("#node-rows tr[data-node-id]").count()).toBe(1);
      await page.unroute("**/cluster");
      await page.waitForFunction(() => document.getElementById("status")?.dataset.state === "ok", undefined, { timeout: 10000 });
      await page.close();
    });
  });

  describe("a gateway with API tokens", () => {
    const READ = "dashboard-read-token-0123456789";
    const INGEST = "dashboard-ingest-token-0123456789";
    let node: NodeProcess;
    beforeAll(async () => {
      node = await startNode({ NODEID: "dashboard-auth", PARTITIONS: "8", API_TOKENS_FILE: tokensFile([`viewer read ${READ}`, `agent ingest ${INGEST}`]) });
    });
    afterAll(() => node?.stop());

    test("asks for a read token on 401 (and again on 403 for one without the scope), then polls with it; a forgotten token is asked for again", async () => {
      const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
      const errors: string[] = [];
      page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
      expect((await page.goto(`${node.url}/`))?.status()).toBe(200);
      await page.waitForSelector("#token-form:not([hidden])");
      expect(await page.locator("#status").textContent()).toBe("Waiting for an API token (GET /cluster answered 401)");
      expect(await page.locator("#token-label").textContent()).toBe("This gateway needs an API token with the read scope:");
      await page.fill("#token-input", INGEST);
      await page.click("#token-form button");
      await page.waitForFunction(() => /lacks the read scope/.test(document.getElementById("token-label")?.textContent ?? ""));
      expect(await page.locator("#status").textContent()).toBe("Waiting for an API token (GET /cluster answered 403)");
      await page.fill("#token-input", READ);
      await page.click("#token-form button");
      await page.waitForFunction(() => Number(document.body.dataset.polls ?? 0) >= 1, undefined, { timeout: 10000 });
      expect(await page.locator("#token-form").isHidden()).toBe(true);
      const { v } = await waitForPageToMatch(page, node.url, 15000, bearer(READ));
      expect(v.nodes.map((n) => n.id)).toEqual(["dashboard-auth"]);
      expect(await page.evaluate(() => sessionStorage.getItem("flowmesh.apiToken"))).toBe(READ);
      // A token the gateway no longer knows (here: replaced in storage) is dropped and asked for again.
      await page.evaluate(() => sessionStorage.setItem("flowmesh.apiToken", "not-a-token-anymore-0123456789"));
      await page.waitForSelector("#token-form:not([hidden])");
      expect(await page.locator("#token-label").textContent()).toBe("The gateway did not accept this token; enter another with the read scope:");
      expect(await page.evaluate(() => sessionStorage.getItem("flowmesh.apiToken"))).toBeNull();
      expect(errors).toEqual([]);
      await page.close();
    });
  });

  describeWithNats("cluster: three shard nodes, then a fourth joins with data loaded", () => {
    let cluster: Cluster;
    // Few partitions with many long keys each: each partition is copied in several chunks, one
    // partition at a time, so a handoff's progress is visible for a few of the page's polls.
    // LOGLEVEL info: the coordinator's rebalance lines are printed with the result.
    const env = { PARTITIONS: "32", REPLICAS: "2", HANDOFF_CONCURRENCY: "1", LOGLEVEL: "info" };
    beforeAll(async () => {
      cluster = await startCluster(3, env);
    }, 120000);
    afterAll(() => cluster?.stop());

    test("shows the nodes and placement of /cluster, the joining node's handoffs with progress, then the node owning partitions", async () => {
      const gw = cluster.nodes[0].url;
      // Polling 4 times a second (the page's ?interval=): the whole join takes a second or two here.
      const { page, errors } = await openDashboard(gw, "?interval=250");
      const first = await waitForPageToMatch(page, gw);
      expect(first.v.mode).toBe("cluster");
      expect(await page.locator("#status").textContent()).toMatch(/^Live · refreshed every 0\.25 s/);
      expect(first.v.nodes.map((n) => n.id)).toEqual(["n1", "n2", "n3"]);
      expect(first.v.nodes.filter((n) => n.coordinator).map((n) => n.id)).toEqual([first.s.coordinator]);
      expect(first.v.cells).toHaveLength(32);
      expect(new Set(first.v.cells.map((c) => c.primary))).toEqual(new Set(["n1", "n2", "n3"]));
      expect(first.v.cells.every((c) => c.replicas.length === 1 && c.replicas[0] !== c.primary)).toBe(true);

      // Load data through every gateway, four requests in flight (DASHBOARD_TEST_FLOWS for a faster or slower machine).
      const total = Number(process.env.DASHBOARD_TEST_FLOWS ?? 240_000);
      const pad = "x".repeat(100); // keys of ~320 characters: more snapshot chunks per flow
      const loadStarted = Date.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async (_, w) => {
          for (let b = next++; b * 1000 < total; b = next++) {
            const batch = Array.from({ length: 1000 }, (_, i) => ({
              src_app: `src-${pad}-${b}`,
              dest_app: `dst-${pad}-${i}`,
              vpc_id: `vpc-${pad}`,
              hour: 480000 + (i % 3),
              bytes_tx: i + 1,
              bytes_rx: b + 1,
            }));
            const r = await request(`${cluster.urls()[(b + w) % 3]}/flows`, { method: "POST", json: batch });
            expect(r.status).toBe(200);
          }
        }),
      );
      const loaded = await status(gw);
      expect(loaded.partitions.reduce((a, p) => a + p.flows, 0)).toBe(total);
      const loadMs = Date.now() - loadStarted;
      await waitFor("the page to show the flows", async () => numberShown((await page.locator("#total-flows").textContent()) ?? "") === total, 10000, 200);
      // The ingest rate it showed meanwhile, summed over the shard nodes, was real and not more than was sent (primaries count each record once).
      const maxRate = await page.evaluate(() => (window as unknown as { __maxRate: number }).__maxRate);
      console.log(`dashboard: loaded ${total} flows in ${loadMs} ms (${Math.round((total / loadMs) * 1000)}/s); the page showed at most ${maxRate} records/s`);
      expect(maxRate).toBeGreaterThan(0);
      expect(maxRate).toBeLessThan(total);

      // n4 joins: the coordinator copies partitions to it, one at a time, while the page watches.
      await page.evaluate(() => ((window as unknown as { __handoffsSeen: unknown[] }).__handoffsSeen.length = 0));
      const joinStarted = Date.now();
      await cluster.add("n4", env);
      await waitForSettled(cluster, 4, 120000);
      const settledMs = Date.now() - joinStarted;
      const last = await waitForPageToMatch(page, gw);
      const seen = (await page.evaluate(() => (window as unknown as { __handoffsSeen: HandoffSeen[] }).__handoffsSeen)).filter((h) => h.to === "n4");
      const moving = seen.filter((h) => h.progress > 0 && h.progress < 1);
      console.log(
        `dashboard: n4 settled ${settledMs} ms after it started; the page showed ${seen.length} handoff rows to n4, ` +
          `${new Set(seen.map((h) => h.partition)).size} partitions, ${moving.length} part-way; e.g. ${JSON.stringify(moving[0] ?? seen[0])}`,
      );
      console.log(cluster.nodes[0].output().split("\n").filter((l) => /Rebalanc/.test(l)).join("\n"));

      // The handoffs shown were real (to n4, from an old owner, progress between 0 and 1 on the bar too)...
      expect(seen.length).toBeGreaterThan(0);
      for (const h of seen) {
        expect(h.visible).toBe(true);
        expect(h.text).toMatch(new RegExp(`^P${h.partition} ${h.from} → n4\\d+% · [\\d,]+/[\\d,]+ chunks · [\\d,]+ flows · [\\d.]+ s$`));
        expect(["n1", "n2", "n3"]).toContain(h.from);
        expect(h.progress).toBeGreaterThanOrEqual(0);
        expect(h.progress).toBeLessThanOrEqual(1);
        expect(h.bar).toBeCloseTo(h.progress, 5);
        expect(h.text).toContain(`${Math.round(h.progress * 100)}%`);
      }
      // ...and the progress moved while the page watched (several chunks per partition).
      expect(moving.length).toBeGreaterThan(0);

      // Finally n4 owns partitions, on the page as in /cluster, and nothing is moving.
      expect(last.v.nodes.map((n) => n.id)).toEqual(["n1", "n2", "n3", "n4"]);
      const n4 = last.s.nodes.find((n) => n.nodeID === "n4")!;
      expect(n4.primaries).toBeGreaterThan(0);
      expect(last.v.cells.filter((c) => c.primary === "n4")).toHaveLength(n4.primaries);
      expect(last.v.nodes.find((n) => n.id === "n4")!.primaries).toBe(String(n4.primaries));
      await waitFor("the handoff list to empty", async () => (await view(page)).handoffs.length === 0, 10000, 200);
      expect(await page.locator("#handoffs-empty").isVisible()).toBe(true);
      expect(await page.locator("#under-count").textContent()).toBe("0");
      expect(errors).toEqual([]);
      await page.close();
    }, 240000);
  });
});
