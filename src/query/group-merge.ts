/**
 * A gateway's sum of the shards' partial top-N groups (src/query/top.ts FieldGroups,
 * pages of them from every primary), added up by one number per group made of its
 * indexes into dictionaries merged once: decoding ~300k group keys and comparing them as
 * strings took ~100 ms of the gateway's CPU per query of a 1M-flow hour.
 *
 * rankSources ranks the dense sums where they are added up, in arrays kept from one query
 * to the next (the merged groups' columns and a fresh 3 x span array were ~5.6 MB outside
 * V8's heap per query of a 1M-flow hour, which is what starts a gateway's full collections).
 */
import { compareStrings, groupKeyAt, rankTop, type FieldGroups, type RankedGroups, type RankQuery, type TopAnswer } from "./top";

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

/** Arrays kept from one query to the next, each up to KEPT_SCRATCH entries (4 MB; at most 20 MB in all: a larger query's are its own). */
const KEPT_SCRATCH = 1 << 19;
const kept = { sums: new Float64Array(0), codes: new Float64Array(0), tx: new Float64Array(0), rx: new Float64Array(0), flows: new Float64Array(0) };
function scratch(name: keyof typeof kept, n: number): Float64Array {
  if (kept[name].length >= n) return kept[name];
  const fresh = new Float64Array(n);
  if (n <= KEPT_SCRATCH) kept[name] = fresh;
  return fresh;
}

/** Dense sums read out: the groups present (flows > 0: every group has one) in code order, each's code and sums. */
interface DenseSums {
  count: number;
  codes: Float64Array;
  tx: Float64Array;
  rx: Float64Array;
  flows: Float64Array;
}

/**
 * The pages' groups added up in arrays indexed by code, then the groups present read out
 * in order: for `span` (the possible groups) at most twice the entries, so the arrays are
 * at most twice what a Map would hold. The arrays are kept ones when not too large: read
 * them before the next call.
 */
function addUpDense(pages: readonly Renumbering[], sizes: readonly number[], span: number): DenseSums {
  // Each possible group's three sums side by side.
  const sums = scratch("sums", 3 * span).fill(0, 0, 3 * span);
  const codes = scratch("codes", Math.max(span, pages.reduce((most, { page }) => Math.max(most, page.tx.length), 0)));
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
  const tx = scratch("tx", span);
  const rx = scratch("rx", span);
  const flows = scratch("flows", span);
  let count = 0;
  for (let c = 0; c < span; c++) {
    if (sums[3 * c + 2] === 0) continue;
    codes[count] = c;
    tx[count] = sums[3 * c];
    rx[count] = sums[3 * c + 1];
    flows[count++] = sums[3 * c + 2];
  }
  return { count, codes, tx, rx, flows };
}

/** Dense sums as FieldGroups (columns of their own). */
function denseGroups(dense: DenseSums, values: readonly string[][], sizes: readonly number[]): FieldGroups {
  const { count, codes } = dense;
  const refs = values.map(() => new Int32Array(count));
  for (let j = 0; j < count; j++) refsFromCode(codes[j], sizes, refs, j);
  return { values: values as string[][], refs, tx: dense.tx.slice(0, count), rx: dense.rx.slice(0, count), flows: dense.flows.slice(0, count) };
}

/** Dense sums as RankedGroups, in their arrays (ascending codes are ascending keys). */
function rankedDense(dense: DenseSums, values: readonly string[][], sizes: readonly number[]): RankedGroups {
  const { codes } = dense;
  const refs = values.map(() => new Int32Array(1));
  return {
    tx: dense.tx,
    rx: dense.rx,
    flows: dense.flows,
    count: dense.count,
    keyBefore: (i, j) => codes[i] < codes[j],
    keyAt(j) {
      refsFromCode(codes[j], sizes, refs, 0);
      return groupKeyAt({ values: values as string[][], refs }, 0);
    },
  };
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

/** The pages' dictionaries merged, each page's entries renumbered into them, and the possible groups they make. */
function merged(pages: readonly FieldGroups[]): { values: string[][]; renumbering: Renumbering[]; sizes: number[]; span: number; dense: boolean } {
  const fields = pages[0].values.length;
  const values: string[][] = [];
  for (let k = 0; k < fields; k++) values.push(unionSorted(pages.map((page) => page.values[k])));
  let entries = 0;
  for (const page of pages) entries += page.tx.length;
  const sizes = values.map((v) => Math.max(v.length, 1));
  let span = 1;
  for (const size of sizes) span *= size;
  const indexes = values.map((merged) => new Map(merged.map((v, i) => [v, i])));
  const renumbering = pages.map((page) => ({ page, to: indexes.map((index, k) => Int32Array.from(page.values[k], (v) => index.get(v)!)) }));
  return { values, renumbering, sizes, span, dense: span <= Math.max(2 * entries, DENSE_MIN_SPAN) };
}

/**
 * The sum of the shards' partial groups (pages in any order), one entry per group, in
 * key order (a single page is returned as it is): each field's dictionaries merged into
 * one, every page's dictionary entries renumbered into it, then the groups added up by
 * code, in arrays when the possible groups are few enough (addUpDense), else in a Map.
 */
export function mergeGroups(sources: readonly FieldGroups[][]): FieldGroups {
  const pages = sources.flat().filter((page) => page.tx.length > 0);
  if (pages.length <= 1) return pages[0] ?? emptyLike(sources);
  const { values, renumbering, sizes, span, dense } = merged(pages);
  return dense ? denseGroups(addUpDense(renumbering, sizes, span), values, sizes) : addUpSparse(renumbering, values, sizes, span);
}

/** The top-N of the shards' partial groups: mergeGroups, ranked where dense sums are added up. */
export function rankSources(sources: readonly FieldGroups[][], query: RankQuery): TopAnswer {
  const pages = sources.flat().filter((page) => page.tx.length > 0);
  if (pages.length <= 1) return rankTop(pages[0] ?? emptyLike(sources), query);
  const { values, renumbering, sizes, span, dense } = merged(pages);
  if (!dense) return rankTop(addUpSparse(renumbering, values, sizes, span), query);
  // Ranked before anything else runs: the next query's adding up reuses the arrays.
  return rankTop(rankedDense(addUpDense(renumbering, sizes, span), values, sizes), query);
}

/** No groups, with as many fields as the sources' pages have. */
function emptyLike(sources: readonly FieldGroups[][]): FieldGroups {
  const fields = sources.flat()[0]?.values.length ?? 0;
  return { values: Array.from({ length: fields }, () => []), refs: Array.from({ length: fields }, () => new Int32Array(0)), tx: new Float64Array(0), rx: new Float64Array(0), flows: new Float64Array(0) };
}
