import { splitByPartition, type FlowRecord } from "../../src/batching";
import { PartitionStore } from "../../src/partition-store";
import { ShardQueries } from "../../src/query/shard-queries";
import type { GroupsPage, GroupsParams } from "../../src/protocol";
import { groupIdsOf, groupSourceOf, MAX_GROUP_IDS, mergeGroups, StringIds } from "../../src/query/group-ids";
import { groupColumnsOfFields, GroupSums, type FieldGroups, type GroupColumns, type GroupField } from "../../src/query/top";
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
    const groups = groupColumnsOfFields(((await queries.groups({ epoch: 1, partitions, from: H, to: H, filter: {}, by: ["src_app"] }, false)) as GroupsPage).groups);
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
  const sorted = (g: GroupColumns) =>
    g.keys.map((k, i) => [k, g.tx[i], g.rx[i], g.flows[i]] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const byKey = (parts: GroupColumns[]) => {
    const sums = new GroupSums();
    for (const part of parts) sums.addAll(part);
    return sorted(sums);
  };

  /** Each part of the partitions' groups as a remote gateway gets them (groupSourceOf: field-groups pages, the rest asked for at once), merged. */
  async function askRemote(queries: ShardQueries, halves: number[][], q: Omit<GroupsParams, "epoch" | "partitions">): Promise<GroupColumns> {
    const sources = [];
    for (const partitions of halves) {
      const answer = (await queries.groups({ epoch: 1, partitions, ...q, fieldPages: true }, true)) as Buffer;
      sources.push(await groupSourceOf(answer, q.by.length, async ({ cursor, page }) => queries.groupsMore(cursor, page)));
    }
    return groupColumnsOfFields(mergeGroups(sources));
  }

  test("renumbered in the middle of a shard's query: the sums stay exact, in process and merged in key order", async () => {
    const store = new PartitionStore({ max: 100, ttlMs: 600_000 });
    const queries = new ShardQueries({ store, confirmServing: async () => undefined, now: () => Date.now(), cursorMs: 30_000 });
    const records = Array.from({ length: 3000 }, (_, i) => flow(`s${i % 50}`, `d${i % 70}`, `v${i % 3}`, i + 1));
    store.apply(splitByPartition(records, P));
    const registry = groupIdsOf(by);
    // All but 100 ids taken: the query's ~3000 groups renumber them on the way.
    for (let i = registry.size; i < MAX_GROUP_IDS - 100; i++) registry.idOf(`filler ${i}`);
    const generation = registry.generation;
    const halves = [0, 1].map((h) => Array.from({ length: P / 2 }, (_, p) => 2 * p + h));
    const pages: FieldGroups[] = [];
    for (const partitions of halves) pages.push(((await queries.groups({ epoch: 1, partitions, from: H, to: H, filter: {}, by: [...by] }, false)) as GroupsPage).groups);
    expect(registry.generation).toBeGreaterThan(generation);
    const expected = model(records, (f) => [f.src_app, f.dest_app, f.vpc_id].join(SEP));
    const got = sorted(groupColumnsOfFields(mergeGroups(pages.map((page) => [page]))));
    // Each group is one flow here (its records add into it).
    expect(new Map(got.map(([k, tx]) => [k, tx]))).toEqual(new Map([...expected].map(([k, [tx]]) => [k, tx])));
    expect(got.every(([, , , flows]) => flows === 1)).toBe(true);
    expect(got).toEqual(byKey(pages.map(groupColumnsOfFields)));
    // Again, to a remote gateway (in key order: the ids sorted by key after the renumbering).
    const merged = await askRemote(queries, halves, { from: H, to: H, filter: {}, by: [...by] });
    expect(merged.keys).toEqual([...merged.keys].sort());
    expect(sorted(merged)).toEqual(got);
  });

  test("keys in key order whatever their characters (astral, lone surrogates, private use): the merge adds every group once", async () => {
    const names = ["a", "b", "\u{1F600}", "\uE000", "\uFFFF", "\uD800", "\uDC00x", "a,b", "\u00e9", "=cmd()", "z z"];
    const store = new PartitionStore({ max: 100, ttlMs: 600_000 });
    const queries = new ShardQueries({ store, confirmServing: async () => undefined, now: () => Date.now(), cursorMs: 30_000 });
    const records: FlowRecord[] = [];
    for (let i = 0; i < 4000; i++) records.push(flow(names[i % names.length] + (i % 13), names[(i * 7) % names.length], `v${i % 5}`, i + 1));
    store.apply(splitByPartition(records, P));
    const thirds = [0, 1, 2].map((t) => Array.from({ length: P }, (_, p) => p).filter((p) => p % 3 === t));
    for (const by of [["src_app"], ["dest_app", "src_app"], ["src_app", "dest_app", "vpc_id"]] as GroupField[][]) {
      const merged = await askRemote(queries, thirds, { from: H, to: H, filter: {}, by });
      const local = groupColumnsOfFields(((await queries.groups({ epoch: 1, partitions: thirds.flat(), from: H, to: H, filter: {}, by }, false)) as GroupsPage).groups);
      expect(new Set(merged.keys).size).toBe(merged.keys.length);
      expect(sorted(merged)).toEqual(sorted(local));
    }
  });

  test("a shard query with more groups than the ids can number is added up by key", async () => {
    const store = new PartitionStore({ max: 100, ttlMs: 600_000 });
    const queries = new ShardQueries({ store, confirmServing: async () => undefined, now: () => Date.now(), cursorMs: 30_000 });
    const count = MAX_GROUP_IDS + 50;
    for (let i = 0; i < count; i += 10_000) {
      store.apply(splitByPartition(Array.from({ length: Math.min(10_000, count - i) }, (_, j) => flow(`s${i + j}`, "d", "v", 1)), P));
    }
    // Asked by a remote gateway: in key order all the same.
    const merged = await askRemote(queries, [Array.from({ length: P }, (_, p) => p)], { from: H, to: H, filter: {}, by: ["src_app"] });
    expect(merged.keys.length).toBe(count);
    expect(Array.from(merged.flows).every((f) => f === 1)).toBe(true);
    expect(merged.keys.every((k, i) => i === 0 || merged.keys[i - 1] < k)).toBe(true);
  });
});

test("ids in key order, the order extended as ids appear (random keys, several rounds; few ids asked and most)", () => {
  const ids = new StringIds();
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const alphabet = ["a", "b", "z", " ", "\u00e9", "\uD83D\uDE00", "\uE000", "\uD800"];
  const word = () => Array.from({ length: 1 + rand(4) }, () => alphabet[rand(alphabet.length)]).join("");
  for (let round = 0; round < 6; round++) {
    for (let i = 0; i < 200; i++) ids.idOf(word());
    const some = Array.from({ length: ids.size }, (_, id) => id).filter(() => rand(round % 2 === 0 ? 3 : 40) === 0);
    const sorted = ids.sorted(some).map((id) => ids.keys[id]);
    expect(sorted).toEqual(some.map((id) => ids.keys[id]).sort());
  }
});

describe("merging shards' groups", () => {
  /** FieldGroups of (a, b) pairs with tx = the pair's a + b, over dictionaries `values`. */
  const groupsOf = (values: string[][], pairs: [number, number][]): FieldGroups => {
    const sortedPairs = [...pairs].sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    return {
      values,
      refs: [Int32Array.from(sortedPairs, (p) => p[0]), Int32Array.from(sortedPairs, (p) => p[1])],
      tx: sortedPairs.map(([a, b]) => a + b),
      rx: sortedPairs.map(() => 1),
      flows: sortedPairs.map(() => 1),
    };
  };

  test("dictionaries of any size merge to the same sums (codes as one number, and ranks when the sizes multiply past 2^53)", () => {
    for (const size of [5, 100_000_000]) {
      // Dictionaries of `size` entries would not fit in memory: entries spelled as sorted numbers, only the used ones listed per page.
      const name = (i: number) => String(i).padStart(10, "0");
      const pageOf = (pairs: [number, number][]) => {
        const a = [...new Set(pairs.map((p) => p[0]))].sort((x, y) => x - y);
        const b = [...new Set(pairs.map((p) => p[1]))].sort((x, y) => x - y);
        const third = size > 5 ? Array.from({ length: 3 }, (_, i) => name(size - i * 7)).sort() : [];
        const page = groupsOf([a.map(name), b.map(name)], pairs.map(([x, y]) => [a.indexOf(x), b.indexOf(y)]));
        // A third field makes the sizes multiply past 2^53 (its one value per group: the first).
        if (size > 5) {
          page.values.push(third);
          page.refs.push(new Int32Array(pairs.length));
        }
        page.tx = Array.from(page.refs[0], (r, i) => Number(page.values[0][r]) + Number(page.values[1][page.refs[1][i]]));
        return page;
      };
      const big = size > 5 ? 50_000_000 : 0;
      // Source one's pages follow each other in key order (as a shard's do); source two overlaps both.
      const one: [number, number][] = [[1, 2], [3, 4], [big + 3, 1]];
      const three: [number, number][] = [[big + 4, 0], [big + 6, 3]];
      const two: [number, number][] = [[0, 0], [1, 2], [big + 3, 1], [big + 4, big], [big + 6, 3]];
      const merged = groupColumnsOfFields(mergeGroups([[pageOf(one), pageOf(three)], [pageOf(two)], []]));
      const expected = new GroupSums();
      for (const part of [pageOf(one), pageOf(two), pageOf(three)]) expected.addAll(groupColumnsOfFields(part));
      expect(merged.keys).toEqual([...merged.keys].sort());
      expect(merged.keys.map((k, i) => [k, merged.tx[i], merged.flows[i]])).toEqual(
        expected.keys.map((k, i) => [k, expected.tx[i], expected.flows[i]] as [string, number, number]).sort((x, y) => (x[0] < y[0] ? -1 : 1)),
      );
    }
  });
});
