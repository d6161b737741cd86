/** Range reads: hour by hour, each hour merged in slices, the next hour read meanwhile; parameters checked. */
import { encodeFlowKey } from "../../src/flow-key";
import type { FlowRun } from "../../src/partition-store";
import { routeAccess } from "../../src/gateway/access";
import { collectRecords, type HourSlices } from "../../src/query/flow-render";
import { wholeRun, type Paged } from "../../src/query/hour-merge";
import { readRange, widestHours } from "../../src/query/range";
import { groupByOf, requestedHours } from "../../src/validation";

const runOf = (hour: number, n: number): FlowRun => {
  const keys = Array.from({ length: n }, (_, i) => encodeFlowKey(`s${String(i).padStart(4, "0")}`, "d", "v"));
  return { keys, tx: keys.map((_, i) => hour + i), rx: keys.map(() => 1) };
};
/** An hour as one owner answers it in process: its whole run. */
const sourcesOf = (hour: number, n: number): Paged[] => [wholeRun(runOf(hour, n))];

describe("readRange", () => {
  test("every hour in order, in slices; at most the next hour read ahead", async () => {
    const asked: number[] = [];
    const readHour = async (hour: number) => {
      asked.push(hour);
      return sourcesOf(hour, hour % 3 === 0 ? 0 : 5);
    };
    const hours = await readRange(10, 16, readHour, 2);
    expect(asked).toEqual([10]);
    const seen: number[][] = [];
    for await (const { hour, slices } of hours as AsyncIterable<HourSlices>) {
      for await (const slice of slices) {
        expect(slice.end - slice.start).toBeLessThanOrEqual(2);
        // The hour handed on, and at most the next one read meanwhile.
        expect(asked[asked.length - 1]).toBeLessThanOrEqual(hour + 1);
        seen.push(Array.from({ length: slice.end - slice.start }, () => hour));
      }
    }
    expect(asked).toEqual([10, 11, 12, 13, 14, 15, 16]);
    expect(seen.flat()).toEqual([10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 16, 16, 16, 16, 16]);
  });

  test("the first hour's failure fails the call; a later one fails the reading; stopping early leaves nothing dangling", async () => {
    await expect(readRange(1, 3, async () => Promise.reject(new Error("no primary")))).rejects.toThrow("no primary");
    const failing = await readRange(1, 3, async (h) => (h === 2 ? Promise.reject(new Error("hour 2")) : sourcesOf(h, 1)));
    await expect(collectRecords(failing)).rejects.toThrow("hour 2");
    const early = await readRange(1, 3, async (h) => (h === 1 ? sourcesOf(h, 1) : Promise.reject(new Error("never awaited"))));
    for await (const _ of early) break;
    await new Promise((r) => setImmediate(r));
  });

  test("collectRecords gives every record", async () => {
    const all = await collectRecords(await readRange(5, 6, async (h) => sourcesOf(h, 3)));
    expect(all.map((r) => [r.src_app, r.hour, r.bytes_tx])).toEqual([
      ["s0000", 5, 5],
      ["s0001", 5, 6],
      ["s0002", 5, 7],
      ["s0000", 6, 6],
      ["s0001", 6, 7],
      ["s0002", 6, 8],
    ]);
  });
});

describe("parameters", () => {
  test.each([
    [{ hour: 5 }, { from: 5, to: 5 }],
    [{ from: 5, to: 5 }, { from: 5, to: 5 }],
    [{ from: 1, to: 744 }, { from: 1, to: 744 }],
  ])("%j reads %j", (params, want) => {
    expect(requestedHours(params, 744)).toEqual(want);
  });

  test.each([
    [{}, "required", "hour"],
    [{ from: 1 }, "required", "to"],
    [{ to: 1 }, "required", "from"],
    [{ hour: 1, from: 1, to: 2 }, "forbidden", "from"],
    [{ hour: 1, to: 2 }, "forbidden", "to"],
    [{ from: 3, to: 2 }, "rangeOrder", "to"],
    [{ from: 1, to: 745 }, "rangeHours", "to"],
  ])("%j is refused (%s %s)", (params, type, field) => {
    expect(requestedHours(params, 744)).toEqual({ problems: [expect.objectContaining({ type, field, message: expect.any(String) })] });
  });

  test("by: a comma list or an array of the three fields, each once", () => {
    expect(groupByOf(undefined)).toEqual(["src_app", "dest_app"]);
    expect(groupByOf("vpc_id,src_app")).toEqual(["vpc_id", "src_app"]);
    expect(groupByOf(["dest_app"])).toEqual(["dest_app"]);
    for (const bad of ["", "src_app,", "hour", "src_app,src_app", "SRC_APP", [] as string[]]) {
      expect(groupByOf(bad)).toEqual({ problems: [expect.objectContaining({ type: "groupBy", field: "by" })] });
    }
  });
});

test("the new routes need the read scope when tokens are configured", () => {
  for (const route of ["GET /flows", "GET /flows/top", "GET /flows/hours"]) expect(routeAccess(route)).toBe("read");
});

test("the hours with data over every primary", () => {
  expect(widestHours([])).toEqual({ newest: null, oldest: null });
  expect(widestHours([{ oldest: null, newest: null }, { oldest: 5, newest: 9 }, { oldest: 3, newest: 4 }])).toEqual({ newest: 9, oldest: 3 });
});
