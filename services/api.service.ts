/**
 * api: the HTTP gateway. Routes only: every route is an alias of an action, but
 * /health and /metrics, which answer from this process; the dashboard's static
 * files (public/) are served as moleculer-web assets.
 */
import { existsSync } from "fs";
import { timingSafeEqual } from "crypto";
import type { IncomingMessage, ServerResponse } from "http";
import * as path from "path";
import { gzip } from "zlib";
import { Errors, type ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import { settingsOf } from "../mixins/flowmesh.mixin";
import { metricsOf, reasonOf, type GroupMetrics } from "../mixins/metrics";
import { PROMETHEUS_CONTENT_TYPE, prometheusText } from "../mixins/prometheus.reporter";
import { BodyError, readJsonBody } from "../src/json-body";
import { adminRequired } from "../src/protocol";
import { parseQueryInteger } from "../src/validation";

type Req = IncomingMessage & { $params: Record<string, unknown>; query: Record<string, unknown>; body?: unknown };
type Next = (err?: unknown) => void;

const RECORD_FIELD = /^flows\[(\d+)\](?:\.(.+))?$/;

/** `Authorization: Bearer <token>`, compared in constant time. */
function bearerMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(header?.startsWith("Bearer ") ? header.slice(7) : "");
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}
/**
 * The dashboard (public/ at the repository root): one level up from services/ (ts-node),
 * two from dist/services (the build, `npm start`, the Docker image).
 */
const PUBLIC_DIR = [path.join(__dirname, "..", "public"), path.join(__dirname, "..", "..", "public")].find((dir) => existsSync(path.join(dir, "index.html"))) ?? null;

/** serve-static options: an index for `GET /`, no dotfiles, and headers that keep the page to its own files. */
const ASSET_OPTIONS = {
  index: ["index.html"],
  dotfiles: "ignore",
  setHeaders(res: ServerResponse) {
    res.setHeader("X-Content-Type-Options", "nosniff");
    res.setHeader("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    res.setHeader("Cache-Control", "no-cache");
  },
};

const baseSendError = (ApiGateway as unknown as { methods: { sendError: (...args: unknown[]) => unknown } }).methods.sendError;

const ApiService: ServiceSchema = {
  name: "api",
  mixins: [ApiGateway],

  settings: {
    port: 3000,
    ip: "127.0.0.1",
    // GET / and its files, for any URL no alias below takes (the route's policy is "restrict").
    ...(PUBLIC_DIR ? { assets: { folder: PUBLIC_DIR, options: ASSET_OPTIONS } } : {}),
    routes: [
      {
        path: "/",
        mappingPolicy: "restrict",
        autoAliases: false,
        bodyParsers: false,
        // onBeforeCall builds the params: merging would copy a 1000-record array body
        // into an object key by key (a tenth of a POST's time).
        mergeParams: false,
        logging: false,
        aliases: {
          "POST /flows": "flows.ingest",
          "GET /flows": "flows.aggregate",
          "DELETE /flows": "flows.deleteBefore",
          "GET /cluster": "cluster.status",
          "GET /ready": "cluster.ready",
          "GET /health"(req: Req, res: ServerResponse) {
            res.setHeader("Content-Type", "application/json; charset=utf-8");
            res.end(JSON.stringify({ status: "ok" }));
          },
          // This node's series (Prometheus scrapes every node), rendered from Moleculer's metric registry.
          "GET /metrics"(this: { sendMetrics(req: Req, res: ServerResponse): void }, req: Req, res: ServerResponse) {
            this.sendMetrics(req, res);
          },
        },
        // Our own body reader: moleculer-web's merges an array body into an object and caps JSON at 100 kB.
        use: [
          function jsonBody(req: Req, _res: ServerResponse, next: Next) {
            if (req.method !== "POST") return next();
            const service = (req as unknown as { $service: { flowmesh: { bodyLimit: number }; metrics: GroupMetrics<"gateway"> } }).$service;
            readJsonBody(req, service.flowmesh.bodyLimit).then(
              (body) => {
                req.body = body;
                next();
              },
              (err) => {
                // Refused before flows.ingest sees it (which counts every other outcome).
                service.metrics.flowmesh_rejected_batches_total.increment({ reason: reasonOf(err) });
                next(err instanceof BodyError ? new Errors.MoleculerClientError(err.message, err.status, err.type) : err);
              },
            );
          },
        ],
        onBeforeCall(this: { flowmesh: { adminToken: string | null } }, ctx: { meta: Record<string, unknown> }, _route: unknown, req: Req) {
          if (req.method === "DELETE") {
            // An admin's action: only with ADMIN_TOKEN configured and presented.
            const token = this.flowmesh.adminToken;
            if (token === null || !bearerMatches(req.headers.authorization, token)) throw adminRequired(token !== null);
            req.$params = { before: parseQueryInteger(req.query.before) };
          } else if (req.method === "POST") {
            const key = req.headers["idempotency-key"];
            // A single object is a batch of one.
            const flows = Array.isArray(req.body) ? req.body : req.body !== null && typeof req.body === "object" ? [req.body] : req.body;
            req.$params = key === undefined ? { flows } : { flows, idempotencyKey: key };
          } else {
            req.$params = { ...req.query };
            if (req.$params.hour !== undefined) {
              req.$params.hour = parseQueryInteger(req.$params.hour);
              // flows.aggregate answers HTTP with the JSON bytes (and may serve them again unchanged).
              ctx.meta.renderJson = true;
            }
          }
        },
      },
    ],
  },

  methods: {
    /** moleculer-web's error JSON, with SPEC §2's codes: bad input is 400, and 503 says when to retry. */
    sendError(req: Req, res: ServerResponse, err: Errors.MoleculerError) {
      if (err && err.name === "ValidationError") {
        err.code = 400;
        const problems = Array.isArray(err.data) ? (err.data as { field?: string; message?: string }[]) : [];
        for (const p of problems) {
          const m = p.field ? RECORD_FIELD.exec(p.field) : null;
          if (m) Object.assign(p, { index: Number(m[1]), record_field: m[2] ?? null });
        }
        err.message = `Invalid request: ${problems.length} problem(s). ` + problems.slice(0, 5).map((p) => p.message).join(" ") + (problems.length > 5 ? " ..." : "");
      }
      if (err && err.code === 503 && !res.headersSent) res.setHeader("Retry-After", "1");
      return baseSendError.call(this, req, res, err);
    },

    /** GET /metrics: Prometheus text exposition 0.0.4, gzipped when the scraper accepts it (Prometheus does). */
    sendMetrics(req: Req, res: ServerResponse) {
      if (!this.broker.isMetricsEnabled()) {
        return this.sendError(req, res, new Errors.MoleculerClientError("Metrics are disabled (METRICS=false)", 404, "METRICS_DISABLED"));
      }
      const text = prometheusText(this.broker);
      res.setHeader("Content-Type", PROMETHEUS_CONTENT_TYPE);
      if (!String(req.headers["accept-encoding"] ?? "").includes("gzip")) return void res.end(text);
      gzip(text, (err, body) => {
        if (err) return void this.sendError(req, res, err);
        res.setHeader("Content-Encoding", "gzip");
        res.end(body);
      });
    },
  },

  created() {
    const s = settingsOf(this.broker);
    this.flowmesh = s;
    this.metrics = metricsOf(this.broker, "gateway");
    this.settings.port = s.port;
    this.settings.ip = s.host;
    if (!PUBLIC_DIR) this.logger.warn(`Dashboard files not found (public/index.html near ${__dirname}): GET / answers 404`);
  },
};

export default ApiService;
