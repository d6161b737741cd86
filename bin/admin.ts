/**
 * Operator actions from the command line, through a short-lived Moleculer node that
 * joins the cluster (same TRANSPORTER and NAMESPACE as the nodes), calls one action
 * and leaves. Run after `npm run build`:
 *
 *   TRANSPORTER=nats://127.0.0.1:4222 npm run admin -- status
 *   TRANSPORTER=nats://127.0.0.1:4222 npm run admin -- force-empty [partition ...]
 *
 * It connects as the nodes do: NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_CREDS and
 * NATS_TLS_* (src/nats-options.ts) when nats-server asks for them.
 *
 * force-empty gives up the data of partitions whose every copy is on nodes judged lost
 * (all of them, or those named): they start empty on live nodes. The coordinator logs it.
 */
import { ServiceBroker } from "moleculer";
import { NatsSettingsError, transporterFromEnv } from "../src/nats-options";
import { ShardActions } from "../src/protocol";

const USAGE = "usage: TRANSPORTER=nats://host:4222 [NAMESPACE=flowmesh] [NATS_USER=... NATS_PASSWORD=... | NATS_TOKEN=... | NATS_CREDS=file] [NATS_TLS_CA=file [NATS_TLS_CERT=file NATS_TLS_KEY=file]] npm run admin -- status | force-empty [partition ...]";

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  let transporter: ReturnType<typeof transporterFromEnv>;
  try {
    transporter = transporterFromEnv(process.env);
  } catch (err) {
    if (!(err instanceof NatsSettingsError)) throw err;
    console.error(err.message);
    return 2;
  }
  if (transporter === null || !["status", "force-empty"].includes(command)) {
    console.error(USAGE);
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
  // Moleculer retries a failed connection every 5 s for ever: right for a node waiting for
  // nats-server, not for a command. The first failure (refused, credentials, TLS) ends it.
  const connectFailure = new Promise<never>((_, reject) =>
    broker.localBus.once("$transporter.error", (payload: { error?: Error }) => reject(new Error(`cannot connect to NATS: ${payload.error?.message ?? "unknown error"}`))),
  );
  await Promise.race([broker.start(), connectFailure]);
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
