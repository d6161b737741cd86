/**
 * Flow keys: (src_app, dest_app, vpc_id) encoded as one string, injective and
 * order-preserving, so a flow key can be a Map key and sorting keys sorts flows by
 * (src_app, dest_app, vpc_id) in UTF-16 code-unit order.
 *
 * Encoding (FoundationDB-style tuple escaping, on UTF-16 code units):
 *   component = the string with every NUL (U+0000) written as NUL U+0002
 *   key       = src + SEP + dest + SEP + vpc,   SEP = NUL U+0001
 * A NUL in the key is always followed by 0x01 (a separator) or 0x02 (data), so no
 * data, whatever it contains, can be mistaken for a separator; and SEP sorts below
 * every data continuation, so a shorter component sorts first. The hour is not part
 * of the key: partitions index flows by hour.
 */

import { partitionOfPieces } from "./hash";

export const SEP = "\u0000\u0001";
const NUL = "\u0000";
const ESCAPED_NUL = "\u0000\u0002";
const NUL_RE = /\u0000/g;
const ESCAPED_NUL_RE = /\u0000\u0002/g;

function escape(s: string): string {
  return s.indexOf(NUL) === -1 ? s : s.replace(NUL_RE, ESCAPED_NUL);
}

function unescape(s: string): string {
  return s.indexOf(NUL) === -1 ? s : s.replace(ESCAPED_NUL_RE, NUL);
}

export function encodeFlowKey(srcApp: string, destApp: string, vpcId: string): string {
  return escape(srcApp) + SEP + escape(destApp) + SEP + escape(vpcId);
}

/** The encoded key of a flow and its partition (partitionOf of that key), in one pass. */
export function placeFlow(srcApp: string, destApp: string, vpcId: string, hour: number, partitions: number): { key: string; partition: number } {
  const s = escape(srcApp);
  const d = escape(destApp);
  const v = escape(vpcId);
  return { key: s + SEP + d + SEP + v, partition: partitionOfPieces(hour, s, SEP, d, SEP, v, partitions) };
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

/** Flow records of one hour from a sorted run of encoded keys and their sums. */
export function toFlowRecords(hour: number, keys: readonly string[], tx: readonly number[], rx: readonly number[]) {
  const out = new Array(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const [src_app, dest_app, vpc_id] = decodeFlowKey(keys[i]);
    out[i] = { src_app, dest_app, vpc_id, hour, bytes_tx: tx[i], bytes_rx: rx[i] };
  }
  return out;
}
