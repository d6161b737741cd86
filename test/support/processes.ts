/**
 * Real processes for tests: Flowmesh nodes (the built moleculer-runner, as `npm start`
 * runs it) and nats-server, all on 127.0.0.1 with ephemeral ports.
 */
import { spawn, spawnSync, type ChildProcess } from "child_process";
import * as fs from "fs";
import { createServer } from "net";
import * as os from "os";
import * as path from "path";

export const ROOT = path.resolve(__dirname, "../..");

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 20000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

export interface NodeProcess {
  nodeID: string;
  port: number;
  url: string;
  child: ChildProcess;
  output: () => string;
  /** SIGTERM (graceful) or SIGKILL; resolves when the process has exited. Works on a paused process too. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the process freezes (no heartbeats, no answers; its sockets still accept) until resume(). */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
}

const running = new Set<ChildProcess>();
process.on("exit", () => running.forEach((c) => c.kill("SIGKILL")));

function track(child: ChildProcess): () => string {
  running.add(child);
  child.on("exit", () => running.delete(child));
  let out = "";
  const keep = (b: Buffer) => {
    out += b.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  return () => out;
}

function stopper(child: ChildProcess) {
  return (signal: NodeJS.Signals = "SIGTERM") =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      // A paused (SIGSTOPped) process keeps every signal but SIGKILL pending until it continues.
      if (signal !== "SIGKILL") child.kill("SIGCONT");
      child.kill(signal);
    });
}

/** Data directories made by startNode, removed when the test process exits. */
const dataDirs = new Set<string>();
process.on("exit", () => dataDirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A fresh data directory, for a node or a unit test's journal (gone when the test process exits). */
export function tempDataDir(tag: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `flowmesh-data-${tag}-`));
  dataDirs.add(dir);
  return dir;
}

export interface StartOptions {
  /**
   * Resolve once /ready answers 200 (the default), or already once /health does: a node
   * restarted into a cluster that cannot be ready without its peers (a cold start).
   */
  waitUntil?: "ready" | "health";
}

/**
 * Start a Flowmesh node from dist/ (run `npm run build` first; `npm test` does). It
 * keeps its state in a fresh DATA_DIR (the default DURABILITY=sync) unless `env` names
 * one: pass the same DATA_DIR again to restart a node with its state.
 */
export async function startNode(env: Record<string, string> = {}, options: StartOptions = {}): Promise<NodeProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const nodeID = env.NODEID ?? `node-${port}`;
  const dataDir = env.DATA_DIR ?? tempDataDir(nodeID);
  const child = spawn(process.execPath, [path.join(ROOT, "node_modules/moleculer/bin/moleculer-runner.js"), "--config", "dist/moleculer.config.js"], {
    cwd: ROOT,
    env: { ...process.env, SERVICEDIR: "dist/services", LOGLEVEL: "warn", NODEID: nodeID, DATA_DIR: dataDir, ...env, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = track(child);
  const url = `http://127.0.0.1:${port}`;
  const node: NodeProcess = {
    nodeID,
    port,
    url,
    child,
    output,
    stop: stopper(child),
    pause: () => child.kill("SIGSTOP"),
    resume: () => child.kill("SIGCONT"),
  };
  await waitFor(`node ${nodeID} /health`, async () => {
    if (child.exitCode !== null) throw new Error(`node ${nodeID} exited: ${output()}`);
    return (await fetch(`${url}/health`)).ok;
  });
  if (options.waitUntil !== "health") await waitFor(`node ${nodeID} /ready`, async () => (await fetch(`${url}/ready`)).ok);
  return node;
}

export function natsServerPath(): string | null {
  const r = spawnSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

export interface NatsProcess {
  url: string;
  port: number;
  /** JetStream's store directory: `startNats(old.port, old.storeDir)` restarts the same server. */
  storeDir: string;
  /** SIGTERM; resolves when it has exited. */
  stop(): Promise<void>;
  /** SIGKILL (a crash); resolves when it has exited. */
  kill(): Promise<void>;
}

/**
 * nats-server with JetStream, on a free port and a fresh store directory unless given (a
 * restart). `extraArgs` are added to its command line (e.g. `--user U --pass P`, `--tls ...`).
 */
export async function startNats(port?: number, storeDir?: string, extraArgs: string[] = []): Promise<NatsProcess> {
  const bin = natsServerPath();
  if (!bin) throw new Error("nats-server not found: apt-get install -y nats-server");
  const p = port ?? (await freePort());
  const store = storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "flowmesh-nats-"));
  const child = spawn(bin, ["-a", "127.0.0.1", "-p", String(p), "-js", "-sd", store, ...extraArgs], { stdio: ["ignore", "pipe", "pipe"] });
  const output = track(child);
  await waitFor("nats-server", async () => {
    if (child.exitCode !== null) throw new Error(`nats-server exited: ${output()}`);
    return output().includes("Server is ready");
  });
  const stop = stopper(child);
  return { url: `nats://127.0.0.1:${p}`, port: p, storeDir: store, stop: () => stop("SIGTERM"), kill: () => stop("SIGKILL") };
}

/** describe, or describe.skip with the install command when nats-server is missing (a failure under CI). */
export function describeWithNats(name: string, fn: () => void): void {
  if (natsServerPath() !== null) return describe(name, fn);
  if (process.env.CI) {
    describe(name, () => {
      test("nats-server is installed", () => {
        throw new Error("nats-server not found: apt-get install -y nats-server");
      });
    });
    return;
  }
  // eslint-disable-next-line no-console
  console.warn(`Skipping "${name}": nats-server not found (apt-get install -y nats-server)`);
  describe.skip(name, fn);
}

export interface Cluster {
  nats: NatsProcess;
  /** The Moleculer namespace its nodes share (and its placement bucket's name). */
  namespace: string;
  nodes: NodeProcess[];
  /**
   * Each node's data directory, by node id: its own fresh one unless the env names one.
   * `add(id, { DATA_DIR: cluster.dataDirs[id] })` restarts a node with its state.
   */
  dataDirs: Record<string, string>;
  urls(): string[];
  add(nodeID: string, env?: Record<string, string>, options?: StartOptions): Promise<NodeProcess>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Added to nats-server's command line (authentication, TLS); the nodes' `env` must match. */
  natsArgs?: string[];
}

/** nats-server plus n Flowmesh nodes (n1..nn) on it, each running every service. */
export async function startCluster(n: number, env: Record<string, string> = {}, options: ClusterOptions = {}): Promise<Cluster> {
  const nats = await startNats(undefined, undefined, options.natsArgs);
  const namespace = `test-${process.pid}-${Date.now()}`;
  const nodes: NodeProcess[] = [];
  const base = { TRANSPORTER: nats.url, NAMESPACE: namespace, ...env };
  const cluster: Cluster = {
    nats,
    namespace,
    nodes,
    dataDirs: {},
    urls: () => nodes.filter((x) => x.child.exitCode === null && x.child.signalCode === null).map((x) => x.url),
    async add(nodeID, extra = {}, options = {}) {
      const env: Record<string, string> = { ...base, NODEID: nodeID, ...extra };
      // A fresh directory unless one is given (a node added again under an old id starts empty, as before).
      env.DATA_DIR ??= tempDataDir(nodeID);
      cluster.dataDirs[nodeID] = env.DATA_DIR;
      const node = await startNode(env, options);
      nodes.push(node);
      return node;
    },
    async stop() {
      await Promise.all(nodes.map((x) => x.stop("SIGKILL")));
      await cluster.nats.stop(); // the current one: a test may have replaced it
      for (const dir of new Set([nats.storeDir, cluster.nats.storeDir])) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  for (let i = 1; i <= n; i++) {
    // One at a time: the first becomes the coordinator, the others join it.
    await cluster.add(`n${i}`);
  }
  await waitForSettled(cluster, n);
  return cluster;
}

/** Until every gateway sees `count` shard nodes owning partitions and no handoff under way. */
export async function waitForSettled(cluster: Cluster, count: number, timeoutMs = 60000): Promise<void> {
  await waitFor(
    `cluster of ${count} settled`,
    async () => {
      const epochs = new Set<number>();
      for (const url of cluster.urls()) {
        const res = await fetch(`${url}/cluster`);
        if (!res.ok) return false;
        const s = (await res.json()) as { epoch: number; nodes: { primaries: number }[]; handoffs: unknown[]; partitions: { primary: string | null }[] };
        if (s.nodes.length !== count || s.nodes.some((x) => x.primaries === 0) || s.handoffs.length > 0) return false;
        if (s.partitions.some((p) => p.primary === null)) return false;
        epochs.add(s.epoch);
      }
      return epochs.size === 1;
    },
    timeoutMs,
    200,
  );
}
