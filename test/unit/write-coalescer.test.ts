import { WriteCoalescer } from "../../src/write-coalescer";

/** A send whose answers the test releases by hand, recording what each message held. */
function manualSend<G>() {
  const messages: { groups: G[]; answer(results: unknown[]): void; fail(err: Error): void }[] = [];
  const send = (groups: G[]) =>
    new Promise<unknown[]>((resolve, reject) => {
      messages.push({ groups, answer: resolve, fail: reject });
    });
  return { messages, send };
}

const settle = () => new Promise((r) => setImmediate(r));

describe("WriteCoalescer", () => {
  test("a lone write leaves at once; writes made while messages are in flight share the next one", async () => {
    const { messages, send } = manualSend<string>();
    const c = new WriteCoalescer<string, unknown>(send, { maxInFlight: 1, maxBytes: 1000 });
    const a = c.submit("a", 10);
    expect(messages.map((m) => m.groups)).toEqual([["a"]]);
    const b = c.submit("b", 10);
    const d = c.submit("d", 10);
    expect(messages).toHaveLength(1);
    messages[0].answer(["A"]);
    await expect(a).resolves.toBe("A");
    await settle();
    expect(messages.map((m) => m.groups)).toEqual([["a"], ["b", "d"]]);
    messages[1].answer(["B", "D"]);
    await expect(Promise.all([b, d])).resolves.toEqual(["B", "D"]);
    expect(c.pending).toBe(0);
  });

  test("up to maxInFlight messages are unanswered at a time", async () => {
    const { messages, send } = manualSend<number>();
    const c = new WriteCoalescer<number, unknown>(send, { maxInFlight: 2, maxBytes: 1000 });
    void c.submit(1, 1);
    void c.submit(2, 1);
    void c.submit(3, 1);
    void c.submit(4, 1);
    expect(messages.map((m) => m.groups)).toEqual([[1], [2]]);
    expect(c.pending).toBe(2);
    messages[1].answer([null]);
    await settle();
    expect(messages.map((m) => m.groups)).toEqual([[1], [2], [3, 4]]);
  });

  test("a message holds waiting groups up to maxBytes, and always at least one", async () => {
    const { messages, send } = manualSend<string>();
    const c = new WriteCoalescer<string, unknown>(send, { maxInFlight: 1, maxBytes: 100 });
    void c.submit("first", 1);
    for (const [g, bytes] of [["x", 60], ["y", 40], ["z", 1], ["huge", 500], ["w", 5]] as const) void c.submit(g, bytes);
    for (let i = 0; i < 4; i++) {
      messages[i].answer(messages[i].groups.map(() => null));
      await settle();
    }
    expect(messages.map((m) => m.groups)).toEqual([["first"], ["x", "y"], ["z"], ["huge"], ["w"]]);
  });

  test("each group gets its own result; a failed message fails each of its groups", async () => {
    const { messages, send } = manualSend<string>();
    const c = new WriteCoalescer<string, unknown>(send, { maxInFlight: 1, maxBytes: 1000 });
    const first = c.submit("first", 1);
    const b = c.submit("b", 1);
    const d = c.submit("d", 1);
    messages[0].fail(new Error("node gone"));
    await expect(first).rejects.toThrow("node gone");
    await settle();
    messages[1].fail(new Error("timeout"));
    await expect(b).rejects.toThrow("timeout");
    await expect(d).rejects.toThrow("timeout");
    // The coalescer goes on after failures.
    const e = c.submit("e", 1);
    messages[2].answer(["E"]);
    await expect(e).resolves.toBe("E");
  });

  test("an answer with fewer results than groups fails the groups left without one", async () => {
    const { messages, send } = manualSend<string>();
    const c = new WriteCoalescer<string, unknown>(send, { maxInFlight: 1, maxBytes: 1000 });
    void c.submit("first", 1);
    const b = c.submit("b", 1);
    const d = c.submit("d", 1);
    messages[0].answer([1]);
    await settle();
    messages[1].answer(["B"]);
    await expect(b).resolves.toBe("B");
    await expect(d).rejects.toThrow("Answered 1 of 2 groups");
  });

  test("a send that throws fails its groups instead of the caller", async () => {
    const c = new WriteCoalescer<string, unknown>(
      () => {
        throw new Error("cannot encode");
      },
      { maxInFlight: 1, maxBytes: 1000 },
    );
    await expect(c.submit("a", 1)).rejects.toThrow("cannot encode");
    expect(c.pending).toBe(0);
  });
});
