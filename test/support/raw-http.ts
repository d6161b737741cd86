/**
 * HTTP/1.1 requests written byte for byte on a TCP socket: what fetch and http.request
 * refuse to send (header values with NUL or non-ASCII bytes, duplicate headers, odd
 * methods and request targets, bodies whose Content-Type or Content-Encoding lie), for
 * tests that throw bad input at a node. One request per connection (Connection: close).
 */
import { connect } from "net";

export interface RawRequest {
  method: string;
  /** The request target as sent: path and query, unencoded. */
  target: string;
  /** Written in order, as `name: value`, duplicates allowed (strings are written as UTF-8). */
  headers: [string, string][];
  body?: Buffer;
  /** Send the body chunked (Transfer-Encoding: chunked) instead of with Content-Length. */
  chunked?: boolean;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** The request's bytes, one buffer (written in one piece, so a refusal reads all of it). */
export function requestBytes(host: string, req: RawRequest): Buffer {
  const body = req.body ?? Buffer.alloc(0);
  const lines = [`${req.method} ${req.target} HTTP/1.1`, `Host: ${host}`, "Connection: close", ...req.headers.map(([n, v]) => `${n}: ${v}`)];
  if (req.chunked) lines.push("Transfer-Encoding: chunked");
  else if (req.body !== undefined) lines.push(`Content-Length: ${body.length}`);
  const head = Buffer.from(lines.join("\r\n") + "\r\n\r\n", "utf8");
  if (!req.chunked) return Buffer.concat([head, body]);
  // Two chunks when there is enough to split, then the last chunk.
  const half = body.length >> 1;
  const chunks = [body.subarray(0, half), body.subarray(half)].filter((c) => c.length > 0);
  return Buffer.concat([head, ...chunks.flatMap((c) => [Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from("\r\n")]), Buffer.from("0\r\n\r\n")]);
}

/**
 * The final answer (1xx interim answers skipped) to one request. Rejects when the
 * connection ends without a complete status line and headers, or after timeoutMs.
 */
export function rawRequest(port: number, req: RawRequest, timeoutMs = 15_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const received: Buffer[] = [];
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const answer = parseResponse(Buffer.concat(received));
      if (answer !== null) resolve(answer);
      else reject(err ?? new Error(`connection closed without an answer (${Buffer.concat(received).length} bytes received)`));
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on("data", (chunk: Buffer) => received.push(chunk));
    socket.on("end", () => finish());
    socket.on("close", () => finish());
    // A reset after the answer arrived (the server refused and closed while we wrote) still has the answer.
    socket.on("error", (err) => finish(err));
    socket.write(requestBytes(`127.0.0.1:${port}`, req));
  });
}

function parseResponse(bytes: Buffer): RawResponse | null {
  let offset = 0;
  for (;;) {
    const end = bytes.indexOf("\r\n\r\n", offset);
    if (end < 0) return null;
    const head = bytes.subarray(offset, end).toString("latin1").split("\r\n");
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
    if (!m) return null;
    const status = Number(m[1]);
    offset = end + 4;
    if (status >= 100 && status < 200) continue;
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(":");
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    return { status, headers, body: dechunk(bytes.subarray(offset), headers) };
  }
}

function dechunk(body: Buffer, headers: Record<string, string>): Buffer {
  if (!/chunked/i.test(headers["transfer-encoding"] ?? "")) return body;
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const eol = body.indexOf("\r\n", offset);
    if (eol < 0) break;
    const size = parseInt(body.subarray(offset, eol).toString("latin1"), 16);
    if (!(size > 0)) break;
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    offset = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}
