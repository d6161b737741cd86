/**
 * State a client can add keys to is bounded (issue 12, "bounded state"): a real embedded
 * node reads 100,000 distinct filters, and its heap grows by no more than the read
 * caches' documented bounds (src/rendered-reads.ts) plus a margin. Before the bounds,
 * the gateway's read-version map kept one entry per distinct read for ever (this test
 * measured 28.9 MiB of growth then; ~0.7 MiB with the bounds).
 *
 * The heap figure is the node's own `process_memory_heap_size_used` from GET /metrics,
 * taken after a full garbage collection (test/support/gc-on-signal.js), so it counts what
 * is live rather than garbage not yet collected.
 */
import { Agent, get } from "http";
import * as path from "path";
import { filterKey, READ_VERSIONS_MAX_BYTES, RENDERED_MAX_BYTES, RENDERED_MAX_ENTRIES, renderedEntryBytes } from "../../src/rendered-reads";
import { flow, freshHour, request } from "../support/api-contract";
import { parseExposition, sampleValue } from "../support/prometheus";
import { sleep, startNode, waitFor, type NodeProcess } from "../support/processes";

const DISTINCT_READS = 100_000;
const CONCURRENCY = 16;
/** Allowance for what else the node's heap holds after the reads (compiled code, sockets, buffers): the heap's own noise here is ~0.1 MiB. */
const MARGIN_BYTES = 4 * 1024 * 1024;
const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

describe("bounded state (embedded)", () => {
  let node: NodeProcess;
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });

  beforeAll(async () => {
    const preload = path.join(__dirname, "../support/gc-on-signal.js");
    node = await startNode({
      NODEID: "bounded-state",
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --expose-gc --require ${preload}`.trim(),
    });
  });

  afterAll(async () => {
    agent.destroy();
    await node?.stop();
  });

  /** GET path on the node; resolves with the status once the body is read. */
  const getStatus = (pathAndQuery: string) =>
    new Promise<number>((resolve, reject) => {
      get({ host: "127.0.0.1", port: node.port, path: pathAndQuery, agent }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      }).on("error", reject);
    });

  const heapUsed = async () => {
    const res = await fetch(`${node.url}/metrics`);
    return sampleValue(parseExposition(await res.text()), "process_memory_heap_size_used", { node_id: "bounded-state" });
  };

  /**
   * The node's live heap: Moleculer samples it every 5 s, and the node makes garbage
   * meanwhile, so collect every 200 ms until a new sample appears: it was taken at most
   * that long after a full collection.
   */
  const liveHeap = async () => {
    const previousSample = await heapUsed();
    return waitFor(
      "a heap sample right after a collection",
      async () => {
        node.child.kill("SIGUSR2");
        await sleep(50); // the collection runs before the next sample is asked for
        const sample = await heapUsed();
        return sample !== previousSample ? sample : undefined;
      },
      12_000,
      150,
    );
  };

  /** n reads of GET /flows?hour=H&src_app=<name(i)>, CONCURRENCY at a time; every answer must be 200. */
  const readAll = async (hour: number, n: number, name: (i: number) => string) => {
    let next = 0;
    const statuses = new Map<number, number>();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < n) {
          const i = next++;
          const status = await getStatus(`/flows?hour=${hour}&src_app=${encodeURIComponent(name(i))}`);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
      }),
    );
    expect(Object.fromEntries(statuses)).toEqual({ 200: n });
  };

  test(`${DISTINCT_READS.toLocaleString("en")} distinct filters leave the heap within the read caches' bounds`, async () => {
    const hour = freshHour();
    // An hour with data, so every read goes through the shard's merged view and the renderer.
    const batch = Array.from({ length: 500 }, (_, i) => flow(`app-${i}`, "db", "vpc-1", hour, i, 1));
    expect((await request(`${node.url}/flows`, { method: "POST", json: batch })).status).toBe(200);
    const agentName = (i: number) => `agent-${String(i).padStart(6, "0")}-${"x".repeat(40)}`;
    // Warm up on a few filters only (compiled code, sockets, buffers), so the baseline holds no client keys yet.
    await readAll(hour, 3000, (i) => `app-${i % 10}`);
    const before = await liveHeap();

    const started = Date.now();
    await readAll(hour, DISTINCT_READS, agentName);
    const seconds = (Date.now() - started) / 1000;
    // The last reads are answered from the caches: they were kept, and are still right.
    const last = await request(`${node.url}/flows?hour=${hour}&src_app=${encodeURIComponent(agentName(DISTINCT_READS - 1))}`);
    expect([last.status, last.body]).toEqual([200, []]);
    const after = await liveHeap();

    // What these reads can keep: every read version (bounded in bytes), and rendered entries
    // of "[]" (bounded in entries first; their bodies are Buffers, outside the JS heap anyway).
    const renderedEntry = renderedEntryBytes(`${hour}${filterKey({ src_app: agentName(0) })}`, { version: "1|bounded-state:1000000", body: Buffer.from("[]") });
    const bound = READ_VERSIONS_MAX_BYTES + Math.min(RENDERED_MAX_BYTES, RENDERED_MAX_ENTRIES * renderedEntry);
    const growth = after - before;
    // eslint-disable-next-line no-console
    console.log(
      `bounded state: ${DISTINCT_READS} distinct reads in ${seconds.toFixed(1)} s (${Math.round(DISTINCT_READS / seconds)}/s); ` +
        `live heap ${MiB(before)} -> ${MiB(after)}, growth ${MiB(growth)}; bound ${MiB(bound)} + margin ${MiB(MARGIN_BYTES)}`,
    );
    expect(growth).toBeLessThan(bound + MARGIN_BYTES);
    expect((await fetch(`${node.url}/health`)).status).toBe(200);
  }, 90_000);
});
