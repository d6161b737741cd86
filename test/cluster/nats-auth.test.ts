/**
 * An authenticated NATS (issue 12): nodes given the credentials join, become ready and
 * serve writes and reads; a client without them cannot connect to nats-server, so it
 * cannot call any action. Then the same over TLS with client certificates (mutual TLS),
 * made by the test with openssl.
 */
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { ServiceBroker } from "moleculer";
import { connect, type ConnectionOptions } from "nats";
import { natsConnectionOptions } from "../../src/nats-options";
import { expectedHour, flow, freshHour, request, type Flow } from "../support/api-contract";
import { describeWithOpenssl, makeTestCertificates, type TestCertificates } from "../support/certificates";
import { ROOT, describeWithNats, startCluster, type Cluster } from "../support/processes";

/** The admin CLI (a broker caller), with exactly this environment for NATS. */
function admin(env: Record<string, string>, ...args: string[]): Promise<{ code: number | null; out: string }> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "TRANSPORTER" && !k.startsWith("NATS_")));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, "dist/bin/admin.js"), ...args], { cwd: ROOT, env: { ...inherited, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (out += b.toString()));
    child.on("exit", (code) => resolve({ code, out }));
  });
}

/** A node process given `env`: it must stop at start (a bad combination), and say why. */
function nodeStartFailure(env: Record<string, string>): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, "node_modules/moleculer/bin/moleculer-runner.js"), "--config", "dist/moleculer.config.js"], {
    cwd: ROOT,
    env: { ...process.env, SERVICEDIR: "dist/services", LOGLEVEL: "warn", DURABILITY: "memory", PORT: "0", ...env },
    encoding: "utf8",
    timeout: 20000,
  });
  return { status: r.status, out: r.stdout + r.stderr };
}

/** Write a batch through one gateway, read it back through another. */
async function writeAndRead(cluster: Cluster): Promise<void> {
  const h = freshHour();
  const batch: Flow[] = Array.from({ length: 300 }, (_, i) => flow(`src-${i % 37}`, `db-${i % 5}`, "vpc", h, i + 1, 2));
  const [first, , third] = cluster.urls();
  expect((await request(`${first}/flows`, { method: "POST", json: batch })).status).toBe(200);
  const read = await request(`${third}/flows?hour=${h}`);
  expect(read.status).toBe(200);
  expect(read.body).toEqual(expectedHour(batch, h));
}

/** Why a raw nats client with these options cannot connect (it must not). */
async function connectError(options: ConnectionOptions): Promise<Error & { code?: string }> {
  try {
    const nc = await connect({ ...options, reconnect: false, timeout: 5000 });
    await nc.close();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error("connected without the credentials");
}

/**
 * A broker in this process with nothing but the server's URL, as any broker caller makes
 * one: after its first connection failure it has no node to call (Moleculer keeps waiting
 * to connect). Resolves with that failure.
 */
async function outsiderCannotCall(cluster: Cluster): Promise<Error> {
  const broker = new ServiceBroker({
    nodeID: `outsider-${process.pid}`,
    namespace: cluster.namespace,
    transporter: cluster.nats.url,
    logger: false,
    transit: { disableReconnect: true },
  });
  try {
    const failure = new Promise<Error>((resolve) => broker.localBus.once("$transporter.error", (p: { error: Error }) => resolve(p.error)));
    void broker.start(); // never resolves without a connection
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<Error>((resolve) => (timer = setTimeout(() => resolve(new Error("no connection error within 15 s")), 15000)));
    const error = await Promise.race([failure, timeout]);
    clearTimeout(timer);
    expect(broker.transit?.connected).toBe(false);
    await expect(broker.call("flows.aggregate", { hour: 1 })).rejects.toMatchObject({ name: "ServiceNotFoundError" });
    await expect(broker.call("flow-shard.forceEmpty", {})).rejects.toMatchObject({ name: "ServiceNotFoundError" });
    return error;
  } finally {
    await broker.stop();
  }
}

/**
 * A broker in this process connected with the settings the nodes use: it calls
 * flows.aggregate, and reads n1's broker options (`$node.options`, open to every node).
 */
async function insiderReads(cluster: Cluster, env: Record<string, string>, hour: number): Promise<{ rows: unknown; n1Options: string }> {
  const broker = new ServiceBroker({
    nodeID: `insider-${process.pid}`,
    namespace: cluster.namespace,
    transporter: { type: "NATS", options: natsConnectionOptions({ TRANSPORTER: cluster.nats.url, ...env }) },
    logger: false,
  });
  await broker.start();
  try {
    await broker.waitForServices(["flows"], 10000);
    const rows = await broker.call("flows.aggregate", { hour });
    return { rows, n1Options: JSON.stringify(await broker.call("$node.options", {}, { nodeID: "n1" })) };
  } finally {
    await broker.stop();
  }
}

describeWithNats("NATS authentication and TLS", () => {
  describe("nats-server with a user and password", () => {
    const user = "flowmesh";
    const password = `pw-${process.pid}-${Date.now()}`;
    const credentials = { NATS_USER: user, NATS_PASSWORD: password };
    let cluster: Cluster;
    beforeAll(async () => {
      cluster = await startCluster(3, { REPLICAS: "2", ...credentials }, { natsArgs: ["--user", user, "--pass", password] });
    }, 120000);
    afterAll(() => cluster?.stop());

    test("nodes given the credentials joined, are ready, and serve a write and a read", async () => {
      for (const url of cluster.urls()) expect((await fetch(`${url}/ready`)).status).toBe(200);
      await writeAndRead(cluster);
    });

    test("a client without the credentials, or with a wrong password, cannot connect", async () => {
      const url = cluster.nats.url;
      expect(await connectError({ servers: url })).toMatchObject({ code: "AUTHORIZATION_VIOLATION" });
      expect(await connectError({ servers: url, user, pass: "wrong" })).toMatchObject({ code: "AUTHORIZATION_VIOLATION" });
    });

    test("a broker without them cannot call any action; one with them can, and finds no password in node options", async () => {
      const error = await outsiderCannotCall(cluster);
      expect(error.message).toMatch(/Authorization Violation/i);
      const h = freshHour();
      const batch = [flow("web", "db", "vpc", h, 5, 7)];
      expect((await request(`${cluster.urls()[0]}/flows`, { method: "POST", json: batch })).status).toBe(200);
      const insider = await insiderReads(cluster, credentials, h);
      expect(insider.rows).toEqual(expectedHour(batch, h));
      // Any node can read another's broker options: the password is kept out of them.
      expect(insider.n1Options).toContain(cluster.nats.url.replace("nats://", ""));
      expect(insider.n1Options).not.toContain(password);
    }, 30000);

    test("the admin CLI: with the credentials it reports status; without, it stops at once with the reason", async () => {
      const base = { TRANSPORTER: cluster.nats.url, NAMESPACE: cluster.namespace };
      const ok = await admin({ ...base, ...credentials }, "status");
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.out.trim().split("\n").pop()!).nodes.sort()).toEqual(["n1", "n2", "n3"]);

      const refused = await admin(base, "status");
      expect(refused.code).toBe(1);
      expect(refused.out).toMatch(/cannot connect to NATS: .*Authorization Violation/i);
      expect(refused.out).not.toContain(password);
    }, 30000);

    test("half the credentials stop a node at start, saying why", () => {
      const started = nodeStartFailure({ TRANSPORTER: cluster.nats.url, NATS_PASSWORD: password });
      expect(started.status).not.toBe(0);
      expect(started.out).toContain("NATS_PASSWORD is set without NATS_USER");
      expect(started.out).not.toContain(password);
    });

    test("half the credentials stop the admin CLI too", async () => {
      const refused = await admin({ TRANSPORTER: cluster.nats.url, NATS_USER: user }, "status");
      expect(refused.code).toBe(2);
      expect(refused.out).toContain("NATS_USER is set without NATS_PASSWORD");
    });
  });

  describeWithOpenssl("nats-server with TLS and client certificates", () => {
    let certs: TestCertificates;
    let tlsEnv: Record<string, string>;
    let cluster: Cluster;
    beforeAll(async () => {
      certs = makeTestCertificates();
      tlsEnv = { NATS_TLS_CA: certs.caCert, NATS_TLS_CERT: certs.clientCert, NATS_TLS_KEY: certs.clientKey };
      // --tlsverify: a client must present a certificate signed by the CA.
      const natsArgs = ["--tlsverify", "--tlscert", certs.serverCert, "--tlskey", certs.serverKey, "--tlscacert", certs.caCert];
      cluster = await startCluster(3, { REPLICAS: "2", ...tlsEnv }, { natsArgs });
    }, 120000);
    afterAll(async () => {
      await cluster?.stop();
      if (certs) fs.rmSync(certs.dir, { recursive: true, force: true });
    });

    test("nodes given the CA and a client certificate joined, are ready, and serve a write and a read", async () => {
      for (const url of cluster.urls()) expect((await fetch(`${url}/ready`)).status).toBe(200);
      await writeAndRead(cluster);
    });

    test("a client without the CA does not trust the server; one without a certificate is refused by it", async () => {
      const url = cluster.nats.url;
      expect((await connectError({ servers: url })).message).toMatch(/unable to verify|self[- ]signed/i);
      await connectError({ servers: url, tls: { caFile: certs.caCert } });
    });

    test("a broker without the TLS settings cannot call any action; the admin CLI with them reports status", async () => {
      const error = await outsiderCannotCall(cluster);
      expect(error.message).toMatch(/unable to verify|self[- ]signed/i);
      const ok = await admin({ TRANSPORTER: cluster.nats.url, NAMESPACE: cluster.namespace, ...tlsEnv }, "status");
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.out.trim().split("\n").pop()!).nodes.sort()).toEqual(["n1", "n2", "n3"]);
    }, 30000);
  });
});
