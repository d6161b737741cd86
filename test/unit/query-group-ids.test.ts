import { splitByPartition, type FlowRecord } from "../../src/batching";
import { PartitionStore } from "../../src/partition-store";
import { ShardQueries } from "../../src/query/shard-queries";
import type { GroupsPage } from "../../src/protocol";
import { groupIdsOf, MAX_GROUP_IDS, mergeGroups } from "../../src/query/group-ids";
import { GroupSums, type GroupColumns } from "../../src/query/top";
import { SEP } from "../../src/flow-key";

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

describe("group ids running out", () => {
  const by = ["src_app", "dest_app", "vpc_id"] as const;
  const grouping = by.join(",");
  const sorted = (g: GroupColumns) =>
    g.keys.map((k, i) => [k, g.tx[i], g.rx[i], g.flows[i]] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const byKey = (parts: GroupColumns[]) => {
    const sums = new GroupSums();
    for (const part of parts) sums.addAll(part);
    return sorted(sums);
  };

  test("renumbered in the middle of a shard's query and of a merge: the sums stay exact", async () => {
    const store = new PartitionStore({ max: 100, ttlMs: 600_000 });
    const queries = new ShardQueries({ store, confirmServing: async () => undefined, now: () => Date.now(), cursorMs: 30_000 });
    const records = Array.from({ length: 3000 }, (_, i) => flow(`s${i % 50}`, `d${i % 70}`, `v${i % 3}`, i + 1));
    store.apply(splitByPartition(records, P));
    const registry = groupIdsOf(grouping);
    // All but 100 ids taken: the query's ~3000 groups renumber them on the way.
    for (let i = registry.size; i < MAX_GROUP_IDS - 100; i++) registry.idOf(`filler ${i}`);
    const generation = registry.generation;
    const halves = [0, 1].map((h) => Array.from({ length: P / 2 }, (_, p) => 2 * p + h));
    const pages: GroupColumns[] = [];
    for (const partitions of halves) pages.push(((await queries.groups({ epoch: 1, partitions, from: H, to: H, filter: {}, by: [...by] }, false)) as GroupsPage).groups);
    expect(registry.generation).toBeGreaterThan(generation);
    const expected = model(records, (f) => [f.src_app, f.dest_app, f.vpc_id].join(SEP));
    const got = sorted(mergeGroups(pages, grouping));
    // Each group is one flow here (its records add into it).
    expect(new Map(got.map(([k, tx]) => [k, tx]))).toEqual(new Map([...expected].map(([k, [tx]]) => [k, tx])));
    expect(got.every(([, , , flows]) => flows === 1)).toBe(true);
    expect(got).toEqual(byKey(pages));
    // A merge that would not fit renumbers first.
    for (let i = registry.size; i < MAX_GROUP_IDS - 10; i++) registry.idOf(`filler ${i}`);
    const before = registry.generation;
    expect(sorted(mergeGroups(pages, grouping))).toEqual(got);
    expect(registry.generation).toBe(before + 1);
  });

  test("a shard query with more groups than the ids can number is added up by key", async () => {
    const store = new PartitionStore({ max: 100, ttlMs: 600_000 });
    const queries = new ShardQueries({ store, confirmServing: async () => undefined, now: () => Date.now(), cursorMs: 30_000 });
    const count = MAX_GROUP_IDS + 50;
    for (let i = 0; i < count; i += 10_000) {
      store.apply(splitByPartition(Array.from({ length: Math.min(10_000, count - i) }, (_, j) => flow(`s${i + j}`, "d", "v", 1)), P));
    }
    const { groups } = (await queries.groups({ epoch: 1, partitions: Array.from({ length: P }, (_, p) => p), from: H, to: H, filter: {}, by: ["src_app"] }, false)) as GroupsPage;
    expect(groups.keys.length).toBe(count);
    expect(new Set(groups.keys).size).toBe(count);
    expect(Array.from(groups.flows).every((f) => f === 1)).toBe(true);
  });

  test("a merge of more partial groups than the ids can number is added up by key", () => {
    const part = (offset: number): GroupColumns => {
      const n = MAX_GROUP_IDS / 2 + 10;
      return { keys: Array.from({ length: n }, (_, i) => `g${i + offset}`), tx: new Float64Array(n).fill(2), rx: new Float64Array(n).fill(1), flows: new Float64Array(n).fill(1) };
    };
    const parts = [part(0), part(5)];
    const merged = mergeGroups(parts, "src_app");
    expect(merged.keys.length).toBe(MAX_GROUP_IDS / 2 + 15);
    expect(merged.tx[merged.keys.indexOf("g7")]).toBe(4);
    expect(merged.flows[merged.keys.indexOf("g2")]).toBe(1);
  });
});
