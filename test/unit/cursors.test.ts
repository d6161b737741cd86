import { BoundedCursors } from "../../src/cursors";

describe("BoundedCursors", () => {
  const cursor = (items: number, expires = 1000) => ({ items, expires });

  test("past the count bound the least recently used goes; a cursor taken and kept again is recent", () => {
    const c = new BoundedCursors<{ items: number; expires: number }>(2, 100, (x) => x.items);
    c.keep("a", cursor(1));
    c.keep("b", cursor(1));
    c.keep("a", c.take("a")!); // a used again: b is now the oldest
    c.keep("c", cursor(1));
    expect(c.take("b")).toBeUndefined();
    expect(c.take("a")).toBeDefined();
    expect(c.take("c")).toBeDefined();
    expect(c.size).toBe(0);
  });

  test("past the items bound the oldest go; the one just kept stays even when it alone is over", () => {
    const c = new BoundedCursors<{ items: number; expires: number }>(10, 100, (x) => x.items);
    c.keep("a", cursor(60));
    c.keep("b", cursor(30));
    c.keep("c", cursor(20)); // 110 > 100: a goes
    expect(c.take("a")).toBeUndefined();
    c.keep("huge", cursor(500));
    expect(c.size).toBe(1);
    expect(c.take("huge")).toBeDefined();
  });

  test("cursors unused past their expiry are dropped", () => {
    const c = new BoundedCursors<{ items: number; expires: number }>(10, 100, (x) => x.items);
    c.keep("old", cursor(1, 50));
    c.keep("new", cursor(1, 150));
    c.expire(100);
    expect(c.take("old")).toBeUndefined();
    expect(c.take("new")).toBeDefined();
  });
});
