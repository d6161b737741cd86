/**
 * Flow keys: (src_app, dest_app, vpc_id) encoded as one string, injective and
 * order-preserving, so a flow key can be a Map key and sorting keys sorts flows by
 * (src_app, dest_app, vpc_id) in UTF-16 code-unit order.
 *
 * Encoding (tuple escaping in the FoundationDB manner, on UTF-16 code units):
 *   component = the string with every unit c <= U+0020 (a control or a space) written
 *               as the two units U+0020, U+0021 + c
 *   key       = src + SEP + dest + SEP + vpc,   SEP = U+0020 U+0020 (two spaces)
 * Inside a component a U+0020 is always followed by U+0021..U+0041, never by another
 * U+0020, so no data can be mistaken for a separator. SEP sorts below every
 * continuation of a component (an unescaped unit is above U+0020; an escaped one is
 * U+0020 then above it), so a shorter component sorts first; escaped units keep their
 * order and stay below unescaped ones. A key holds no control character unless the
 * data does: it travels between nodes as a plain JSON string, where the earlier NUL
 * separators were escaped to six bytes each (a third of a write message's bytes).
 * The hour is not part of the key: partitions index flows by hour.
 */

import { keyHashOfPieces, partitionOfKeyHash } from "./hash";

export const SEP = "  ";
const ESC = " ";
const ESCAPE_OFFSET = 0x21;
const ESCAPED_RE = / ([\u0021-\u0041])/g;

function escape(s: string): string {
  let i = 0;
  while (i < s.length && s.charCodeAt(i) > 0x20) i++;
  if (i === s.length) return s;
  let out = s.slice(0, i);
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out += c > 0x20 ? s[i] : ESC + String.fromCharCode(ESCAPE_OFFSET + c);
  }
  return out;
}

function unescape(s: string): string {
  return s.indexOf(ESC) === -1 ? s : s.replace(ESCAPED_RE, (_, c: string) => String.fromCharCode(c.charCodeAt(0) - ESCAPE_OFFSET));
}

export function encodeFlowKey(srcApp: string, destApp: string, vpcId: string): string {
  return escape(srcApp) + SEP + escape(destApp) + SEP + escape(vpcId);
}

/** A flow key, encoded, with the FNV-1a state of its pieces (see hash.ts keyHashOfPieces). */
export interface PlacedKey {
  readonly key: string;
  readonly hash: number;
  /** The key's JSON is the key in quotes: it holds no quote, backslash or lone surrogate (and no control character: see escape). */
  readonly plain: boolean;
}

const NEEDS_JSON_ESCAPE = /["\\]/;

/**
 * Recently seen flow keys, by their three raw components: the write path looks a
 * record's strings up here (short, flat strings from the JSON parser: cheap to hash
 * and compare) instead of concatenating a key per record. The concatenation is a V8
 * rope: hashing it walks it, every Map hit flattens it, and a stored rope keeps the
 * parsed pieces alive. A cached key is one flat string, shared by every hour and
 * partition that holds the flow. Bounded: two generations of KEY_CACHE_GENERATION
 * keys; a key seen in the old generation moves to the current one.
 */
const KEY_CACHE_GENERATION = 1 << 16;
type KeyLevel = Map<string, Map<string, Map<string, PlacedKey>>>;
let currentKeys: KeyLevel = new Map();
let oldKeys: KeyLevel = new Map();
let currentKeyCount = 0;

function findKey(level: KeyLevel, srcApp: string, destApp: string, vpcId: string): PlacedKey | undefined {
  return level.get(srcApp)?.get(destApp)?.get(vpcId);
}

function storeKey(srcApp: string, destApp: string, vpcId: string, placed: PlacedKey): void {
  if (currentKeyCount >= KEY_CACHE_GENERATION) {
    oldKeys = currentKeys;
    currentKeys = new Map();
    currentKeyCount = 0;
  }
  let byDest = currentKeys.get(srcApp);
  if (byDest === undefined) currentKeys.set(srcApp, (byDest = new Map()));
  let byVpc = byDest.get(destApp);
  if (byVpc === undefined) byDest.set(destApp, (byVpc = new Map()));
  byVpc.set(vpcId, placed);
  currentKeyCount++;
}

/** The encoded key of (srcApp, destApp, vpcId) as one flat string, with its hash state; cached. */
export function placedKey(srcApp: string, destApp: string, vpcId: string): PlacedKey {
  let placed = findKey(currentKeys, srcApp, destApp, vpcId);
  if (placed !== undefined) return placed;
  placed = findKey(oldKeys, srcApp, destApp, vpcId);
  if (placed === undefined) {
    const s = escape(srcApp);
    const d = escape(destApp);
    const v = escape(vpcId);
    // join writes one flat string (a + b would make a rope of the parsed pieces).
    const key = [s, SEP, d, SEP, v].join("");
    placed = { key, hash: keyHashOfPieces(s, SEP, d, SEP, v), plain: key.isWellFormed() && !NEEDS_JSON_ESCAPE.test(key) };
  }
  storeKey(srcApp, destApp, vpcId, placed);
  return placed;
}

/**
 * One string per distinct flow key in the store: a key that arrives from another node was
 * parsed from the message's JSON (a fresh string per message), so without this every
 * hour and partition holding a flow kept its own copy (~56 bytes a flow on a shard node,
 * as much as the rest of its slot). Called only when a store creates a slot. Bounded like
 * the key cache above: two generations of KEY_CACHE_GENERATION keys; a key no longer
 * here is still shared by the tables holding it, only not with its next arrival.
 */
let internedKeys = new Map<string, string>();
let oldInternedKeys = new Map<string, string>();

export function internKey(key: string): string {
  const known = internedKeys.get(key);
  if (known !== undefined) return known;
  const shared = oldInternedKeys.get(key) ?? key;
  if (internedKeys.size >= KEY_CACHE_GENERATION) {
    oldInternedKeys = internedKeys;
    internedKeys = new Map();
  }
  internedKeys.set(shared, shared);
  return shared;
}

/** The encoded key of a flow and its partition (partitionOf of that key). */
export function placeFlow(srcApp: string, destApp: string, vpcId: string, hour: number, partitions: number): { key: string; partition: number } {
  const placed = placedKey(srcApp, destApp, vpcId);
  return { key: placed.key, partition: partitionOfKeyHash(hour, placed.hash, partitions) };
}

export function decodeFlowKey(key: string): [srcApp: string, destApp: string, vpcId: string] {
  const a = key.indexOf(SEP);
  const b = key.indexOf(SEP, a + 2);
  if (a < 0 || b < 0) throw new Error("not an encoded flow key");
  return [unescape(key.slice(0, a)), unescape(key.slice(a + 2, b)), unescape(key.slice(b + 2))];
}

/** Key filter for reads: which of the three components must match exactly (undefined = any). */
export interface FlowFilter {
  src_app?: string;
  dest_app?: string;
  vpc_id?: string;
}

/** A predicate over encoded keys for the given filter, or null when nothing is filtered. */
export function keyMatcher(filter: FlowFilter): ((key: string) => boolean) | null {
  const { src_app, dest_app, vpc_id } = filter;
  if (src_app === undefined && dest_app === undefined && vpc_id === undefined) return null;
  return (key) => {
    const [s, d, v] = decodeFlowKey(key);
    return (src_app === undefined || s === src_app) && (dest_app === undefined || d === dest_app) && (vpc_id === undefined || v === vpc_id);
  };
}
