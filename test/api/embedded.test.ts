/** The embedded default: one process, no broker, started as `npm start` starts it. */
import { apiContract } from "../support/api-contract";
import { startNode, type NodeProcess } from "../support/processes";

let node: NodeProcess;

beforeAll(async () => {
  node = await startNode({ NODEID: "embedded" });
});

afterAll(async () => {
  await node?.stop();
});

apiContract(() => [node.url]);
