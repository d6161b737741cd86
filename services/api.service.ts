/**
 * api: the HTTP gateway. Routes only: every route is an alias of an action, but
 * /health and /metrics, which answer from this process; the dashboard's static
 * files (public/) are served as moleculer-web assets.
 *
 * Every API request passes onBeforeCall, which admits it before anything is read or
 * called (src/gateway/gatekeeper.ts): the route's access (src/gateway/access.ts: open, or
 * a token with a scope, src/gateway/tokens.ts), the token's rate limit, and for writes a
 * MAX_INFLIGHT slot (src/gateway/backpressure.ts); then it reads a POST's body. Static
 * files and unknown URLs never reach it: they need no token.
 */
import { existsSync, readFileSync } from "fs";
import type { IncomingMessage, ServerResponse } from "http";
import * as path from "path";
import { gzip } from "zlib";
import { Errors, type ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import { settingsOf } from "../mixins/flowmesh.mixin";
import { metricsOf, reasonOf, type GroupMetrics } from "../mixins/metrics";
import { PROMETHEUS_CONTENT_TYPE, prometheusText } from "../mixins/prometheus.reporter";
import { authMode, bearerChallenge, routeAccess, scopeChallenge, type AuthMode } from "../src/gateway/access";
import { InflightLimit, RateLimit, ThrottledLog } from "../src/gateway/backpressure";
import { Gatekeeper, type Refusal } from "../src/gateway/gatekeeper";
import { parseTokens, TokenFileError, TokenSet, type Scope } from "../src/gateway/tokens";
import { BodyError, readJsonBody } from "../src/json-body";
import { forbidden, invalidParams, tooManyRequests, unauthorized } from "../src/protocol";
import { responseFormat } from "../src/query/format";
import type { FlowmeshSettings } from "../src/settings";
import { parseQueryInteger } from "../src/validation";

type Req = IncomingMessage & { $params: Record<string, unknown>; query: Record<string, unknown>; body?: unknown };
/** The alias moleculer-web matched: its method, and its path from the root (`/flows`). */
type Alias = { method: string; fullPath: string };

const RECORD_FIELD = /^flows\[(\d+)\](?:\.(.+))?$/;

/** Query parameters that are integers (an hour, a count), given as canonical decimal digits. */
const QUERY_INTEGERS = ["hour", "from", "to", "n"];
/** Routes whose answer the client may ask for as CSV (`format=csv` or `Accept: text/csv`). */
const RENDERED_ROUTES: ReadonlySet<string> = new Set(["GET /flows", "GET /flows/top"]);

/** What the api service keeps to guard its routes (created() makes it). */
interface Gate {
  mode: AuthMode;
  keeper: Gatekeeper;
  /** Log lines for refused requests, at most one a second each (a client looping on a bad token must not flood the log). */
  authRefusals: ThrottledLog;
  overloadRefusals: ThrottledLog;
}

interface ApiThis {
  flowmesh: FlowmeshSettings;
  metrics: GroupMetrics<"gateway">;
  gate: Gate;
  logger: { info(...a: unknown[]): void; warn(...a: unknown[]): void; error(...a: unknown[]): void };
}

/** The tokens in `file`; a line that does not fit throws with the file and line (never the line's text: it may hold a secret). */
function loadTokens(file: string): TokenSet {
  const text = readFileSync(file, "utf8");
  try {
    return new TokenSet(parseTokens(text));
  } catch (err) {
    if (err instanceof TokenFileError) throw new Error(`API_TOKENS_FILE ${file}, line ${err.line}: ${err.message}`);
    throw err;
  }
}

function describeTokens(tokens: TokenSet): string {
  return `${tokens.size} token(s)` + (tokens.size ? ` (${tokens.tokens.map((t) => `${t.name}: ${[...t.scopes].join(",")}`).join("; ")})` : ": every API request is refused");
}

function refusalError(refusal: Refusal, route: string, limits: { maxInflight: number; rateLimitPerMin: number | null }): Errors.MoleculerError {
  switch (refusal.status) {
    case 401:
      return unauthorized(refusal.why);
    case 403:
      return forbidden(route, refusal.scope, refusal.token);
    case 429:
      return refusal.why === "inflight"
        ? tooManyRequests(`this gateway holds ${limits.maxInflight} write requests already (MAX_INFLIGHT)`)
        : tooManyRequests(`token '${refusal.token}' used its ${limits.rateLimitPerMin} requests of this minute (RATE_LIMIT_PER_MIN)`, refusal.retryAfter);
  }
}

/**
 * A refused request's error, counted in /metrics (reads under flowmesh_rejected_reads_total,
 * writes and operator actions under flowmesh_rejected_batches_total) and logged (throttled)
 * with the token's name, never its secret.
 */
function refuse(api: ApiThis, req: Req, route: string, scope: Scope, refusal: Refusal): Errors.MoleculerError {
  const err = refusalError(refusal, route, api.flowmesh);
  const reason = reasonOf(err);
  if (scope === "read") api.metrics.flowmesh_rejected_reads_total.increment({ reason });
  else api.metrics.flowmesh_rejected_batches_total.increment({ reason });
  const token = refusal.status === 401 || refusal.token === null ? "" : ` token '${refusal.token}'`;
  const line = `Refused ${err.code} ${req.method} ${(req as { parsedUrl?: string }).parsedUrl ?? req.url} from ${req.socket.remoteAddress ?? "?"}${token}: ${err.message}`;
  (refusal.status === 429 ? api.gate.overloadRefusals : api.gate.authRefusals).note(line);
  return err;
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
          "GET /flows/top": "flows.top",
          "GET /flows/hours": "flows.hours",
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
        // Our own body reader, in onBeforeCall once the request is admitted: moleculer-web's
        // merges an array body into an object and caps JSON at 100 kB.
        async onBeforeCall(this: ApiThis, ctx: { meta: Record<string, unknown> }, _route: unknown, req: Req, res: ServerResponse, alias: Alias) {
          const route = `${alias.method} ${alias.fullPath}`;
          const access = routeAccess(route);
          let token: string | null = null;
          if (access !== "open") {
            const admission = this.gate.keeper.admit(access, req.headers.authorization);
            if (!admission.ok) throw refuse(this, req, route, access, admission.refusal);
            token = admission.token;
            // A write's slot is freed however the request ends: answered, failed, or the client gone.
            if (admission.release) res.once("close", admission.release);
          }
          if (req.method === "DELETE") {
            req.$params = { before: parseQueryInteger(req.query.before) };
            // An operator's action: who did it belongs in the log.
            this.logger.info(`${route}?before=${JSON.stringify(req.$params.before)} by token '${token}'`);
          } else if (req.method === "POST") {
            try {
              req.body = await readJsonBody(req, this.flowmesh.bodyLimit);
            } catch (err) {
              // Refused before flows.ingest sees it (which counts every other outcome).
              this.metrics.flowmesh_rejected_batches_total.increment({ reason: reasonOf(err) });
              throw err instanceof BodyError ? new Errors.MoleculerClientError(err.message, err.status, err.type) : err;
            }
            const key = req.headers["idempotency-key"];
            // A single object is a batch of one.
            const flows = Array.isArray(req.body) ? req.body : req.body !== null && typeof req.body === "object" ? [req.body] : req.body;
            req.$params = key === undefined ? { flows } : { flows, idempotencyKey: key };
          } else {
            req.$params = { ...req.query };
            for (const name of QUERY_INTEGERS) if (req.$params[name] !== undefined) req.$params[name] = parseQueryInteger(req.$params[name]);
            if (RENDERED_ROUTES.has(route)) {
              const format = responseFormat(req.$params.format, req.headers.accept);
              if (format === null) throw invalidParams([{ type: "enumValue", field: "format", message: "The 'format' field must be csv or json.", actual: req.$params.format }]);
              delete req.$params.format;
              // Rendered for HTTP by the action: GET /flows as JSON bytes (an hour's may be served
              // again unchanged; a range's are streamed), either route as a CSV stream.
              if (format === "csv") ctx.meta.renderCsv = true;
              else if (route === "GET /flows") ctx.meta.renderJson = true;
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
      if (err && !res.headersSent) {
        const data = (err.data ?? {}) as { why?: string; token?: string | null; scope?: Scope; retryAfter?: number };
        if (err.code === 503 || err.code === 429) res.setHeader("Retry-After", String(data.retryAfter ?? 1));
        if (err.code === 401) res.setHeader("WWW-Authenticate", bearerChallenge(data.why ?? "missing"));
        if (err.code === 403 && data.token && data.scope) res.setHeader("WWW-Authenticate", scopeChallenge(data.scope));
      }
      try {
        return baseSendError.call(this, req, res, err);
      } catch (failure) {
        // An error moleculer-web cannot render (e.g. data too deep to serialise) must not take the process down.
        this.logger.warn(`Could not render an error answer (${(failure as Error).message}); sending a plain one`);
        if (res.headersSent) return void res.end();
        res.statusCode = typeof err?.code === "number" && err.code >= 400 && err.code < 600 ? err.code : 500;
        res.setHeader("Content-Type", "application/json; charset=utf-8");
        res.end(JSON.stringify({ name: String(err?.name ?? "Error"), message: String(err?.message ?? "").slice(0, 500), code: res.statusCode, type: String(err?.type ?? "") }));
      }
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
    // Throws, and so stops the start, on a non-loopback HOST without tokens or AUTH=none, or on a bad tokens file.
    const mode = authMode({ tokensFile: s.apiTokensFile, authNone: s.authNone, host: s.host, port: s.port });
    const tokens = mode.kind === "tokens" ? loadTokens(mode.file) : null;
    const gate: Gate = {
      mode,
      // The rate limit is per token: without tokens there is nothing to key it by.
      keeper: new Gatekeeper(tokens, new InflightLimit(s.maxInflight), tokens && s.rateLimitPerMin !== null ? new RateLimit(s.rateLimitPerMin) : null),
      authRefusals: new ThrottledLog((line) => this.logger.warn(line)),
      overloadRefusals: new ThrottledLog((line) => this.logger.info(line)),
    };
    this.gate = gate;
    if (tokens) this.logger.info(`API tokens from ${mode.kind === "tokens" ? mode.file : ""}: ${describeTokens(tokens)}`);
    else if (mode.kind === "open" && mode.because === "AUTH=none") this.logger.warn(`AUTH=none: serving HTTP on ${s.host}:${s.port} without API tokens (DELETE /flows is refused)`);
  },

  started() {
    const gate = this.gate as Gate;
    if (gate.mode.kind !== "tokens") return;
    const file = gate.mode.file;
    // SIGHUP re-reads the tokens file (rotation without a restart); a bad file keeps the tokens in use.
    this.reloadTokens = () => {
      try {
        gate.keeper.tokens = loadTokens(file);
        this.logger.info(`SIGHUP: API tokens reloaded: ${describeTokens(gate.keeper.tokens)}`);
      } catch (err) {
        this.logger.error(`SIGHUP: API tokens NOT reloaded, keeping the ${gate.keeper.tokens?.size ?? 0} in use: ${(err as Error).message}`);
      }
    };
    process.on("SIGHUP", this.reloadTokens);
  },

  stopped() {
    if (this.reloadTokens) process.removeListener("SIGHUP", this.reloadTokens);
  },
};

export default ApiService;
