/**
 * Reads a JSON request body with the limits SPEC §2 asks for: 415 unless the
 * content type is JSON, 413 past the byte limit (checked on Content-Length and
 * while streaming), 400 when the bytes are not JSON. Dependency-free: the caller
 * turns a BodyError into its framework's error.
 *
 * `Content-Encoding: gzip` (or `x-gzip`) and `deflate` (zlib, RFC 1950) bodies are
 * inflated as they stream in, and the limit applies to the inflated bytes: a small
 * compressed body that inflates past it (a gzip bomb) is stopped after about `limit`
 * bytes were inflated, never held whole. Any other encoding is 415.
 */
import type { IncomingMessage } from "http";
import type { Readable } from "stream";
import { createGunzip, createInflate, type Gunzip, type Inflate } from "zlib";

export class BodyError extends Error {
  constructor(readonly status: 400 | 413 | 415, readonly type: string, message: string) {
    super(message);
    this.name = "BodyError";
  }
}

function isJsonContentType(header: string | undefined): boolean {
  if (!header) return false;
  const type = header.split(";", 1)[0].trim().toLowerCase();
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"));
}

/** The inflater for a Content-Encoding; null for none (identity); undefined for one we do not take. */
function inflaterFor(header: string | undefined): Gunzip | Inflate | null | undefined {
  if (header === undefined) return null;
  const encoding = header.trim().toLowerCase();
  if (encoding === "" || encoding === "identity") return null;
  if (encoding === "gzip" || encoding === "x-gzip") return createGunzip();
  if (encoding === "deflate") return createInflate();
  return undefined;
}

export function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let inflater: Gunzip | Inflate | null = null;
    let done = false;
    const fail = (err: BodyError) => {
      if (done) return;
      done = true;
      // Stop reading: the answer is known. Drain quietly so the socket can answer.
      if (inflater) {
        req.unpipe(inflater);
        inflater.removeAllListeners("data");
        inflater.on("error", () => undefined);
        inflater.destroy();
      }
      req.removeAllListeners("data");
      req.resume();
      reject(err);
    };
    if (!isJsonContentType(req.headers["content-type"])) {
      return fail(new BodyError(415, "UNSUPPORTED_MEDIA_TYPE", `Content-Type must be application/json, got ${JSON.stringify(req.headers["content-type"] ?? null)}`));
    }
    const encoded = inflaterFor(req.headers["content-encoding"]);
    if (encoded === undefined) {
      return fail(new BodyError(415, "UNSUPPORTED_MEDIA_TYPE", `Content-Encoding must be gzip, deflate or identity, got ${JSON.stringify(req.headers["content-encoding"])}`));
    }
    inflater = encoded;
    const declared = Number(req.headers["content-length"]);
    if (declared > limit) return fail(new BodyError(413, "PAYLOAD_TOO_LARGE", `Request body of ${declared} bytes exceeds the limit of ${limit} bytes`));
    const tooLarge = () => new BodyError(413, "PAYLOAD_TOO_LARGE", `Request body exceeds the limit of ${limit} bytes${inflater ? " once decompressed" : ""}`);

    const chunks: Buffer[] = [];
    let size = 0;
    const source: Readable = inflater ?? req;
    source.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return fail(tooLarge());
      chunks.push(chunk);
    });
    req.on("error", (err) => {
      if (!done) {
        done = true;
        reject(err);
      }
    });
    if (inflater) {
      let received = 0;
      // Compressed bytes count against the limit as well (a stream of empty blocks inflates to nothing, forever).
      req.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received > limit) fail(tooLarge());
      });
      inflater.on("error", (err) => fail(new BodyError(400, "INVALID_JSON", `Request body is not valid ${req.headers["content-encoding"]} data: ${err.message}`)));
      req.pipe(inflater);
    }
    source.on("end", () => {
      if (done) return;
      done = true;
      const text = (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)).toString("utf8");
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new BodyError(400, "INVALID_JSON", `Request body is not valid JSON: ${(err as Error).message}`));
      }
    });
  });
}
