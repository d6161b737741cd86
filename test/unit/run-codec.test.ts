import fc from "fast-check";
import { BinaryPayloadSerializer } from "../../mixins/binary.serializer";
import { PartitionStore, type FlowRun } from "../../src/partition-store";
import { splitByPartition } from "../../src/batching";
import { MAX_READ_CURSORS, ReadPath } from "../../src/shard/read-path";
import { decodeRunPage, encodeRunPage, encodeUnchanged } from "../../src/wire/run-codec";

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const key = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.string({ unit: fc.oneof(fc.constantFrom("a", "🚀", "\u0000", " ", '"'), loneSurrogate), maxLength: 100 }),
);
const count = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const run = fc.uniqueArray(key, { maxLength: 60 }).chain((keys) =>
  fc.record({ keys: fc.constant(keys.sort()), tx: fc.array(count, { minLength: keys.length, maxLength: keys.length }), rx: fc.array(count, { minLength: keys.length, maxLength: keys.length }) }),
);

/** Every page of a run, cut at maxBytes, decoded and put back together. */
function roundTrip(r: FlowRun, maxBytes: number): { run: FlowRun; pages: Buffer[] } {
  const out: FlowRun = { keys: [], tx: [], rx: [] };
  const pages: Buffer[] = [];
  let offset = 0;
  let cursors = 0;
  do {
    const { bytes, next } = encodeRunPage(7, r, offset, maxBytes, (at) => `cursor-${at}-${++cursors}`);
    pages.push(bytes);
    const page = decodeRunPage(bytes);
    expect(page.cursor).toBe(next < r.keys.length ? `cursor-${next}-${cursors}` : null);
    expect(page.unchanged).toBe(false);
    expect(page.version).toBe(7);
    out.keys.push(...page.keys);
    out.tx.push(...page.tx);
    out.rx.push(...page.rx);
    expect(next).toBeGreaterThan(offset === r.keys.length ? offset - 1 : offset);
    offset = next;
  } while (offset < r.keys.length);
  return { run: out, pages };
}

describe("run codec", () => {
  test("pages decode to the run they were cut from (keys exact, lone surrogates included; numbers up to 2^53-1), each within maxBytes unless it holds one flow", () => {
    fc.assert(
      fc.property(run, fc.integer({ min: 64, max: 4096 }), (r, maxBytes) => {
        const { run: back, pages } = roundTrip(r, maxBytes);
        expect(back).toEqual(r);
        for (const p of pages) if (decodeRunPage(p).keys.length > 1) expect(p.length).toBeLessThanOrEqual(maxBytes);
      }),
      { numRuns: 300 },
    );
  });

  test("an empty run is one page without a cursor; an unchanged answer carries its version and nothing else", () => {
    const empty = encodeRunPage(3, { keys: [], tx: [], rx: [] }, 0, 1024, () => "never");
    expect(empty.next).toBe(0);
    expect(decodeRunPage(empty.bytes)).toEqual({ version: 3, unchanged: false, cursor: null, keys: [], tx: new Float64Array(0), rx: new Float64Array(0), inKeyOrder: false });
    expect(decodeRunPage(encodeUnchanged(41))).toMatchObject({ version: 41, unchanged: true, cursor: null, keys: [] });
  });

  test("a page holds as many flows as fit: ~10k short keys in 512 KiB", () => {
    const keys = Array.from({ length: 30_000 }, (_, i) => `app-${String(i % 1000).padStart(4, "0")}  svc-${String(Math.floor(i / 1000)).padStart(4, "0")}  vpc-9e3779b1`).sort();
    const r = { keys, tx: keys.map((_, i) => i), rx: keys.map((_, i) => 2 * i) };
    const { bytes, next } = encodeRunPage(1, r, 0, 512 * 1024, () => "c");
    expect(bytes.length).toBeLessThanOrEqual(512 * 1024);
    expect(next).toBeGreaterThan(9000);
    expect(decodeRunPage(bytes).keys).toEqual(keys.slice(0, next));
  });

  test("damaged bytes are refused, never read as a shorter page", () => {
    const { bytes } = encodeRunPage(1, { keys: ["a  b  c", "d  e  f"], tx: [1, 2], rx: [3, 4] }, 0, 1024, () => "c");
    for (let cut = 0; cut < bytes.length; cut++) expect(() => decodeRunPage(bytes.subarray(0, cut))).toThrow();
    expect(() => decodeRunPage(Buffer.concat([bytes, Buffer.from([0])]))).toThrow("after the page");
    const other = Buffer.from(bytes);
    other[0] = 0xb2;
    expect(() => decodeRunPage(other)).toThrow("unknown page format");
  });

  test("a page travels as its bytes in a response packet", () => {
    const s = new BinaryPayloadSerializer();
    const { bytes } = encodeRunPage(9, { keys: ["x\ud800  y  z"], tx: [5], rx: [6] }, 0, 1024, () => "c");
    const packet = s.deserialize(s.serialize({ ver: "4", sender: "n1", id: "r1", success: true, data: bytes }, "RES"), "RES");
    expect(decodeRunPage(packet.data as Buffer)).toMatchObject({ version: 9, keys: ["x\ud800  y  z"], cursor: null });
  });
});

describe("ReadPath pages for remote callers", () => {
  const P = 8;
  const all = Array.from({ length: P }, (_, p) => p);
  function path(pageBytes: number, now = () => 0) {
    const store = new PartitionStore({ max: 10, ttlMs: 1000 });
    const records = Array.from({ length: 3000 }, (_, i) => ({ src_app: `s${i % 50}`, dest_app: `d${Math.floor(i / 50)}`, vpc_id: "v\u0000", hour: 5, bytes_tx: i, bytes_rx: 2 * i }));
    store.apply(splitByPartition(records, P));
    const reads = new ReadPath({ store, notServedAsPrimary: () => [], confirmLatest: async () => null, now, cursorMs: 30_000, pageBytes });
    return { store, reads };
  }
  const params = { epoch: 1, hour: 5, filter: {}, partitions: all };

  test("followed page by page, the pages are the run a local caller gets; unchanged when the version is known", async () => {
    const { store, reads } = path(16 * 1024);
    let page = decodeRunPage((await reads.read(params, true)) as Buffer);
    const keys = [...page.keys];
    const tx = [...page.tx];
    let pages = 1;
    while (page.cursor !== null) {
      page = decodeRunPage(reads.readMore(page.cursor));
      keys.push(...page.keys);
      tx.push(...page.tx);
      pages++;
    }
    const local = store.read(5, {}, all);
    expect(pages).toBeGreaterThan(3);
    expect(keys).toEqual(local.keys);
    expect(tx).toEqual(local.tx);
    expect(reads.openCursors).toBe(0);
    const version = store.hourVersion(5, all);
    expect(decodeRunPage((await reads.read({ ...params, knownVersion: version }, true)) as Buffer).unchanged).toBe(true);
    expect(await reads.read({ ...params, knownVersion: version }, false)).toMatchObject({ unchanged: true, run: null });
  });

  test("cursors are bounded: past MAX_READ_CURSORS the least recently used is dropped (CURSOR_EXPIRED), and they expire", async () => {
    let clock = 0;
    const { reads } = path(1024, () => clock);
    const first = decodeRunPage((await reads.read(params, true)) as Buffer).cursor!;
    const opened: string[] = [first];
    for (let i = 0; i < MAX_READ_CURSORS; i++) opened.push(decodeRunPage((await reads.read(params, true)) as Buffer).cursor!);
    expect(reads.openCursors).toBe(MAX_READ_CURSORS);
    expect(() => reads.readMore(first)).toThrow("Read cursor expired");
    // The second read's cursor, used now, outlives the third's.
    const used = decodeRunPage(reads.readMore(opened[1])).cursor!;
    expect(used).toBe(opened[1]);
    decodeRunPage((await reads.read(params, true)) as Buffer);
    expect(() => reads.readMore(opened[2])).toThrow("Read cursor expired");
    expect(() => reads.readMore(opened[1])).not.toThrow();
    clock = 60_000;
    reads.expire(clock);
    expect(reads.openCursors).toBe(0);
  });
});
