/**
 * GET /metrics on an embedded node, as `npm start` runs it: Prometheus text that parses
 * line by line, with Flowmesh's series moving by exactly what the requests did.
 */
import { get } from "http";
import { gunzipSync } from "zlib";
import { flow, freshHour, request } from "../support/api-contract";
import { parseExposition, sampleValue, type Family } from "../support/prometheus";
import { startNode, type NodeProcess } from "../support/processes";

const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const MAX = Number.MAX_SAFE_INTEGER;

describe("GET /metrics (embedded)", () => {
  let node: NodeProcess;
  let metrics: () => Promise<Map<string, Family>>;
  let value: (families: Map<string, Family>, name: string, labels?: Record<string, string>) => number;

  beforeAll(async () => {
    // A small body limit, to see a 413 counted without sending megabytes.
    node = await startNode({ NODEID: "metrics-embedded", BODY_LIMIT: "65536" });
    metrics = async () => {
      const res = await fetch(`${node.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe(CONTENT_TYPE);
      return parseExposition(await res.text());
    };
    // Every series carries this node's id.
    value = (families, name, labels = {}) => sampleValue(families, name, { node_id: "metrics-embedded", ...labels });
  });

  afterAll(async () => {
    await node?.stop();
  });

  const post = (body: unknown, headers: Record<string, string> = {}) => request(`${node.url}/flows`, { method: "POST", json: body, headers });

  test("is Prometheus text exposition 0.0.4: Flowmesh's series, named by the conventions, beside the process's", async () => {
    const families = await metrics();
    const own = [...families.values()].filter((f) => f.name.startsWith("flowmesh_"));
    expect(own.map((f) => f.name).sort()).toEqual(
      [
        "flowmesh_applied_records_total",
        "flowmesh_coordinator",
        "flowmesh_data_bytes",
        "flowmesh_fenced",
        "flowmesh_flows_held",
        "flowmesh_handoff_flows_total",
        "flowmesh_handoffs_in_progress",
        "flowmesh_handoffs_total",
        "flowmesh_idempotency_hits_total",
        "flowmesh_ingested_batches_total",
        "flowmesh_ingested_records_total",
        "flowmesh_log_unwritable",
        "flowmesh_partitions_owned",
        "flowmesh_partitions_unavailable",
        "flowmesh_partitions_under_replicated",
        "flowmesh_partitions_without_primary",
        "flowmesh_placement_epoch",
        "flowmesh_read_duration_seconds",
        "flowmesh_reads_total",
        "flowmesh_rejected_batches_total",
        "flowmesh_rejected_reads_total",
        "flowmesh_replication_failures_total",
        "flowmesh_shard_nodes",
        "flowmesh_write_groups_total",
        "flowmesh_write_messages_total",
      ].sort(),
    );
    for (const f of own) {
      expect(f.name).toMatch(/^flowmesh_[a-z0-9_]+$/);
      expect(f.help).toBeTruthy();
      // Counters end in _total, and only counters do.
      expect([f.name, f.type === "counter"]).toEqual([f.name, f.name.endsWith("_total")]);
      for (const s of f.samples) for (const label of Object.keys(s.labels)) expect(label).toMatch(/^[a-z_]+$/);
    }
    expect(families.get("flowmesh_read_duration_seconds")?.type).toBe("histogram");
    // Moleculer's process and Node.js series stay; its per-call request metrics are off by default (README).
    expect(value(families, "process_memory_rss")).toBeGreaterThan(0);
    expect(value(families, "process_memory_heap_size_used")).toBeGreaterThan(0);
    expect(families.has("moleculer_request_total")).toBe(false);
    // Nothing about the OS user, the host's addresses or the command line is published.
    expect([...families.keys()].filter((n) => /^os_user|^os_network|^process_arguments/.test(n))).toEqual([]);
    expect(families.has("os_hostname")).toBe(true);
    // Embedded: one node, primary of every partition.
    expect(value(families, "flowmesh_partitions_owned", { role: "primary" })).toBe(256);
    expect(value(families, "flowmesh_partitions_owned", { role: "replica" })).toBe(0);
    expect(value(families, "flowmesh_partitions_without_primary")).toBe(0);
    expect(value(families, "flowmesh_coordinator")).toBe(1);
    expect(value(families, "flowmesh_placement_epoch")).toBe(1);
  });

  test("records and batches ingested rise by exactly what was posted; flows held by the new flows", async () => {
    const h = freshHour();
    const before = await metrics();
    const batch = Array.from({ length: 7 }, (_, i) => flow(`m-src-${i}`, "m-db", "vpc", h, i, 1));
    expect((await post(batch)).status).toBe(200);
    expect((await post([batch[0], batch[1]])).status).toBe(200); // same keys: no new flows
    const after = await metrics();
    const delta = (name: string, labels?: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    expect(delta("flowmesh_ingested_records_total")).toBe(9);
    expect(delta("flowmesh_ingested_batches_total")).toBe(2);
    expect(delta("flowmesh_applied_records_total")).toBe(9);
    expect(delta("flowmesh_flows_held", { role: "primary" })).toBe(7);
    expect(delta("flowmesh_idempotency_hits_total")).toBe(0);
  });

  test("refused batches count by reason and ingest nothing", async () => {
    const h = freshHour();
    const before = await metrics();
    const bad = await post([flow("a", "b", "c", h, 1, 1), { ...flow("a", "b", "c", h, 1, 1), bytes_tx: -1 }]);
    expect(bad.status).toBe(400);
    expect((await request(`${node.url}/flows`, { method: "POST", body: "[{", headers: { "content-type": "application/json" } })).status).toBe(400);
    expect((await request(`${node.url}/flows`, { method: "POST", body: "[]", headers: { "content-type": "text/plain" } })).status).toBe(415);
    expect((await request(`${node.url}/flows`, { method: "POST", body: "x".repeat(70000), headers: { "content-type": "application/json" } })).status).toBe(413);
    expect((await post([flow("big", "b", "c", h, MAX, 0)])).status).toBe(200);
    expect((await post([flow("big", "b", "c", h, 1, 0)])).status).toBe(422);
    const after = await metrics();
    const delta = (name: string, labels?: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    expect(delta("flowmesh_rejected_batches_total", { reason: "validation" })).toBe(1);
    expect(delta("flowmesh_rejected_batches_total", { reason: "invalid_json" })).toBe(1);
    expect(delta("flowmesh_rejected_batches_total", { reason: "unsupported_media_type" })).toBe(1);
    expect(delta("flowmesh_rejected_batches_total", { reason: "too_large" })).toBe(1);
    expect(delta("flowmesh_rejected_batches_total", { reason: "sum_overflow" })).toBe(1);
    expect(delta("flowmesh_rejected_batches_total", { reason: "unavailable" })).toBe(0);
    expect(delta("flowmesh_rejected_batches_total", { reason: "error" })).toBe(0);
    // Only the one good batch was ingested.
    expect(delta("flowmesh_ingested_batches_total")).toBe(1);
    expect(delta("flowmesh_ingested_records_total")).toBe(1);
    expect(delta("flowmesh_applied_records_total")).toBe(1);
  });

  test("a retried Idempotency-Key is one idempotency hit, and applied once", async () => {
    const h = freshHour();
    // One flow key, so one partition and one sub-batch.
    const batch = [flow("idem", "db", "vpc", h, 1, 2), flow("idem", "db", "vpc", h, 3, 4), flow("idem", "db", "vpc", h, 5, 6)];
    const before = await metrics();
    const key = `metrics-${h}`;
    expect((await post(batch, { "Idempotency-Key": key })).body).toEqual({ accepted: 3 });
    expect((await post(batch, { "Idempotency-Key": key })).body).toEqual({ accepted: 3 });
    const after = await metrics();
    const delta = (name: string, labels?: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    expect(delta("flowmesh_idempotency_hits_total")).toBe(1);
    expect(delta("flowmesh_ingested_batches_total")).toBe(2); // both answered 200
    expect(delta("flowmesh_applied_records_total")).toBe(3); // applied once
    expect((await request(`${node.url}/flows?hour=${h}`)).body).toEqual([{ ...batch[0], bytes_tx: 9, bytes_rx: 12 }]);
  });

  test("reads are counted and timed; a bad hour is a refused read", async () => {
    const h = freshHour();
    const before = await metrics();
    expect((await request(`${node.url}/flows?hour=${h}`)).status).toBe(200);
    expect((await request(`${node.url}/flows?hour=${h}&src_app=x`)).status).toBe(200);
    expect((await request(`${node.url}/flows?hour=-1`)).status).toBe(400);
    const after = await metrics();
    const delta = (name: string, labels?: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    expect(delta("flowmesh_reads_total")).toBe(2);
    expect(delta("flowmesh_read_duration_seconds_count")).toBe(2);
    expect(delta("flowmesh_read_duration_seconds_bucket", { le: "+Inf" })).toBe(2);
    expect(delta("flowmesh_read_duration_seconds_sum")).toBeGreaterThan(0);
    expect(delta("flowmesh_rejected_reads_total", { reason: "validation" })).toBe(1);
  });

  test("gzipped when the scraper accepts it, as Prometheus does", async () => {
    const res = await new Promise<{ headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
      get(`${node.url}/metrics`, { headers: { "accept-encoding": "gzip" } }, (r) => {
        const chunks: Buffer[] = [];
        r.on("data", (c: Buffer) => chunks.push(c));
        r.on("end", () => resolve({ headers: r.headers, body: Buffer.concat(chunks) }));
      }).on("error", reject);
    });
    expect(res.headers["content-encoding"]).toBe("gzip");
    expect(res.headers["content-type"]).toBe(CONTENT_TYPE);
    expect(parseExposition(gunzipSync(res.body).toString("utf8")).has("flowmesh_ingested_records_total")).toBe(true);
  });
});

describe("METRICS=false", () => {
  let node: NodeProcess;

  beforeAll(async () => {
    node = await startNode({ NODEID: "metrics-off", METRICS: "false" });
  });

  afterAll(async () => {
    await node?.stop();
  });

  test("GET /metrics is 404 METRICS_DISABLED; the API works as ever", async () => {
    const res = await request(`${node.url}/metrics`);
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ type: "METRICS_DISABLED", code: 404 });
    const h = freshHour();
    expect((await request(`${node.url}/flows`, { method: "POST", json: [flow("a", "b", "c", h, 1, 1)] })).body).toEqual({ accepted: 1 });
    expect((await request(`${node.url}/flows`, { method: "POST", json: [{ hour: -1 }] })).status).toBe(400);
  });
});
