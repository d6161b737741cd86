/**
 * Durability in a cluster (DURABILITY=sync, the default: a write is acknowledged only
 * once its log record is on disk on every copy). Each node has its own data directory
 * (`cluster.dataDirs`); a node restarted with the same NODEID and directory is the same
 * node, back with its copies. Each scenario runs on a fresh cluster of three (REPLICAS=2)
 * under continuous load from ledger writers (Idempotency-Keys, retries until 200, over a
 * fixed list of the three gateways: restarted nodes keep their ports, as an agent's
 * configured gateway list would). After the fault: every gateway answers /ready 200, the
 * writers stop, and every hour read through every gateway equals the ledger exactly.
 */
import { freshHour } from "../support/api-contract";
import { LedgerWriter } from "../support/ledger-writer";
import { catchUpsOf, finishScenario, keepLogs, nodeNamed, REQUEST_TIMEOUT_MS, status, waitUntilReady } from "../support/ledger-scenario";
import { describeWithNats, sleep, startCluster, startNats, waitForSettled, type Cluster, type NodeProcess, type StartOptions } from "../support/processes";

const NODES = 3;
/** A writer fails when one batch stays unacknowledged this long (a cold start takes a while). */
const GIVE_UP_MS = 75000;
const SCENARIO_TIMEOUT_MS = 150000;

/** waitForSettled, failing with what each node holds (a node left with no partitions says which). */
async function settled(cluster: Cluster): Promise<void> {
  try {
    await waitForSettled(cluster, NODES);
  } catch (err) {
    const held = await status(cluster)
      .then((s) => s.nodes.map((n) => `${n.nodeID} ${n.primaries} primaries, ${n.replicas} replicas`).join("; "))
      .catch((e: Error) => e.message);
    throw new Error(`${(err as Error).message} (${held})`);
  }
}

/** The fault of a scenario, run under load. `restart(id)` starts node `id` again with its data directory and port. */
type Fault = (cluster: Cluster, restart: (nodeID: string, options?: StartOptions) => Promise<NodeProcess>) => Promise<string>;

/**
 * Fresh cluster, two ledger writers, `fault` under their load (it returns a note for the
 * summary line), then finishScenario over the fixed list of gateways: readiness, the final
 * reads against the ledger, one summary line, and the assertions.
 */
async function runScenario(name: string, tag: string, fault: Fault, readyTimeoutMs = 45000): Promise<void> {
  const cluster = await startCluster(NODES, { REPLICAS: "2", LOGLEVEL: "info" });
  /** Processes replaced by a restart: their logs are kept with the others'. */
  const replaced: NodeProcess[] = [];
  const restart = (nodeID: string, options?: StartOptions) => {
    const old = nodeNamed(cluster, nodeID);
    cluster.nodes.splice(cluster.nodes.indexOf(old), 1);
    replaced.push(old);
    return cluster.add(nodeID, { DATA_DIR: cluster.dataDirs[nodeID], PORT: String(old.port) }, options);
  };
  try {
    const gateways = cluster.nodes.map((n) => n.url);
    const hours = [freshHour(), freshHour(), freshHour(), freshHour()];
    const writers = [0, 1].map((i) => new LedgerWriter(() => gateways, hours, `${tag}-${i}`, 100, { requestTimeoutMs: REQUEST_TIMEOUT_MS, giveUpAfterMs: GIVE_UP_MS }));
    writers.forEach((w) => w.start());
    await sleep(2000);

    const logs = () => keepLogs(`durability-${tag}`, [...replaced, ...cluster.nodes], true);
    const note = await fault(cluster, restart).catch((err: Error) => {
      console.log(`durability ${name}: the fault failed (${err.message}); node logs in ${logs()}`);
      throw err;
    });
    await finishScenario({ title: `durability ${name}`, writers, hours, gateways: () => gateways, readyTimeoutMs, note, keepLogs: logs });
  } finally {
    await cluster.stop();
  }
}

/** What a restarted node said about its data directory (the journal's recovery line). */
const recoveryOf = (node: NodeProcess) => /Recovered \d+ flows in \d+ partition\(s\)/.exec(node.output())?.[0] ?? "nothing recovered";

describeWithNats("durability: nodes restarted with their data directories (R = 2)", () => {
  test(
    "a node killed -9, judged dead, restarted with its data directory: it owns partitions again",
    () =>
      runScenario("kill -9 and restart with state", "d1", async (cluster, restart) => {
        await sleep(4000); // primaries that have served a while: a returning copy can be caught up from their log tails
        const { coordinator } = await status(cluster);
        const victim = cluster.nodes.find((n) => n.nodeID !== coordinator)!;
        await victim.stop("SIGKILL");
        await sleep(4000); // past the heartbeat timeout: its peers judge it dead and promote replicas
        const judgedDead = cluster.nodes.some((n) => n !== victim && new RegExp(`lost ${victim.nodeID}\\b`).test(n.output()));
        const back = await restart(victim.nodeID);
        await settled(cluster);
        // waitForSettled also means every node, this one included, is primary of some partitions again.
        const listed = (await status(cluster)).nodes.find((n) => n.nodeID === victim.nodeID);
        const { tails, snapshots, why } = catchUpsOf(cluster.nodes, victim.nodeID);
        // It was a replica of about half the partitions it held, under primaries that stayed: those come from their log tails.
        if (tails === 0) throw new Error(`no recovered copy of ${victim.nodeID} was caught up from a log tail (${snapshots} snapshots${why})`);
        return `${victim.nodeID} judged dead: ${judgedDead}; on restart: ${recoveryOf(back)}; now ${listed?.primaries} primaries, ${listed?.replicas} replicas; recovered copies caught up from a log tail: ${tails}, refilled by snapshot: ${snapshots}${why}`;
      }),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "cold start: every node and nats-server killed -9 at once, restarted in another order; ready by itself",
    () =>
      runScenario(
        "cold start",
        "d2",
        async (cluster, restart) => {
          const { port, storeDir } = cluster.nats;
          const killedAt = Date.now();
          await Promise.all([...cluster.nodes.map((n) => n.stop("SIGKILL")), cluster.nats.kill()]);
          cluster.nats = await startNats(port, storeDir);
          // Not "until ready": no node can be ready before the holders of every partition are back.
          const starting: Promise<NodeProcess>[] = [];
          for (const nodeID of ["n3", "n1", "n2"]) {
            starting.push(restart(nodeID, { waitUntil: "health" }));
            await sleep(1000);
          }
          const nodes = await Promise.all(starting);
          const allUp = Date.now();
          const notReady = await waitUntilReady(cluster.urls(), 60000);
          const readyAt = Date.now();
          return (
            `${notReady.length === 0 ? `ready ${readyAt - killedAt} ms after the kill, ${readyAt - allUp} ms after the last node answered /health` : `never ready (${notReady.join(", ")})`}` +
            `; on restart: ${nodes.map((n) => `${n.nodeID} ${recoveryOf(n)}`).join(", ")}`
          );
        },
        15000,
      ),
    SCENARIO_TIMEOUT_MS,
  );

  test(
    "rolling restart by SIGTERM: each node hands off, restarts with its data directory, the cluster settles",
    () =>
      runScenario("rolling restart (SIGTERM)", "d3", async (cluster, restart) => {
        const took: string[] = [];
        for (const nodeID of ["n1", "n2", "n3"]) {
          const started = Date.now();
          await nodeNamed(cluster, nodeID).stop("SIGTERM");
          await restart(nodeID);
          await settled(cluster);
          took.push(`${nodeID} ${Date.now() - started} ms`);
        }
        return `each node out and settled again in ${took.join(", ")}`;
      }),
    SCENARIO_TIMEOUT_MS,
  );
});
