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
 * The gateway then adds the shards' partial groups up (mergeGroups) by one number per
 * group, made of its indexes into dictionaries merged once: decoding ~300k group keys
 * and comparing them as strings took ~100 ms of the gateway's CPU per query of a 1M-flow
 * hour.
 *
 * Bounded: a grouping's ids are renumbered from scratch past MAX_GROUP_IDS (its
 * `generation` counts the renumberings, so lists of old ids can tell they are stale).
 */
import type { GroupsMoreParams, GroupsPage } from "../protocol";
import { decodeFieldGroupsPage, FIELD_GROUPS_FORMAT } from "../wire/field-groups-codec";
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
  if (answer[0] === FIELD_GROUPS_FORMAT) {
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

/** The distinct strings of sorted lists, sorted (merged two by two). */
function unionSorted(lists: readonly string[][]): string[] {
  let round = [...lists];
  while (round.length > 1) {
    const next: string[][] = [];
    for (let i = 0; i < round.length; i += 2) {
      if (i + 1 === round.length) {
        next.push(round[i]);
        continue;
      }
      const [a, b] = [round[i], round[i + 1]];
      const out: string[] = [];
      let x = 0;
      let y = 0;
      while (x < a.length || y < b.length) {
        const c = y >= b.length ? -1 : x >= a.length ? 1 : compareStrings(a[x], b[y]);
        out.push(c <= 0 ? a[x] : b[y]);
        if (c <= 0) x++;
        if (c >= 0) y++;
      }
      next.push(out);
    }
    round = next;
  }
  return round[0] ?? [];
}

/** A page and, per field, each of its dictionary entries' index in the merged dictionary. */
interface Renumbering {
  page: FieldGroups;
  to: Int32Array[];
}

/** Each group's code: its merged refs as one number, field 0 most significant (exact while the dictionaries' sizes multiply to at most 2^53). */
function codesOf({ page, to }: Renumbering, sizes: readonly number[], codes: Float64Array): void {
  const n = page.tx.length;
  codes.fill(0, 0, n);
  for (let k = 0; k < sizes.length; k++) {
    const refs = page.refs[k];
    const map = to[k];
    const size = sizes[k];
    for (let i = 0; i < n; i++) codes[i] = codes[i] * size + map[refs[i]];
  }
}

/** Group i's merged refs, from its code (mixed radix: field 0 most significant). */
function refsFromCode(code: number, sizes: readonly number[], out: Int32Array[], j: number): void {
  for (let k = sizes.length - 1, rest = code; k >= 0; k--) {
    out[k][j] = rest % sizes[k];
    rest = Math.floor(rest / sizes[k]);
  }
}

/** Below this many possible groups (the dictionaries' sizes multiplied), they are added up densely whatever the entries. */
const DENSE_MIN_SPAN = 4096;

/**
 * The pages' groups added up in arrays indexed by code, then the groups present (flows >
 * 0: every group has one) read out in order: for `span` (the possible groups) at most
 * twice the entries, so the arrays are at most twice what a Map would hold.
 */
function addUpDense(pages: readonly Renumbering[], values: readonly string[][], sizes: readonly number[], span: number): FieldGroups {
  // Each possible group's three sums side by side.
  const sums = new Float64Array(3 * span);
  const codes = new Float64Array(pages.reduce((most, { page }) => Math.max(most, page.tx.length), 0));
  for (const r of pages) {
    codesOf(r, sizes, codes);
    const { tx, rx, flows } = r.page;
    for (let i = 0, n = tx.length; i < n; i++) {
      const at = 3 * codes[i];
      sums[at] += tx[i];
      sums[at + 1] += rx[i];
      sums[at + 2] += flows[i];
    }
  }
  let count = 0;
  for (let c = 0; c < span; c++) if (sums[3 * c + 2] > 0) count++;
  const out = { values: values as string[][], refs: values.map(() => new Int32Array(count)), tx: new Float64Array(count), rx: new Float64Array(count), flows: new Float64Array(count) };
  for (let c = 0, j = 0; c < span; c++) {
    if (sums[3 * c + 2] === 0) continue;
    out.tx[j] = sums[3 * c];
    out.rx[j] = sums[3 * c + 1];
    out.flows[j] = sums[3 * c + 2];
    refsFromCode(c, sizes, out.refs, j);
    j++;
  }
  return out;
}

/**
 * The pages' groups added up by code in a Map (few groups among many possible), then put
 * in code order. Past 2^53 possible groups a code could not be exact: each group's code is
 * then its rank among all the pages' groups, sorted by their merged refs field by field.
 */
function addUpSparse(pages: readonly Renumbering[], values: readonly string[][], sizes: readonly number[], span: number): FieldGroups {
  const exact = span <= Number.MAX_SAFE_INTEGER;
  const coded = pages.map((r) => {
    const codes = new Float64Array(r.page.tx.length);
    if (exact) codesOf(r, sizes, codes);
    // Merged refs, kept when the codes are ranks (the output's refs come from them).
    const refs = exact ? [] : r.to.map((map, k) => Int32Array.from(r.page.refs[k], (ref) => map[ref]));
    return { page: r.page, codes, refs };
  });
  if (!exact) {
    const all = coded.flatMap((c) => Array.from(c.codes, (_, i) => [c, i] as const));
    const compare = ([a, i]: (typeof all)[number], [b, j]: (typeof all)[number]): number => {
      for (let k = 0; k < sizes.length; k++) if (a.refs[k][i] !== b.refs[k][j]) return a.refs[k][i] - b.refs[k][j];
      return 0;
    };
    all.sort(compare);
    let rank = 0;
    all.forEach((entry, e) => {
      if (e > 0 && compare(all[e - 1], entry) !== 0) rank++;
      entry[0].codes[entry[1]] = rank;
    });
  }
  const at = new Map<number, number>();
  const codes: number[] = [];
  const tx: number[] = [];
  const rx: number[] = [];
  const flows: number[] = [];
  // Where each group was first seen (for its refs when the codes are ranks).
  const first: (readonly [(typeof coded)[number], number])[] = [];
  for (const c of coded) {
    const { page } = c;
    for (let i = 0; i < c.codes.length; i++) {
      const j = at.get(c.codes[i]);
      if (j === undefined) {
        at.set(c.codes[i], codes.length);
        codes.push(c.codes[i]);
        tx.push(page.tx[i]);
        rx.push(page.rx[i]);
        flows.push(page.flows[i]);
        first.push([c, i]);
      } else {
        tx[j] += page.tx[i];
        rx[j] += page.rx[i];
        flows[j] += page.flows[i];
      }
    }
  }
  const order = Float64Array.from(codes).sort();
  const n = order.length;
  const out = { values: values as string[][], refs: values.map(() => new Int32Array(n)), tx: new Float64Array(n), rx: new Float64Array(n), flows: new Float64Array(n) };
  for (let o = 0; o < n; o++) {
    const j = at.get(order[o])!;
    out.tx[o] = tx[j];
    out.rx[o] = rx[j];
    out.flows[o] = flows[j];
    if (exact) refsFromCode(order[o], sizes, out.refs, o);
    else {
      const [c, i] = first[j];
      for (let k = 0; k < sizes.length; k++) out.refs[k][o] = c.refs[k][i];
    }
  }
  return out;
}

/**
 * The sum of the shards' partial groups (pages in any order), one entry per group, in
 * key order (a single page is returned as it is): each field's dictionaries merged into
 * one, every page's dictionary entries renumbered into it, then the groups added up by
 * code, in arrays when the possible groups are few enough (addUpDense), else in a Map.
 */
export function mergeGroups(sources: readonly FieldGroups[][]): FieldGroups {
  const pages = sources.flat().filter((page) => page.tx.length > 0);
  if (pages.length === 1) return pages[0];
  const fields = sources.flat()[0]?.values.length ?? 0;
  const values: string[][] = [];
  for (let k = 0; k < fields; k++) values.push(unionSorted(pages.map((page) => page.values[k])));
  let entries = 0;
  for (const page of pages) entries += page.tx.length;
  const sizes = values.map((v) => Math.max(v.length, 1));
  let span = 1;
  for (const size of sizes) span *= size;
  const indexes = values.map((merged) => new Map(merged.map((v, i) => [v, i])));
  const renumbering = pages.map((page) => ({ page, to: indexes.map((index, k) => Int32Array.from(page.values[k], (v) => index.get(v)!)) }));
  return span <= Math.max(2 * entries, DENSE_MIN_SPAN) ? addUpDense(renumbering, values, sizes, span) : addUpSparse(renumbering, values, sizes, span);
}
