/**
 * Prometheus text for GET /metrics, from Moleculer's metric registry.
 *
 * Moleculer's Prometheus reporter always opens its own HTTP listener (port 3030 by
 * default): nodes sharing a machine would clash, and the spec wants /metrics on the
 * gateway. This subclass listens only when given a port (METRICS_PORT, for nodes
 * without the api service); otherwise the api service serves the same text. It also
 * keeps strictly to the text exposition format 0.0.4, where Moleculer 0.14's renderer
 * does not: histograms get `_sum` and `_count` (Moleculer writes them only next to
 * quantiles, as extra non-standard series), quantile-only histograms are summaries, no
 * `_rate` series (Prometheus computes rates), label names are snake_case (`nodeID` ->
 * `node_id`) and label values fully escaped.
 */
import { MetricReporters, type ServiceBroker } from "moleculer";
import { collect } from "./metrics";

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

interface Item {
  labels?: Record<string, unknown>;
  value?: unknown;
  buckets?: Record<string, number>;
  quantiles?: Record<string, number>;
  count?: number;
  sum?: number;
}

interface Metric {
  name: string;
  type: "counter" | "gauge" | "histogram" | "info";
  description?: string;
  unit?: string;
  labelNames: string[];
  buckets?: number[];
  quantiles?: number[];
  snapshot(): Item[];
}

interface Registry {
  broker: ServiceBroker;
  store: Map<string, Metric>;
}

/** What this file uses of Moleculer's PrometheusReporter (untyped in moleculer's d.ts). */
interface ReporterBase {
  opts: { port: number | null; host?: string; defaultLabels: unknown; [k: string]: unknown };
  registry: Registry;
  broker: ServiceBroker;
  server?: unknown;
  defaultLabels: Record<string, unknown> | null;
  init(registry: Registry): void;
  stop(): Promise<void>;
  matchMetricName(name: string): boolean;
  formatMetricName(name: string): string;
  formatLabelName(name: string): string;
}

const PrometheusReporter = MetricReporters.Prometheus as unknown as new (opts?: object) => ReporterBase;
const BaseReporter = MetricReporters.Base as unknown as { prototype: { init(this: ReporterBase, registry: Registry): void } };

/** `nodeID` -> `node_id`, `errorName` -> `error_name`; anything else invalid -> `_`. */
export function snakeCase(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, "_");
}

function metricName(name: string): string {
  const n = name.replace(/[^a-zA-Z0-9_:]/g, "_");
  return /^[0-9]/.test(n) ? `_${n}` : n;
}

function number(v: unknown): string {
  if (typeof v === "boolean") return v ? "1" : "0";
  const n = typeof v === "number" ? v : v == null || v === "" ? NaN : Number(v);
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

const escapeHelp = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeLabel = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

export interface PrometheusOptions {
  /** Also listen on this port with Moleculer's own HTTP handler (path `/metrics`); null: only through the gateway. */
  port?: number | null;
  host?: string;
  [k: string]: unknown;
}

export class FlowmeshPrometheusReporter extends PrometheusReporter {
  constructor(opts: PrometheusOptions = {}) {
    super({ labelNameFormatter: snakeCase, ...opts, port: opts.port ?? null });
  }

  init(registry: Registry): void {
    if (this.opts.port !== null) return super.init(registry);
    // No listener: what PrometheusReporter.init does besides opening one.
    BaseReporter.prototype.init.call(this, registry);
    const labels = this.opts.defaultLabels;
    this.defaultLabels = typeof labels === "function" ? labels.call(this, registry) : (labels as Record<string, unknown>);
  }

  stop(): Promise<void> {
    return this.server ? super.stop() : Promise.resolve();
  }

  /** Called by Moleculer's handler (METRICS_PORT) and by the gateway's GET /metrics. */
  generatePrometheusResponse(): string {
    collect(this.broker);
    const lines: string[] = [];
    for (const metric of this.registry.store.values()) {
      if (!this.matchMetricName(metric.name) || metric.name.startsWith("os.datetime")) continue;
      const name = metricName(this.formatMetricName(metric.name));
      const help = metric.description || metric.name + (metric.unit ? ` (${metric.unit})` : "");
      let items = metric.snapshot();
      const histogram = metric.type === "histogram";
      if (items.length === 0) {
        // An unlabelled histogram is reported from the start, with zero counts.
        if (!histogram || metric.labelNames.length > 0 || !metric.buckets) continue;
        items = [{ labels: {}, count: 0, sum: 0, buckets: Object.fromEntries(metric.buckets.map((b) => [b, 0])) }];
      }
      const type = metric.type === "info" ? "gauge" : histogram ? (metric.buckets ? "histogram" : metric.quantiles ? "summary" : null) : metric.type;
      if (type === null) continue;
      lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
      for (const item of items) {
        if (metric.type === "info") lines.push(`${name}${this.labels(item.labels, { value: item.value })} 1`);
        else if (type === "counter" || type === "gauge") lines.push(`${name}${this.labels(item.labels)} ${number(item.value)}`);
        else {
          if (type === "histogram") {
            for (const bound of metric.buckets!) lines.push(`${name}_bucket${this.labels(item.labels, { le: number(bound) })} ${number(item.buckets?.[bound] ?? 0)}`);
            lines.push(`${name}_bucket${this.labels(item.labels, { le: "+Inf" })} ${number(item.count)}`);
          } else {
            for (const [q, v] of Object.entries(item.quantiles ?? {})) lines.push(`${name}${this.labels(item.labels, { quantile: number(q) })} ${number(v)}`);
          }
          lines.push(`${name}_sum${this.labels(item.labels)} ${number(item.sum)}`, `${name}_count${this.labels(item.labels)} ${number(item.count)}`);
        }
      }
    }
    return lines.join("\n") + "\n";
  }

  labels(itemLabels?: Record<string, unknown>, extra?: Record<string, unknown>): string {
    const all = { ...(this.defaultLabels ?? {}), ...(itemLabels ?? {}), ...(extra ?? {}) };
    const parts: string[] = [];
    for (const [k, v] of Object.entries(all)) parts.push(`${this.formatLabelName(k)}="${escapeLabel(v == null ? "" : String(v))}"`);
    return parts.length === 0 ? "" : `{${parts.join(",")}}`;
  }
}

const fallbacks = new WeakMap<object, FlowmeshPrometheusReporter>();

/**
 * The broker's Prometheus text: rendered by its FlowmeshPrometheus reporter, or by one
 * made on the spot when the configuration has none (moleculer-runner lets `METRICS=true`
 * replace the whole `metrics` option).
 */
export function prometheusText(broker: ServiceBroker): string {
  const registry = broker.metrics as unknown as Registry & { reporter?: unknown[] };
  let reporter = registry.reporter?.find((r): r is FlowmeshPrometheusReporter => r instanceof FlowmeshPrometheusReporter) ?? fallbacks.get(registry);
  if (!reporter) {
    reporter = new FlowmeshPrometheusReporter();
    reporter.init(registry);
    fallbacks.set(registry, reporter);
  }
  return reporter.generatePrometheusResponse();
}
