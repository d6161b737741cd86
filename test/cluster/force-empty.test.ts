/**
 * No unclean promotion: with REPLICAS=1 a crashed node's partitions have no other copy.
 * They are never restarted empty by the cluster: they keep their owner, answer 503 and
 * make /ready 503 (the other partitions keep working) until an operator gives their data
 * up explicitly with the admin CLI (`npm run admin -- force-empty`), which the
 * coordinator logs.
 */
import { spawn } from "child_process";
import * as path from "path";
import { splitByPartition } from "../../src/batching";
import { expectedHour, flow, freshHour, request, type Flow } from "../support/api-contract";
import { ROOT, describeWithNats, startCluster, waitFor, type Cluster } from "../support/processes";

function admin(cluster: Cluster, ...args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, "dist/bin/admin.js"), ...args], {
      cwd: ROOT,
      env: { ...process.env, TRANSPORTER: cluster.nats.url, NAMESPACE: cluster.namespace },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (out += b.toString()));
    child.on("exit", (code) => resolve({ code, out }));
  });
}

describeWithNats("no unclean promotion (R = 1)", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster(2, { REPLICAS: "1", RETRY_WINDOW_MS: "1500" });
  }, 120000);
  afterAll(() => cluster?.stop());

  test("a crashed node's partitions wait with 503 until an operator forces them empty", async () => {
    const h = freshHour();
    const [n1, n2] = cluster.nodes;
    const batch: Flow[] = Array.from({ length: 400 }, (_, i) => flow(`src-${i}`, "db", "vpc", h, i + 1, 1));
    expect((await request(`${n1.url}/flows`, { method: "POST", json: batch })).status).toBe(200);

    await n2.stop("SIGKILL");
    cluster.nodes.splice(cluster.nodes.indexOf(n2), 1);
    const notReady = await waitFor("/ready 503 naming the lost node", async () => {
      const r = await request(`${n1.url}/ready`);
      return r.status === 503 && r.body.data?.lost?.includes("n2") ? r : false;
    });
    expect(notReady.body.message).toMatch(/wait for lost node\(s\) n2/);
    const status = (await request(`${n1.url}/cluster`)).body as { lost: string[]; unavailable: number[]; partitions: { primary: string }[] };
    expect(status.lost).toEqual(["n2"]);
    expect(status.unavailable.length).toBeGreaterThan(0);
    // Never restarted empty: the lost node stays their owner.
    for (const p of status.unavailable) expect(status.partitions[p].primary).toBe("n2");

    // A write touching them gets 503 at once; a read of the hour too (it would be incomplete).
    const write = await request(`${n1.url}/flows`, { method: "POST", json: batch, headers: { "Idempotency-Key": `fe-${h}` } });
    expect(write.status).toBe(503);
    expect(write.body.type).toBe("PARTITION_UNAVAILABLE");
    expect(write.headers.get("retry-after")).toBeTruthy();
    expect((await request(`${n1.url}/flows?hour=${h}`)).status).toBe(503);
    // A write that touches only live partitions still works.
    const waiting = new Set(status.unavailable);
    const onLive = batch.filter((f) => !waiting.has(splitByPartition([f], 256)[0].partition));
    const onLost = batch.filter((f) => waiting.has(splitByPartition([f], 256)[0].partition));
    expect(onLive.length).toBeGreaterThan(0);
    expect(onLost.length).toBeGreaterThan(0);
    expect((await request(`${n1.url}/flows`, { method: "POST", json: onLive, headers: { "Idempotency-Key": `fe-live-${h}` } })).status).toBe(200);

    const forced = await admin(cluster, "force-empty");
    expect(forced.code).toBe(0);
    const result = JSON.parse(forced.out.trim().split("\n").pop()!) as { partitions: number[] };
    expect(result.partitions.sort((a, b) => a - b)).toEqual([...status.unavailable].sort((a, b) => a - b));
    await waitFor("/ready 200 after force-empty", async () => (await fetch(`${n1.url}/ready`)).ok);
    expect(n1.output()).toMatch(/operator forced \d+ partition\(s\) empty/);

    // The refused write applied nothing; its retry with the same key now applies once.
    const retry = await request(`${n1.url}/flows`, { method: "POST", json: batch, headers: { "Idempotency-Key": `fe-${h}` } });
    expect(retry.status).toBe(200);
    const read = await request(`${n1.url}/flows?hour=${h}`);
    expect(read.status).toBe(200);
    // Live partitions: the first post, the live-only post and the retry; forced ones: only the retry.
    expect(read.body).toEqual(expectedHour([...onLive, ...onLive, ...onLive, ...onLost], h));
  }, 120000);
});
