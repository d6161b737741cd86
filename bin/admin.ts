/**
 * Operator actions from the command line, through a short-lived Moleculer node that
 * joins the cluster (same TRANSPORTER and NAMESPACE as the nodes), calls one action
 * and leaves. Run after `npm run build`:
 *
 *   TRANSPORTER=nats://127.0.0.1:4222 npm run admin -- status
 *   TRANSPORTER=nats://127.0.0.1:4222 npm run admin -- force-empty [partition ...]
 *
 * force-empty gives up the data of partitions whose every copy is on nodes judged lost
 * (all of them, or those named): they start empty on live nodes. The coordinator logs it.
 */
import { ServiceBroker } from "moleculer";
import { ShardActions } from "../src/protocol";

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const transporter = process.env.TRANSPORTER;
  if (!transporter || !["status", "force-empty"].includes(command)) {
    console.error("usage: TRANSPORTER=nats://host:4222 [NAMESPACE=flowmesh] npm run admin -- status | force-empty [partition ...]");
    return 2;
  }
  const partitions = rest.map(Number);
  if (partitions.some((p) => !Number.isInteger(p) || p < 0)) {
    console.error(`partitions must be integers >= 0, got ${rest.join(" ")}`);
    return 2;
  }
  const broker = new ServiceBroker({
    namespace: process.env.NAMESPACE || "flowmesh",
    nodeID: `admin-${process.pid}`,
    transporter,
    serializer: "JSON",
    logLevel: "warn",
    heartbeatInterval: 1,
    heartbeatTimeout: 2.5,
  });
  await broker.start();
  try {
    if (command === "status") {
      await broker.waitForServices("cluster", 10_000);
      const s = (await broker.call("cluster.status")) as { epoch: number; coordinator: string | null; lost: string[]; unavailable: number[]; nodes: { nodeID: string }[] };
      console.log(JSON.stringify({ epoch: s.epoch, coordinator: s.coordinator, nodes: s.nodes.map((n) => n.nodeID), lost: s.lost, unavailable: s.unavailable }));
    } else {
      await broker.waitForServices("flow-shard", 10_000);
      const result = await broker.call(ShardActions.forceEmpty, partitions.length > 0 ? { partitions } : {});
      console.log(JSON.stringify(result));
    }
    return 0;
  } finally {
    await broker.stop();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`${err.name}: ${err.message}`);
    process.exit(1);
  },
);
