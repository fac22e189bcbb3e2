/**
 * Replay: write a stretch of a stream's history to Postgres again, or start a new
 * consumer group at a point in the past.
 *
 * Writing history reuses the engine's parts — `parseEntry` (the stream contract) and
 * `PostgresEventsSink` (one statement per page, ON CONFLICT (event_id) DO NOTHING) —
 * so replaying entries already written adds no row. Nothing is acknowledged and
 * nothing is appended to the dead-letter stream: replayed entries are read with
 * XRANGE, outside any group, and are pending nowhere.
 *
 * Poison entries (breaking the contract, or refused by Postgres for their content)
 * are counted and reported with their code. They are recorded in the
 * `dead_letter_queue` table only when asked (`deadLetters`), under the stream and the
 * configured group, so a poison entry the engine already dead-lettered keeps its one
 * row (the table is idempotent on stream, group and entry ID) — the default is not to
 * write them: the engine recorded them when it first met them.
 */
import { DeadLetterWriter, type DeadLetter } from '../sinks/dead-letters.js';
import { parseEntry, type EventRow } from '../core/entry.js';
import { TributaryError, type ErrorCode } from '../errors.js';
import type { PgPool } from '../postgres/pool.js';
import { send, type RedisConnection } from '../redis/client.js';
import { compareStreamIds, parseEntryList, redisErrorIs, type StreamEntry } from '../redis/commands.js';
import { PostgresEventsSink } from '../sinks/postgres-events.js';
import { previousStreamId } from './retention.js';

export interface ReplayOptions {
  /** First entry ID to replay (inclusive). */
  from: string;
  /** Last entry ID to replay (inclusive; an ID without `-seq` covers that whole millisecond). Default `+`: to the end. */
  to?: string;
  /** Postgres schema of the events table (default `public`). */
  schema?: string;
  /** Events table (default `events`). */
  table?: string;
  /** Entries per XRANGE page (default 1000). */
  pageSize?: number;
  /** At most this many bytes of rows per INSERT statement (default 8 MiB, like BATCH_MAX_BYTES). */
  maxBytes?: number;
  /** Record poison entries in `dead_letter_queue` under this stream and group (default: count and report only). */
  deadLetters?: { group: string; dlqStream: string };
  /** Stops after the page in progress. */
  signal?: AbortSignal;
  /** Called after each page, with the running totals. */
  onProgress?: (report: ReplayReport) => void;
}

export interface PoisonEntry {
  id: string;
  code: ErrorCode;
  message: string;
}

export interface ReplayReport {
  /** Entries read from the stream. */
  read: number;
  /** Rows newly written. */
  inserted: number;
  /** Rows whose event_id was already in the table (skipped). */
  alreadyPresent: number;
  /** Entries that break the contract or that Postgres refused; not written. */
  poison: number;
  /** The first 20 poison entries, with their code. */
  poisonSamples: PoisonEntry[];
  /** Poison entries recorded in dead_letter_queue (0 unless asked). */
  deadLettersRecorded: number;
  firstId: string | null;
  lastId: string | null;
  pages: number;
  /** True when stopped by the signal before the end of the range. */
  aborted: boolean;
}

const SAMPLES = 20;
const DEFAULT_MAX_BYTES = 8 * 1024 * 1024;

/** Splits rows into runs whose payloads and keys add up to at most `maxBytes` (a row larger than that goes alone). */
export function chunksByBytes(rows: readonly EventRow[], maxBytes: number): EventRow[][] {
  const chunks: EventRow[][] = [];
  let current: EventRow[] = [];
  let bytes = 0;
  for (const row of rows) {
    const size = row.payload.length + row.eventId.length + row.eventType.length + row.streamId.length;
    if (current.length > 0 && bytes + size > maxBytes) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(row);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** Writes the entries from `from` to `to` (inclusive) to Postgres, idempotently, in pages. */
export async function replayRange(redis: RedisConnection, pool: PgPool, key: string, options: ReplayOptions): Promise<ReplayReport> {
  const pageSize = options.pageSize ?? 1000;
  if (!Number.isInteger(pageSize) || pageSize < 1) throw new RangeError('pageSize must be a positive integer');
  const to = options.to ?? '+';
  const sink = new PostgresEventsSink(pool, options.schema ?? 'public', options.table ?? 'events');
  const deadLetters = options.deadLetters
    ? new DeadLetterWriter(pool, redis, { streamKey: key, group: options.deadLetters.group, dlqStream: options.deadLetters.dlqStream }, options.schema ?? 'public')
    : undefined;
  const report: ReplayReport = {
    read: 0,
    inserted: 0,
    alreadyPresent: 0,
    poison: 0,
    poisonSamples: [],
    deadLettersRecorded: 0,
    firstId: null,
    lastId: null,
    pages: 0,
    aborted: false,
  };
  let start = options.from;
  for (;;) {
    if (options.signal?.aborted) {
      report.aborted = true;
      return report;
    }
    const page = parseEntryList(await send(redis, ['XRANGE', key, start, to, 'COUNT', String(pageSize)])).entries;
    if (page.length === 0) return report;
    report.pages++;
    report.read += page.length;
    report.firstId ??= page[0]!.id;
    report.lastId = page.at(-1)!.id;

    const rows: EventRow[] = [];
    const poison: DeadLetter[] = [];
    const byId = new Map<string, StreamEntry>();
    for (const entry of page) {
      const parsed = parseEntry(entry, key);
      if (parsed.ok) {
        rows.push(parsed.row);
        byId.set(entry.id, entry);
      } else {
        const err = new TributaryError(parsed.problem.code, parsed.problem.args);
        poison.push({ entry, code: err.code, error: err.message, deliveries: 0 });
      }
    }
    // One statement per chunk of at most maxBytes, as the engine's batches are.
    for (const chunk of chunksByBytes(rows, options.maxBytes ?? DEFAULT_MAX_BYTES)) {
      const written = await sink.write(chunk);
      report.inserted += written.inserted;
      report.alreadyPresent += written.duplicates;
      for (const r of written.rejected) {
        const err = new TributaryError('TRIB_ERR_ENTRY_REJECTED', [r.row.streamId, r.sqlState, r.message]);
        poison.push({ entry: byId.get(r.row.streamId)!, code: err.code, error: err.message, deliveries: 0 });
      }
    }
    report.poison += poison.length;
    for (const p of poison.slice(0, SAMPLES - report.poisonSamples.length)) {
      report.poisonSamples.push({ id: p.entry.id, code: p.code, message: p.error });
    }
    if (deadLetters && poison.length > 0) {
      report.deadLettersRecorded += await deadLetters.record(poison);
    }
    options.onProgress?.({ ...report, poisonSamples: [...report.poisonSamples] });
    if (page.length < pageSize) return report;
    start = `(${report.lastId}`;
  }
}

export interface ReplayGroupResult {
  group: string;
  /** The ID the group was created at: the one just before `from`, so its first read returns `from` on. */
  startId: string;
}

/**
 * Creates consumer group `group` on `key` so that it reads from `from` (inclusive) on:
 * `XGROUP CREATE key group <ID just before from>`. A `tributary start --group <name>`
 * then consumes the history from there. Refuses an existing group
 * (TRIB_ERR_REPLAY_GROUP_EXISTS: moving a group that may have consumers is another
 * operation) and a missing stream (TRIB_ERR_REPLAY_STREAM_MISSING).
 */
export async function createReplayGroup(redis: RedisConnection, key: string, group: string, from: string): Promise<ReplayGroupResult> {
  if (Number(await send(redis, ['EXISTS', key])) === 0) throw new TributaryError('TRIB_ERR_REPLAY_STREAM_MISSING', [key]);
  const startId = previousStreamId(from) ?? '0';
  try {
    await send(redis, ['XGROUP', 'CREATE', key, group, startId]);
  } catch (err) {
    if (redisErrorIs(err, 'BUSYGROUP')) throw new TributaryError('TRIB_ERR_REPLAY_GROUP_EXISTS', [group, key], { cause: err });
    if (redisErrorIs(err, 'ERR') && Number(await send(redis, ['EXISTS', key])) === 0) {
      throw new TributaryError('TRIB_ERR_REPLAY_STREAM_MISSING', [key], { cause: err });
    }
    throw err;
  }
  return { group, startId };
}

/** Checks `from ≤ to` for two stream IDs (`+` and `-` allowed). */
export function isRangeOrdered(from: string, to: string): boolean {
  if (to === '+' || from === '-') return true;
  if (to === '-' || from === '+') return false;
  return compareStreamIds(from, to) <= 0;
}
