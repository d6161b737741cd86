/**
 * Paged answers kept for their next page (a shard's read and top-N cursors): bounded in
 * count and in the items they hold, the least recently used dropped first (its next
 * page answers CURSOR_EXPIRED), and dropped when unused past their expiry. Gateways
 * create them, so both bounds matter. The cursor just kept always stays, whatever its size.
 */
export interface KeptCursor {
  expires: number;
}

export class BoundedCursors<T extends KeptCursor> {
  /** In the order they were last used: the first is the one to drop. */
  private readonly cursors = new Map<string, T>();
  private held = 0;

  constructor(
    private readonly maxCursors: number,
    private readonly maxItems: number,
    private readonly itemsOf: (cursor: T) => number,
  ) {}

  get size(): number {
    return this.cursors.size;
  }

  /** The cursor, left where it is. */
  peek(id: string): T | undefined {
    return this.cursors.get(id);
  }

  /** The cursor, taken out (keep it again for its next page). */
  take(id: string): T | undefined {
    const cursor = this.cursors.get(id);
    if (cursor !== undefined) this.remove(id, cursor);
    return cursor;
  }

  keep(id: string, cursor: T): void {
    const old = this.cursors.get(id);
    if (old !== undefined) this.remove(id, old);
    this.cursors.set(id, cursor);
    this.held += this.itemsOf(cursor);
    for (const [oldId, oldest] of this.cursors) {
      if ((this.cursors.size <= this.maxCursors && this.held <= this.maxItems) || oldId === id) break;
      this.remove(oldId, oldest);
    }
  }

  expire(now: number): void {
    for (const [id, c] of this.cursors) if (c.expires < now) this.remove(id, c);
  }

  private remove(id: string, cursor: T): void {
    this.cursors.delete(id);
    this.held -= this.itemsOf(cursor);
  }
}
