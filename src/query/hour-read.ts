/**
 * One hour's read as the gateway answers it: each owner node's answer turned into a
 * paged source (src/query/hour-merge.ts), and the merged hour rendered as the JSON bytes
 * an HTTP client gets: one Buffer for a small hour in hand, else a stream written as it
 * is merged, the bytes kept on the side (for the rendered-read cache) while they fit.
 *
 * No Moleculer here: the next page's call is handed in.
 */
import { Readable } from "stream";
import type { ReadAnswer } from "../protocol";
import type { ReadVersions } from "../rendered-reads";
import { decodeRunPage, type RunPage } from "../wire/run-codec";
import { flowJsonChunks } from "./flow-render";
import { mergePaged, wholeRun, type Paged } from "./hour-merge";

/** One owner's answer: its hour version, and its flows (null: unchanged since the version the caller knew). */
export interface OwnerRead {
  version: number;
  first: Paged | null;
}

/** An owner's answer to flow-shard.read: a run in process, else a page of bytes whose rest `more(cursor)` fetches. */
export function ownerRead(answer: ReadAnswer, more: (cursor: string) => Promise<Buffer>): OwnerRead {
  if (!Buffer.isBuffer(answer)) return { version: answer.version, first: answer.run === null ? null : wholeRun(answer.run) };
  const page = decodeRunPage(answer);
  return { version: page.version, first: page.unchanged ? null : pagedOf(page, more) };
}

function pagedOf(page: RunPage, more: (cursor: string) => Promise<Buffer>): Paged {
  const cursor = page.cursor;
  return { flows: page, next: cursor === null ? null : async () => pagedOf(decodeRunPage(await more(cursor)), more) };
}

/** How an hour's owners answered: the kept body still holds, or the sources to merge with the version they make. */
export type OwnersAnswer = { kept: Buffer; known: ReadVersions } | { sources: Paged[]; version: string; known: ReadVersions };

/**
 * Read one hour from its owner nodes (`nodes`: each with its partitions), by the table of
 * `epoch`. `known` is what the last read of this hour and filter left (for HTTP callers,
 * whose body may be kept): its versions are sent so that unchanged owners answer
 * "unchanged", and the kept body (`kept(version)`) is served when every owner is. When
 * only some are, those are read again in full (a second round trip); so after a read that
 * found the hour changed, the next one reads in full at once and compares the versions
 * itself (an hour being written is read in one round trip, one left alone still from the
 * kept body after one full read). `read` resolves null for an owner that could not answer
 * (the caller retries on a fresh table). Null: some owner did not answer.
 */
export async function readOwners(
  epoch: number,
  nodes: readonly (readonly [string, number[]])[],
  known: ReadVersions | undefined,
  read: (nodeID: string, partitions: number[], knownVersion?: number) => Promise<OwnerRead | null>,
  kept: (version: string) => Buffer | undefined,
): Promise<OwnersAnswer | null> {
  const usable = known !== undefined && known.epoch === epoch ? known : undefined;
  const askUnchanged = usable !== undefined && usable.changed !== true;
  let results = await Promise.all(nodes.map(([nodeID, partitions]) => read(nodeID, partitions, askUnchanged ? usable.versions[nodeID] : undefined)));
  if (results.some((r) => r === null)) return null;
  const versionOf = (rs: (OwnerRead | null)[]) => `${epoch}|` + nodes.map(([n], i) => `${n}:${rs[i]!.version}`).join(",");
  const versions = (rs: (OwnerRead | null)[], changed: boolean): ReadVersions => ({ epoch, versions: Object.fromEntries(nodes.map(([n], i) => [n, rs[i]!.version])), changed });
  if (results.every((r) => r!.first === null) || (usable !== undefined && !askUnchanged)) {
    const body = kept(versionOf(results));
    if (body !== undefined) return { kept: body, known: versions(results, false) };
  }
  if (results.some((r) => r!.first === null)) {
    // Some owners had not changed, others had: read those again in full.
    results = await Promise.all(nodes.map(([nodeID, partitions], i) => (results[i]!.first === null ? read(nodeID, partitions) : results[i])));
    if (results.some((r) => r === null)) return null;
  }
  return { sources: results.map((r) => r!.first as Paged), version: versionOf(results), known: versions(results, true) };
}

/** Hours of at most this many flows, every page in hand, are answered as one Buffer (with a Content-Length). */
export const WHOLE_MAX_FLOWS = 4096;

/**
 * The JSON answer of one hour: a Buffer when it is small and whole in hand, else a stream.
 * `keep(chunks)` gets the whole body if it is at most keepMaxBytes (a stream's, once it
 * ended), as the chunks it was written in, each of its own memory.
 */
export async function renderHour(hour: number, sources: readonly Paged[], keepMaxBytes: number, keep: (chunks: Buffer[]) => void): Promise<Buffer | Readable> {
  let flows = 0;
  let whole = true;
  for (const s of sources) {
    flows += s.flows.keys.length;
    if (s.next !== null) whole = false;
  }
  const chunks = flowJsonChunks([{ hour, slices: mergePaged(sources) }]);
  if (whole && flows <= WHOLE_MAX_FLOWS) {
    const parts: Buffer[] = [];
    for await (const c of chunks) parts.push(c);
    const body = ownBuffer(parts);
    if (body.length <= keepMaxBytes) keep([body]);
    return body;
  }
  return Readable.from(keepingBody(chunks, keepMaxBytes, keep), { objectMode: false });
}

/** The chunks as they come, kept on the side while they add up to at most maxBytes; `keep(chunks)` at the end if they did. */
export async function* keepingBody(chunks: AsyncIterable<Buffer>, maxBytes: number, keep: (chunks: Buffer[]) => void): AsyncGenerator<Buffer> {
  let kept: Buffer[] | null = [];
  let bytes = 0;
  for await (const c of chunks) {
    if (kept !== null) {
      bytes += c.length;
      if (bytes <= maxBytes) kept.push(c.length < POOLED_BELOW ? ownBuffer([c]) : c);
      else kept = null;
    }
    yield c;
  }
  if (kept !== null) keep(kept);
}

/** Below this many bytes Buffer.from and Buffer.concat take memory from Node's shared 8 KiB pool. */
const POOLED_BELOW = 4096;

/** The parts as one Buffer of its own memory (a small one from the pool would keep the pool's 8 KiB alive while cached). */
function ownBuffer(parts: readonly Buffer[]): Buffer {
  let n = 0;
  for (const p of parts) n += p.length;
  if (n >= POOLED_BELOW) return Buffer.concat(parts, n);
  const out = Buffer.allocUnsafeSlow(n);
  let at = 0;
  for (const p of parts) at += p.copy(out, at);
  return out;
}
