/**
 * Broker middleware: on SIGTERM or SIGINT, a node first lets its flow-shard hand
 * its partitions off (while its actions are still reachable), then stops the broker
 * and exits. Moleculer's own signal handling is switched off in moleculer.config.ts
 * because it hides the node's services before anything else.
 */
import type { Middleware, ServiceBroker } from "moleculer";

const STOP_GRACE_MS = 5000;

const GracefulLeave = {
  name: "GracefulLeave",
  started(broker: ServiceBroker) {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      broker.logger.info(`${signal}: leaving the cluster`);
      try {
        const shard = broker.getLocalService("flow-shard") as unknown as { leaveCluster?: () => Promise<void>; checkpointAll?: () => Promise<void> } | undefined;
        if (shard?.leaveCluster) await shard.leaveCluster();
        // Before the stop deadline below: a checkpoint of millions of flows takes seconds, and makes the next start quick.
        if (shard?.checkpointAll) await shard.checkpointAll();
      } catch (err) {
        broker.logger.error("Handing partitions off failed; stopping anyway", err);
      }
      // The partitions are safe elsewhere now. Stopping waits for open HTTP requests,
      // which a client may hold open indefinitely: give it a few seconds, then exit.
      const forced = setTimeout(() => {
        broker.logger.warn(`Broker did not stop within ${STOP_GRACE_MS} ms; exiting`);
        process.exit(0);
      }, STOP_GRACE_MS);
      await broker.stop().catch((err) => broker.logger.error(err));
      clearTimeout(forced);
      process.exit(0);
    };
    process.on("SIGTERM", () => void stop("SIGTERM"));
    process.on("SIGINT", () => void stop("SIGINT"));
  },
};

export default GracefulLeave as unknown as Middleware;
