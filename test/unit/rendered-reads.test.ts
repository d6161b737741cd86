import { splitByPartition } from "../../src/batching";
import { toFlowRecords } from "../../src/flow-key";
import { PartitionStore } from "../../src/partition-store";
import { RenderedReadCache, renderFlowRecords } from "../../src/rendered-reads";

const rec = (i: number, hour: number, bytes_tx = 1) => ({ src_app: `s${i}`, dest_app: "d", vpc_id: "v\u0000\"x", hour, bytes_tx, bytes_rx: 2 });

test("a cached body is served only while the hour's version is unchanged", () => {
  const s = new PartitionStore({ max: 10, ttlMs: 1000 });
  const cache = new RenderedReadCache();
  const render = (hour: number) => {
    const version = s.hourVersion(hour);
    const hit = cache.get(hour, {}, version);
    if (hit) return hit;
    const run = s.read(hour, {});
    return cache.set(hour, {}, version, renderFlowRecords(toFlowRecords(hour, run.keys, run.tx, run.rx)));
  };
  const fresh = (hour: number) => {
    const run = s.read(hour, {});
    return JSON.stringify(toFlowRecords(hour, run.keys, run.tx, run.rx));
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

test("bounded by entries and bytes", () => {
  const cache = new RenderedReadCache(100, 2);
  cache.set(1, {}, 1, Buffer.alloc(40));
  cache.set(2, {}, 1, Buffer.alloc(40));
  cache.set(3, {}, 1, Buffer.alloc(40));
  expect(cache.size).toBe(2);
  expect(cache.get(1, {}, 1)).toBeUndefined();
  cache.set(4, { src_app: "a" }, 1, Buffer.alloc(90));
  expect(cache.size).toBe(1);
  expect(cache.get(4, {}, 1)).toBeUndefined();
  expect(cache.get(4, { src_app: "a" }, 1)?.length).toBe(90);
  expect(cache.get(4, { src_app: "a" }, 2)).toBeUndefined();
});
