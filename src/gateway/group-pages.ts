/**
 * A gateway's reads of a shard node's top-N share (src/query/group-ids.ts groupSourceOf):
 * it remembers how many pages the node's last answer to a query of the same shape had,
 * and asks for that many pages after the first together with the query, under a cursor
 * id of its own (GroupsParams.cursorId, GroupsMoreParams.ahead). The pages then leave the
 * shard as soon as they are encoded, where asking after the first page arrived cost a
 * round trip (~7-13 ms of a 1M-flow hour's top-10 through a 3-node cluster). A guess
 * too high costs an empty answer; too low, the usual ask for the rest.
 *
 * No Moleculer: `call` is handed in.
 */
import { randomUUID } from "crypto";
import { LRUCache } from "lru-cache";
import type { GroupsMoreParams, GroupsPage, GroupsParams } from "../protocol";
import { groupSourceOf } from "../query/group-ids";
import type { FieldGroups } from "../query/top";

/** Query shapes whose page counts are remembered. */
const SHAPES = 1024;
/** The most pages asked for ahead (a shard's answer of 100k groups is ~4 pages of 512 KiB). */
const MAX_AHEAD = 32;

export class GroupPages {
  private readonly pagesOf = new LRUCache<string, number>({ max: SHAPES });

  /** The node's pages for `params`; `call` sends a groups action (a query or a page) to that node. */
  async read(nodeID: string, params: GroupsParams, call: (params: GroupsParams | GroupsMoreParams) => Promise<unknown>): Promise<FieldGroups[]> {
    const shape = `${nodeID} ${params.by.join(",")} ${params.to - params.from} ${params.partitions.length} ${JSON.stringify(params.filter)}`;
    const cursorId = randomUUID();
    const answer = call({ ...params, cursorId });
    const expected = Math.min(this.pagesOf.get(shape) ?? 1, MAX_AHEAD + 1);
    const ahead = Array.from({ length: expected - 1 }, (_, i) => (call({ cursor: cursorId, page: i + 1, ahead: true }) as Promise<Buffer>).catch(() => null));
    const more = async (page: GroupsMoreParams) => (await call(page)) as Buffer;
    const pages = await groupSourceOf((await answer) as GroupsPage | Buffer, params.by.length, more, ahead);
    this.pagesOf.set(shape, pages.length);
    return pages;
  }
}
