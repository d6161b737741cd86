/**
 * Group ids and the order of group keys, for top-N.
 *
 * A shard numbers each group key of a grouping (the `by` fields) once, kept across
 * queries: hashing a group key into a Map that grows with every query was most of a
 * top-N's time (~0.5 µs a flow). With ids kept, a shard adds flows into arrays indexed
 * by id (src/query/shard-queries.ts keeps each hour table's slot ids). It also keeps
 * the ids sorted by key (extended as ids appear), so it can hand its partial groups to
 * a gateway in key order at the cost of sorting integers.
 *
 * The gateway then merges the shards' sorted partial groups (mergeGroups), comparing
 * neighbouring keys: looking ~300k freshly decoded keys up in a Map of 100k, even one
 * kept across queries, cost ~0.25 µs each (a cache miss or two per key).
 *
 * Bounded: a grouping's ids are renumbered from scratch past MAX_GROUP_IDS (its
 * `generation` counts the renumberings, so lists of old ids can tell they are stale).
 */
import type { GroupsMoreParams, GroupsPage } from "../protocol";
import { decodeRunPage } from "../wire/run-codec";
import { groupColumnsOf, GroupSums, type GroupColumns } from "./top";

export const MAX_GROUP_IDS = 1_000_000;

/** Compares indexes by the keys at them (JavaScript's string order). */
export const byKey =
  (keys: readonly string[]) =>
  (a: number, b: number): number =>
    keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : 0;

export class GroupIds {
  generation = 0;
  readonly keys: string[] = [];
  private readonly ids = new Map<string, number>();
  /** Ids in key order, and each id's place in it (for the ids below `ranked`). */
  private order: number[] = [];
  private rankOf = new Int32Array(0);
  private ranked = 0;

  get size(): number {
    return this.keys.length;
  }

  idOf(group: string): number {
    let id = this.ids.get(group);
    if (id === undefined) {
      if (this.keys.length >= MAX_GROUP_IDS) this.renumber();
      id = this.keys.length;
      this.ids.set(group, id);
      this.keys.push(group);
    }
    return id;
  }

  renumber(): void {
    this.ids.clear();
    this.keys.length = 0;
    this.order = [];
    this.ranked = 0;
    this.generation++;
  }

  /** `ids` (distinct) in key order: the new ids since the last call are sorted and merged in first. */
  sorted(ids: readonly number[]): number[] {
    this.rank();
    const places = new Int32Array(ids.length);
    for (let i = 0; i < ids.length; i++) places[i] = this.rankOf[ids[i]];
    places.sort();
    const out = new Array<number>(ids.length);
    for (let i = 0; i < ids.length; i++) out[i] = this.order[places[i]];
    return out;
  }

  private rank(): void {
    if (this.ranked === this.keys.length) return;
    const cmp = byKey(this.keys);
    const fresh: number[] = [];
    for (let id = this.ranked; id < this.keys.length; id++) fresh.push(id);
    fresh.sort(cmp);
    const old = this.order;
    const order = new Array<number>(old.length + fresh.length);
    for (let i = 0, j = 0, k = 0; k < order.length; k++) order[k] = j >= fresh.length || (i < old.length && cmp(old[i], fresh[j]) < 0) ? old[i++] : fresh[j++];
    const rankOf = new Int32Array(this.keys.length);
    for (let place = 0; place < order.length; place++) rankOf[order[place]] = place;
    this.order = order;
    this.rankOf = rankOf;
    this.ranked = this.keys.length;
  }
}

const byGrouping = new Map<string, GroupIds>();

/** The ids of a grouping (`by` joined by commas: a handful of them in all). */
export function groupIdsOf(grouping: string): GroupIds {
  let ids = byGrouping.get(grouping);
  if (ids === undefined) byGrouping.set(grouping, (ids = new GroupIds()));
  return ids;
}

/** One shard node's partial groups of a query: its pages, in order; `sorted` when their keys ascend throughout. */
export interface GroupSource {
  sorted: boolean;
  pages: GroupColumns[];
}

/**
 * A shard node's answer to flow-shard.groups as a source. In process: its columns. From
 * another process: binary pages (src/wire/run-codec.ts) whose `version` says how many
 * there are, the rest asked for with `more` at once (0, from an older shard node: one
 * after another, each by the cursor of the last).
 */
export async function groupSourceOf(answer: GroupsPage | Buffer, more: (params: GroupsMoreParams) => Promise<Buffer>): Promise<GroupSource> {
  if (!Buffer.isBuffer(answer)) return { sorted: answer.inKeyOrder === true, pages: [answer.groups] };
  const first = decodeRunPage(answer);
  const pages: GroupColumns[] = [groupColumnsOf(first)];
  const cursor = first.cursor;
  let inKeyOrder = first.inKeyOrder;
  if (cursor !== null && first.version > 1) {
    const rest = Array.from({ length: first.version - 1 }, async (_, i) => {
      const page = decodeRunPage(await more({ cursor, page: i + 1 }));
      inKeyOrder &&= page.inKeyOrder;
      return groupColumnsOf(page);
    });
    pages.push(...(await Promise.all(rest)));
  } else {
    for (let page = first; page.cursor !== null; ) {
      page = decodeRunPage(await more({ cursor: page.cursor }));
      inKeyOrder &&= page.inKeyOrder;
      pages.push(groupColumnsOf(page));
    }
  }
  // A shard node of an older version sends its groups unsorted (and says nothing).
  return { sorted: inKeyOrder, pages };
}

/**
 * The sum of the shards' partial groups, one entry per group key. Sorted sources are
 * merged (in key order, the heads compared); any unsorted one (a shard in this process)
 * makes them added up by key instead.
 */
export function mergeGroups(sources: readonly GroupSource[]): GroupColumns {
  const parts = sources.flatMap((s) => s.pages);
  if (parts.length === 1) return parts[0];
  if (sources.some((s) => !s.sorted)) {
    const sums = new GroupSums();
    for (const part of parts) sums.addAll(part);
    return sums;
  }
  let entries = 0;
  for (const part of parts) entries += part.keys.length;
  const keys = new Array<string>(entries);
  const tx = new Float64Array(entries);
  const rx = new Float64Array(entries);
  const flows = new Float64Array(entries);
  // Each source's place: its page and the entry in it (a source's pages follow each other in key order), and its key there.
  const pages = sources.map((s) => s.pages.filter((page) => page.keys.length > 0));
  const pageAt = new Array<number>(sources.length).fill(0);
  const at = new Array<number>(sources.length).fill(0);
  const heads = pages.map((p) => (p.length > 0 ? p[0].keys[0] : ""));
  // The sources not yet used up; the one whose head key is lowest goes next (a few nodes: a scan beats a heap, as in hour-merge.ts).
  const live = pages.map((_, s) => s).filter((s) => pages[s].length > 0);
  let j = -1;
  let last = "";
  while (live.length > 0) {
    let low = 0;
    for (let w = 1; w < live.length; w++) if (heads[live[w]] < heads[live[low]]) low = w;
    const s = live[low];
    const page = pages[s][pageAt[s]];
    const i = at[s]++;
    const key = heads[s];
    if (j < 0 || last !== key) keys[++j] = last = key;
    tx[j] += page.tx[i];
    rx[j] += page.rx[i];
    flows[j] += page.flows[i];
    if (at[s] < page.keys.length) heads[s] = page.keys[at[s]];
    else if (++pageAt[s] < pages[s].length) {
      at[s] = 0;
      heads[s] = pages[s][pageAt[s]].keys[0];
    } else live.splice(low, 1);
  }
  const n = j + 1;
  keys.length = n;
  return { keys, tx: tx.subarray(0, n), rx: rx.subarray(0, n), flows: flows.subarray(0, n) };
}
