/**
 * RETENTION_HOURS on an embedded node (DURABILITY=sync): hours older than the current
 * hour minus N are dropped (at start, then every 30 s) from memory and disk, and a POST
 * holding a record for such an hour is refused whole (422 HOUR_EXPIRED, the record's
 * index named) and applies nothing. The hour is whole hours since the Unix epoch.
 */
import { expectedHour, flow, request, type Flow } from "../support/api-contract";
import { startNode, tempDataDir, type NodeProcess } from "../support/processes";

const NODE_ID = "retention-embedded";
const RETENTION = 24;
const currentHour = () => Math.floor(Date.now() / 3_600_000);

describe("RETENTION_HOURS (embedded, durable)", () => {
  const dataDir = tempDataDir(NODE_ID);
  let node: NodeProcess | undefined;
  const start = (env: Record<string, string> = {}) => startNode({ NODEID: NODE_ID, DATA_DIR: dataDir, PARTITIONS: "16", ...env });
  afterAll(async () => {
    await node?.stop("SIGKILL");
  });

  test("a restart with retention drops the old hours for good; records for them are refused whole", async () => {
    const now = currentHour();
    const old = now - RETENTION - 5;
    const kept = now - RETENTION; // the oldest hour kept
    const posted: Flow[] = [flow("web", "db", "vpc-1", old, 10, 1), flow("web", "db", "vpc-1", kept, 20, 2), flow("api", "db", "vpc-1", now, 30, 3)];
    node = await start();
    expect((await request(`${node.url}/flows`, { method: "POST", json: posted })).status).toBe(200);
    await node.stop("SIGTERM");

    node = await start({ RETENTION_HOURS: String(RETENTION) });
    expect((await request(`${node.url}/flows?hour=${old}`)).body).toEqual([]);
    expect((await request(`${node.url}/flows?hour=${kept}`)).body).toEqual(expectedHour(posted, kept));
    expect((await request(`${node.url}/flows?hour=${now}`)).body).toEqual(expectedHour(posted, now));

    // A batch with one record for an expired hour: refused whole, the record named, nothing applied.
    const mixed = [flow("new", "db", "vpc-1", now, 5, 5), flow("late", "db", "vpc-1", old + 1, 7, 7)];
    const refused = await request(`${node.url}/flows`, { method: "POST", json: mixed });
    expect(refused.status).toBe(422);
    expect(refused.body.type).toBe("HOUR_EXPIRED");
    expect(refused.body.data).toMatchObject({ index: 1, hour: old + 1 });
    expect((await request(`${node.url}/flows?hour=${now}`)).body).toEqual(expectedHour(posted, now));
    expect((await request(`${node.url}/flows?hour=${old + 1}`)).body).toEqual([]);
    await node.stop("SIGKILL");

    // Back without retention: the dropped hour stayed dropped (the trim was logged), the rest is there.
    node = await start();
    expect((await request(`${node.url}/flows?hour=${old}`)).body).toEqual([]);
    expect((await request(`${node.url}/flows?hour=${kept}`)).body).toEqual(expectedHour(posted, kept));
    expect((await request(`${node.url}/flows?hour=${now}`)).body).toEqual(expectedHour(posted, now));
  });
});
