import { splitByPartition, type FlowRecord } from "../../src/batching";
import { PartitionStore } from "../../src/partition-store";
import { ShardQueries } from "../../src/query/shard-queries";
import type { GroupsPage, GroupsParams } from "../../src/protocol";
import { groupIdsOf, groupSourceOf, MAX_GROUP_IDS, StringIds } from "../../src/query/group-ids";
import { mergeGroups } from "../../src/query/group-merge";
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
  /** FieldGroups of `tuples` (each of the same length: one index per field, into `name`'s spelling, groups in key order). */
  const spelled = (tuples: number[][], name: (i: number) => string): FieldGroups => {
    const fields = tuples[0].length;
    const dictionaries = Array.from({ length: fields }, (_, k) => [...new Set(tuples.map((t) => t[k]))].sort((x, y) => x - y));
    const places = dictionaries.map((d) => new Map(d.map((v, i) => [v, i])));
    const sorted = [...tuples].sort((x, y) => x.reduce((c, v, k) => c || v - y[k], 0));
    return {
      values: dictionaries.map((d) => d.map(name)),
      refs: places.map((place, k) => Int32Array.from(sorted, (t) => place.get(t[k])!)),
      tx: Float64Array.from(sorted, (t) => t[0] + 1),
      rx: Float64Array.from(sorted, () => 1),
      flows: Float64Array.from(sorted, () => 1),
    };
  };
  const expectMerged = (pages: FieldGroups[][]) => {
    const merged = groupColumnsOfFields(mergeGroups(pages));
    const expected = new GroupSums();
    for (const page of pages.flat()) expected.addAll(groupColumnsOfFields(page));
    const at = new Map(expected.keys.map((k, i) => [k, i]));
    expect(merged.keys).toEqual([...expected.keys].sort());
    expect(merged.keys.map((_, i) => [merged.tx[i], merged.rx[i], merged.flows[i]])).toEqual(merged.keys.map((k) => [expected.tx[at.get(k)!], expected.rx[at.get(k)!], expected.flows[at.get(k)!]]));
  };
  const name = (i: number) => `v${String(i).padStart(6, "0")}`;

  test("most of the possible groups (added up densely), few of them (merged k-way), overlapping: the same sums", () => {
    // Every pair of 20 x 20, from three sources: 400 of 400 possible groups.
    expectMerged([0, 1, 2].map((s) => [spelled(Array.from({ length: 400 }, (_, i) => [Math.floor(i / 20), (i + s) % 20]), name)]));
    // The pairs (i, i) for i in [50 s, 50 s + 100): 200 groups of 40,000 possible, half of them in two sources; source 0 in two pages.
    const diagonal = (s: number, from = 0, to = 100) => Array.from({ length: to - from }, (_, i) => [50 * s + from + i, 50 * s + from + i]);
    expectMerged([[spelled(diagonal(0, 0, 60), name), spelled(diagonal(0, 60, 100), name)], [spelled(diagonal(1), name)], [spelled(diagonal(2), name)]]);
  });

  test("dictionaries whose sizes multiply past 2^53: groups ranked by sorting them, the same sums", () => {
    // Three fields of 220,000 values each: 220,000^3 > 2^53 possible groups.
    const triples = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => [from + i, from + i, from + i]);
    expectMerged([[spelled(triples(0, 210_000), name)], [spelled(triples(100_000, 220_000), name)]]);
  });
});
