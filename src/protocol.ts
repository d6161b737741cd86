/**
 * The shard protocol's vocabulary, in one place (as Moleculer keeps its packets and
 * errors): the action names the services call each other by, the shapes of their
 * messages, and the errors they answer with. The errors are Moleculer's own classes,
 * so they cross NATS and reach moleculer-web with their code, type and data intact;
 * this is the only module under src/ that names Moleculer, and it holds no logic.
 */
import { Errors } from "moleculer";
import type { SubBatchMessage } from "./batching";
import type { SelectedGroup } from "./wire/group-codec";
import type { FlowFilter } from "./flow-key";
import type { ApplyResult, FlowRun, SnapshotChunk } from "./partition-store";
import type { TailEntry } from "./durability/log-tail";
import type { RecoveredCopy } from "./shard/catch-up";
import type { FieldGroups, GroupField } from "./query/top";
import type { ParamProblem } from "./validation";

export const SHARD_SERVICE = "flow-shard";

/** `flow-shard.<action>`: called with `{ nodeID }`, never balanced. */
export const ShardActions = {
  apply: `${SHARD_SERVICE}.apply`,
  replicate: `${SHARD_SERVICE}.replicate`,
  revert: `${SHARD_SERVICE}.revert`,
  prepareCopy: `${SHARD_SERVICE}.prepareCopy`,
  loadChunk: `${SHARD_SERVICE}.loadChunk`,
  loadTail: `${SHARD_SERVICE}.loadTail`,
  addCopy: `${SHARD_SERVICE}.addCopy`,
  release: `${SHARD_SERVICE}.release`,
  read: `${SHARD_SERVICE}.read`,
  readMore: `${SHARD_SERVICE}.readMore`,
  stats: `${SHARD_SERVICE}.stats`,
  leave: `${SHARD_SERVICE}.leave`,
  forceEmpty: `${SHARD_SERVICE}.forceEmpty`,
  trim: `${SHARD_SERVICE}.trim`,
  groups: `${SHARD_SERVICE}.groups`,
  hours: `${SHARD_SERVICE}.hours`,
} as const;

/** Under NATS's default 1 MB payload limit, with room for Moleculer's envelope. */
export const MESSAGE_BYTES = 512 * 1024;

/**
 * Gateway -> primary: groups of one or more requests, placed by the table of `epoch`.
 * Between processes a message of the group codec (src/wire/group-codec.ts, carried as
 * bytes by mixins/binary.serializer.ts); in one process the groups themselves.
 */
export type ApplyParams = Buffer | { epoch: number; groups: SelectedGroup[] };

/** Primary -> copy: the applied groups as received, each naming the parts the copy holds, stamped with the epoch of the primary's table (a group codec message). */
export type ReplicateParams = Buffer;

export interface RevertParams {
  groups: SubBatchMessage[];
  copy?: boolean;
}

export interface ReadParams {
  epoch: number;
  hour: number;
  filter: FlowFilter;
  partitions: number[];
  knownVersion?: number;
}

/** A read's answer to a caller in the same process: the whole run (null when unchanged). */
export interface ReadPage {
  run: FlowRun | null;
  cursor: string | null;
  version: number;
  unchanged?: boolean;
}

/**
 * flow-shard.read: a ReadPage in process; to another process a page of the run codec
 * (src/wire/run-codec.ts) as bytes, whose cursor asks flow-shard.readMore for the next.
 */
export type ReadAnswer = ReadPage | Buffer;

/** Gateway -> primary (top-N): the per-group sums of its partitions' flows over hours from..to. */
export interface GroupsParams {
  epoch: number;
  partitions: number[];
  from: number;
  to: number;
  filter: FlowFilter;
  by: GroupField[];
  /**
   * Answer a remote caller in field-groups pages (src/wire/field-groups-codec.ts); without
   * it, in run pages of group keys, as a gateway of an older version reads them. (Older
   * gateways sent `inKeyOrder`, which is ignored: they add the pages up by key.)
   */
  fieldPages?: boolean;
  /** With fieldPages: in the aligned format (columns a gateway reads without copying them); without it, as gateways of the version before read them. */
  alignedPages?: boolean;
  /** The id under which the pages after the first wait (chosen by the caller, who asks for them ahead: GroupsMoreParams.ahead); a random one without it. */
  cursorId?: string;
}

/**
 * The next page of a groups answer, or page `page` (1..pages-1) of an answer whose first
 * page said how many it has (a gateway asks for them all at once).
 */
export interface GroupsMoreParams {
  cursor: string;
  page?: number;
  /**
   * Asked together with the query that names `cursor` as its cursorId: the page once
   * that query has answered, or an empty Buffer when it has no such page (ask again then).
   */
  ahead?: boolean;
}

/** A primary's per-group sums, in process (a remote caller gets binary pages). */
export interface GroupsPage {
  groups: FieldGroups;
}

/** Gateway -> primary: the oldest and newest hour its partitions hold. */
export interface HoursParams {
  epoch: number;
  partitions: number[];
}

export interface HourBounds {
  oldest: number | null;
  newest: number | null;
}

export interface LoadChunkParams {
  chunk: SnapshotChunk;
  last: boolean;
}

/** `keep`: the sender could send its log tail: keep a recovered copy (src/shard/catch-up.ts). */
export interface PrepareCopyParams {
  partition: number;
  keep?: boolean;
}

export interface PrepareCopyAnswer {
  ok: true;
  /** A recovered copy was kept (the receiver now waits for loadTail, or a second prepareCopy). */
  kept?: RecoveredCopy;
}

/** Part of a sender's log tail for a kept copy, in order (src/durability/log-tail.ts). */
export interface LoadTailParams {
  partition: number;
  entries: TailEntry[];
  last: boolean;
}

/**
 * A group of a write message refused on its own (its request's, not the message's):
 * the error as Moleculer's own plain form (its error regenerator), restored by the caller.
 */
export interface GroupRefusal {
  error: Errors.PlainMoleculerError;
}
/** flow-shard.apply answers one of these per group, in order. */
export type GroupResult = ApplyResult | GroupRefusal;

/** Error types (`type` of the error JSON). */
export const ErrorTypes = {
  /** This node is not the serving owner of the partition in the newest table it knows. */
  wrongOwner: "WRONG_OWNER",
  /** The caller's table is newer than this node's: it re-reads the store first. */
  staleTable: "STALE_TABLE",
  /** This node cannot tell that its view is current (a stall, or NATS lost): it re-reads first. */
  fenced: "FENCED",
  /** Every copy of the partition is on nodes judged lost: it waits for one to return. */
  partitionUnavailable: "PARTITION_UNAVAILABLE",
  noPrimary: "NO_PRIMARY",
  sumOverflow: "SUM_OVERFLOW",
  notLoading: "NOT_LOADING",
  cursorExpired: "CURSOR_EXPIRED",
  /** A top-N page asked for by an index its answer does not have. */
  noSuchPage: "NO_SUCH_PAGE",
  notReady: "NOT_READY",
  notCoordinator: "NOT_COORDINATOR",
  /** The node's write-ahead log cannot be written (a full disk): writes are refused, reads go on. */
  logUnwritable: "LOG_UNWRITABLE",
  /** A record for an hour older than RETENTION_HOURS keeps. */
  hourExpired: "HOUR_EXPIRED",
  /** 401: no API token, or one the gateway does not know. */
  unauthorized: "UNAUTHORIZED",
  /** 403: a known API token without the scope the route needs (or operator actions without any tokens). */
  forbidden: "FORBIDDEN",
  /** 429: the gateway holds MAX_INFLIGHT write requests already, or the token's RATE_LIMIT_PER_MIN is used up. */
  tooManyRequests: "TOO_MANY_REQUESTS",
} as const;

function listed(partitions: number[]): string {
  return partitions.slice(0, 8).join(", ") + (partitions.length > 8 ? ", ..." : "");
}

export function wrongOwner(partitions: number[], epoch: number | undefined): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(`Not the serving owner of partition(s) ${listed(partitions)}`, 503, ErrorTypes.wrongOwner, { partitions, epoch });
}

export function staleTable(mine: number, theirs: number): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(`Placement epoch ${theirs} is newer than this node's ${mine}: re-reading`, 503, ErrorTypes.staleTable, { epoch: mine, asked: theirs });
}

export function fenced(why: string): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(`Not serving until placement is re-read (${why})`, 503, ErrorTypes.fenced, { why });
}

export function partitionUnavailable(partitions: number[], lost: string[]): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(
    `Partition(s) ${listed(partitions)} wait for a lost node to return (${lost.join(", ")}); every copy is there`,
    503,
    ErrorTypes.partitionUnavailable,
    { partitions, lost },
  );
}

export function noPrimary(partitions: number, cause?: string): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(`No reachable primary for ${partitions} partition(s); retry shortly${cause ? ` (${cause})` : ""}`, 503, ErrorTypes.noPrimary, { partitions });
}

export function sumOverflow(message: string, data: object): Errors.MoleculerClientError {
  return new Errors.MoleculerClientError(message, 422, ErrorTypes.sumOverflow, data);
}

export function notLoading(partition: number): Errors.MoleculerError {
  return new Errors.MoleculerError(`Partition ${partition} is not being loaded here`, 409, ErrorTypes.notLoading);
}

export function noSuchPage(page: unknown, pages: number): Errors.MoleculerClientError {
  return new Errors.MoleculerClientError(`No page ${JSON.stringify(page)} in an answer of ${pages} pages (1..${pages - 1} follow the first)`, 400, ErrorTypes.noSuchPage, { page, pages });
}

export function cursorExpired(): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError("Read cursor expired", 503, ErrorTypes.cursorExpired);
}

/** 400 over HTTP (422 to broker callers), as fastest-validator's own: `problems` in its error shape. */
export function invalidParams(problems: ParamProblem[]): Errors.ValidationError {
  return new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", problems);
}

export function notReady(message: string, data: object): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(message, 503, ErrorTypes.notReady, data);
}

export function notCoordinator(coordinator: string | null): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(`Not the coordinator (ask ${coordinator ?? "nobody holds the lease yet"})`, 503, ErrorTypes.notCoordinator, { coordinator });
}

export function hourExpired(index: number, hour: number, oldest: number): Errors.MoleculerClientError {
  return new Errors.MoleculerClientError(
    `Record ${index} is for hour ${hour}, older than the oldest hour kept (${oldest}, RETENTION_HOURS): nothing was applied`,
    422,
    ErrorTypes.hourExpired,
    { index, hour, oldest },
  );
}

/** 401 (the gateway adds `WWW-Authenticate: Bearer`). Never echoes what was presented. */
export function unauthorized(why: "missing" | "unknown"): Errors.MoleculerClientError {
  const message = why === "missing" ? "This needs an API token: Authorization: Bearer <token>" : "Unknown API token";
  return new Errors.MoleculerClientError(message, 401, ErrorTypes.unauthorized, { why });
}

/** 403: `token` (its name; null when the gateway has no tokens at all) may not use a route that needs `scope`. */
export function forbidden(route: string, scope: string, token: string | null): Errors.MoleculerClientError {
  const message =
    token === null
      ? `${route} needs an API token with the ${scope} scope, and this gateway has none: give it API_TOKENS_FILE`
      : `Token '${token}' lacks the ${scope} scope that ${route} needs`;
  return new Errors.MoleculerClientError(message, 403, ErrorTypes.forbidden, { scope, token });
}

/** 429, sent with `Retry-After: <retryAfter>` (seconds); a retry with the same Idempotency-Key is safe. */
export function tooManyRequests(why: string, retryAfter = 1): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(`Too many requests: ${why}; retry in ${retryAfter} s`, 429, ErrorTypes.tooManyRequests, { why, retryAfter });
}

export function logUnwritable(why: string): Errors.MoleculerRetryableError {
  return new Errors.MoleculerRetryableError(`Writes refused: ${why}`, 503, ErrorTypes.logUnwritable, { why });
}

/**
 * Answered to the client as it is, without retrying elsewhere: bad input or a refused
 * sum (retrying cannot help), a disk that cannot take writes (the client's retry later
 * can). Everything else is worth another try on a fresh table.
 */
export function isFinal(err: unknown): boolean {
  const e = err as Errors.MoleculerError;
  return e?.name === "ValidationError" || e?.type === ErrorTypes.sumOverflow || e?.type === ErrorTypes.logUnwritable;
}
