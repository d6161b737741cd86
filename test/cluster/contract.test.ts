/**
 * Three real nodes on a real nats-server pass the same API contract as the embedded
 * node, through any gateway; and a plain Moleculer broker on the same NATS gets the
 * same answers from flows.ingest / flows.aggregate as HTTP clients.
 */
import { ServiceBroker } from "moleculer";
import { apiContract, expectedHour, flow, freshHour, request } from "../support/api-contract";
import { describeWithNats, startCluster, type Cluster } from "../support/processes";
import { parseExposition, sampleValue } from "../support/prometheus";

describeWithNats("three-node cluster", () => {
  let cluster: Cluster;
  let client: ServiceBroker;

  beforeAll(async () => {
    cluster = await startCluster(3);
  }, 120000);

  afterAll(async () => {
    if (process.env.DUMP_LOGS) for (const n of cluster.nodes) console.log(n.nodeID, n.output().slice(-3000));
    await client?.stop();
    await cluster?.stop();
  });

  apiContract(() => cluster.urls());

  describe("a plain Moleculer broker on the same NATS", () => {
    beforeAll(async () => {
      const ns = (await request(`${cluster.urls()[0]}/cluster`)).body.namespace as string;
      client = new ServiceBroker({ nodeID: `external-${process.pid}`, namespace: ns, transporter: cluster.nats.url, logger: false });
      await client.start();
      await client.waitForServices(["flows", "cluster"], 10000);
    });

    test("flows.ingest and flows.aggregate answer as HTTP does", async () => {
      const h = freshHour();
      const batch = Array.from({ length: 500 }, (_, i) => flow(`svc-${i % 23}`, `db-${i % 7}`, `vpc-${i % 3}`, h, i, 2 * i));
      expect(await client.call("flows.ingest", { flows: batch.slice(0, 250), idempotencyKey: `broker-${h}` })).toEqual({ accepted: 250 });
      expect(await client.call("flows.ingest", { flows: batch.slice(0, 250), idempotencyKey: `broker-${h}` })).toEqual({ accepted: 250 });
      expect((await request(`${cluster.urls()[1]}/flows`, { method: "POST", json: batch.slice(250) })).status).toBe(200);
      const viaBroker = await client.call("flows.aggregate", { hour: h });
      const viaHttp = (await request(`${cluster.urls()[2]}/flows?hour=${h}`)).body;
      expect(viaBroker).toEqual(expectedHour(batch, h));
      expect(viaHttp).toEqual(viaBroker);
      const filtered = await client.call("flows.aggregate", { hour: h, src_app: "svc-1" });
      expect(filtered).toEqual(expectedHour(batch, h).filter((f) => f.src_app === "svc-1"));
    });

    test("the same validation rules apply to broker callers", async () => {
      const h = freshHour();
      await expect(client.call("flows.ingest", { flows: [{ ...flow("a", "b", "c", h, 1, 1), bytes_tx: -1 }] })).rejects.toMatchObject({ name: "ValidationError" });
      await expect(client.call("flows.aggregate", { hour: "x" })).rejects.toMatchObject({ name: "ValidationError" });
      expect(await client.call("flows.aggregate", { hour: h })).toEqual([]);
    });

    test("cluster.status answers as GET /cluster", async () => {
      const status = (await client.call("cluster.status")) as { nodes: { nodeID: string }[]; epoch: number };
      expect(status.nodes.map((n) => n.nodeID).sort()).toEqual(["n1", "n2", "n3"]);
      expect(status.epoch).toBe((await request(`${cluster.urls()[0]}/cluster`)).body.epoch);
    });
  });

  test("each node's /metrics reports its own partitions, as /cluster does", async () => {
    const status = (await request(`${cluster.urls()[0]}/cluster`)).body as { epoch: number; nodes: { nodeID: string; primaries: number; replicas: number }[] };
    let primaries = 0;
    let coordinators = 0;
    for (const node of cluster.nodes) {
      const f = parseExposition(await (await fetch(`${node.url}/metrics`)).text());
      const own = { node_id: node.nodeID };
      const expected = status.nodes.find((n) => n.nodeID === node.nodeID)!;
      expect([node.nodeID, sampleValue(f, "flowmesh_partitions_owned", { ...own, role: "primary" })]).toEqual([node.nodeID, expected.primaries]);
      expect(sampleValue(f, "flowmesh_partitions_owned", { ...own, role: "replica" })).toBe(expected.replicas);
      expect(sampleValue(f, "flowmesh_placement_epoch", own)).toBe(status.epoch);
      expect(sampleValue(f, "flowmesh_shard_nodes", own)).toBe(3);
      expect(sampleValue(f, "flowmesh_partitions_under_replicated", own)).toBe(0);
      primaries += expected.primaries;
      coordinators += sampleValue(f, "flowmesh_coordinator", own);
    }
    expect(primaries).toBe(256);
    expect(coordinators).toBe(1);
  });

  test("concurrent writes through one gateway share messages; a refused sum refuses only its own request", async () => {
    const h = freshHour();
    const url = cluster.urls()[0];
    const own = { node_id: cluster.nodes[0].nodeID };
    const metrics = async () => parseExposition(await (await fetch(`${url}/metrics`)).text());
    const big = flow("big", "b", "c", h, Number.MAX_SAFE_INTEGER - 1, 5);
    expect((await request(`${url}/flows`, { method: "POST", json: [big] })).status).toBe(200);
    const before = await metrics();
    // 40 requests at once, each spanning every shard node; one of them would push "big" past 2^53-1.
    const batches = Array.from({ length: 40 }, (_, r) => Array.from({ length: 200 }, (_, i) => flow(`src-${r}-${i}`, `dst-${i % 13}`, "vpc", h, r + 1, i + 1)));
    const refusedAt = 17;
    batches[refusedAt].push(flow("big", "b", "c", h, 2, 0));
    const replies = await Promise.all(batches.map((json) => request(`${url}/flows`, { method: "POST", json })));
    expect(replies.map((r) => (r.status === 200 ? "ok" : r.body.type))).toEqual(batches.map((_, i) => (i === refusedAt ? "SUM_OVERFLOW" : "ok")));
    const accepted = batches.filter((_, i) => i !== refusedAt).flat();
    expect((await request(`${cluster.urls()[1]}/flows?hour=${h}`)).body).toEqual(expectedHour([big, ...accepted], h));
    const after = await metrics();
    const delta = (name: string) => sampleValue(after, name, own) - sampleValue(before, name, own);
    // Every request had a part for each of the 3 shard nodes; parts of concurrent requests shared messages.
    expect(delta("flowmesh_write_groups_total")).toBeGreaterThanOrEqual(40 * 3);
    expect(delta("flowmesh_write_messages_total")).toBeLessThan(delta("flowmesh_write_groups_total"));
  }, 60000);

  test("an hour larger than one NATS message is paged between nodes, never truncated", async () => {
    const h = freshHour();
    // ~30,000 flows with long names: several MB, far over NATS's 1 MB limit per message.
    const all = [];
    for (let b = 0; b < 6; b++) {
      const batch = Array.from({ length: 5000 }, (_, i) => flow(`${"s".repeat(100)}-${b}-${i}`, `${"d".repeat(100)}-${i % 97}`, "vpc", h, i + 1, b + 1));
      all.push(...batch);
      const r = await request(`${cluster.urls()[b % 3]}/flows`, { method: "POST", json: batch });
      expect([r.status, r.body]).toEqual([200, { accepted: batch.length }]);
    }
    const got = (await request(`${cluster.urls()[1]}/flows?hour=${h}`)).body;
    expect(got).toHaveLength(all.length);
    expect(got).toEqual(expectedHour(all, h));
  }, 120000);
});
