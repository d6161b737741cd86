/**
 * Group ids and the order of group keys, for top-N.
 *
 * A shard numbers each group key of a grouping (the `by` fields) once, kept across
 * queries: hashing a group key into a Map that grows with every query was most of a
 * top-N's time (~0.5 µs a flow). With ids kept, a shard adds flows into arrays indexed
 * by id (src/query/shard-queries.ts keeps each hour table's slot ids). It numbers each
 * field's values too, and keeps their order by value (extended as ids appear), so the
 * groups go out as FieldGroups (src/query/top.ts), their dictionaries sorted by sorting
 * integers: no string work per query.
 *
 * The gateway then adds the shards' partial groups up (src/query/group-merge.ts).
 *
 * Bounded: a grouping's ids are renumbered from scratch past MAX_GROUP_IDS (its
 * `generation` counts the renumberings, so lists of old ids can tell they are stale).
 */
import type { GroupsMoreParams, GroupsPage } from "../protocol";
import { decodeFieldGroupsPage, isFieldGroupsPage } from "../wire/field-groups-codec";
import { decodeRunPage } from "../wire/run-codec";
import { compareStrings, fieldGroupsOfKeys, groupColumnsOf, splitGroupKey, type FieldGroups, type GroupColumns } from "./top";

export const MAX_GROUP_IDS = 1_000_000;

/** Strings numbered once, and the ids' order by string (kept, extended as ids appear). */
export class StringIds {
  readonly keys: string[] = [];
  private readonly ids = new Map<string, number>();
  /** Ids in key order, and each id's place in it (for the ids below `ranked`). */
  private order: number[] = [];
  private rankOf = new Int32Array(0);
  private ranked = 0;

  get size(): number {
    return this.keys.length;
  }

  find(key: string): number | undefined {
    return this.ids.get(key);
  }

  idOf(key: string): number {
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.keys.length;
      this.ids.set(key, id);
      this.keys.push(key);
    }
    return id;
  }

  clear(): void {
    this.ids.clear();
    this.keys.length = 0;
    this.order = [];
    this.ranked = 0;
  }

  /** `ids` (distinct) in key order: the new ids since the last call are sorted and merged in first. */
  sorted(ids: ArrayLike<number>): number[] {
    this.rank();
    const n = ids.length;
    const out = new Array<number>(n);
    if (n * 16 >= this.ranked) {
      // Most ids: picking them out of the whole order beats sorting their places.
      const chosen = new Uint8Array(this.ranked);
      for (let i = 0; i < n; i++) chosen[ids[i]] = 1;
      for (let place = 0, i = 0; i < n; place++) if (chosen[this.order[place]] === 1) out[i++] = this.order[place];
      return out;
    }
    const places = new Int32Array(n);
    for (let i = 0; i < n; i++) places[i] = this.rankOf[ids[i]];
    places.sort();
    for (let i = 0; i < n; i++) out[i] = this.order[places[i]];
    return out;
  }

  private rank(): void {
    if (this.ranked === this.keys.length) return;
    const { keys } = this;
    const cmp = (a: number, b: number) => compareStrings(keys[a], keys[b]);
    const fresh: number[] = [];
    for (let id = this.ranked; id < keys.length; id++) fresh.push(id);
    fresh.sort(cmp);
    const old = this.order;
    const order = new Array<number>(old.length + fresh.length);
    for (let i = 0, j = 0, k = 0; k < order.length; k++) order[k] = j >= fresh.length || (i < old.length && cmp(old[i], fresh[j]) < 0) ? old[i++] : fresh[j++];
    const rankOf = new Int32Array(keys.length);
    for (let place = 0; place < order.length; place++) rankOf[order[place]] = place;
    this.order = order;
    this.rankOf = rankOf;
    this.ranked = keys.length;
  }
}

/** A grouping's group ids, and the ids of each of its fields' values (each group's in fieldRefs). */
export class GroupIds {
  generation = 0;
  readonly groups = new StringIds();
  readonly fields: StringIds[];
  /** Per field: each group id's value id. */
  private readonly fieldRefs: number[][];

  constructor(readonly fieldCount = 1) {
    this.fields = Array.from({ length: fieldCount }, () => new StringIds());
    this.fieldRefs = Array.from({ length: fieldCount }, () => []);
  }

  get size(): number {
    return this.groups.size;
  }

  idOf(group: string): number {
    const known = this.groups.find(group);
    if (known !== undefined) return known;
    if (this.groups.size >= MAX_GROUP_IDS) this.renumber();
    const parts = splitGroupKey(group, this.fieldCount);
    for (let k = 0; k < this.fieldCount; k++) this.fieldRefs[k].push(this.fields[k].idOf(parts[k]));
    return this.groups.idOf(group);
  }

  renumber(): void {
    this.groups.clear();
    for (const f of this.fields) f.clear();
    for (const r of this.fieldRefs) r.length = 0;
    this.generation++;
  }

  /** The groups `ids` with their sums (indexed by id) as FieldGroups. */
  fieldGroups(ids: ArrayLike<number>, sums: { tx: ArrayLike<number>; rx: ArrayLike<number>; flows: ArrayLike<number> }): FieldGroups {
    const n = ids.length;
    const values: string[][] = [];
    const refs: Int32Array[] = [];
    for (let k = 0; k < this.fieldCount; k++) {
      const field = this.fields[k];
      const refOf = this.fieldRefs[k];
      // The field's values these groups use (by value id, then their place in key order).
      const local = new Int32Array(field.size).fill(-1);
      const used: number[] = [];
      const column = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = refOf[ids[i]];
        column[i] = v;
        if (local[v] === -1) {
          local[v] = 0;
          used.push(v);
        }
      }
      const dictionary = field.sorted(used);
      for (let d = 0; d < dictionary.length; d++) local[dictionary[d]] = d;
      for (let i = 0; i < n; i++) column[i] = local[column[i]];
      values.push(dictionary.map((v) => field.keys[v]));
      refs.push(column);
    }
    const tx = new Float64Array(n);
    const rx = new Float64Array(n);
    const flows = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      tx[i] = sums.tx[id];
      rx[i] = sums.rx[id];
      flows[i] = sums.flows[id];
    }
    return { values, refs, tx, rx, flows };
  }
}

const byGrouping = new Map<string, GroupIds>();

/** The ids of a grouping (its `by` fields, in order: a handful of groupings in all). */
export function groupIdsOf(by: readonly string[]): GroupIds {
  const grouping = by.join(",");
  let ids = byGrouping.get(grouping);
  if (ids === undefined) byGrouping.set(grouping, (ids = new GroupIds(by.length)));
  return ids;
}

/**
 * One shard node's partial groups, as pages. In process: its FieldGroups. From another
 * process: field-groups pages (src/wire/field-groups-codec.ts) whose first says how many
 * there are, the rest taken from `ahead` (asked for with the query) or else asked for
 * with `more` at once; or, from a shard node of an older
 * version, run pages of group keys (src/wire/run-codec.ts, the next asked for by the
 * cursor of the last), turned into FieldGroups here.
 */
export async function groupSourceOf(
  answer: GroupsPage | Buffer,
  fields: number,
  more: (params: GroupsMoreParams) => Promise<Buffer>,
  ahead: readonly Promise<Buffer | null>[] = [],
): Promise<FieldGroups[]> {
  if (!Buffer.isBuffer(answer)) return [answer.groups];
  if (isFieldGroupsPage(answer)) {
    const first = decodeFieldGroupsPage(answer);
    const cursor = first.cursor;
    if (cursor === null || first.pages <= 1) return [first.groups];
    const rest = Array.from({ length: first.pages - 1 }, async (_, i) => {
      // Page i + 1 as asked for ahead, unless that came back empty (not there then): asked for now.
      const early = await ahead[i];
      const bytes = early !== undefined && early !== null && early.length > 0 ? early : await more({ cursor, page: i + 1 });
      return decodeFieldGroupsPage(bytes).groups;
    });
    return [first.groups, ...(await Promise.all(rest))];
  }
  const pages: GroupColumns[] = [];
  for (let page = decodeRunPage(answer); ; page = decodeRunPage(await more({ cursor: page.cursor }))) {
    pages.push(groupColumnsOf(page));
    if (page.cursor === null) break;
  }
  const all = { keys: pages.flatMap((p) => p.keys), tx: pages.flatMap((p) => Array.from(p.tx)), rx: pages.flatMap((p) => Array.from(p.rx)), flows: pages.flatMap((p) => Array.from(p.flows)) };
  return [fieldGroupsOfKeys(all, fields)];
}
