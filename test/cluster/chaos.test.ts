/**
 * Chaos (SPEC §5.1, §5.2, §5.5): four nodes with R = 2, writers posting with
 * Idempotency-Keys and retrying until 200, and meanwhile at least five `kill -9` of
 * random shard nodes, the coordinator among them, each restarted after a while (every
 * other one with its data directory). At the end every hour's read equals the ledger:
 * 0 lost, 0 counted twice.
 */
import { expectedHour, freshHour, request } from "../support/api-contract";
import { LedgerWriter } from "../support/ledger-writer";
import { catchUpsOf } from "../support/ledger-scenario";
import { describeWithNats, sleep, startCluster, waitFor, waitForSettled, type Cluster } from "../support/processes";

interface Status {
  coordinator: string;
  partitions: { primary: string | null; replicas: string[] }[];
  underReplicated: number[];
}

const KILLS = Number(process.env.CHAOS_KILLS) || 5;

describeWithNats("chaos: kill -9 under load with R = 2", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster(4, { REPLICAS: "2", LOGLEVEL: "info" }); // info: the catch-up lines are counted
  }, 120000);
  afterAll(() => cluster?.stop());

  test(`${KILLS} kills, the coordinator among them: nothing acknowledged lost or doubled`, async () => {
    const hours = [freshHour(), freshHour(), freshHour(), freshHour()];
    const writers = ["a", "b"].map((tag) => new LedgerWriter(() => cluster.urls(), hours, `chaos-${tag}`, 100));
    writers.forEach((w) => w.start());
    const failovers: number[] = [];
    let killedCoordinator = false;
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;

    for (let k = 0; k < KILLS; k++) {
      await sleep(1500);
      const live = cluster.nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
      const status = (await request(`${live[0].url}/cluster`)).body as Status;
      // At least one kill hits the coordinator; the others are random.
      const victim = !killedCoordinator && (k === 2 || k === KILLS - 1) ? live.find((n) => n.nodeID === status.coordinator)! : live[Math.floor(random() * live.length)];
      if (victim.nodeID === status.coordinator) killedCoordinator = true;
      const killedAt = Date.now();
      await victim.stop("SIGKILL");
      cluster.nodes.splice(cluster.nodes.indexOf(victim), 1);
      const survivor = cluster.urls()[0];
      await waitFor(
        `failover after killing ${victim.nodeID}`,
        async () => {
          if (!(await fetch(`${survivor}/ready`)).ok) return false;
          const s = (await request(`${survivor}/cluster`)).body as Status;
          return s.partitions.every((p) => p.primary !== null && p.primary !== victim.nodeID && !p.replicas.includes(victim.nodeID));
        },
        30000,
        50,
      );
      failovers.push(Date.now() - killedAt);
      console.log(`kill ${k + 1}: ${victim.nodeID}${victim.nodeID === status.coordinator ? " (coordinator)" : ""}, failover ${failovers[k]} ms; back ${k % 2 === 0 ? "with its data directory" : "empty"}`);
      await sleep(1000);
      // Every other kill, the node comes back with its data directory (the same node: its
      // copies are caught up from their primaries' log tails, or refilled by snapshot);
      // else with an empty one (a new incarnation under the same id).
      const withState = k % 2 === 0;
      await cluster.add(victim.nodeID, withState ? { DATA_DIR: cluster.dataDirs[victim.nodeID] } : {});
      await waitForSettled(cluster, 4);
      await waitFor("every partition with 2 copies", async () => ((await request(`${survivor}/cluster`)).body as Status).underReplicated.length === 0, 60000, 200);
    }
    await sleep(1000);
    await Promise.all(writers.map((w) => w.stop()));

    const acknowledged = writers.reduce((a, w) => a + w.acknowledged, 0);
    const { tails, snapshots } = catchUpsOf(cluster.nodes);
    console.log(`chaos: recovered copies caught up from log tails ${tails}, refilled by snapshot ${snapshots} (as logged by the nodes alive at the end)`);
    const sorted = [...failovers].sort((a, b) => a - b);
    console.log(
      `chaos: ${acknowledged} records acknowledged, ${KILLS} kills (coordinator killed: ${killedCoordinator}), failover ms ${failovers.join(", ")} (median ${sorted[Math.floor(sorted.length / 2)]})`,
    );
    expect(killedCoordinator).toBe(true);
    expect(acknowledged).toBeGreaterThan(0);
    const ledger = writers.flatMap((w) => w.ledger);
    for (const url of cluster.urls()) {
      for (const h of hours) {
        const r = await request(`${url}/flows?hour=${h}`);
        expect(r.status).toBe(200);
        expect(r.body).toEqual(expectedHour(ledger, h));
      }
    }
    for (const w of writers) expect(w.staleReads).toEqual([]);
  }, 600000);
});
