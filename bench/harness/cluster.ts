/**
 * A Flowmesh cluster for the bench: nats-server, SHARD_NODES shard nodes started one
 * after another, then one gateway node; every node with its own DATA_DIR.
 */
import * as crypto from "crypto";
import { connect as natsConnect, type NatsConnection } from "nats";
import { pollCluster, settledOn } from "./cluster-status";
import { type Child, freePort, GiveUp, type NatsServer, now, removeDataDir, startFlowmeshNode, startNatsServer, tempDataDir, waitFor, waitFor200 } from "./processes";
import { NATS_ENV, NATS_SERVER } from "./settings";

const SHARD_NODES = 3;
const GATEWAY_ID = "gw";
const SHARD_JOIN_TIMEOUT_MS = 30_000;
const CLUSTER_START_TIMEOUT_MS = 120_000;
/** How often /cluster is polled while waiting for a cluster to settle. */
export const SETTLE_POLL_MS = 200;

export class Cluster {
  readonly namespace = `bench-${crypto.randomBytes(4).toString("hex")}`;
  url = "";
  natsPort = 0;
  /** Node processes alive (not killed by us), by NODEID; the gateway included. */
  readonly nodes = new Map<string, Child>();
  /** NODEIDs this bench killed with SIGKILL. */
  readonly killed = new Set<string>();
  /** pids of the live node processes (the Running's pids: same array). */
  readonly pids: number[] = [];
  /** NODEID -> now() when its first INFO packet listing the flow-shard service was seen on NATS. */
  readonly joinedAt = new Map<string, number>();
  /** Every node's DATA_DIR, removed when the cluster stops. */
  private readonly dataDirs: string[] = [];
  private nats: NatsServer | null = null;
  private watcher: NatsConnection | null = null;
  private shardCounter = 0;

  /** `nodeEnv`: what every node gets besides its identity (DURABILITY). */
  constructor(
    readonly label: string,
    readonly replicas: number,
    private readonly nodeEnv: Record<string, string>,
  ) {}

  get natsPid(): number | undefined {
    return this.nats?.child.process.pid;
  }

  nextShardID(): string {
    return `n${++this.shardCounter}`;
  }

  shardIDs(): string[] {
    return [...this.nodes.keys()].filter((id) => id !== GATEWAY_ID);
  }

  /** nats-server on a free port, then a passive subscriber that sees nodes announce themselves (INFO packets). */
  private async startNats(): Promise<void> {
    this.nats = await startNatsServer(`${this.label} nats`, NATS_SERVER, NATS_ENV);
    this.natsPort = this.nats.port;
    this.watcher = await natsConnect({ servers: `127.0.0.1:${this.natsPort}`, name: "flowmesh-bench-watcher", reconnect: false });
    const decoder = new TextDecoder();
    this.watcher.subscribe(`MOL-${this.namespace}.INFO`, {
      callback: (err, msg) => {
        if (err) return;
        try {
          const info = JSON.parse(decoder.decode(msg.data)) as { sender?: string; services?: { name?: string }[] };
          if (typeof info.sender === "string" && !this.joinedAt.has(info.sender) && info.services?.some((s) => s.name === "flow-shard")) {
            this.joinedAt.set(info.sender, now());
          }
        } catch {
          /* not a JSON packet: ignore */
        }
      },
    });
  }

  private spawnNode(nodeID: string, services: string, port: number): Child {
    const dataDir = tempDataDir(`${this.label}-${nodeID}`);
    this.dataDirs.push(dataDir);
    const child = startFlowmeshNode(`${this.label} ${nodeID}`, {
      ...this.nodeEnv,
      TRANSPORTER: `nats://127.0.0.1:${this.natsPort}`,
      NAMESPACE: this.namespace,
      NODEID: nodeID,
      REPLICAS: String(this.replicas),
      PORT: String(port),
      SERVICES: services,
      DATA_DIR: dataDir,
    });
    this.nodes.set(nodeID, child);
    if (child.process.pid !== undefined) this.pids.push(child.process.pid);
    return child;
  }

  /** Spawn a shard node (SERVICES=flow-shard) and return at once with the spawn time (now()). */
  async spawnShard(nodeID: string): Promise<number> {
    if (this.nodes.has(nodeID) || this.killed.has(nodeID)) throw new Error(`${this.label}: node ${nodeID} was started before`);
    const port = await freePort(); // unused by a shard node (no api service), but set as for any node
    const t = now();
    this.spawnNode(nodeID, "flow-shard", port);
    return t;
  }

  /** Wait until the shard node announced itself on NATS with its flow-shard service. */
  async waitJoined(nodeID: string, timeoutMs = SHARD_JOIN_TIMEOUT_MS): Promise<void> {
    await waitFor(
      `${this.label}: shard ${nodeID} announcing itself on NATS`,
      async () => {
        this.assertAlive();
        return this.joinedAt.has(nodeID);
      },
      timeoutMs,
      50,
      () => this.nodes.get(nodeID)?.tail() ?? "",
    );
  }

  /** NATS, then the shard nodes one after another (each announced before the next), then the gateway; until settled. */
  async start(): Promise<void> {
    await this.startNats();
    for (let i = 0; i < SHARD_NODES; i++) {
      const id = this.nextShardID();
      await this.spawnShard(id);
      await this.waitJoined(id);
    }
    const port = await freePort();
    this.spawnNode(GATEWAY_ID, "api,flows,cluster", port);
    this.url = `http://127.0.0.1:${port}`;
    await waitFor200(this.url, "/health", [...this.nodes.values()], this.label);
    await pollCluster(this, now(), {
      what: `${this.label} start`,
      timeoutMs: CLUSTER_START_TIMEOUT_MS,
      intervalMs: SETTLE_POLL_MS,
      stableEpochPolls: 2,
      checkReady: true,
      condition: settledOn(this.shardIDs(), false),
    });
  }

  /** kill -9 a node; it leaves `nodes` and `pids` at once. */
  async kill9(nodeID: string): Promise<void> {
    const child = this.nodes.get(nodeID);
    if (child === undefined) throw new Error(`${this.label}: no live node ${nodeID}`);
    this.killed.add(nodeID);
    this.nodes.delete(nodeID);
    const i = this.pids.indexOf(child.process.pid ?? -1);
    if (i >= 0) this.pids.splice(i, 1);
    await child.kill();
  }

  /** Throws (GiveUp: waiting is pointless) when nats-server or a node the bench did not kill has exited. */
  assertAlive(): void {
    if (this.nats?.child.exited()) throw new GiveUp(`${this.label}: nats-server exited\n${this.nats.child.tail()}`);
    for (const [id, child] of this.nodes) {
      if (child.exited()) throw new GiveUp(`${this.label}: node ${id} exited unexpectedly (${child.process.exitCode ?? child.process.signalCode})\n${child.tail()}`);
    }
  }

  /** SIGKILL every node at once (a SIGTERM would start graceful handoffs), then stop nats-server; remove their directories. */
  async stop(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((c) => c.kill()));
    this.nodes.clear();
    this.pids.length = 0;
    if (this.watcher) {
      await this.watcher.close().catch(() => undefined);
      this.watcher = null;
    }
    if (this.nats) {
      await this.nats.child.stop();
      removeDataDir(this.nats.storeDir);
    }
    this.dataDirs.forEach(removeDataDir);
  }
}
