import { CoordinatorLease, type LeaseStore, type LeaseValue } from "../../src/shard/lease";
import { Liveness, type Beat } from "../../src/shard/liveness";

/** One key with compare-and-set, as the bucket does it. */
function memoryLease(): LeaseStore & { value: LeaseValue | null; revision: number } {
  const s = {
    value: null as LeaseValue | null,
    revision: 0,
    async get() {
      return s.revision === 0 ? null : { revision: s.revision, value: s.value };
    },
    async create(v: LeaseValue) {
      if (s.revision !== 0) throw new Error("key exists");
      s.value = v;
      return ++s.revision;
    },
    async update(v: LeaseValue, rev: number) {
      if (rev !== s.revision) throw new Error("wrong last sequence");
      s.value = v;
      return ++s.revision;
    },
  };
  return s;
}

describe("coordinator lease", () => {
  test("one holder; a paused holder finds it expired, another takes it, the old one cannot renew", async () => {
    let now = 0;
    const store = memoryLease();
    const a = new CoordinatorLease({ me: { node: "a", incarnation: 1 }, store, now: () => now, leaseMs: 2500 });
    const b = new CoordinatorLease({ me: { node: "b", incarnation: 1 }, store, now: () => now, leaseMs: 2500 });
    await a.tick();
    await b.tick();
    expect(a.holds()).toBe(true);
    expect(b.holds()).toBe(false);
    for (let i = 0; i < 5; i++) {
      now += 800;
      await a.tick();
      await b.tick();
    }
    expect(a.holds()).toBe(true);
    expect(b.holds()).toBe(false);
    // a pauses: b sees the revision stand still for a lease period and takes over.
    for (let i = 0; i < 4; i++) {
      now += 800;
      await b.tick();
    }
    expect(b.holds()).toBe(true);
    expect(a.holds()).toBe(false); // its own clock says its lease ran out
    await a.tick(); // tries to renew on the old revision: refused
    expect(a.holds()).toBe(false);
    expect(store.value).toEqual({ node: "b", incarnation: 1 });
  });

  test("a restarted node takes its own earlier incarnation's lease at once", async () => {
    let now = 0;
    const store = memoryLease();
    await new CoordinatorLease({ me: { node: "a", incarnation: 1 }, store, now: () => now, leaseMs: 2500 }).tick();
    const again = new CoordinatorLease({ me: { node: "a", incarnation: 2 }, store, now: () => now, leaseMs: 2500 });
    now += 10;
    await again.tick();
    expect(again.holds()).toBe(true);
  });
});

describe("liveness and the fence", () => {
  function node(clock: { now: number }, ping: () => Promise<void> = async () => undefined) {
    const sent: Beat[] = [];
    const gaps: number[] = [];
    const l = new Liveness({
      me: "a",
      incarnation: 1,
      run: "run-a",
      publish: (b) => sent.push(b),
      ping,
      now: () => clock.now,
      suspectMs: 2500,
      fenceMs: 1250,
      onGap: async (gap) => {
        gaps.push(gap);
      },
    });
    return { l, sent, gaps };
  }

  test("serves only within fenceMs of its last confirmed round trip; a stall is noticed on the next check", async () => {
    const clock = { now: 0 };
    const { l, gaps } = node(clock);
    expect(l.serving()).toBe(false); // not confirmed yet
    await l.tick();
    expect(l.serving()).toBe(true);
    clock.now += 250;
    await l.tick();
    expect(l.serving()).toBe(true);
    clock.now += 10_000; // SIGSTOP: no timer ran; the first request after it reads the clock
    expect(l.serving()).toBe(false);
    await l.tick();
    expect(gaps.at(-1)).toBeGreaterThan(2500);
    expect(l.serving()).toBe(true);
    expect(l.recentlyStalled(2500)).toBe(true);
  });

  test("a failing round trip (NATS lost) leaves the node fenced", async () => {
    const clock = { now: 0 };
    let up = true;
    const { l } = node(clock, async () => {
      if (!up) throw new Error("disconnected");
    });
    await l.tick();
    up = false;
    clock.now += 2000;
    await expect(l.tick()).rejects.toThrow("disconnected");
    expect(l.serving()).toBe(false);
  });

  test("peers are alive while heard within suspectMs; views travel with the beats; an unsettled node offers no view", async () => {
    const clock = { now: 0 };
    const { l, sent } = node(clock);
    l.receive({ node: "b", incarnation: 7, run: "run-b", sees: ["a", "b"] });
    expect(l.runOf("b")).toBe("run-b");
    l.receive({ node: "c", incarnation: 1, sees: null });
    expect([...l.alive()]).toEqual([
      ["a", 1],
      ["b", 7],
      ["c", 1],
    ]);
    // Its own view is not settled yet (no round trip yet, just started); c offers none.
    expect([...l.views().keys()]).toEqual(["b"]);
    await l.tick();
    expect(sent[0].sees).toBeNull();
    for (let i = 0; i < 11; i++) {
      clock.now += 250;
      await l.tick();
    }
    // Peers silent for over suspectMs are gone; its own view counts once it has run steadily that long.
    expect([...l.alive().keys()]).toEqual(["a"]);
    expect(l.runOf("b")).toBeUndefined();
    expect([...l.views().keys()]).toEqual(["a"]);
    expect(sent.at(-1)!.sees).toEqual(["a"]);
  });
});
