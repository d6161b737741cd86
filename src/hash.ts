/**
 * Stable 32-bit string hashing, identical on every node and every version.
 *
 * Flowmesh's placement and partitioning depend on these exact numbers: changing
 * them re-partitions every existing cluster. The definition is:
 *
 *   h = 0x811c9dc5 XOR seed
 *   for each UTF-16 code unit c of the string:  h = (h XOR c) * 0x01000193   (mod 2^32)
 *   return fmix32(h)                            (MurmurHash3's finalizer)
 *
 * FNV-1a is cheap for short strings; the finalizer gives it avalanche so that
 * `hash mod P` spreads well for any P.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** MurmurHash3's 32-bit finalizer: every input bit affects every output bit. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over UTF-16 code units, continuing from h (building block for hash32 and partitionOf). */
function fnv1a(s: string, h: number): number {
  for (let i = 0; i < s.length; i++) {
    h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  }
  return h;
}

/** Stable, well-mixed unsigned 32-bit hash of a string. */
export function hash32(s: string, seed = 0): number {
  return fmix32(fnv1a(s, (FNV_OFFSET ^ seed) | 0));
}

/**
 * The partition of a flow: hash of (hour, encoded flow key) mod P.
 * The hour (a safe integer) is folded in as its low and high 32-bit words.
 */
export function partitionOf(hour: number, flowKey: string, partitions: number): number {
  return partitionOfHash(hour, fnv1a(flowKey, FNV_OFFSET), partitions);
}

/**
 * partitionOf for a key given in pieces a + b + c + d + e: FNV-1a streams, so the
 * result is identical, and hashing the parser's flat strings avoids walking the
 * concatenated key (a V8 rope) character by character.
 */
export function partitionOfPieces(hour: number, a: string, b: string, c: string, d: string, e: string, partitions: number): number {
  return partitionOfHash(hour, fnv1a(e, fnv1a(d, fnv1a(c, fnv1a(b, fnv1a(a, FNV_OFFSET))))), partitions);
}

/** FNV-1a state of an encoded flow key given in pieces (before the hour is folded in), for partitionOfKeyHash. */
export function keyHashOfPieces(a: string, b: string, c: string, d: string, e: string): number {
  return fnv1a(e, fnv1a(d, fnv1a(c, fnv1a(b, fnv1a(a, FNV_OFFSET)))));
}

/** partitionOf from keyHashOfPieces' value: lets a cached key skip rehashing (same numbers). */
export function partitionOfKeyHash(hour: number, keyHash: number, partitions: number): number {
  return partitionOfHash(hour, keyHash, partitions);
}

function partitionOfHash(hour: number, h: number, partitions: number): number {
  h = Math.imul(h ^ (hour >>> 0), FNV_PRIME);
  h = Math.imul(h ^ Math.floor(hour / 4294967296), FNV_PRIME);
  return fmix32(h) % partitions;
}
