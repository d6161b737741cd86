/**
 * Ranges and top-N through a 3-node cluster (REPLICAS=2): every gateway's answer, and a
 * broker caller's, equals the model's for the same data, including answers larger than
 * one message between nodes (paged under 512 KB).
 */
import { ServiceBroker } from "moleculer";
import { freshHour, request, type Flow } from "../support/api-contract";
import { describeWithNats, startCluster, type Cluster } from "../support/processes";
import { asCsvText, expectedRange, expectedTop, parseCsv, randomFlows, topQueryString, type TopQuery } from "../support/query-model";

describeWithNats("queries on a three-node cluster", () => {
  let cluster: Cluster;
  let client: ServiceBroker;
  const H0 = freshHour() + 20_000;
  const HOURS = [H0, H0 + 1, H0 + 3];
  const posted: Flow[] = randomFlows(3000, HOURS, 9);
  // Long names: one node's groups (and one hour's flows) take more than a 512 KB message.
  const LONG = Array.from({ length: 40 }, (_, i) => `service-${i}-${"z".repeat(240)}`);
  const long: Flow[] = randomFlows(4000, [H0 + 5], 10, LONG);

  beforeAll(async () => {
    cluster = await startCluster(3, { REPLICAS: "2", DURABILITY: "memory" });
    const urls = cluster.urls();
    const all = [...posted, ...long];
    for (let i = 0, k = 0; i < all.length; i += 1000, k++) {
      const r = await request(`${urls[k % urls.length]}/flows`, { method: "POST", json: all.slice(i, i + 1000) });
      expect(r.status).toBe(200);
    }
    const ns = (await request(`${urls[0]}/cluster`)).body.namespace as string;
    client = new ServiceBroker({ nodeID: `queries-${process.pid}`, namespace: ns, transporter: cluster.nats.url, logger: false });
    await client.start();
    await client.waitForServices(["flows"], 10000);
  }, 120000);

  afterAll(async () => {
    if (process.env.DUMP_LOGS) for (const n of cluster.nodes) console.log(n.nodeID, n.output().slice(-3000));
    await client?.stop();
    await cluster?.stop();
  });

  test("a range, filtered or not, from every gateway and as CSV", async () => {
    for (const url of cluster.urls()) {
      expect((await request(`${url}/flows?from=${H0 - 1}&to=${H0 + 4}`)).body).toEqual(expectedRange(posted, H0 - 1, H0 + 4));
      expect((await request(`${url}/flows?from=${H0}&to=${H0 + 3}&vpc_id=vpc-1`)).body).toEqual(expectedRange(posted, H0, H0 + 3, { vpc_id: "vpc-1" }));
    }
    const csv = await request(`${cluster.urls()[1]}/flows?from=${H0}&to=${H0 + 3}&dest_app=web&format=csv`);
    const columns = ["src_app", "dest_app", "vpc_id", "hour", "bytes_tx", "bytes_rx"] as const;
    expect(parseCsv(csv.body)).toEqual([[...columns], ...expectedRange(posted, H0, H0 + 3, { dest_app: "web" }).map((f) => columns.map((c) => asCsvText(f[c])))]);
  });

  test("top-N for several by and metrics, from every gateway", async () => {
    const queries: TopQuery[] = [
      { from: H0, to: H0 + 3, by: ["src_app", "dest_app"], metric: "bytes_total", n: 10 },
      { from: H0, to: H0 + 1, by: ["vpc_id"], metric: "bytes_tx", n: 2 },
      { from: H0 - 2, to: H0 + 3, by: ["dest_app", "src_app", "vpc_id"], metric: "bytes_rx", n: 50, filter: { src_app: "a b" } },
    ];
    for (const url of cluster.urls()) for (const q of queries) expect((await request(`${url}/flows/top?${topQueryString(q)}`)).body).toEqual(expectedTop(posted, q));
  });

  test("answers larger than a message: an hour read in pages, groups summed in pages", async () => {
    const url = cluster.urls()[2];
    const hour = await request(`${url}/flows?from=${H0 + 5}&to=${H0 + 5}`);
    expect(hour.body).toEqual(expectedRange(long, H0 + 5, H0 + 5));
    const q: TopQuery = { from: H0 + 5, to: H0 + 5, by: ["src_app", "dest_app", "vpc_id"], metric: "bytes_total", n: 1000 };
    const top = await request(`${url}/flows/top?${topQueryString(q)}`);
    expect(top.body).toEqual(expectedTop(long, q));
    expect(top.body.total.groups).toBeGreaterThan(1000);
  });

  test("broker callers: flows.aggregate with from/to answers the array, flows.top and flows.hours as HTTP", async () => {
    expect(await client.call("flows.aggregate", { from: H0, to: H0 + 3, src_app: "web" })).toEqual(expectedRange(posted, H0, H0 + 3, { src_app: "web" }));
    const q: TopQuery = { from: H0, to: H0 + 3, by: ["vpc_id", "dest_app"], metric: "bytes_tx", n: 5 };
    expect(await client.call("flows.top", { from: q.from, to: q.to, by: q.by, metric: q.metric, n: q.n })).toEqual(expectedTop(posted, q));
    expect(await client.call("flows.top", { hour: H0, by: "vpc_id" })).toEqual(expectedTop(posted, { from: H0, to: H0, by: ["vpc_id"], metric: "bytes_total", n: 10 }));
    await expect(client.call("flows.aggregate", { from: H0 + 1, to: H0 })).rejects.toMatchObject({ name: "ValidationError", code: 422 });
    const hours = { newest: H0 + 5, oldest: H0 };
    expect(await client.call("flows.hours")).toEqual(hours);
    for (const url of cluster.urls()) expect((await request(`${url}/flows/hours`)).body).toEqual(hours);
  });
});
