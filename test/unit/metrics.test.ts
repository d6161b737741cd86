/**
 * The Prometheus rendering (mixins/prometheus.reporter.ts) and the broker middlewares
 * (mixins/metrics.ts), in process: strict exposition format even with Moleculer's own
 * per-call metrics on, Moleculer's middleware order kept, broker callers counted.
 */
import { MetricReporters, ServiceBroker } from "moleculer";
import { brokerMiddlewares } from "../../mixins/metrics";
import { createValidator } from "../../mixins/validator";
import { FlowmeshPrometheusReporter, prometheusText, snakeCase } from "../../mixins/prometheus.reporter";
import ClusterService from "../../services/cluster.service";
import FlowShardService from "../../services/flow-shard.service";
import FlowsService from "../../services/flows.service";
import { readSettings } from "../../src/settings";
import { parseExposition, sampleValue } from "../support/prometheus";

(MetricReporters as unknown as { register(name: string, value: unknown): void }).register("FlowmeshPrometheus", FlowmeshPrometheusReporter);

function broker(builtin: boolean, nodeID: string): ServiceBroker {
  return new ServiceBroker({
    nodeID,
    logger: false,
    metrics: { enabled: true, collectProcessMetrics: true, reporter: [{ type: "FlowmeshPrometheus", options: {} }] },
    internalMiddlewares: false,
    middlewares: brokerMiddlewares(builtin) as never,
    validator: createValidator(),
    // Nothing on disk: an in-process broker in the test runner's working directory.
    flowmesh: { ...readSettings({}), durability: "memory" },
  } as ConstructorParameters<typeof ServiceBroker>[0]);
}

describe("the exposition parser used by the tests", () => {
  test.each([
    ["a metric name with a dash", "# TYPE a-b counter\na-b 1\n"],
    ["no final newline", "# TYPE a counter\na 1"],
    ["an unescaped quote", '# TYPE a gauge\na{x="q"q"} 1\n'],
    ["a histogram without _sum and _count", '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\n'],
    ["a quantile under a histogram (Moleculer 0.14's own renderer)", '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\nh{quantile="0.5"} 1\nh_min 1\n'],
    ["a family split in two", "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n"],
    ["a duplicate series", "# TYPE a gauge\na 1\na 2\n"],
    ["a counter below 0", "# TYPE a_total counter\na_total -1\n"],
  ])("refuses %s", (_what, text) => {
    expect(() => parseExposition(text)).toThrow();
  });

  test("accepts labels with escapes, NaN, +Inf and timestamps", () => {
    const f = parseExposition('# HELP a Help with \\\\ and \\n\n# TYPE a gauge\na{x="q\\"\\n\\\\",y="",} NaN\na{x="2"} +Inf 1700000000000\n');
    expect(f.get("a")?.samples.map((s) => s.labels.x)).toEqual(['q"\n\\', "2"]);
  });
});

describe("FlowmeshPrometheusReporter", () => {
  test("snake_case label names", () => {
    expect(["nodeID", "errorName", "service", "a.b-c"].map(snakeCase)).toEqual(["node_id", "error_name", "service", "a_b_c"]);
  });

  test("renders Moleculer's own series strictly too (METRICS_BUILTIN=true: histograms with quantiles, rates)", async () => {
    const b = broker(true, "unit-builtin");
    b.createService({ name: "echo", actions: { hi: { params: { x: "number" }, handler: (ctx) => ctx.params.x } } });
    await b.start();
    try {
      await b.call("echo.hi", { x: 1 });
      await b.call("echo.hi", { x: 1 });
      await expect(b.call("echo.hi", { x: "no" })).rejects.toThrow();
      (b.metrics.register({ name: "test.odd.labels", type: "gauge", labelNames: ["v"] }) as unknown as { set(v: number, l: object): void }).set(1, { v: 'a "quoted"\nline \\ end' });
      const text = prometheusText(b);
      const families = parseExposition(text);
      expect(families.get("moleculer_request_time")?.type).toBe("histogram");
      expect(sampleValue(families, "moleculer_request_time_count", { action: "echo.hi" })).toBe(3);
      expect(sampleValue(families, "moleculer_request_total", { action: "echo.hi" })).toBe(3);
      expect(sampleValue(families, "moleculer_request_error_total", { action: "echo.hi", error_name: "ValidationError" })).toBe(1);
      expect(families.get("test_odd_labels")?.samples[0].labels.v).toBe('a "quoted"\nline \\ end');
      expect(text).not.toMatch(/_rate[{ ]/);
      // What Moleculer's stock renderer writes for the same registry is not valid exposition text.
      const stock = new (MetricReporters.Prometheus as unknown as new (o: object) => { init(r: unknown): void; generatePrometheusResponse(): string; stop(): Promise<void> })({ port: 0 });
      stock.init(b.metrics);
      try {
        expect(() => parseExposition(stock.generatePrometheusResponse())).toThrow();
      } finally {
        await stock.stop();
      }
    } finally {
      await b.stop();
    }
  });
});

describe("broker middlewares", () => {
  test("Moleculer's internal middlewares in Moleculer's order, Flowmesh's counter outside the Validator, per-call Metrics only if asked", () => {
    const names = (b: ServiceBroker) => (b.middlewares as unknown as { list: { name?: string }[] }).list.map((m) => m.name);
    const stock = new ServiceBroker({ logger: false, metrics: { enabled: true, collectProcessMetrics: false } });
    const expected = names(stock);
    expect(expected).toContain("Metrics");
    const withBuiltin = names(broker(true, "unit-a"));
    expect(withBuiltin.filter((n) => n !== "FlowmeshMetrics")).toEqual(expected);
    expect(withBuiltin.indexOf("FlowmeshMetrics")).toBe(withBuiltin.indexOf("Validator") + 1);
    expect(names(broker(false, "unit-b"))).toEqual(withBuiltin.filter((n) => n !== "Metrics"));
  });

  test("broker callers of flows.ingest and flows.aggregate are counted, refusals by Moleculer's validator included", async () => {
    const b = broker(false, "unit-flows");
    for (const s of [FlowsService, FlowShardService, ClusterService]) b.createService(s);
    await b.start();
    try {
      const record = { src_app: "a", dest_app: "b", vpc_id: "c", hour: 5, bytes_tx: 1, bytes_rx: 2 };
      await b.call("flows.ingest", { flows: [record, record] });
      await expect(b.call("flows.ingest", { flows: [{ ...record, hour: -1 }] })).rejects.toMatchObject({ name: "ValidationError" });
      await expect(b.call("flows.aggregate", { hour: "x" })).rejects.toMatchObject({ name: "ValidationError" });
      expect(await b.call("flows.aggregate", { hour: 5 })).toEqual([{ ...record, bytes_tx: 2, bytes_rx: 4 }]);
      const f = parseExposition(prometheusText(b));
      expect(sampleValue(f, "flowmesh_ingested_records_total")).toBe(2);
      expect(sampleValue(f, "flowmesh_ingested_batches_total")).toBe(1);
      expect(sampleValue(f, "flowmesh_rejected_batches_total", { reason: "validation" })).toBe(1);
      expect(sampleValue(f, "flowmesh_rejected_reads_total", { reason: "validation" })).toBe(1);
      expect(sampleValue(f, "flowmesh_reads_total")).toBe(1);
      expect(sampleValue(f, "flowmesh_applied_records_total")).toBe(2);
      expect(sampleValue(f, "flowmesh_flows_held", { role: "primary" })).toBe(1);
    } finally {
      await b.stop();
    }
  });
});
