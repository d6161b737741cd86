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

/** The end of this turn of the event loop (when a coalescer sends what waits). */
const turn = () => new Promise((r) => setImmediate(r));

describe("WriteCoalescer", () => {
  test("writes of one turn leave together at its end; writes made while a message is in flight share the next one", async () => {
    const { messages, send } = manualSend<string>();
    const c = new WriteCoalescer<string, unknown>(send, { maxInFlight: 1, maxBytes: 1000 });
    const a = c.submit("a", 10);
    const a2 = c.submit("a2", 10);
    expect(messages).toHaveLength(0);
    await turn();
    expect(messages.map((m) => m.groups)).toEqual([["a", "a2"]]);
    const b = c.submit("b", 10);
    await turn();
    const d = c.submit("d", 10);
    await turn();
    expect(messages).toHaveLength(1);
    messages[0].answer(["A", "A2"]);
    await expect(Promise.all([a, a2])).resolves.toEqual(["A", "A2"]);
    await turn();
    expect(messages.map((m) => m.groups)).toEqual([["a", "a2"], ["b", "d"]]);
    messages[1].answer(["B", "D"]);
    await expect(Promise.all([b, d])).resolves.toEqual(["B", "D"]);
    expect(c.pending).toBe(0);
  });

  test("up to maxInFlight messages are unanswered at a time", async () => {
    const { messages, send } = manualSend<number>();
    const c = new WriteCoalescer<number, unknown>(send, { maxInFlight: 2, maxBytes: 2 });
    for (const n of [1, 2, 3, 4, 5, 6]) void c.submit(n, 1);
    await turn();
    expect(messages.map((m) => m.groups)).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(c.pending).toBe(2);
    messages[1].answer([null, null]);
    await turn();
    await turn();
    expect(messages.map((m) => m.groups)).toEqual([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
  });

  test("a message holds waiting groups up to maxBytes, and always at least one", async () => {
    const { messages, send } = manualSend<string>();
    const c = new WriteCoalescer<string, unknown>(send, { maxInFlight: 1, maxBytes: 100 });
    for (const [g, bytes] of [["x", 60], ["y", 40], ["z", 1], ["huge", 500], ["w", 5]] as const) void c.submit(g, bytes);
    for (let i = 0; i < 4; i++) {
      await turn();
      messages[i].answer(messages[i].groups.map(() => null));
      await turn();
    }
    expect(messages.map((m) => m.groups)).toEqual([["x", "y"], ["z"], ["huge"], ["w"]]);
  });

  test("each group gets its own result; a failed message fails each of its groups", async () => {
    const { messages, send } = manualSend<string>();
    const c = new WriteCoalescer<string, unknown>(send, { maxInFlight: 1, maxBytes: 1000 });
    const first = c.submit("first", 1);
    await turn();
    const b = c.submit("b", 1);
    const d = c.submit("d", 1);
    messages[0].fail(new Error("node gone"));
    await expect(first).rejects.toThrow("node gone");
    await turn();
    messages[1].fail(new Error("timeout"));
    await expect(b).rejects.toThrow("timeout");
    await expect(d).rejects.toThrow("timeout");
    // The coalescer goes on after failures.
    const e = c.submit("e", 1);
    await turn();
    messages[2].answer(["E"]);
    await expect(e).resolves.toBe("E");
  });

  test("an answer with fewer results than groups fails the groups left without one", async () => {
    const { messages, send } = manualSend<string>();
    const c = new WriteCoalescer<string, unknown>(send, { maxInFlight: 1, maxBytes: 1000 });
    const b = c.submit("b", 1);
    const d = c.submit("d", 1);
    await turn();
    messages[0].answer(["B"]);
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
