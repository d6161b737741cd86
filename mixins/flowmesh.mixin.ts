/**
 * Shared by Flowmesh's services: the settings, and the placement table this node
 * currently acts on. In the embedded default (no transporter) the local node owns
 * every partition from the start; in a cluster the table arrives from the coordinator.
 */
import type { ServiceSchema } from "moleculer";
import { placePartitions, type Owners } from "../src/placement";
import { readSettings, type FlowmeshSettings } from "../src/settings";

export interface PlacementTable {
  /** Rises with every new table the coordinator publishes. */
  epoch: number;
  /** owners[p] = [primary, ...replicas]. */
  owners: Owners;
}

export function settingsOf(broker: { options: object }): FlowmeshSettings {
  return (broker.options as { flowmesh?: FlowmeshSettings }).flowmesh ?? readSettings(process.env);
}

const FlowmeshMixin: Partial<ServiceSchema> = {
  created() {
    this.flowmesh = settingsOf(this.broker);
    this.placement = this.broker.transit
      ? null
      : ({ epoch: 1, owners: placePartitions([this.broker.nodeID], this.flowmesh.partitions, 1) } satisfies PlacementTable);
  },
};

export default FlowmeshMixin;
