/**
 * Compressed request bodies on a real node (embedded): `Content-Encoding: gzip` and
 * `deflate` are accepted on POST /flows and applied exactly like the same JSON sent
 * plain; other encodings are 415; BODY_LIMIT counts the inflated bytes, so a gzip bomb
 * (100 MB of zeros, ~100 KB on the wire) gets 413 and the node stays healthy and small.
 */
import { deflateSync, gzipSync } from "zlib";
import { expectedHour, flow, freshHour, request, type Flow } from "../support/api-contract";
import { parseExposition, sampleValue } from "../support/prometheus";
import { startNode, type NodeProcess } from "../support/processes";

describe("compressed POST /flows", () => {
  let node: NodeProcess;
  beforeAll(async () => {
    node = await startNode({ NODEID: "gzip-embedded" });
  });
  afterAll(() => node?.stop());

  const postRaw = (body: Buffer | string, headers: Record<string, string>) =>
    request(`${node.url}/flows`, { method: "POST", body: typeof body === "string" ? body : new Uint8Array(body), headers: { "content-type": "application/json", ...headers } });
  const hourOf = async (h: number) => (await request(`${node.url}/flows?hour=${h}`)).body as Flow[];
  const rejected = async (reason: string) => {
    const text = (await request(`${node.url}/metrics`)).body as string;
    return sampleValue(parseExposition(text), "flowmesh_rejected_batches_total", { node_id: "gzip-embedded", reason });
  };

  test("gzip and deflate bodies are applied as the same JSON sent plain; Idempotency-Key works the same", async () => {
    const h = freshHour();
    const batch = Array.from({ length: 1000 }, (_, i) => flow(`src-${i % 17}`, `dst-${i % 5}`, "vpc-gz", h, i, 1));
    const json = JSON.stringify(batch);
    expect((await postRaw(gzipSync(json), { "content-encoding": "gzip" })).body).toEqual({ accepted: 1000 });
    expect((await postRaw(deflateSync(json), { "Content-Encoding": "deflate" })).body).toEqual({ accepted: 1000 });
    expect((await postRaw(json, { "content-encoding": "identity" })).body).toEqual({ accepted: 1000 });
    const key = { "idempotency-key": `gzip-${h}` };
    expect((await postRaw(gzipSync(json), { "content-encoding": "gzip", ...key })).status).toBe(200);
    expect((await postRaw(gzipSync(json), { "content-encoding": "gzip", ...key })).status).toBe(200);
    expect(await hourOf(h)).toEqual(expectedHour([...batch, ...batch, ...batch, ...batch], h));
  });

  test("a single gzipped object is a batch of one; bad records inside gzip are 400 as usual", async () => {
    const h = freshHour();
    expect((await postRaw(gzipSync(JSON.stringify(flow("one", "b", "c", h, 5, 6))), { "content-encoding": "gzip" })).body).toEqual({ accepted: 1 });
    const bad = await postRaw(gzipSync(JSON.stringify([flow("x", "b", "c", h, 1, 1), { ...flow("y", "b", "c", h, 1, 1), bytes_tx: -1 }])), { "content-encoding": "gzip" });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ type: "VALIDATION_ERROR", data: [expect.objectContaining({ index: 1, record_field: "bytes_tx" })] });
    expect(await hourOf(h)).toEqual([flow("one", "b", "c", h, 5, 6)]);
  });

  test("another encoding is 415 and applies nothing; corrupt gzip is 400", async () => {
    const h = freshHour();
    const body = gzipSync(JSON.stringify([flow("a", "b", "c", h, 1, 1)]));
    const before = await rejected("unsupported_media_type");
    for (const encoding of ["br", "compress", "zstd", "gzip, br"]) {
      const r = await postRaw(body, { "content-encoding": encoding });
      expect([encoding, r.status]).toEqual([encoding, 415]);
      expect(r.body).toMatchObject({ code: 415, type: "UNSUPPORTED_MEDIA_TYPE", message: expect.stringMatching(/Content-Encoding/) });
    }
    expect((await rejected("unsupported_media_type")) - before).toBe(4);
    const corrupt = await postRaw(Buffer.from("definitely not gzip"), { "content-encoding": "gzip" });
    expect(corrupt.status).toBe(400);
    expect(corrupt.body).toMatchObject({ code: 400, type: "INVALID_JSON" });
    const truncated = await postRaw(body.subarray(0, body.length - 10), { "content-encoding": "gzip" });
    expect(truncated.status).toBe(400);
    expect(await hourOf(h)).toEqual([]);
  });

  test("a gzip bomb (100 MB of zeros) gets 413 after at most about BODY_LIMIT inflated; the node stays healthy", async () => {
    const bomb = gzipSync(Buffer.alloc(100 * 1024 * 1024), { level: 9 });
    expect(bomb.length).toBeLessThan(200 * 1024);
    const rssBefore = sampleValue(parseExposition((await request(`${node.url}/metrics`)).body as string), "process_memory_rss", { node_id: "gzip-embedded" });
    const before = await rejected("too_large");
    for (let i = 0; i < 3; i++) {
      const r = await postRaw(bomb, { "content-encoding": "gzip" });
      expect(r.status).toBe(413);
      expect(r.body).toMatchObject({ code: 413, type: "PAYLOAD_TOO_LARGE", message: expect.stringMatching(/8388608 bytes once decompressed/) });
    }
    expect((await rejected("too_large")) - before).toBe(3);
    expect((await request(`${node.url}/health`)).body).toEqual({ status: "ok" });
    // Never held whole: well under the 100 MB it would inflate to (BODY_LIMIT is 8 MiB).
    const rssAfter = sampleValue(parseExposition((await request(`${node.url}/metrics`)).body as string), "process_memory_rss", { node_id: "gzip-embedded" });
    expect(rssAfter - rssBefore).toBeLessThan(64 * 1024 * 1024);
    // And it still takes writes.
    const h = freshHour();
    expect((await postRaw(gzipSync(JSON.stringify([flow("after", "b", "c", h, 1, 1)])), { "content-encoding": "gzip" })).status).toBe(200);
  });
});
