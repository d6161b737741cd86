import { splitByPartition } from "../../src/batching";
import { PartitionStore } from "../../src/partition-store";
import {
  READ_VERSIONS_MAX_BYTES,
  READ_VERSIONS_MAX_ENTRIES,
  RENDERED_MAX_BYTES,
  RENDERED_MAX_ENTRIES,
  RenderedReadCache,
  filterKey,
  readVersionCache,
  readVersionsBytes,
  renderedEntryBytes,
} from "../../src/rendered-reads";
import { flowRecordsOf } from "../support/query-model";

const rec = (i: number, hour: number, bytes_tx = 1) => ({ src_app: `s${i}`, dest_app: "d", vpc_id: "v\u0000\"x", hour, bytes_tx, bytes_rx: 2 });

test("a cached body is served only while the hour's version is unchanged", () => {
  const s = new PartitionStore({ max: 10, ttlMs: 1000 });
  const cache = new RenderedReadCache();
  const render = (hour: number) => {
    const version = s.hourVersion(hour);
    const hit = cache.get(hour, {}, version);
    if (hit) return hit;
    const run = s.read(hour, {});
    cache.keep(hour, {}, version, [Buffer.from(JSON.stringify(flowRecordsOf(hour, run.keys, run.tx, run.rx)))]);
    return cache.get(hour, {}, version)!;
  };
  const fresh = (hour: number) => {
    const run = s.read(hour, {});
    return JSON.stringify(flowRecordsOf(hour, run.keys, run.tx, run.rx));
  };
  s.apply(splitByPartition(Array.from({ length: 700 }, (_, i) => rec(i, 1)), 16));
  const first = render(1);
  expect(render(1)).toBe(first); // cached
  s.apply(splitByPartition([rec(3, 1, 5)], 16)); // a sum changes
  expect(render(1).toString()).toBe(fresh(1));
  s.apply(splitByPartition([rec(9999, 1)], 16)); // a key is added
  expect(render(1).toString()).toBe(fresh(1));
  s.apply(splitByPartition([rec(1, 2)], 16)); // another hour: still cached
  const again = render(1);
  expect(render(1)).toBe(again);
  s.drop(s.partitions.keys().next().value as number);
  expect(render(1).toString()).toBe(fresh(1));
});

describe("bounds: a client reading ever-new filters cannot grow a gateway's memory", () => {
  const MiB = 1024 * 1024;

  test("rendered bodies: the least recently used pair goes first past maxEntries", () => {
    const cache = new RenderedReadCache(MiB, 2);
    cache.keep(1, {}, 1, [Buffer.alloc(40)]);
    cache.keep(2, {}, 1, [Buffer.alloc(40)]);
    expect(cache.get(1, {}, 1)?.length).toBe(40); // 1 is now more recent than 2
    cache.keep(3, {}, 1, [Buffer.alloc(40)]);
    expect(cache.size).toBe(2);
    expect(cache.get(2, {}, 1)).toBeUndefined();
    expect(cache.get(1, {}, 1)?.length).toBe(40);
    expect(cache.get(3, {}, 1)?.length).toBe(40);
  });

  test("a body kept as the chunks it streamed in is charged for them and joined once, on its first hit", () => {
    const cache = new RenderedReadCache(100_000, 1000);
    const chunks = [Buffer.from("[1,"), Buffer.alloc(30_000, 0x20), Buffer.from("2]")];
    cache.keep(5, {}, "v", chunks);
    expect(cache.bytes).toBe(renderedEntryBytes(`5${filterKey({})}`, { version: "v", body: chunks }));
    expect(cache.bytes).toBeGreaterThan(30_005);
    const body = cache.get(5, {}, "v")!;
    expect(body.equals(Buffer.concat(chunks))).toBe(true);
    expect(cache.get(5, {}, "v")).toBe(body);
    // chunks over the bound are not kept
    cache.keep(6, {}, "v", [Buffer.alloc(60_000), Buffer.alloc(60_000)]);
    expect(cache.get(6, {}, "v")).toBeUndefined();
  });

  test("rendered bodies: bytes stay under maxBytes; a body over it is not kept; a stale version is dropped", () => {
    const cache = new RenderedReadCache(100_000, 1000);
    for (let hour = 0; hour < 50; hour++) {
      cache.keep(hour, { src_app: `agent-${hour}` }, "v", [Buffer.alloc(30_000)]);
      expect(cache.bytes).toBeLessThanOrEqual(100_000);
    }
    expect(cache.size).toBe(3); // 3 x (30,000 + its key and entry) fit in 100,000 bytes
    expect(cache.get(49, { src_app: "agent-49" }, "v")?.length).toBe(30_000);
    expect(cache.get(46, { src_app: "agent-46" }, "v")).toBeUndefined();
    // a body larger than the whole cache is not kept, and does not push the others out
    const huge = Buffer.alloc(200_000);
    cache.keep(7, {}, "v", [huge]);
    expect(cache.get(7, {}, "v")).toBeUndefined();
    expect(cache.size).toBe(3);
    // the filter is part of the key; a new version of the same pair replaces the old body
    expect(cache.get(49, {}, "v")).toBeUndefined();
    expect(cache.get(49, { src_app: "agent-49" }, "w")).toBeUndefined();
    expect(cache.size).toBe(2);
    expect(cache.bytes).toBe(2 * renderedEntryBytes(`48${filterKey({ src_app: "agent-48" })}`, { version: "v", body: [Buffer.alloc(30_000)] }));
  });

  test("rendered bodies: 100,000 distinct filters keep at most maxEntries", () => {
    const cache = new RenderedReadCache();
    for (let i = 0; i < 100_000; i++) cache.keep(7, { src_app: `client-${i}` }, "1|n:1", [Buffer.from("[]")]);
    expect(cache.size).toBe(RENDERED_MAX_ENTRIES);
    expect(cache.bytes).toBeLessThanOrEqual(RENDERED_MAX_BYTES);
    expect(cache.get(7, { src_app: "client-99999" }, "1|n:1")?.toString()).toBe("[]");
    expect(cache.get(7, { src_app: "client-0" }, "1|n:1")).toBeUndefined();
  });

  test("read versions: at most maxEntries, and long filters are bounded by bytes", () => {
    const versions = readVersionCache();
    const entry = { epoch: 3, versions: { "node-a": 17, "node-b": 4 } };
    for (let i = 0; i < 100_000; i++) versions.set(`489000${filterKey({ src_app: `client-${i}` })}`, entry);
    expect(versions.size).toBe(READ_VERSIONS_MAX_ENTRIES);
    expect(versions.calculatedSize).toBeLessThanOrEqual(READ_VERSIONS_MAX_BYTES);
    expect(versions.get(`489000${filterKey({ src_app: "client-99999" })}`)).toBe(entry);
    expect(versions.get(`489000${filterKey({ src_app: "client-0" })}`)).toBeUndefined();
    // the longest filters there are (3 x 256 code points, each written by JSON as \u0000): bytes bind first
    const longest = (i: number) => `${i}${filterKey({ src_app: "\u0000".repeat(256), dest_app: "\u0000".repeat(256), vpc_id: `${"\u0000".repeat(250)}${i}` })}`;
    for (let i = 0; i < 5000; i++) versions.set(longest(i), entry);
    expect(readVersionsBytes(longest(0), entry)).toBeGreaterThan(8000);
    expect(versions.calculatedSize).toBeLessThanOrEqual(READ_VERSIONS_MAX_BYTES);
    expect(versions.size).toBeLessThan(READ_VERSIONS_MAX_ENTRIES);
    expect(versions.get(longest(4999))).toBe(entry);
  });
});
