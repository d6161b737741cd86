/**
 * Durability of the embedded node (DURABILITY=sync, the default): a write is answered
 * only once its log record is on disk, so `kill -9` loses nothing acknowledged. The node
 * is restarted with the same DATA_DIR (its state) and the same PORT (the writer's one
 * gateway URL stays valid); it recovers its partitions, idempotency windows included,
 * from checkpoints plus the write-ahead log.
 */
import { expectedHour, flow, freshHour, request, type Flow } from "../support/api-contract";
import { differenceFromLedger, expectClean } from "../support/ledger-scenario";
import { LedgerWriter } from "../support/ledger-writer";
import { sleep, startNode, tempDataDir, type NodeProcess } from "../support/processes";

const NODE_ID = "durable-embedded";
/** Between the kill and the restart: the writer meanwhile hits a closed port. */
const DOWN_MS = 1500;

describe("embedded node: kill -9 loses nothing acknowledged (DURABILITY=sync)", () => {
  const dataDir = tempDataDir(NODE_ID);
  let node: NodeProcess;
  /** Same id, same directory, same port: the same node, back with its state. */
  const start = (port?: number) => startNode({ NODEID: NODE_ID, DATA_DIR: dataDir, LOGLEVEL: "info", ...(port ? { PORT: String(port) } : {}) });
  async function crashAndRestart(): Promise<void> {
    await node.stop("SIGKILL");
    await sleep(DOWN_MS);
    node = await start(node.port);
  }

  beforeAll(async () => {
    node = await start();
  });
  afterAll(async () => {
    await node?.stop("SIGKILL");
  });

  test("two kill -9 under ledger load: every hour read equals the ledger", async () => {
    const hours = [freshHour(), freshHour(), freshHour()];
    const url = node.url;
    const writer = new LedgerWriter(() => [url], hours, "embedded", 200, { requestTimeoutMs: 5000, giveUpAfterMs: 30000 });
    writer.start();
    const recoveries: string[] = [];
    for (let kill = 0; kill < 2; kill++) {
      await sleep(2000);
      await crashAndRestart();
      recoveries.push(/Recovered \d+ flows[^\n]*/.exec(node.output())?.[0] ?? "no recovery logged");
    }
    await sleep(2000); // load on the restarted node too
    await writer.stop();

    const reads = await Promise.all(
      hours.map(async (hour) => {
        const reply = await request(`${node.url}/flows?hour=${hour}`);
        return { url: node.url, hour, status: reply.status, body: reply.body as Flow[] };
      }),
    );
    for (const r of reads) expect(r.status).toBe(200);
    const off = differenceFromLedger(reads, writer.ledger);
    console.log(
      `durability embedded, 2 kills: ${writer.acknowledged} records acknowledged, ${writer.attempts} attempts, lost ${off.lost}, doubled ${off.doubled}` +
        ` (bytes tx+rx, ${off.keys} flow key(s) off; stale reads ${writer.staleReads.length}; recoveries: ${recoveries.join(" | ")})`,
    );
    // The cluster scenarios' assertions: readiness, writer problems (stop() threw) and availability hold here already.
    expectClean({ notReady: [], writerProblems: [], writers: [writer], ledger: writer.ledger, reads, worst: off });
  }, 90000);

  test("a retry with the same Idempotency-Key after kill -9 and restart applies nothing again", async () => {
    const hour = freshHour();
    const batch = Array.from({ length: 300 }, (_, i) => flow(`src-${i % 41}`, `dst-${i % 7}`, "vpc-retry", hour, i + 1, 1));
    const key = `retry-after-restart-${hour}`;
    const first = await request(`${node.url}/flows`, { method: "POST", json: batch, headers: { "Idempotency-Key": key } });
    expect(first.status).toBe(200);

    // The client never saw that answer (say): it retries after the node came back.
    await crashAndRestart();
    const retry = await request(`${node.url}/flows`, { method: "POST", json: batch, headers: { "Idempotency-Key": key } });
    expect(retry.status).toBe(200);
    expect(retry.body).toEqual(first.body);

    const read = await request(`${node.url}/flows?hour=${hour}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(expectedHour(batch, hour));
  }, 60000);
});
