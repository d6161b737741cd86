/** The gateway's streaming read of an hour: the merge of paged runs and its rendering, against a plain model. */
import fc from "fast-check";
import { splitByPartition, type FlowRecord } from "../../src/batching";
import { encodeFlowKey } from "../../src/flow-key";
import { flowRecordsOf } from "../support/query-model";
import { PartitionStore } from "../../src/partition-store";
import { csvRow } from "../../src/query/csv";
import { collectRecords, flowCsvChunks, flowJsonChunks, jsonFragment } from "../../src/query/flow-render";
import { mergePaged, wholeRun, type Paged, type SortedFlows } from "../../src/query/hour-merge";
import { keepingBody, readOwners, renderHour } from "../../src/query/hour-read";
import { keyColumns } from "../../src/hour-view";

const COLUMNS = ["src_app", "dest_app", "vpc_id", "hour", "bytes_tx", "bytes_rx"];
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
/** Names as clients send them: plain, hostile to JSON or CSV, and odd Unicode. */
const name = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[a-z0-9-]{1,12}$/) },
  fc.string({ unit: fc.constantFrom("a", " ", '"', "\\", "\u0000", "\u001f", "\u2028", "🚀", ",", "=", "\r", "\n", "é"), minLength: 1, maxLength: 8 }),
  fc.string({ unit: fc.oneof(fc.constantFrom("x", "\ud83d\ude80"), loneSurrogate), minLength: 1, maxLength: 6 }),
  fc.constantFrom("__proto__", "constructor", "-1", "  "),
);
const sum = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.constant(Number.MAX_SAFE_INTEGER), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const flow = fc.record({ src_app: name, dest_app: name, vpc_id: name, bytes_tx: sum, bytes_rx: sum });

/** The hour's records in order, as the model: sorted by encoded key. */
function model(hour: number, flows: readonly { src_app: string; dest_app: string; vpc_id: string; bytes_tx: number; bytes_rx: number }[]): { keys: string[]; tx: number[]; rx: number[]; records: FlowRecord[] } {
  const byKey = new Map<string, [number, number]>();
  for (const f of flows) byKey.set(encodeFlowKey(f.src_app, f.dest_app, f.vpc_id), [f.bytes_tx, f.bytes_rx]);
  const keys = [...byKey.keys()].sort();
  const tx = keys.map((k) => byKey.get(k)![0]);
  const rx = keys.map((k) => byKey.get(k)![1]);
  return { keys, tx, rx, records: flowRecordsOf(hour, keys, tx, rx) };
}

/** A node's run cut into pages of the given sizes, each fetched asynchronously; counts what was fetched. */
function paged(run: SortedFlows, sizes: number[], log: { fetched: number; failAt?: number }): Paged {
  const pages: SortedFlows[] = [];
  for (let at = 0, s = 0; at < run.keys.length || pages.length === 0; s++) {
    const n = Math.max(1, sizes[s % sizes.length] ?? 1);
    pages.push({ keys: run.keys.slice(at, at + n), tx: Array.from(run.tx).slice(at, at + n), rx: Array.from(run.rx).slice(at, at + n) });
    at += n;
  }
  const page = (i: number): Paged => ({
    flows: pages[i],
    next:
      i + 1 >= pages.length
        ? null
        : async () => {
            log.fetched++;
            await new Promise((r) => setImmediate(r));
            if (log.failAt === i + 1) throw new Error("node gone");
            return page(i + 1);
          },
  });
  return page(0);
}

/** The model's flows dealt to k nodes (each keeps its share sorted), each paged. */
function deal(m: { keys: string[]; tx: number[]; rx: number[] }, owners: number[], sizes: number[][], logs: { fetched: number; failAt?: number }[]): Paged[] {
  const runs = sizes.map(() => ({ keys: [] as string[], tx: [] as number[], rx: [] as number[] }));
  m.keys.forEach((k, i) => {
    const r = runs[owners[i % owners.length] % runs.length];
    r.keys.push(k);
    r.tx.push(m.tx[i]);
    r.rx.push(m.rx[i]);
  });
  return runs.map((r, i) => paged(r, sizes[i], logs[i]));
}

async function bytes(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}
const text = async (chunks: AsyncIterable<Buffer>) => (await bytes(chunks)).toString("utf8");

const nodesAndPages = fc.array(fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 5 });

describe("mergePaged", () => {
  test("the merge of k paged runs is the model, in slices of at most `slice`, each node at most one page ahead", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(flow, { maxLength: 80 }), fc.array(fc.nat(), { minLength: 1, maxLength: 30 }), nodesAndPages, fc.integer({ min: 1, max: 9 }), async (flows, owners, sizes, slice) => {
        const m = model(7, flows);
        const logs = sizes.map(() => ({ fetched: 0 }));
        const sources = deal(m, owners, sizes, logs);
        const keys: string[] = [];
        const tx: number[] = [];
        let consumed = 0;
        for await (const s of mergePaged(sources, slice)) {
          expect(s.end - s.start).toBeGreaterThan(0);
          expect(s.end - s.start).toBeLessThanOrEqual(slice);
          for (let i = s.start; i < s.end; i++) {
            keys.push(s.keys[i]);
            tx.push(s.tx[i]);
          }
          consumed += s.end - s.start;
          // Pages fetched never run ahead of what was handed on by more than one page per node (plus the slice being filled).
          const fetched = logs.reduce((a, l) => a + l.fetched, 0);
          expect(fetched).toBeLessThanOrEqual(consumed + slice + sizes.length);
        }
        expect(keys).toEqual(m.keys);
        expect(tx).toEqual(m.tx);
      }),
      { numRuns: 200 },
    );
  });

  test("a node whose next page cannot be fetched fails the merge with its error", async () => {
    const m = model(1, Array.from({ length: 30 }, (_, i) => ({ src_app: `s${i}`, dest_app: "d", vpc_id: "v", bytes_tx: i, bytes_rx: 0 })));
    const logs = [{ fetched: 0 }, { fetched: 0, failAt: 2 }];
    const sources = deal(m, [0, 1], [[3], [3]], logs);
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const s of mergePaged(sources, 4)) for (let i = s.start; i < s.end; i++) seen.push(s.keys[i]);
      })(),
    ).rejects.toThrow("node gone");
    expect(seen.length).toBeLessThan(30);
  });
});

describe("rendering", () => {
  test("JSON, CSV and records of merged hours are exactly what JSON.stringify, csvRow and the records model give", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(flow, { maxLength: 30 }), { maxLength: 3 }), fc.array(fc.nat(), { minLength: 1, maxLength: 10 }), nodesAndPages, async (hoursFlows, owners, sizes) => {
        const models = hoursFlows.map((flows, h) => model(100 + h, flows));
        const hours = () => models.map((m, h) => ({ hour: 100 + h, slices: mergePaged(deal(m, owners, sizes, sizes.map(() => ({ fetched: 0 }))), 4) }));
        const all = models.flatMap((m) => m.records);
        expect(await text(flowJsonChunks(hours()))).toBe(JSON.stringify(all));
        // A range's JSON, written straight into bytes: the same bytes.
        expect(await bytes(flowJsonChunks(hours(), false))).toEqual(Buffer.from(JSON.stringify(all), "utf8"));
        const csv = COLUMNS.join(",") + "\r\n" + all.map((r) => csvRow(COLUMNS, r as unknown as Record<string, string | number>)).join("");
        // As bytes, as a client gets them (a lone surrogate in CSV text is written as UTF-8 writes it, U+FFFD, as before).
        expect(await bytes(flowCsvChunks(COLUMNS, hours()))).toEqual(Buffer.from(csv, "utf8"));
        expect(await collectRecords(hours())).toEqual(all);
      }),
      { numRuns: 150 },
    );
  });

  test("a range's bytes have room for keys whose JSON is longest: lone surrogates, six bytes a unit", async () => {
    const name = "\ud800".repeat(60);
    const m = model(7, [{ src_app: name, dest_app: name, vpc_id: name, bytes_tx: Number.MAX_SAFE_INTEGER, bytes_rx: Number.MAX_SAFE_INTEGER }]);
    const hours = () => [{ hour: 7, slices: mergePaged(deal(m, [0], [[1]], [{ fetched: 0 }]), 4) }];
    expect(await bytes(flowJsonChunks(hours(), false))).toEqual(Buffer.from(JSON.stringify(m.records), "utf8"));
  });

  test("a key's JSON fragment is the start of its record's JSON", () => {
    fc.assert(
      fc.property(name, name, name, (s, d, v) => {
        expect(jsonFragment(encodeFlowKey(s, d, v))).toBe(JSON.stringify({ src_app: s, dest_app: d, vpc_id: v, hour: 1 }).slice(0, -2));
      }),
      { numRuns: 500 },
    );
  });

  test("renderHour: a small hour in hand is one Buffer, a large or paged one a stream; bodies up to the limit are kept", async () => {
    const m = model(3, Array.from({ length: 5000 }, (_, i) => ({ src_app: `s${i}`, dest_app: "d\"", vpc_id: "v", bytes_tx: i, bytes_rx: 1 })));
    const expected = JSON.stringify(m.records);
    const kept: Buffer[] = [];
    const keep = (chunks: Buffer[]) => kept.push(Buffer.concat(chunks));
    const small = await renderHour(3, [wholeRun({ keys: m.keys.slice(0, 10), tx: m.tx.slice(0, 10), rx: m.rx.slice(0, 10) })], 1 << 20, keep);
    expect(Buffer.isBuffer(small)).toBe(true);
    expect(small.toString()).toBe(JSON.stringify(m.records.slice(0, 10)));
    expect(kept).toEqual([small]);
    const big = await renderHour(3, [wholeRun(m)], 1 << 20, keep);
    expect(Buffer.isBuffer(big)).toBe(false);
    expect(await text(big as AsyncIterable<Buffer>)).toBe(expected);
    expect(kept[1].toString()).toBe(expected);
    const notKept = await renderHour(3, [wholeRun(m)], 1000, keep);
    expect(await text(notKept as AsyncIterable<Buffer>)).toBe(expected);
    expect(kept).toHaveLength(2);
  });

  test("renderHour: a node lost after the answer began errors the stream (the connection is cut), and nothing is kept", async () => {
    const m = model(3, Array.from({ length: 6000 }, (_, i) => ({ src_app: `s${i}`, dest_app: "d", vpc_id: "v", bytes_tx: i, bytes_rx: 1 })));
    const sources = deal(m, [0, 1], [[1000], [1000]], [{ fetched: 0 }, { fetched: 0, failAt: 2 }]);
    const kept: Buffer[][] = [];
    const stream = await renderHour(3, sources, 1 << 30, (c) => kept.push(c));
    expect(Buffer.isBuffer(stream)).toBe(false);
    let received = 0;
    await expect(
      (async () => {
        for await (const c of stream as AsyncIterable<Buffer>) received += c.length;
      })(),
    ).rejects.toThrow("node gone");
    expect(received).toBeGreaterThan(0);
    expect(kept).toEqual([]);
  });

  test("keepingBody keeps the whole body only if it fits", async () => {
    async function* chunks() {
      yield Buffer.from("ab");
      yield Buffer.from("cd");
    }
    const kept: string[] = [];
    const keep = (parts: Buffer[]) => kept.push(parts.map((p) => p.toString()).join("|"));
    expect(await text(keepingBody(chunks(), 4, keep))).toBe("abcd");
    expect(await text(keepingBody(chunks(), 3, keep))).toBe("abcd");
    expect(kept).toEqual(["ab|cd"]);
  });
});

describe("fragments kept with the store's views", () => {
  const P = 16;
  const rec = (i: number, tx = i) => ({ src_app: `s${i % 300}`, dest_app: i % 7 === 0 ? 'q"\u0000' : `d${Math.floor(i / 300)}`, vpc_id: "v", hour: 9, bytes_tx: tx, bytes_rx: 1 });
  const render = async (s: PartitionStore) => text(flowJsonChunks([{ hour: 9, slices: mergePaged([wholeRun(s.read(9, {}))]) }]));
  const fresh = (s: PartitionStore) => {
    const run = s.read(9, { src_app: undefined });
    return JSON.stringify(flowRecordsOf(9, [...run.keys], run.tx, run.rx));
  };

  test("reads after sums change, keys are added, removed (a revert) or partitions dropped render as a fresh rendering does", async () => {
    const s = new PartitionStore({ max: 100, ttlMs: 60_000 });
    s.apply(splitByPartition(Array.from({ length: 2000 }, (_, i) => rec(i)), P));
    expect(await render(s)).toBe(fresh(s));
    expect(await render(s)).toBe(fresh(s));
    const made = (keys: readonly string[]) => (keyColumns(keys)?.get("json 9") ?? []).filter((f) => f !== undefined).length;
    expect(made(s.read(9, {}).keys)).toBe(2000);
    s.apply(splitByPartition([rec(5, 999)], P)); // a sum
    expect(await render(s)).toBe(fresh(s));
    s.apply(splitByPartition(Array.from({ length: 40 }, (_, i) => rec(3000 + 37 * i)), P)); // new keys: the view is extended, fragments carried over
    expect(made(s.read(9, {}).keys)).toBe(2000);
    expect(await render(s)).toBe(fresh(s));
    const grown = s.read(9, {}).keys;
    expect(grown.length).toBeGreaterThan(2000);
    expect(made(grown)).toBe(grown.length);
    const batch = splitByPartition([rec(9001), rec(9002)], P, "k1");
    s.apply(batch);
    expect(await render(s)).toBe(fresh(s));
    expect(s.revert(batch)).toBeGreaterThan(0); // slots removed: rebuilt
    expect(s.read(9, {}).keys).toHaveLength(grown.length);
    expect(await render(s)).toBe(fresh(s));
    s.drop(s.partitions.keys().next().value as number);
    expect(await render(s)).toBe(fresh(s));
  });

  test("fragments are kept for the last two views rendered only", async () => {
    const s = new PartitionStore({ max: 100, ttlMs: 60_000 });
    for (const hour of [1, 2, 3]) s.apply(splitByPartition(Array.from({ length: 600 }, (_, i) => ({ ...rec(i), hour })), P));
    const views = [1, 2, 3].map((hour) => s.read(hour, {}).keys);
    for (const hour of [1, 2, 3]) await text(flowJsonChunks([{ hour, slices: mergePaged([wholeRun(s.read(hour, {}))]) }]));
    expect(views.map((keys, i) => keyColumns(keys)?.has(`json ${i + 1}`))).toEqual([false, true, true]);
  });
});


describe("readOwners: unchanged owners and the kept body", () => {
  const nodes: [string, number[]][] = [
    ["n1", [0, 1]],
    ["n2", [2, 3]],
  ];
  const flows = { keys: ["a  b  c"], tx: [1], rx: [2] };
  /** Owners at these versions; a read with the owner's version as knownVersion answers unchanged. */
  function owners(versions: Record<string, number>) {
    const calls: string[] = [];
    const read = async (nodeID: string, _partitions: number[], knownVersion?: number) => {
      calls.push(`${nodeID}${knownVersion === undefined ? "" : `?${knownVersion}`}`);
      return { version: versions[nodeID], first: knownVersion === versions[nodeID] ? null : wholeRun(flows) };
    };
    return { read, calls };
  }
  const body = Buffer.from("[kept]");
  const keptAt = (version: string) => (v: string) => (v === version ? body : undefined);

  test("first read: in full; then, untouched: unchanged and the kept body, one round trip", async () => {
    const o = owners({ n1: 5, n2: 7 });
    const first = await readOwners(3, nodes, undefined, o.read, () => undefined);
    expect(first).toMatchObject({ version: "3|n1:5,n2:7", known: { epoch: 3, versions: { n1: 5, n2: 7 }, changed: true } });
    // The read after a changed one is in full, and finds the kept body by the versions.
    const second = await readOwners(3, nodes, first!.known, o.read, keptAt("3|n1:5,n2:7"));
    expect(second).toEqual({ kept: body, known: { epoch: 3, versions: { n1: 5, n2: 7 }, changed: false } });
    expect(o.calls).toEqual(["n1", "n2", "n1", "n2"]);
    const third = await readOwners(3, nodes, second!.known, o.read, keptAt("3|n1:5,n2:7"));
    expect(third).toMatchObject({ kept: body });
    expect(o.calls.slice(4)).toEqual(["n1?5", "n2?7"]);
  });

  test("one owner changed: the others read again in full; the next read goes in full at once", async () => {
    const o = owners({ n1: 5, n2: 8 });
    const known = { epoch: 3, versions: { n1: 5, n2: 7 }, changed: false };
    const answer = await readOwners(3, nodes, known, o.read, keptAt("3|n1:5,n2:7"));
    expect(answer).toMatchObject({ version: "3|n1:5,n2:8", known: { changed: true } });
    expect(o.calls).toEqual(["n1?5", "n2?7", "n1"]);
    expect((answer as { sources: Paged[] }).sources).toHaveLength(2);
    await readOwners(3, nodes, answer!.known, o.read, () => undefined);
    expect(o.calls.slice(3)).toEqual(["n1", "n2"]);
  });

  test("another epoch's versions are not sent; an owner that does not answer fails the attempt", async () => {
    const o = owners({ n1: 5, n2: 7 });
    await readOwners(4, nodes, { epoch: 3, versions: { n1: 5, n2: 7 } }, o.read, () => undefined);
    expect(o.calls).toEqual(["n1", "n2"]);
    expect(await readOwners(4, nodes, undefined, async (n) => (n === "n2" ? null : o.read(n, [])), () => undefined)).toBeNull();
  });
});
