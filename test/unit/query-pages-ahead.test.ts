/**
 * Top-N pages asked for ahead (src/query/pages-ahead.ts, src/gateway/group-pages.ts): a
 * gateway asks for the pages after the first together with the query; they are answered
 * once the query has been, empty when the answer has no such page, and the sums are the
 * same as when every page is asked for after the first.
 */
import { splitByPartition } from "../../src/batching";
import { PartitionStore } from "../../src/partition-store";
import { ShardQueries } from "../../src/query/shard-queries";
import { PagesAhead } from "../../src/query/pages-ahead";
import { GroupPages } from "../../src/gateway/group-pages";
import { groupSourceOf } from "../../src/query/group-ids";
import { mergeGroups } from "../../src/query/group-merge";
import { rankTop, type GroupField } from "../../src/query/top";
import { decodeFieldGroupsPage } from "../../src/wire/field-groups-codec";
import type { GroupsMoreParams, GroupsParams } from "../../src/protocol";
import { flow } from "../support/api-contract";

const P = 4;
const all = Array.from({ length: P }, (_, p) => p);

/** One shard node holding 8000 groups of long names: an answer of several 512 KiB pages. */
function shard() {
  const store = new PartitionStore({ max: 100, ttlMs: 60_000 });
  store.apply(splitByPartition(Array.from({ length: 8000 }, (_, i) => flow(`app-${i}-${"y".repeat(150)}`, "d", "v", 5, i, 1)), P));
  return new ShardQueries({ store, confirmServing: async () => undefined, now: () => 0, cursorMs: 10_000 });
}

const params = (cursorId?: string): GroupsParams => ({ epoch: 1, partitions: all, from: 5, to: 5, filter: {}, by: ["src_app"] as GroupField[], fieldPages: true, cursorId });

describe("pages asked for ahead", () => {
  test("answered once the query is, whether they arrive before or after it; empty past the last page", async () => {
    const queries = shard();
    const first = decodeFieldGroupsPage((await queries.groups(params(), true)) as Buffer);
    const pages = first.pages;
    expect(pages).toBeGreaterThan(2);

    // Asked before the query arrives (one more than there are): they wait for it.
    const early = Array.from({ length: pages }, (_, i) => queries.groupsAhead("q-1", i + 1));
    const answer = decodeFieldGroupsPage((await queries.groups(params("q-1"), true)) as Buffer);
    expect(answer.cursor).toBe("q-1");
    const got = await Promise.all(early);
    expect(got[pages - 1].length).toBe(0);
    const groups = [answer, ...got.slice(0, pages - 1).map((b) => decodeFieldGroupsPage(b))].map((p) => p.groups);
    expect(groups.reduce((n, g) => n + g.tx.length, 0)).toBe(8000);
    // Every page handed out: the cursor is gone, and a late ask ahead gets an empty answer.
    expect(() => queries.groupsMore("q-1", 1)).toThrow("Read cursor expired");
    expect((await queries.groupsAhead("q-1", 1)).length).toBe(0);

    // Asked after the query answered; one page asked twice ahead is answered once (then empty).
    const later = decodeFieldGroupsPage((await queries.groups(params("q-2"), true)) as Buffer);
    expect(later.pages).toBe(pages);
    expect(decodeFieldGroupsPage(await queries.groupsAhead("q-2", 1)).groups.tx.length).toBeGreaterThan(0);
    expect((await queries.groupsAhead("q-2", 1)).length).toBe(0);
    expect((await queries.groupsAhead("q-2", 0)).length).toBe(0);
    expect(decodeFieldGroupsPage(queries.groupsMore("q-2", 2)).groups.tx.length).toBeGreaterThan(0);
  });

  test("a page asked for ahead of a query that never comes is answered empty after the wait", async () => {
    const ahead = new PagesAhead(2, 50);
    const t0 = Date.now();
    await ahead.settled("never");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    // A query under way is waited for past the wait, however long it takes.
    ahead.started("slow");
    let settled = false;
    const waiting = ahead.settled("slow").then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 120));
    expect(settled).toBe(false);
    ahead.finished("slow");
    await waiting;
    // Bounded: past maxWaiting asks waiting at once, the next is answered at once.
    ahead.started("a");
    const parked = [ahead.settled("a"), ahead.settled("a")];
    const t1 = Date.now();
    await ahead.settled("a");
    expect(Date.now() - t1).toBeLessThan(40);
    ahead.finished("a");
    await Promise.all(parked);
  });

  test("a gateway asks ahead for as many pages as the node's last answer of that shape had, and adds up the same", async () => {
    const queries = shard();
    const asked: GroupsMoreParams[] = [];
    const call = async (p: GroupsParams | GroupsMoreParams) => {
      if ("cursor" in p) asked.push(p);
      return queries.answer(p, true);
    };
    const reader = new GroupPages();
    const q = { from: 5, to: 5, by: ["src_app"] as GroupField[], metric: "bytes_total" as const, n: 3 };
    const once = await reader.read("n1", params(), call);
    expect(asked.every((p) => p.ahead !== true)).toBe(true);
    const pages = once.length;
    asked.length = 0;
    const twice = await reader.read("n1", params(), call);
    expect(asked.length).toBe(pages - 1);
    expect(asked.every((p) => p.ahead === true)).toBe(true);
    expect(rankTop(mergeGroups([twice]), q)).toEqual(rankTop(mergeGroups([once]), q));

    // A node that answers an ask ahead with an error (an older version): the pages are asked for after the first.
    asked.length = 0;
    const older = async (p: GroupsParams | GroupsMoreParams) => {
      if ("cursor" in p && p.ahead === true) throw new Error("Read cursor expired");
      return call(p);
    };
    const fallback = await reader.read("n1", params(), older);
    expect(asked.filter((p) => p.ahead !== true).length).toBe(pages - 1);
    expect(rankTop(mergeGroups([fallback]), q)).toEqual(rankTop(mergeGroups([once]), q));
    // groupSourceOf with asks ahead that came back empty falls back the same way.
    const answer = (await queries.groups(params("q-3"), true)) as Buffer;
    const empty = Array.from({ length: pages - 1 }, async () => Buffer.alloc(0));
    const rest = await groupSourceOf(answer, 1, async ({ cursor, page }) => queries.groupsMore(cursor, page), empty);
    expect(rankTop(mergeGroups([rest]), q)).toEqual(rankTop(mergeGroups([once]), q));
  });
});
