import { splitByPartition, type FlowRecord } from "../../src/batching";
import { PartitionStore } from "../../src/partition-store";
import { ShardQueries } from "../../src/query/shard-queries";
import type { GroupsPage } from "../../src/protocol";

const P = 8;
const H = 40;
const flow = (src_app: string, dest_app: string, vpc_id: string, bytes_tx: number): FlowRecord => ({ src_app, dest_app, vpc_id, hour: H, bytes_tx, bytes_rx: 1 });

/** The same question answered by brute force over the records. */
function model(records: FlowRecord[], by: (f: FlowRecord) => string): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const f of records) {
    const s = out.get(by(f)) ?? [0, 0];
    out.set(by(f), [s[0] + f.bytes_tx, s[1] + 1]);
  }
  return out;
}

describe("top-N group ids kept per hour table", () => {
  const store = new PartitionStore({ max: 100, ttlMs: 600_000 });
  const queries = new ShardQueries({ store, confirmServing: async () => undefined, now: () => Date.now(), cursorMs: 30_000 });
  const partitions = Array.from({ length: P }, (_, p) => p);
  const ask = async () => {
    const { groups } = (await queries.groups({ epoch: 1, partitions, from: H, to: H, filter: {}, by: ["src_app"] }, false)) as GroupsPage;
    // Keys of a src_app grouping are the encoded src_app: plain ASCII names encode as themselves.
    return new Map(groups.keys.map((k, i) => [k, [groups.tx[i], groups.flows[i]] as [number, number]]));
  };
  const records: FlowRecord[] = [];
  const post = (batch: FlowRecord[], key?: string) => {
    store.apply(splitByPartition(batch, P, key));
    records.push(...batch);
  };

  test("a repeated query, flows added between queries (slots appended), and a reverted request (slots removed)", async () => {
    post(Array.from({ length: 200 }, (_, i) => flow(`s${i % 7}`, `d${i}`, "v", i + 1)));
    expect(await ask()).toEqual(model(records, (f) => f.src_app));
    expect(await ask()).toEqual(model(records, (f) => f.src_app));
    post(Array.from({ length: 50 }, (_, i) => flow(`s${i % 9}`, `new${i}`, "v", 3)));
    expect(await ask()).toEqual(model(records, (f) => f.src_app));
    // A request that created flows, reverted: its slots go, another key moves into them.
    const reverted = Array.from({ length: 20 }, (_, i) => flow(`r${i % 3}`, `gone${i}`, "v", 5));
    store.apply(splitByPartition(reverted, P, "to-revert"));
    expect((await ask()).get("r0")).toBeDefined();
    store.revert(splitByPartition(reverted, P, "to-revert"));
    expect(await ask()).toEqual(model(records, (f) => f.src_app));
  });
});
