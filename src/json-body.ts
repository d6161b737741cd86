/**
 * Reads a JSON request body with the limits SPEC §2 asks for: 415 unless the
 * content type is JSON, 413 past the byte limit (checked on Content-Length and
 * while streaming), 400 when the bytes are not JSON. Dependency-free: the caller
 * turns a BodyError into its framework's error.
 */
import type { IncomingMessage } from "http";

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

export function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const fail = (err: BodyError) => {
      // Stop reading: the answer is known. Drain quietly so the socket can answer.
      req.removeAllListeners("data");
      req.resume();
      reject(err);
    };
    if (!isJsonContentType(req.headers["content-type"])) {
      return fail(new BodyError(415, "UNSUPPORTED_MEDIA_TYPE", `Content-Type must be application/json, got ${JSON.stringify(req.headers["content-type"] ?? null)}`));
    }
    const declared = Number(req.headers["content-length"]);
    if (declared > limit) return fail(new BodyError(413, "PAYLOAD_TOO_LARGE", `Request body of ${declared} bytes exceeds the limit of ${limit} bytes`));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return fail(new BodyError(413, "PAYLOAD_TOO_LARGE", `Request body exceeds the limit of ${limit} bytes`));
      chunks.push(chunk);
    });
    req.on("error", (err) => reject(err));
    req.on("end", () => {
      if (size > limit) return;
      const text = (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)).toString("utf8");
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new BodyError(400, "INVALID_JSON", `Request body is not valid JSON: ${(err as Error).message}`));
      }
    });
  });
}
