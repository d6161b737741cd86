import fc from "fast-check";
import { BinaryPayloadSerializer } from "../../mixins/binary.serializer";
import type { SubBatch } from "../../src/partition-store";
import { decodeGroup, decodeLogged, decodeMessage, encodeGroup, encodeLogged, encodeMessage, groupBytes } from "../../src/wire/group-codec";
import { placeRecords } from "../../src/batching";

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const key = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.string({ unit: fc.oneof(fc.constantFrom("a", "🚀", "\u0000"), loneSurrogate), maxLength: 100 }),
);
const count = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const subBatch = (idempotencyKey: fc.Arbitrary<string | undefined>): fc.Arbitrary<SubBatch> =>
  fc.record({
    partition: fc.integer({ min: 0, max: 4095 }),
    entries: fc.array(fc.tuple(key, count, count, count), { maxLength: 20 }).map((flows) => flows.flat()),
    idempotencyKey,
  }).map((b) => (b.idempotencyKey === undefined ? { partition: b.partition, entries: b.entries } : b));

/** Groups as the gateway makes them: one key for all, none, or derived keys for the parts of an oversized sub-batch. */
const group = fc.oneof(
  fc.tuple(fc.string({ minLength: 1, maxLength: 64 }), fc.array(subBatch(fc.constant(undefined)), { maxLength: 8 })).map(([k, bs]) => bs.map((b) => ({ ...b, idempotencyKey: k }))),
  fc.array(subBatch(fc.constant(undefined)), { maxLength: 8 }),
  fc.array(subBatch(fc.option(fc.string({ minLength: 1, maxLength: 300 }), { nil: undefined })), { maxLength: 8 }),
);

describe("group codec", () => {
  test("a group decodes to the sub-batches it was encoded from (keys in UTF-8, long and short, lone surrogates exact, numbers up to 2^53-1)", () => {
    fc.assert(
      fc.property(group, (batches) => {
        expect(decodeGroup(encodeGroup(batches)).batches).toEqual(batches);
      }),
      { numRuns: 300 },
    );
  });

  test("keys placeRecords finds plain are written without JSON.stringify, to the same bytes", () => {
    const pieces = ["app", "svc 1", "\u0001", "é", "日本", "😀", '"', "\\", "\ud800", "x\udc00", "tab\t"];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...pieces), fc.constantFrom(...pieces), fc.string(), fc.nat(5)), { minLength: 1, maxLength: 60 }), (rows) => {
        const records = rows.map(([s, d, v, h]) => ({ src_app: s, dest_app: d, vpc_id: v, hour: h, bytes_tx: 1, bytes_rx: 2 }));
        const placed = placeRecords(records, 8, "k");
        const keys = placed.batches.flatMap((b) => b.entries.filter((_, i) => i % 4 === 0) as string[]);
        expect(placed.plainKeys).toBe(keys.every((k) => JSON.stringify(k) === `"${k}"`));
        expect(encodeGroup(placed.batches, placed.plainKeys)).toEqual(encodeGroup(placed.batches));
        const message = [{ group: { batches: placed.batches, plainKeys: placed.plainKeys }, parts: undefined }];
        expect(encodeMessage(2, message)).toEqual(encodeMessage(2, [{ group: { batches: placed.batches }, parts: undefined }]));
      }),
      { numRuns: 300 },
    );
  });

  test("a selection of a group's parts travels and is logged with the group's bytes as they are", () => {
    fc.assert(
      fc.property(group, fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }), (batches, keep) => {
        const received = decodeGroup(encodeGroup(batches));
        const parts = batches.map((_, i) => i).filter((i) => keep[i]);
        const wanted = parts.map((i) => batches[i]);
        const message = decodeMessage(encodeMessage(9, [{ group: received, parts }, { group: received, parts: undefined }]));
        expect(message.epoch).toBe(9);
        expect(message.groups[0].parts).toEqual(parts);
        expect(message.groups[0].group.batches).toEqual(batches);
        expect(message.groups[1].parts).toBeUndefined();
        expect(decodeLogged(encodeLogged({ group: received, parts }, 0))).toEqual(wanted);
        expect(decodeLogged(encodeLogged({ group: { batches }, parts: undefined }, 0))).toEqual(batches);
      }),
      { numRuns: 200 },
    );
  });

  test("a received group keeps its bytes (forwarded and logged as they came); a local one is encoded once", () => {
    const bytes = encodeGroup([{ partition: 3, entries: ["a  b  c", 7, 1, 2], idempotencyKey: "k" }]);
    const received = decodeGroup(bytes);
    expect(groupBytes(received)).toBe(bytes);
    const local = { batches: received.batches };
    expect(groupBytes(local)).toBe(groupBytes(local));
  });

  test("truncated, padded or foreign bytes are refused, never half-read", () => {
    const g = encodeGroup([{ partition: 2, entries: ["y", 4, 5, 6], idempotencyKey: "key" }]);
    const message = encodeMessage(42, [{ group: decodeGroup(g), parts: [0] }]);
    expect(() => decodeMessage(message.subarray(0, message.length - 1))).toThrow(/truncated/);
    expect(() => decodeMessage(Buffer.concat([message, Buffer.from([0])]))).toThrow(/after the last group/);
    expect(() => decodeGroup(g.subarray(0, g.length - 3))).toThrow(/truncated/);
    expect(() => decodeGroup(Buffer.concat([g, Buffer.from([0])]))).toThrow(/after the group/);
    expect(() => decodeMessage(Buffer.from('{"epoch":1}'))).toThrow(/unknown message format/);
    expect(() => decodeMessage(encodeMessage(1, [{ group: decodeGroup(g), parts: [1] }]))).toThrow(/part 1 selected of 1/);
  });
});

describe("BinaryPayloadSerializer", () => {
  const serializer = new BinaryPayloadSerializer();

  test("a Buffer in a request's params or a response's data travels as its bytes; the rest is JSON", () => {
    const params = encodeMessage(7, [{ group: { batches: [{ partition: 1, entries: ["k", 1, 2, 3] }] }, parts: undefined }]);
    const request = { ver: "4", sender: "gw", id: "1", action: "flow-shard.apply", params, meta: { a: 1 }, timeout: 10 };
    const wire = serializer.serialize({ ...request }, "REQ");
    // Less than a JSON array of the bytes would take, and the bytes are there as they are.
    expect(wire.length).toBeLessThan(params.length + 200);
    const back = serializer.deserialize(wire, "REQ");
    expect(Buffer.isBuffer(back.params)).toBe(true);
    expect(Buffer.compare(back.params as Buffer, params)).toBe(0);
    expect({ ...back, params: null }).toEqual({ ...request, params: null });

    const response = { ver: "4", sender: "s1", id: "1", success: true, data: Buffer.from([0, 1, 255]) };
    const res = serializer.deserialize(serializer.serialize({ ...response }, "RES"), "RES");
    expect(Buffer.compare(res.data as Buffer, response.data)).toBe(0);
  });

  test("a message with room in front gets its envelope written there, once; the bytes on the wire are the same", () => {
    const entries = Array.from({ length: 400 }, (_, i) => [`key-${i}`, i, 2 * i, 3 * i]).flat();
    const params = encodeMessage(3, [{ group: { batches: [{ partition: 2, entries, idempotencyKey: "k" }] }, parts: undefined }]);
    expect(params.length).toBeGreaterThan(4096);
    const copy = Buffer.from(params);
    const request = { ver: "4", sender: "gw", id: "9", action: "flow-shard.apply", params, meta: {}, timeout: 10 };
    const first = serializer.serialize({ ...request }, "REQ");
    expect(first.buffer).toBe(params.buffer); // in place: no copy of the bytes
    const second = serializer.serialize({ ...request }, "REQ");
    expect(second.buffer).not.toBe(params.buffer); // the room was given once: the first packet is left as it is
    expect(Buffer.compare(first, second)).toBe(0);
    expect(Buffer.compare(first, serializer.serialize({ ...request, params: copy }, "REQ"))).toBe(0);
    expect(Buffer.compare(serializer.deserialize(first, "REQ").params as Buffer, copy)).toBe(0);
    expect(Buffer.compare(params, copy)).toBe(0);
    // An envelope larger than the room takes the copying path.
    const big = encodeMessage(3, [{ group: { batches: [{ partition: 2, entries }] }, parts: undefined }]);
    const wire = serializer.serialize({ ...request, params: big, meta: { note: "x".repeat(2000) } }, "REQ");
    expect(wire.buffer).not.toBe(big.buffer);
    expect(serializer.deserialize(wire, "REQ")).toMatchObject({ meta: { note: "x".repeat(2000) } });
  });

  test("everything else is Moleculer's JSON, unchanged", () => {
    const packet = { ver: "4", sender: "n", id: "2", action: "flows.ingest", params: { flows: [{ hour: 1 }] }, meta: {} };
    const wire = serializer.serialize(packet, "REQ");
    expect(wire.toString()).toBe(JSON.stringify(packet));
    expect(serializer.deserialize(wire, "REQ")).toEqual(packet);
    const info = { ver: "4", sender: "n", services: [] };
    expect(serializer.deserialize(serializer.serialize(info, "INFO"), "INFO")).toEqual(info);
  });
});
