import { Readable } from "stream";
import type { IncomingMessage } from "http";
import { BodyError, readJsonBody, utf8Text } from "../../src/json-body";

function req(body: string | Buffer[], headers: Record<string, string>): IncomingMessage {
  const r = Readable.from(typeof body === "string" ? [Buffer.from(body)] : body) as unknown as IncomingMessage;
  (r as { headers: Record<string, string> }).headers = headers;
  return r;
}

describe("readJsonBody", () => {
  test("parses JSON, including across chunks and with a charset", async () => {
    await expect(readJsonBody(req("[1,2]", { "content-type": "application/json" }), 100)).resolves.toEqual([1, 2]);
    await expect(readJsonBody(req([Buffer.from('{"a":'), Buffer.from('"é"}')], { "content-type": "application/json; charset=utf-8" }), 100)).resolves.toEqual({ a: "é" });
  });

  test("utf8Text decodes chunks as their concatenation would, split sequences and invalid bytes included", async () => {
    const e = Buffer.from("é€😀");
    await expect(readJsonBody(req([Buffer.from('{"a":"'), e.subarray(0, 1), e.subarray(1, 4), e.subarray(4), Buffer.from('"}')], { "content-type": "application/json" }), 100)).resolves.toEqual({ a: "é€😀" });
    // Every way of cutting short byte strings drawn from ASCII, lead, continuation and invalid bytes.
    const pool = [0x41, 0x22, 0x7f, 0x80, 0xbf, 0xc2, 0xe2, 0x82, 0xac, 0xed, 0xa0, 0xf0, 0x9f, 0x98, 0xff, 0xc0];
    let seed = 7;
    const next = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    for (let t = 0; t < 20000; t++) {
      const bytes = Buffer.from(Array.from({ length: next(12) }, () => pool[next(pool.length)]));
      const cuts = [...new Set([next(bytes.length + 1), next(bytes.length + 1)])].sort((a, b) => a - b);
      const chunks = [bytes.subarray(0, cuts[0]), ...cuts.map((c, i) => bytes.subarray(c, cuts[i + 1] ?? bytes.length))];
      expect(utf8Text(chunks, bytes.length)).toBe(bytes.toString("utf8"));
    }
  });

  test.each([
    ["not JSON", "{", { "content-type": "application/json" }, 400],
    ["empty", "", { "content-type": "application/json" }, 400],
    ["wrong type", "[]", { "content-type": "text/plain" }, 415],
    ["no type", "[]", {}, 415],
    ["declared too large", "[]", { "content-type": "application/json", "content-length": "101" }, 413],
    ["streamed too large", "[" + "1,".repeat(60) + "1]", { "content-type": "application/json" }, 413],
  ])("%s", async (_n, body, headers, status) => {
    const err: BodyError = await readJsonBody(req(body as string, headers as Record<string, string>), 100).catch((e: BodyError) => e) as BodyError;
    expect(err).toBeInstanceOf(BodyError);
    expect(err.status).toBe(status);
  });
});
