/** A little HTTP client (node:http, an agent per use), for loading data, timing GETs and polling. */
import * as http from "http";

export interface HttpResponse {
  status: number;
  body: Buffer;
}

export function httpRequest(
  agent: http.Agent | false,
  url: string,
  method: string,
  pathAndQuery: string,
  body?: string,
  timeoutMs = 60_000,
  extraHeaders: Record<string, string> = {},
): Promise<HttpResponse> {
  const target = new URL(pathAndQuery, url);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...extraHeaders };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = Buffer.byteLength(body);
    }
    const req = http.request(
      { host: target.hostname, port: target.port, path: target.pathname + target.search, method, agent, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${pathAndQuery}: no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

export interface JsonAnswer<T> {
  status: number;
  json: T | null;
  text: string;
}

export async function getJson<T>(url: string, pathAndQuery: string, timeoutMs: number): Promise<JsonAnswer<T>> {
  const res = await httpRequest(false, url, "GET", pathAndQuery, undefined, timeoutMs);
  const text = res.body.toString("utf8");
  let json: T | null = null;
  try {
    json = JSON.parse(text) as T;
  } catch {
    json = null;
  }
  return { status: res.status, json, text };
}
