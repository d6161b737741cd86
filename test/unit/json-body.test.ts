import { Readable } from "stream";
import type { IncomingMessage } from "http";
import { BodyError, readJsonBody } from "../../src/json-body";

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
