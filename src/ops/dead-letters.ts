/**
 * Operating the dead letters: list, show, retry and purge the rows of
 * `dead_letter_queue` together with their entries in the dead-letter stream.
 * Library functions: they never print; the CLI (`tributary dlq ...`) prints.
 *
 * Every function works on one pipeline: the rows whose `stream_key` and
 * `group_name` are the configured STREAM_KEY and GROUP, and the dead-letter stream
 * entries whose `dlq_source_stream` and `dlq_group` are the same.
 *
 * Retry never adds an entry twice. A row is claimed first (`retried_at`, set only
 * while NULL: of two concurrent retries one wins), then the entry is re-added, then
 * the new entry ID is recorded (`retried_as`). When the dead-letter stream still holds
 * the entry, the re-add and the removal of that entry (XDEL) are one transaction,
 * guarded by WATCH: the dead-letter stream entry is the token, and whoever removes it
 * is the only one who adds. So a crash can leave a row claimed but unrecorded (in
 * doubt); a later retry completes it only when the token is still there (provably not
 * re-added), and otherwise leaves it alone.
 *
 * Retried rows stay in the table (with retried_at / retried_as) for the record; their
 * dead-letter stream entry is deleted, so the stream holds exactly the dead letters
 * not yet retried (`XLEN` of the dead-letter stream = what is still dead).
 */
import { UNSTORED } from '../sinks/dead-letters.js';
import { ErrorReply, WatchError } from '@redis/client';
import type { TributaryConfig } from '../config/schema.js';
import { backoffDelay, sleep } from '../core/backoff.js';
import { TributaryError } from '../errors.js';
import { quoteIdent, type PgPool } from '../postgres/pool.js';
import { destroyQuietly, send, type RedisConnection } from '../redis/client.js';
import type { RawReply } from '../redis/commands.js';

/** Which pipeline's dead letters: the settings that name it. */
export type DeadLetterScope = Pick<TributaryConfig, 'streamKey' | 'group' | 'dlqStream' | 'pgSchema'>;

/** Connections and scope for the dead-letter operations (the caller owns and closes them). */
export interface DeadLetterOps {
  redis: RedisConnection;
  pool: PgPool;
  config: DeadLetterScope;
}

/** `not_retried`; `retried` (as `retriedAs`); `in_doubt`: claimed by a retry that has not recorded its result (running now, or interrupted). */
export type RetryState = 'not_retried' | 'retried' | 'in_doubt';

/** One row of `dead_letter_queue`. */
export interface DeadLetterRow {
  id: number;
  streamKey: string | null;
  group: string | null;
  /** The entry's ID in the source stream when it was dead-lettered. */
  streamId: string | null;
  eventId: string | null;
  eventType: string | null;
  /** The entry's fields as received (a NUL character is kept as the text `\u0000`). */
  fields: Record<string, string>;
  errorCode: string;
  error: string;
  deliveries: number;
  failedAt: Date;
  retriedAt: Date | null;
  /** The ID of the entry the retry added to the stream. */
  retriedAs: string | null;
  retryState: RetryState;
}

/** A row with its entry in the dead-letter stream, when the stream still holds it. */
export interface DeadLetterDetail extends DeadLetterRow {
  streamEntry: { id: string; fields: Record<string, string> } | null;
}

export interface ListDeadLettersOptions {
  /** Rows to return, newest first (default 20). */
  limit?: number;
  /** Only this event_type. */
  type?: string;
  /** Only rows that failed at or after this time. */
  since?: Date;
  /** Only rows that failed before this time. */
  until?: Date;
  /** Only this error code (`error_code`, e.g. TRIB_ERR_VALIDATION). */
  errorCode?: string;
}

export interface DeadLetterPage {
  /** Rows matching the filters (all of them, not only those returned). */
  total: number;
  rows: DeadLetterRow[];
}

/** What to retry: the rows with these IDs, or every row not yet retried (optionally of one type). */
export type RetrySelector = { ids: readonly number[] } | { all: true; type?: string };

export interface RetryOptions {
  /**
   * A claimed row with no recorded result is taken for an interrupted retry (and
   * completed when its dead-letter stream entry proves it was not re-added) only after
   * this long; before, it is a retry in progress elsewhere (default 60000 ms).
   */
  inDoubtAfterMs?: number;
}

export type RetryOutcome =
  | {
      id: number;
      status: 'retried';
      /** The new entry in the source stream. */
      newStreamId: string;
      /** Where the fields came from: the dead-letter stream entry (byte for byte) or the row's `fields`. */
      source: 'stream' | 'table';
      /** True when this completed a retry that had been interrupted. */
      recovered: boolean;
    }
  | { id: number; status: 'already_retried'; retriedAs: string | null }
  | { id: number; status: 'in_progress' }
  | { id: number; status: 'in_doubt'; reason: string }
  /** Nothing to re-add: the row kept no fields (Postgres refused them) and the stream copy is gone. */
  | { id: number; status: 'unretryable'; reason: string }
  | { id: number; status: 'not_found' };

export interface PurgeOptions {
  /** Only rows that failed before this time (default: all). */
  before?: Date;
  /** Must be true to delete anything; otherwise TRIB_ERR_CONFIRMATION_REQUIRED says what would go. */
  confirm?: boolean;
}

export interface PurgeCounts {
  /** Rows of dead_letter_queue. */
  rows: number;
  /** Their entries in the dead-letter stream. */
  streamEntries: number;
  before: Date | null;
}

/** The fields the dead-letter writer appends, in this order, after the entry's own fields. */
const DLQ_META_FIELDS = [
  'dlq_source_stream',
  'dlq_source_id',
  'dlq_group',
  'dlq_error_code',
  'dlq_error',
  'dlq_deliveries',
  'dlq_failed_at',
] as const;

const CHUNK = 500;
const DEFAULT_IN_DOUBT_AFTER_MS = 60_000;
const WATCH_ATTEMPTS = 50;

interface RowRecord {
  id: string;
  stream_key: string | null;
  group_name: string | null;
  stream_id: string | null;
  event_id: string | null;
  event_type: string | null;
  fields: Record<string, string>;
  error_code: string;
  error: string;
  deliveries: number;
  failed_at: Date;
  retried_at: Date | null;
  retried_as: string | null;
}

const COLUMNS =
  'id, stream_key, group_name, stream_id, event_id, event_type, fields, error_code, error, deliveries, failed_at, retried_at, retried_as';

function table(scope: DeadLetterScope): string {
  return `${quoteIdent(scope.pgSchema)}.dead_letter_queue`;
}

function toRow(r: RowRecord): DeadLetterRow {
  return {
    id: Number(r.id),
    streamKey: r.stream_key,
    group: r.group_name,
    streamId: r.stream_id,
    eventId: r.event_id,
    eventType: r.event_type,
    fields: r.fields,
    errorCode: r.error_code,
    error: r.error,
    deliveries: r.deliveries,
    failedAt: r.failed_at,
    retriedAt: r.retried_at,
    retriedAs: r.retried_as,
    retryState: r.retried_at === null ? 'not_retried' : r.retried_as === null ? 'in_doubt' : 'retried',
  };
}

/** The newest rows (newest first) and how many match the filters. */
export async function listDeadLetters(ops: DeadLetterOps, options: ListDeadLettersOptions = {}): Promise<DeadLetterPage> {
  const { config } = ops;
  const params: unknown[] = [config.streamKey, config.group];
  let where = 'stream_key = $1 AND group_name = $2';
  if (options.type !== undefined) {
    params.push(options.type);
    where += ` AND event_type = $${params.length}`;
  }
  if (options.since !== undefined) {
    params.push(options.since);
    where += ` AND failed_at >= $${params.length}`;
  }
  if (options.until !== undefined) {
    params.push(options.until);
    where += ` AND failed_at < $${params.length}`;
  }
  if (options.errorCode !== undefined) {
    params.push(options.errorCode);
    where += ` AND error_code = $${params.length}`;
  }
  const limit = options.limit ?? 20;
  const [count, rows] = await Promise.all([
    ops.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table(config)} WHERE ${where}`, params),
    ops.pool.query<RowRecord>(
      `SELECT ${COLUMNS} FROM ${table(config)} WHERE ${where} ORDER BY failed_at DESC, id DESC LIMIT ${Math.max(0, Math.floor(limit))}`,
      params,
    ),
  ]);
  return { total: Number(count.rows[0]!.n), rows: rows.rows.map(toRow) };
}

/** One row in full, with its dead-letter stream entry. Throws TRIB_ERR_DLQ_NOT_FOUND. */
export async function getDeadLetter(ops: DeadLetterOps, id: number): Promise<DeadLetterDetail> {
  const { config } = ops;
  const res = await ops.pool.query<RowRecord>(
    `SELECT ${COLUMNS} FROM ${table(config)} WHERE stream_key = $1 AND group_name = $2 AND id = $3`,
    [config.streamKey, config.group, id],
  );
  const record = res.rows[0];
  if (!record) throw notFound(config, id);
  const row = toRow(record);
  const found = row.streamId === null ? undefined : (await findStreamEntries(ops, [row.streamId])).get(row.streamId);
  return { ...row, streamEntry: found ? { id: found.id, fields: pairsToObject(found.fields) } : null };
}

function notFound(config: DeadLetterScope, id: number | string): TributaryError {
  return new TributaryError('TRIB_ERR_DLQ_NOT_FOUND', [id, config.streamKey, config.group, config.pgSchema]);
}

/**
 * Re-adds dead letters to the source stream (the entry as it was, with its event_id
 * kept so the events table stays idempotent), marks their rows retried and removes
 * their dead-letter stream entries. Never adds an entry twice, whether a row is
 * retried twice, concurrently, or after a crash mid-retry (see the module comment).
 * Returns one outcome per row, in ID order.
 */
export async function retryDeadLetters(ops: DeadLetterOps, selector: RetrySelector, options: RetryOptions = {}): Promise<RetryOutcome[]> {
  const inDoubtAfterMs = options.inDoubtAfterMs ?? DEFAULT_IN_DOUBT_AFTER_MS;
  const outcomes: RetryOutcome[] = [];
  let tx: RedisConnection | undefined;
  const txConnection = async () => {
    if (!tx) {
      // WATCH belongs to a connection: the guarded re-add gets one of its own.
      tx = ops.redis.duplicate() as RedisConnection;
      tx.on('error', () => {});
      await tx.connect();
    }
    return tx;
  };
  try {
    if ('ids' in selector) {
      const ids = [...new Set(selector.ids)].sort((a, b) => a - b);
      for (let i = 0; i < ids.length; i += CHUNK) {
        const chunk = ids.slice(i, i + CHUNK);
        const rows = await selectForRetry(ops, inDoubtAfterMs, 'id = ANY($4::bigint[])', [chunk]);
        const byId = new Map(rows.map((r) => [r.row.id, r]));
        const found = await findStreamEntries(ops, rows.map((r) => r.row.streamId).filter((s): s is string => s !== null));
        for (const id of chunk) {
          const candidate = byId.get(id);
          outcomes.push(candidate ? await retryOne(ops, candidate, found, txConnection) : { id, status: 'not_found' });
        }
      }
    } else {
      // Only the dead letters that exist now: an entry retried while an engine runs may fail
      // again and come back as a new row, which this run must not pick up (it would loop).
      const newest = await ops.pool.query<{ max: string | null }>(
        `SELECT max(id) AS max FROM ${table(ops.config)} WHERE stream_key = $1 AND group_name = $2`,
        [ops.config.streamKey, ops.config.group],
      );
      const upTo = Number(newest.rows[0]?.max ?? 0);
      let after = 0;
      for (;;) {
        const extra = selector.type === undefined ? [] : [selector.type];
        const typeFilter = selector.type === undefined ? '' : ' AND event_type = $6';
        const rows = await selectForRetry(ops, inDoubtAfterMs, `retried_as IS NULL AND id > $4 AND id <= $5${typeFilter}`, [after, upTo, ...extra], CHUNK);
        if (rows.length === 0) break;
        after = rows.at(-1)!.row.id;
        const found = await findStreamEntries(ops, rows.map((r) => r.row.streamId).filter((s): s is string => s !== null));
        for (const candidate of rows) outcomes.push(await retryOne(ops, candidate, found, txConnection));
      }
    }
  } finally {
    destroyQuietly(tx);
  }
  return outcomes;
}

interface RetryCandidate {
  row: DeadLetterRow;
  /** Claimed longer ago than inDoubtAfterMs without a recorded result. */
  stale: boolean;
}

async function selectForRetry(ops: DeadLetterOps, inDoubtAfterMs: number, where: string, params: unknown[], limit?: number): Promise<RetryCandidate[]> {
  const { config } = ops;
  const res = await ops.pool.query<RowRecord & { stale: boolean }>(
    `SELECT ${COLUMNS}, (retried_at IS NOT NULL AND retried_at < now() - make_interval(secs => $3::double precision / 1000)) AS stale
       FROM ${table(config)} WHERE stream_key = $1 AND group_name = $2 AND ${where} ORDER BY id${limit ? ` LIMIT ${limit}` : ''}`,
    [config.streamKey, config.group, inDoubtAfterMs, ...params],
  );
  return res.rows.map((r) => ({ row: toRow(r), stale: r.stale }));
}

async function retryOne(
  ops: DeadLetterOps,
  { row, stale }: RetryCandidate,
  found: Map<string, StreamEntryPairs>,
  txConnection: () => Promise<RedisConnection>,
): Promise<RetryOutcome> {
  const entry = row.streamId === null ? undefined : found.get(row.streamId);
  const id = row.id;

  if (row.retryState === 'retried') {
    // Retried, yet the dead-letter stream holds it again (e.g. the engine finished an
    // interrupted dead-lettering of the original afterwards): keep the stream consistent.
    if (entry) await send(ops.redis, ['XDEL', ops.config.dlqStream, entry.id]);
    return { id, status: 'already_retried', retriedAs: row.retriedAs };
  }

  if (row.retryState === 'in_doubt') {
    if (!stale) return { id, status: 'in_progress' };
    if (!entry) {
      return {
        id,
        status: 'in_doubt',
        reason:
          'an earlier retry was interrupted and the dead-letter stream no longer holds the entry, so it may have been re-added already; ' +
          `not re-added again (check the stream and the events table for event_id ${row.eventId ?? '?'})`,
      };
    }
    // The token is still there: the interrupted retry never added the entry.
    const newStreamId = await addGuarded(ops, await txConnection(), entry.id, retryFields(row, entry));
    if (newStreamId === null) return { id, status: 'already_retried', retriedAs: null };
    await recordRetried(ops, id, newStreamId);
    return { id, status: 'retried', newStreamId, source: 'stream', recovered: true };
  }

  // Not retried yet: claim the row; of concurrent retries only one gets it.
  if (!entry && UNSTORED in row.fields) {
    return { id, status: 'unretryable', reason: `the row kept no fields (${row.fields[UNSTORED]}) and the dead-letter stream no longer holds the entry` };
  }
  const claimed = await ops.pool.query(
    `UPDATE ${table(ops.config)} SET retried_at = now() WHERE id = $1 AND retried_at IS NULL RETURNING id`,
    [id],
  );
  if (claimed.rowCount === 0) {
    const now = await ops.pool.query<{ retried_as: string | null }>(`SELECT retried_as FROM ${table(ops.config)} WHERE id = $1`, [id]);
    if (now.rows.length === 0) return { id, status: 'not_found' };
    const retriedAs = now.rows[0]!.retried_as;
    return retriedAs === null ? { id, status: 'in_progress' } : { id, status: 'already_retried', retriedAs };
  }

  let added = false;
  try {
    let newStreamId: string | null;
    if (entry) {
      const tx = await txConnection();
      added = true; // from here on the outcome is unknown until the reply says otherwise
      newStreamId = await addGuarded(ops, tx, entry.id, retryFields(row, entry));
      if (newStreamId === null) return { id, status: 'already_retried', retriedAs: null };
    } else {
      added = true;
      newStreamId = String(await send(ops.redis, ['XADD', ops.config.streamKey, '*', ...retryFields(row, undefined)]));
    }
    await recordRetried(ops, id, newStreamId);
    return { id, status: 'retried', newStreamId, source: entry ? 'stream' : 'table', recovered: false };
  } catch (err) {
    // Redis refused the command (an error reply) or it was never sent: nothing was
    // added, so give the claim back. Anything else (a lost connection) stays in doubt.
    if (!added || (err instanceof ErrorReply && !entry)) {
      await ops.pool
        .query(`UPDATE ${table(ops.config)} SET retried_at = NULL WHERE id = $1 AND retried_as IS NULL`, [id])
        .catch(() => {});
    }
    throw err;
  }
}

async function recordRetried(ops: DeadLetterOps, id: number, newStreamId: string): Promise<void> {
  await ops.pool.query(`UPDATE ${table(ops.config)} SET retried_as = $2 WHERE id = $1 AND retried_as IS NULL`, [id, newStreamId]);
}

/**
 * XADD to the source stream and XDEL of the dead-letter stream entry, in one
 * MULTI/EXEC, only while that entry exists (WATCH). Returns the new entry ID, or null
 * when the entry is gone: someone else removed it, and with it, added the copy.
 */
async function addGuarded(ops: DeadLetterOps, tx: RedisConnection, dlqEntryId: string, fields: string[]): Promise<string | null> {
  const { streamKey, dlqStream } = ops.config;
  const started = Date.now();
  for (let attempt = 0; attempt < WATCH_ATTEMPTS; attempt++) {
    await tx.watch(dlqStream);
    const still = await send(tx, ['XRANGE', dlqStream, dlqEntryId, dlqEntryId]);
    if (!Array.isArray(still) || still.length === 0) {
      await tx.unwatch();
      return null;
    }
    try {
      const replies = (await tx
        .multi()
        .addCommand(['XADD', streamKey, '*', ...fields])
        .addCommand(['XDEL', dlqStream, dlqEntryId])
        .exec()) as unknown as RawReply[];
      return String(replies[0]);
    } catch (err) {
      // The dead-letter stream changed (often: another entry was dead-lettered). Look again.
      if (!(err instanceof WatchError)) throw err;
      await sleep(backoffDelay(attempt, { baseMs: 5, maxMs: 200 }));
    }
  }
  throw new TributaryError('TRIB_ERR_WAIT_TIMEOUT', [
    Date.now() - started,
    `a quiet moment on the dead-letter stream ${dlqStream} to retry its entry ${dlqEntryId} (the row stays claimed; a later retry completes it)`,
  ]);
}

/**
 * The fields to re-add: the dead-letter stream entry's original fields, byte for byte
 * (order and repeats included), else the row's `fields`. An entry that had no event_id
 * gets the one it was recorded under (its original stream ID), so a retry of an event
 * that was somehow written already adds no row.
 */
function retryFields(row: DeadLetterRow, entry: StreamEntryPairs | undefined): string[] {
  const pairs = entry ? expandWide(entry.fields) : Object.entries(row.fields).flat();
  let hasEventId = false;
  for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === 'event_id') hasEventId = true;
  if (!hasEventId && row.eventId !== null) pairs.push('event_id', row.eventId);
  return pairs;
}

/** The dead-letter writer keeps a very wide entry as one `dlq_fields_json` field: unfold it. */
function expandWide(fields: readonly string[]): string[] {
  if (fields.length === 2 && fields[0] === 'dlq_fields_json') {
    return Object.entries(JSON.parse(fields[1]!) as Record<string, string>).flat();
  }
  return [...fields];
}

/** A dead-letter stream entry: its ID and the original entry's field/value pairs (dlq_* removed). */
interface StreamEntryPairs {
  id: string;
  fields: string[];
}

function pairsToObject(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < pairs.length; i += 2) out[pairs[i]!] = pairs[i + 1]!;
  return out;
}

/** Splits a dead-letter stream entry into the original fields and the dlq_* metadata. */
export function splitDeadLetterFields(flat: readonly string[]): { original: string[]; meta: Record<string, string> } {
  const n = DLQ_META_FIELDS.length * 2;
  const tail = flat.slice(-n);
  if (flat.length >= n && DLQ_META_FIELDS.every((name, i) => tail[i * 2] === name)) {
    return { original: flat.slice(0, flat.length - n), meta: pairsToObject(tail) };
  }
  // Not the writer's layout: take the metadata fields by name wherever they are.
  const original: string[] = [];
  const meta: Record<string, string> = {};
  const names = new Set<string>(DLQ_META_FIELDS);
  for (let i = 0; i + 1 < flat.length; i += 2) {
    if (names.has(flat[i]!)) meta[flat[i]!] = flat[i + 1]!;
    else original.push(flat[i]!, flat[i + 1]!);
  }
  return { original, meta };
}

/**
 * Scans the dead-letter stream for this pipeline's entries (all of them, or those of
 * the given source entry IDs) → source entry ID → dead-letter entry. Stops early once
 * every wanted one is found.
 */
async function findStreamEntries(ops: DeadLetterOps, sourceIds?: Iterable<string>): Promise<Map<string, StreamEntryPairs>> {
  const { config } = ops;
  const wanted = sourceIds === undefined ? undefined : new Set(sourceIds);
  const found = new Map<string, StreamEntryPairs>();
  if (wanted?.size === 0) return found;
  let start = '-';
  for (;;) {
    const reply = await send(ops.redis, ['XRANGE', config.dlqStream, start, '+', 'COUNT', '1000']);
    if (!Array.isArray(reply) || reply.length === 0) break;
    for (const item of reply) {
      if (!Array.isArray(item) || !Array.isArray(item[1])) continue;
      const id = String(item[0]);
      const { original, meta } = splitDeadLetterFields(item[1].map(String));
      const source = meta.dlq_source_id;
      if (source === undefined || meta.dlq_source_stream !== config.streamKey || meta.dlq_group !== config.group) continue;
      if (wanted && !wanted.has(source)) continue;
      found.set(source, { id, fields: original });
    }
    if (wanted && found.size >= wanted.size) break;
    if (reply.length < 1000) break;
    start = `(${String((reply.at(-1) as RawReply[])[0])}`;
  }
  return found;
}

/** How many rows (and dead-letter stream entries) a purge would delete. */
export async function planPurge(ops: DeadLetterOps, options: Pick<PurgeOptions, 'before'> = {}): Promise<PurgeCounts> {
  const { config } = ops;
  const before = options.before ?? null;
  const res = await ops.pool.query<{ stream_id: string | null }>(
    `SELECT stream_id FROM ${table(config)} WHERE stream_key = $1 AND group_name = $2 AND ($3::timestamptz IS NULL OR failed_at < $3)`,
    [config.streamKey, config.group, before],
  );
  if (res.rows.length === 0) return { rows: 0, streamEntries: 0, before };
  const entries = await findStreamEntries(ops);
  const streamEntries = res.rows.filter((r) => r.stream_id !== null && entries.has(r.stream_id)).length;
  return { rows: res.rows.length, streamEntries, before };
}

export function describePurge(scope: DeadLetterScope, counts: PurgeCounts): string {
  const when = counts.before ? ` that failed before ${counts.before.toISOString()}` : '';
  return (
    `delete ${counts.rows} dead letter${counts.rows === 1 ? '' : 's'}${when} ` +
    `(${counts.rows} row${counts.rows === 1 ? '' : 's'} of ${scope.pgSchema}.dead_letter_queue and ` +
    `${counts.streamEntries} entr${counts.streamEntries === 1 ? 'y' : 'ies'} of the dead-letter stream ${scope.dlqStream}) ` +
    `of stream ${scope.streamKey}, group ${scope.group}`
  );
}

/**
 * Deletes rows older than `before` (or all) and their dead-letter stream entries.
 * Without `confirm: true` it deletes nothing and throws TRIB_ERR_CONFIRMATION_REQUIRED
 * saying how many would go (when there is anything to delete). Per chunk the stream
 * entries go first, then the rows: an interrupted purge leaves rows that a second run
 * deletes, never stream entries that no row points to.
 */
export async function purgeDeadLetters(ops: DeadLetterOps, options: PurgeOptions = {}): Promise<PurgeCounts> {
  const { config } = ops;
  const before = options.before ?? null;
  if (!options.confirm) {
    const plan = await planPurge(ops, { before: options.before });
    if (plan.rows === 0) return plan;
    throw new TributaryError('TRIB_ERR_CONFIRMATION_REQUIRED', [describePurge(config, plan)]);
  }
  // Rows dead-lettered while we purge are not chased: stop at the newest ID seen now.
  const max = await ops.pool.query<{ max: string | null }>(
    `SELECT max(id) AS max FROM ${table(config)} WHERE stream_key = $1 AND group_name = $2`,
    [config.streamKey, config.group],
  );
  const counts: PurgeCounts = { rows: 0, streamEntries: 0, before };
  if (max.rows[0]!.max === null) return counts;
  const entries = await findStreamEntries(ops);
  for (;;) {
    const res = await ops.pool.query<{ id: string; stream_id: string | null }>(
      `SELECT id, stream_id FROM ${table(config)}
        WHERE stream_key = $1 AND group_name = $2 AND id <= $3 AND ($4::timestamptz IS NULL OR failed_at < $4)
        ORDER BY id LIMIT ${CHUNK}`,
      [config.streamKey, config.group, max.rows[0]!.max, before],
    );
    if (res.rows.length === 0) break;
    const dlqIds = res.rows.map((r) => (r.stream_id === null ? undefined : entries.get(r.stream_id)?.id)).filter((x): x is string => x !== undefined);
    if (dlqIds.length > 0) counts.streamEntries += Number(await send(ops.redis, ['XDEL', config.dlqStream, ...dlqIds]));
    const deleted = await ops.pool.query(`DELETE FROM ${table(config)} WHERE id = ANY($1::bigint[])`, [res.rows.map((r) => r.id)]);
    counts.rows += deleted.rowCount ?? 0;
  }
  return counts;
}
