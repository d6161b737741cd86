/**
 * Coordination that no paused, slow or cut-off node can corrupt (issue 10). Each
 * scenario runs on a fresh cluster (REPLICAS=2) under continuous load from ledger
 * writers (Idempotency-Keys, retries until 200, spread over every gateway, frozen ones
 * included). After the fault: every live gateway answers /ready 200, the writers stop,
 * and every hour read through every gateway equals the ledger exactly, with no stale
 * read on the way. A frozen node is SIGSTOPped: its sockets still accept connections
 * but it neither answers nor sends heartbeats, and when it resumes it carries on from
 * where it was, with timers long overdue and requests long given up.
 */
import { freshHour } from "../support/api-contract";
import { LedgerWriter } from "../support/ledger-writer";
import { finishScenario, HEARTBEAT_TIMEOUT_MS, keepLogs, nodeNamed, REQUEST_TIMEOUT_MS, status, waitUntilReady } from "../support/ledger-scenario";
import { describeWithNats, sleep, startCluster, startNats, type Cluster, type NodeProcess } from "../support/processes";

const SCENARIO_TIMEOUT_MS = 180000;

async function freeze(nodes: NodeProcess[], ms: number): Promise<void> {
  nodes.forEach((n) => n.pause());
  try {
    await sleep(ms);
  } finally {
    nodes.forEach((n) => n.resume());
  }
}

/**
 * The fault of a scenario, run under load. `writeThrough(node)` adds a writer that sends
 * everything through that node's gateway (all gateways once it is gone): the round-robin
 * writers reach a frozen gateway only by chance, and a frozen one must keep getting requests.
 */
type Fault = (cluster: Cluster, writeThrough: (node: NodeProcess) => void) => Promise<void>;

/**
 * Fresh cluster of `nodes` (REPLICAS=2), three ledger writers over every gateway, `fault`
 * under their load, then finishScenario: readiness, the final reads against the ledger, one
 * summary line, and the assertions.
 */
async function runScenario(name: string, tag: string, nodes: number, fault: Fault): Promise<void> {
  const cluster = await startCluster(nodes, { REPLICAS: "2", LOGLEVEL: "info" });
  try {
    const hours = [freshHour(), freshHour(), freshHour(), freshHour()];
    const writers: LedgerWriter[] = [];
    const addWriter = (gateways: () => string[]) => {
      const writer = new LedgerWriter(gateways, hours, `${tag}-${writers.length}`, 100, { requestTimeoutMs: REQUEST_TIMEOUT_MS });
      writers.push(writer);
      writer.start();
    };
    for (let i = 0; i < 3; i++) addWriter(() => cluster.urls());
    await sleep(2000);

    await fault(cluster, (node) => addWriter(() => (cluster.urls().includes(node.url) ? [node.url] : cluster.urls())));
    await finishScenario({
      title: `coordination ${name}`,
      writers,
      hours,
      gateways: () => cluster.urls(),
      keepLogs: () => keepLogs(`coordination-${tag}`, cluster.nodes),
    });
  } finally {
    await cluster.stop();
  }
}

describeWithNats("coordination under paused, slow and cut-off nodes (R = 2)", () => {
  test(
    "the coordinator frozen 10 s, then another node killed -9",
    () =>
      runScenario("coordinator frozen 10 s, then a node killed", "s1", 4, async (cluster, writeThrough) => {
        const frozen = nodeNamed(cluster, (await status(cluster)).coordinator);
        writeThrough(frozen);
        await freeze([frozen], 10000);
        await sleep(12000);
        const { coordinator } = await status(cluster);
        const victim = cluster.nodes.find((n) => n !== frozen && n.nodeID !== coordinator)!;
        await victim.stop("SIGKILL");
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "the coordinator frozen shorter than the heartbeat timeout, then a little longer",
    () =>
      runScenario("coordinator frozen 1.5 s, then 4 s", "s2", 4, async (cluster, writeThrough) => {
        const coordinator = nodeNamed(cluster, (await status(cluster)).coordinator);
        writeThrough(coordinator);
        await freeze([coordinator], HEARTBEAT_TIMEOUT_MS - 1000);
        await waitUntilReady(() => cluster.urls()); // the final check asserts readiness
        await sleep(3000);
        await freeze([nodeNamed(cluster, (await status(cluster)).coordinator)], HEARTBEAT_TIMEOUT_MS + 1500);
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "a primary frozen 10 s while its gateway keeps receiving requests",
    () =>
      runScenario("primary frozen 10 s", "s3", 4, async (cluster, writeThrough) => {
        const s = await status(cluster);
        const primary = nodeNamed(cluster, s.nodes.find((n) => n.nodeID !== s.coordinator && n.primaries > 0)!.nodeID);
        writeThrough(primary);
        await freeze([primary], 10000);
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "two of five nodes frozen 10 s at once, both copies of some partitions among them",
    () =>
      runScenario("two of five nodes frozen 10 s", "s4", 5, async (cluster, writeThrough) => {
        const s = await status(cluster);
        // A minority holding every copy of a partition: nobody else can serve it meanwhile.
        const shared = s.partitions.find((p) => p.primary !== s.coordinator && p.replicas.length === 1 && p.replicas[0] !== s.coordinator)!;
        const frozen = [nodeNamed(cluster, shared.primary!), nodeNamed(cluster, shared.replicas[0])];
        frozen.forEach(writeThrough);
        await freeze(frozen, 10000);
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "nats-server killed -9 under load, restarted on the same port and store after 3 s",
    () =>
      runScenario("nats-server killed and restarted", "s5", 3, async (cluster) => {
        const { port, storeDir } = cluster.nats;
        await cluster.nats.kill();
        await sleep(3000);
        cluster.nats = await startNats(port, storeDir);
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "two nodes: the coordinator killed -9, the other takes over",
    () =>
      runScenario("two nodes, coordinator killed", "s6a", 2, async (cluster) => {
        await nodeNamed(cluster, (await status(cluster)).coordinator).stop("SIGKILL");
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "two nodes: the non-coordinator killed -9, the coordinator carries on alone",
    () =>
      runScenario("two nodes, non-coordinator killed", "s6b", 2, async (cluster) => {
        const { coordinator } = await status(cluster);
        await cluster.nodes.find((n) => n.nodeID !== coordinator)!.stop("SIGKILL");
      }),
    SCENARIO_TIMEOUT_MS,
  );
});
