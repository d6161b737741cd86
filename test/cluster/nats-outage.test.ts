/**
 * NATS outage (SPEC §5.5): while nats-server is down, writes that need another node
 * get 503 with Retry-After; when it returns, the nodes reconnect by themselves and
 * nothing acknowledged is lost.
 */
import { expectedHour, flow, freshHour, request, type Flow } from "../support/api-contract";
import { describeWithNats, sleep, startCluster, startNats, waitFor, type Cluster } from "../support/processes";

describeWithNats("NATS outage", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster(3, { REPLICAS: "2", RETRY_WINDOW_MS: "2000" });
  }, 120000);
  afterAll(() => cluster?.stop());

  test("writes get 503 during the outage; the cluster recovers by itself; nothing acknowledged is lost", async () => {
    const h = freshHour();
    const acknowledged: Flow[] = [];
    const batch = (tag: string) => Array.from({ length: 300 }, (_, i) => flow(`${tag}-${i}`, "db", "vpc", h, i + 1, 1));
    for (let i = 0; i < 5; i++) {
      const b = batch(`before-${i}`);
      expect((await request(`${cluster.urls()[i % 3]}/flows`, { method: "POST", json: b })).status).toBe(200);
      acknowledged.push(...b);
    }

    await cluster.nats.stop();
    const during = await request(`${cluster.urls()[0]}/flows`, { method: "POST", json: batch("during"), headers: { "Idempotency-Key": `outage-${h}` } });
    expect(during.status).toBe(503);
    expect(during.headers.get("retry-after")).toBeTruthy();
    // Longer than the heartbeat timeout: every node's registry has expired every peer by now.
    await sleep(4000);

    cluster.nats = await startNats(cluster.nats.port, cluster.nats.storeDir);
    // The agent retries the refused batch with the same key until it is acknowledged.
    await waitFor(
      "a write after NATS returns",
      async () => (await request(`${cluster.urls()[1]}/flows`, { method: "POST", json: batch("during"), headers: { "Idempotency-Key": `outage-${h}` } })).status === 200,
      60000,
      250,
    );
    acknowledged.push(...batch("during"));
    for (const url of cluster.urls()) {
      await waitFor(`${url} ready`, async () => (await fetch(`${url}/ready`)).ok, 30000);
      const r = await request(`${url}/flows?hour=${h}`);
      expect(r.status).toBe(200);
      expect(r.body).toEqual(expectedHour(acknowledged, h));
    }
  }, 180000);
});
