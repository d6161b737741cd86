/**
 * Top-N, exactly: shards' partial per-group sums (ShardQueries over a PartitionStore)
 * added up and ranked (rankTop) against the model (test/support/query-model.ts).
 */
import { splitByPartition, type FlowRecord } from "../../src/batching";
import { PartitionStore } from "../../src/partition-store";
import { ShardQueries } from "../../src/query/shard-queries";
import { bestOf, fieldGroupsOfKeys, GROUP_FIELDS, groupColumnsOf, groupColumnsOfFields, GroupSums, groupKeyOf, rankTop, TotalOverflowError, type FieldGroups, type GroupField, type TopMetric } from "../../src/query/top";
import type { GroupsPage } from "../../src/protocol";
import { groupSourceOf } from "../../src/query/group-ids";
import { mergeGroups, rankSources } from "../../src/query/group-merge";
import { decodeRunPage, encodeRunPage } from "../../src/wire/run-codec";
import { ALIGNED_FIELD_GROUPS_FORMAT, decodeFieldGroupsPage, encodeFieldGroupsPages } from "../../src/wire/field-groups-codec";
import { BinaryPayloadSerializer } from "../../mixins/binary.serializer";
import { flow } from "../support/api-contract";
import { expectedTop, randomFlows, seeded, type TopQuery } from "../support/query-model";

const P = 12;
const MAX = Number.MAX_SAFE_INTEGER;

/** Three "shard nodes", each the primary of a third of the partitions of one store. */
function shards(records: FlowRecord[]) {
  const store = new PartitionStore({ max: 100, ttlMs: 60_000 });
  store.apply(splitByPartition(records, P));
  const queries = new ShardQueries({ store, confirmServing: async () => undefined, now: () => 0, cursorMs: 1000 });
  const partitions = [0, 1, 2].map((n) => Array.from({ length: P }, (_, p) => p).filter((p) => p % 3 === n));
  return { store, queries, partitions };
}

async function top(records: FlowRecord[], q: TopQuery) {
  const { queries, partitions } = shards(records);
  // Asked in process, and from another process in aligned and unaligned field-groups pages and in run pages of group keys (as older gateways ask).
  const ways: FieldGroups[][][] = [[], [], [], []];
  for (const part of partitions) {
    const params = { epoch: 1, partitions: part, from: q.from, to: q.to, filter: q.filter ?? {}, by: q.by };
    for (const [i, remote, fieldPages, alignedPages] of [[0, false, false, false], [1, true, true, true], [2, true, true, false], [3, true, false, false]] as const) {
      const answer = await queries.groups({ ...params, fieldPages, alignedPages }, remote);
      expect(Buffer.isBuffer(answer)).toBe(remote);
      ways[i].push(await groupSourceOf(answer as GroupsPage | Buffer, q.by.length, async ({ cursor, page }) => queries.groupsMore(cursor, page)));
    }
  }
  const answer = rankTop(mergeGroups(ways[0]), q);
  for (const way of ways.slice(1)) expect(rankTop(mergeGroups(way), q)).toEqual(answer);
  // Ranked where the dense sums are added up (their arrays kept from the query before).
  for (const way of ways) expect(rankSources(way, q)).toEqual(answer);
  return answer;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

const HOURS = [100, 101, 102, 103, 104, 105];
const randomRecords = (count: number, seed: number) => randomFlows(count, HOURS, seed);

const BY_COMBOS: GroupField[][] = [["src_app"], ["dest_app"], ["vpc_id"], ["src_app", "dest_app"], ["dest_app", "src_app"], ["src_app", "vpc_id"], ["vpc_id", "dest_app"], ["src_app", "dest_app", "vpc_id"], ["vpc_id", "dest_app", "src_app"]];

describe("top-N against the model", () => {
  const records = randomRecords(3000, 7);
  for (const by of BY_COMBOS) {
    for (const metric of ["bytes_tx", "bytes_rx", "bytes_total"] as TopMetric[]) {
      test(`by ${by.join(",")}, ${metric}`, async () => {
        const q = { from: 101, to: 104, by, metric, n: 5 };
        expect(await top(records, q)).toEqual(expectedTop(records, q));
      });
    }
  }

  test("filters, a single hour, n larger than the groups, hours without data", async () => {
    for (const q of [
      { from: 102, to: 102, by: ["dest_app"] as GroupField[], metric: "bytes_total" as TopMetric, n: 1000, filter: { src_app: "web" } },
      { from: 90, to: 200, by: ["src_app", "vpc_id"] as GroupField[], metric: "bytes_rx" as TopMetric, n: 3, filter: { vpc_id: "vpc 3", dest_app: "a\u0000" } },
      { from: 50, to: 60, by: ["src_app"] as GroupField[], metric: "bytes_tx" as TopMetric, n: 10 },
    ]) {
      const answer = await top(records, q);
      expect(answer).toEqual(expectedTop(records, q));
    }
    const empty = await top(records, { from: 50, to: 60, by: ["src_app"], metric: "bytes_tx", n: 10 });
    expect(empty.top).toEqual([]);
    expect(empty.total).toEqual({ bytes_tx: 0, bytes_rx: 0, bytes_total: 0, flows: 0, groups: 0 });
  });

  test("ties rank by the by fields ascending, in by's order; a flow counts once however often it was posted", async () => {
    const h = 7;
    const records = [flow("b", "x", "v", h, 5, 0), flow("a", "y", "v", h, 5, 0), flow("a", "x", "v", h, 2, 3), flow("c", "x", "v", h, 1, 0), flow("c", "x", "v", h, 4, 0)];
    const bySrc = await top(records, { from: h, to: h, by: ["src_app", "dest_app"], metric: "bytes_total", n: 10 });
    expect(bySrc.top.map((t) => [t.src_app, t.dest_app, t.bytes_total, t.flows])).toEqual([
      ["a", "x", 5, 1],
      ["a", "y", 5, 1],
      ["b", "x", 5, 1],
      ["c", "x", 5, 1],
    ]);
    const byDest = await top(records, { from: h, to: h, by: ["dest_app", "src_app"], metric: "bytes_tx", n: 2 });
    expect(byDest.top.map((t) => [t.dest_app, t.src_app, t.bytes_tx])).toEqual([
      ["x", "b", 5],
      ["x", "c", 5],
    ]);
    expect(byDest.other).toEqual({ bytes_tx: 7, bytes_rx: 3, bytes_total: 10, flows: 2, groups: 2 });
    expect(byDest.total).toEqual({ bytes_tx: 17, bytes_rx: 3, bytes_total: 20, flows: 4, groups: 4 });
  });

  test("sums are exact up to 2^53-1; a total past it throws instead of rounding", async () => {
    const exact = [flow("a", "b", "v", 1, MAX - 10, 0), flow("c", "d", "v", 2, 6, 4)];
    const answer = await top(exact, { from: 1, to: 2, by: ["vpc_id"], metric: "bytes_total", n: 1 });
    expect(answer.top).toEqual([{ vpc_id: "v", bytes_tx: MAX - 4, bytes_rx: 4, bytes_total: MAX, flows: 2 }]);
    // Each flow fits, the group's bytes_total does not.
    const over = [flow("a", "b", "v", 1, MAX - 10, 0), flow("a", "b", "v", 2, 0, 11)];
    await expect(top(over, { from: 1, to: 2, by: ["vpc_id"], metric: "bytes_tx", n: 1 })).rejects.toThrow(TotalOverflowError);
    // Groups that fit, a total that does not.
    const total = [flow("a", "b", "v", 1, MAX, 0), flow("c", "d", "v", 1, 1, 0)];
    await expect(top(total, { from: 1, to: 1, by: ["src_app"], metric: "bytes_tx", n: 1 })).rejects.toThrow(TotalOverflowError);
  });
});

describe("pieces", () => {
  test("group keys compare as their by fields do, and decode back", () => {
    const records = randomRecords(400, 3);
    for (const by of BY_COMBOS) {
      const groupOf = groupKeyOf(by, {});
      const seen = new Map<string, string[]>();
      const { store, partitions } = shards(records);
      for (const part of partitions) for (const p of part) for (let h = 100; h < 106; h++) store.forEachFlow(p, h, (key) => seen.set(groupOf(key)!, []));
      const keys = [...seen.keys()];
      const groups = fieldGroupsOfKeys({ keys, tx: keys.map(() => 1), rx: keys.map(() => 0), flows: keys.map(() => 1) }, by.length);
      const answer = rankTop(groups, { from: 0, to: 0, by, metric: "bytes_tx", n: keys.length });
      const tuples = answer.top.map((t) => by.map((b) => t[b] as string));
      const sorted = [...tuples].sort((a, b) => a.reduce((c, x, i) => c || cmp(x, b[i]), 0));
      expect(tuples).toEqual(sorted);
      expect(new Set(tuples.map((t) => JSON.stringify(t))).size).toBe(keys.length);
    }
  });

  test("a filter leaves flows out of every group", () => {
    expect(groupKeyOf(["src_app"], { dest_app: "db" })("web  api  v")).toBeNull();
    expect(groupKeyOf(["dest_app"], { dest_app: "db" })("web  db  v")).toBe("db");
    expect(GROUP_FIELDS).toEqual(["src_app", "dest_app", "vpc_id"]);
  });

  test("bestOf picks the n first in rank order, whatever n", () => {
    const r = seeded(11);
    const values = Array.from({ length: 500 }, () => Math.floor(r() * 50));
    const before = (i: number, j: number) => (values[i] !== values[j] ? values[i] > values[j] : i < j);
    const all = values.map((_, i) => i).sort((a, b) => (before(a, b) ? -1 : 1));
    for (const n of [0, 1, 2, 10, 499, 500, 1000]) expect(bestOf(values.length, n, before)).toEqual(all.slice(0, n));
  });

  test("pages of groups stay under the byte limit, keep every group once, and a remote caller pages through a cursor", async () => {
    const keys = Array.from({ length: 300 }, (_, i) => `group-${i}`.padEnd(200, "x"));
    const sums = { keys, tx: keys.map((_, i) => i), rx: keys.map(() => 1), flows: keys.map(() => 2) };
    const pages = [];
    for (let offset = 0; offset < keys.length; ) {
      const { bytes, next } = encodeRunPage(0, sums, offset, 64 * 1024, (n) => `cursor-${n}`, sums.flows);
      expect(bytes.length).toBeLessThanOrEqual(64 * 1024);
      pages.push(groupColumnsOf(decodeRunPage(bytes)));
      offset = next;
    }
    expect(pages.length).toBeGreaterThan(1);
    expect(pages.flatMap((p) => p.keys)).toEqual(keys);
    expect(pages.flatMap((p) => Array.from(p.flows))).toEqual(sums.flows);

    // Over the message limit: 512 KB of group keys from one shard.
    const many = Array.from({ length: 8000 }, (_, i) => flow(`app-${i}-${"y".repeat(150)}`, "d", "v", 5, i, 1));
    const { queries } = shards(many);
    const all = Array.from({ length: P }, (_, p) => p);
    let page = decodeRunPage((await queries.groups({ epoch: 1, partitions: all, from: 5, to: 5, filter: {}, by: ["src_app"] }, true)) as Buffer);
    const got = new GroupSums();
    got.addAll(groupColumnsOf(page));
    let count = 1;
    while (page.cursor !== null) {
      page = decodeRunPage(queries.groupsMore(page.cursor));
      got.addAll(groupColumnsOf(page));
      count++;
    }
    expect(count).toBeGreaterThan(2);
    expect(got.size).toBe(8000);
    expect(got.tx.reduce((a, b) => a + b, 0)).toBe((7999 * 8000) / 2);

    // The first page numbers the answer's pages: the rest asked for at once, in any order, one twice (a retry).
    const params = { epoch: 1, partitions: all, from: 5, to: 5, filter: {}, by: ["src_app"] as GroupField[] };
    const first = decodeRunPage((await queries.groups(params, true)) as Buffer);
    expect(first.version).toBe(count);
    const cursor = first.cursor!;
    const order = Array.from({ length: count - 1 }, (_, i) => count - 1 - i);
    const rest = new Map<number, ReturnType<typeof decodeRunPage>>();
    for (const i of [order[0], ...order]) rest.set(i, decodeRunPage(queries.groupsMore(cursor, i)));
    const allKeys = [first, ...order.reverse().map((i) => rest.get(i)!)].flatMap((p) => p.keys);
    expect(new Set(allKeys).size).toBe(8000);
    // Not flagged in key order: a gateway of an older version adds such pages up by key.
    expect([first, ...rest.values()].every((p) => p.version === count && !p.inKeyOrder)).toBe(true);
    // Every page handed out: the cursor is gone.
    expect(() => queries.groupsMore(cursor, 1)).toThrow("Read cursor expired");
    // A page the answer does not have: a clear error, the cursor kept.
    const again = decodeRunPage((await queries.groups(params, true)) as Buffer);
    for (const bad of [0, count, 1.5, -1]) expect(() => queries.groupsMore(again.cursor!, bad)).toThrow(`No page ${bad} in an answer of ${count} pages`);
    expect(decodeRunPage(queries.groupsMore(again.cursor!, 1)).keys.length).toBeGreaterThan(0);
  });

  test("field-groups pages: under the byte limit, each column as narrow as its values allow, every group once", () => {
    // 70,000 values of field 0 (refs past u16 on one page), sums past 2^32 (f64) and small (u16).
    const count = 70_000;
    const values = [Array.from({ length: count }, (_, i) => `src-${String(i).padStart(6, "0")}`), ["d\u00e9", "\uD800 lone", "z"]];
    const groups: FieldGroups = {
      values,
      refs: [Int32Array.from({ length: count }, (_, i) => i), Int32Array.from({ length: count }, (_, i) => i % 3)],
      tx: Float64Array.from({ length: count }, (_, i) => (i === 5 ? 2 ** 40 + 1 : i)),
      rx: Float64Array.from({ length: count }, () => 7),
      flows: Float64Array.from({ length: count }, () => 1),
    };
    for (const limit of [64 * 1024, 8 * 1024 * 1024]) {
      const pages = encodeFieldGroupsPages(groups, limit, "c".repeat(36));
      expect(pages.length).toBe(limit === 64 * 1024 ? pages.length : 1);
      if (limit === 64 * 1024) expect(pages.length).toBeGreaterThan(10);
      const decoded = pages.map(decodeFieldGroupsPage);
      for (const page of pages) expect(page.length).toBeLessThanOrEqual(limit);
      expect(decoded.every((d) => d.pages === pages.length && d.cursor === (pages.length > 1 ? "c".repeat(36) : null))).toBe(true);
      const got = groupColumnsOfFields(mergeGroups([decoded.map((d) => d.groups)]));
      const plain = (g: { keys: string[]; tx: ArrayLike<number>; rx: ArrayLike<number>; flows: ArrayLike<number> }) => [g.keys, Array.from(g.tx), Array.from(g.rx), Array.from(g.flows)];
      expect(plain(got)).toEqual(plain(groupColumnsOfFields(groups)));
      if (limit > 64 * 1024) {
        // One page: head, then per field its dictionary and refs (u32: 70,000 entries; u16: 3), then tx (f64: 2^40 + 1), rx and flows (u16), and an empty cursor.
        const strings = (list: string[]) => list.reduce((sum, v) => sum + (v.isWellFormed() ? 1 + Buffer.byteLength(v) : 5 + 2 * v.length), 0);
        const columns = [4, 2, 8, 2, 2].reduce((sum, width) => sum + 1 + width * count, 0);
        expect(pages[0].length).toBe(14 + 2 * 4 + strings(values[0]) + strings(values[1]) + columns + 1);
      }
    }
    // Bytes that end early, or refer past a dictionary: a clear error.
    const [first] = encodeFieldGroupsPages(groups, 64 * 1024, "c".repeat(36));
    expect(() => decodeFieldGroupsPage(first.subarray(0, first.length - 40))).toThrow(/truncated|after the page/);
    const one = Float64Array.of(1);
    const page = encodeFieldGroupsPages({ values: [["a"]], refs: [Int32Array.of(0)], tx: one, rx: one, flows: one }, 1024, "")[0];
    const bad = Buffer.from(page);
    bad[bad.indexOf(2, 1 + 8 + 4 + 1 + 4 + 2)] = 2; // the refs column's width, unchanged
    bad[bad.length - 1 - 3 * (1 + 2) - 2] = 9; // the one ref: 9 of a dictionary of 1
    expect(() => decodeFieldGroupsPage(bad)).toThrow("refers to entry 9 of 1");
    // Pages are cut by the widths their columns take: filled, not sized for the widest.
    const small = { values: [["a", "b"], ["c"]], refs: [Int32Array.from({ length: 50_000 }, (_, i) => i % 2), new Int32Array(50_000)], tx: Float64Array.from({ length: 50_000 }, (_, i) => 70_000 + i), rx: new Float64Array(50_000).fill(3), flows: new Float64Array(50_000).fill(1) };
    const filled = encodeFieldGroupsPages(small, 64 * 1024, "c".repeat(36));
    expect(filled.length).toBe(Math.ceil((50_000 * (2 + 2 + 4 + 2 + 2)) / (64 * 1024 - 200)));
    for (const p of filled.slice(0, -1)) expect(p.length).toBeGreaterThan(64 * 1024 - 200);
  });

  test("aligned pages travel in a packet at a multiple of 8 and are read in place; the same groups as unaligned pages", () => {
    const count = 5000;
    const groups: FieldGroups = {
      values: [["a", "b\u00e9", "c"], ["x"]],
      refs: [Int32Array.from({ length: count }, (_, i) => i % 3), new Int32Array(count)],
      tx: Float64Array.from({ length: count }, (_, i) => i * 70_000),
      rx: Float64Array.from({ length: count }, (_, i) => (i === 7 ? 2 ** 40 + 1 : 3)),
      flows: new Float64Array(count).fill(1),
    };
    const serializer = new BinaryPayloadSerializer();
    const plain = (g: FieldGroups) => [g.values, g.refs.map((r) => Array.from(r)), Array.from(g.tx), Array.from(g.rx), Array.from(g.flows)];
    // In key order (the first field's refs ascend) they go as runs, and sums below 256 as bytes.
    const inKeyOrder = { ...groups, refs: [Int32Array.from({ length: count }, (_, i) => Math.floor((3 * i) / count)), groups.refs[1]] };
    const [unalignedBytes, alignedBytes] = [false, true].map((aligned) => encodeFieldGroupsPages(inKeyOrder, 1 << 20, "", aligned)[0].length);
    // Both fields' refs ascend (the second's are all 0): 2 + 2 bytes a group less, and 1 for flows; the runs and alignment take a few.
    expect(unalignedBytes - alignedBytes).toBeGreaterThan(count * 5 - 3 * 4 - 4 - 5 * 7 - 1);
    const [runs] = encodeFieldGroupsPages(inKeyOrder, 1 << 20, "", true);
    expect(plain(decodeFieldGroupsPage(runs).groups)).toEqual(plain(inKeyOrder));
    // Runs that do not add up to the page's groups: a clear error.
    const miscounted = Buffer.from(runs);
    miscounted.writeUInt32LE(count - 1, 9);
    expect(() => decodeFieldGroupsPage(miscounted)).toThrow(/runs of more than the page's 4999 groups/);
    // Pages of either format carry the whole (small) dictionaries: their groups line up.
    const lined = (pages: FieldGroups[]) => [pages[0].values, [0, 1].map((k) => pages.flatMap((p) => Array.from(p.refs[k]))), ...(["tx", "rx", "flows"] as const).map((c) => pages.flatMap((p) => Array.from(p[c])))];
    const unaligned = encodeFieldGroupsPages(groups, 16 * 1024, "c".repeat(36)).map((p) => decodeFieldGroupsPage(p).groups);
    const pages = encodeFieldGroupsPages(groups, 16 * 1024, "c".repeat(36), true);
    const got: FieldGroups[] = [];
    expect(pages.length).toBeGreaterThan(3);
    for (const [i, page] of pages.entries()) {
      expect(page.length).toBeLessThanOrEqual(16 * 1024);
      expect(page[0]).toBe(ALIGNED_FIELD_GROUPS_FORMAT);
      // As a gateway gets it: the packet copied into a buffer of its own, the page after the envelope.
      const packet = Buffer.from(serializer.serialize({ ver: "4", sender: "n1", id: `r${"x".repeat(i)}`, success: true, data: page }, "RES"));
      const data = serializer.deserialize(packet, "RES").data as Buffer;
      expect(data.byteOffset % 8).toBe(0);
      const { groups: decoded } = decodeFieldGroupsPage(data);
      // Sums and refs columns in place (the second field's refs, all 0, went as runs and are written out).
      for (const column of [decoded.refs[0], decoded.tx, decoded.rx, decoded.flows] as Uint8Array[]) expect(column.buffer).toBe(packet.buffer);
      got.push(decoded);
    }
    expect(lined(got)).toEqual(lined(unaligned));
  });

  test("a refused confirmation refuses the query, before and after adding up", async () => {
    const store = new PartitionStore({ max: 100, ttlMs: 60_000 });
    /** Queries whose confirmation number `refused` throws `why`; `calls` counts them. */
    const refusing = (refused: number, why: string) => {
      const counted = { calls: 0 };
      const queries = new ShardQueries({
        store,
        confirmServing: async () => {
          if (++counted.calls === refused) throw new Error(why);
        },
        now: () => 0,
        cursorMs: 1000,
      });
      return { queries, counted };
    };
    const params = { epoch: 1, partitions: [0], from: 1, to: 1, filter: {}, by: ["src_app"] as GroupField[] };
    const after = refusing(2, "moved meanwhile");
    await expect(after.queries.groups(params, false)).rejects.toThrow("moved meanwhile");
    expect(after.counted.calls).toBe(2);
    // The first confirmation runs while the flows are added up: refused, nothing is answered either.
    await expect(refusing(1, "not the primary").queries.groups(params, true)).rejects.toThrow("not the primary");
  });

  test("hour bounds: the oldest and newest hour with a flow in the partitions asked", async () => {
    const { queries } = shards([flow("a", "b", "v", 40, 1, 1), flow("c", "d", "v", 7, 1, 1), flow("e", "f", "v", 19, 1, 1)]);
    const all = Array.from({ length: P }, (_, p) => p);
    expect(await queries.hours({ epoch: 1, partitions: all })).toEqual({ oldest: 7, newest: 40 });
    expect(await queries.hours({ epoch: 1, partitions: [] })).toEqual({ oldest: null, newest: null });
  });
});
