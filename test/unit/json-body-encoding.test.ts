/**
 * readJsonBody with Content-Encoding: gzip and deflate bodies are inflated as they
 * stream, the limit counts inflated bytes (a bomb is stopped early), other encodings
 * are 415, corrupt data is 400.
 */
import type { IncomingMessage } from "http";
import { Readable } from "stream";
import { deflateRawSync, deflateSync, gzipSync } from "zlib";
import { BodyError, readJsonBody } from "../../src/json-body";

function req(body: Buffer, headers: Record<string, string>, chunk = 1024): IncomingMessage & Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < body.length; i += chunk) parts.push(body.subarray(i, i + chunk));
  const r = Readable.from(parts) as unknown as IncomingMessage & Readable;
  (r as { headers: Record<string, string> }).headers = headers;
  return r;
}

const json = { "content-type": "application/json" };
const records = Array.from({ length: 200 }, (_, i) => ({ src_app: `s${i}`, dest_app: "d", vpc_id: "v", hour: 1, bytes_tx: i, bytes_rx: 1 }));
const text = Buffer.from(JSON.stringify(records));

async function refusal(p: Promise<unknown>): Promise<BodyError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BodyError);
  return err as BodyError;
}

describe("readJsonBody, compressed", () => {
  test.each([
    ["gzip", gzipSync(text)],
    ["x-gzip", gzipSync(text)],
    ["GZIP", gzipSync(text)],
    ["deflate", deflateSync(text)],
    ["identity", text],
  ])("Content-Encoding: %s", async (encoding, body) => {
    await expect(readJsonBody(req(body, { ...json, "content-encoding": encoding }), 1 << 20)).resolves.toEqual(records);
  });

  test.each(["br", "compress", "gzip, gzip", "zstd"])("Content-Encoding: %s is 415", async (encoding) => {
    const err = await refusal(readJsonBody(req(gzipSync(text), { ...json, "content-encoding": encoding }), 1 << 20));
    expect([err.status, err.type]).toEqual([415, "UNSUPPORTED_MEDIA_TYPE"]);
  });

  test("the limit applies to the inflated bytes", async () => {
    // Small on the wire, over the limit once inflated.
    const body = gzipSync(text);
    expect(body.length).toBeLessThan(text.length / 2);
    const err = await refusal(readJsonBody(req(body, { ...json, "content-encoding": "gzip" }), text.length - 1));
    expect(err.status).toBe(413);
    await expect(readJsonBody(req(body, { ...json, "content-encoding": "gzip" }), text.length)).resolves.toEqual(records);
  });

  test("a gzip bomb (100 MB of zeros) is stopped after about the limit is inflated", async () => {
    const bomb = gzipSync(Buffer.alloc(100 * 1024 * 1024), { level: 9 });
    expect(bomb.length).toBeLessThan(200 * 1024);
    const r = req(bomb, { ...json, "content-encoding": "gzip" }, 16 * 1024);
    const heapBefore = process.memoryUsage().arrayBuffers;
    const err = await refusal(readJsonBody(r, 1024 * 1024));
    expect([err.status, err.type]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
    expect(err.message).toMatch(/once decompressed/);
    // Stopped early: nothing like the 100 MB was held.
    expect(process.memoryUsage().arrayBuffers - heapBefore).toBeLessThan(32 * 1024 * 1024);
  });

  test("corrupt or truncated compressed data is 400; raw deflate (no zlib header) too", async () => {
    for (const [encoding, body] of [
      ["gzip", text],
      ["gzip", gzipSync(text).subarray(0, 100)],
      ["deflate", deflateRawSync(text)],
    ] as const) {
      const err = await refusal(readJsonBody(req(body, { ...json, "content-encoding": encoding }), 1 << 20));
      expect([encoding, err.status]).toEqual([encoding, 400]);
    }
  });

  test("compressed bytes that are not JSON are 400 INVALID_JSON", async () => {
    const err = await refusal(readJsonBody(req(gzipSync("[{"), { ...json, "content-encoding": "gzip" }), 100));
    expect([err.status, err.type]).toEqual([400, "INVALID_JSON"]);
  });
});
