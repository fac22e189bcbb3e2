/**
 * The monitor: a snapshot of a whole pipeline (the stream, every consumer group and
 * consumer, dead letters, the events table, rates, latency, the engine's batch
 * counters) as plain data, and its rendering as the STREAMING PIPELINE DASHBOARD.
 *
 * `collectMonitorSnapshot` reads; `formatMonitor` is pure. Rates and warnings compare
 * a snapshot with the previous one: pass the previous snapshot back in, and the new
 * one carries the rate history (the last MONITOR_HISTORY samples) forward.
 *
 * Cost per snapshot: Redis — XINFO STREAM, XINFO GROUPS, XLEN of the dead-letter
 * stream, HGETALL of the engine's stats hash, one XINFO CONSUMERS per group (all
 * pipelined). Postgres — one catalog query, then in parallel: the total (exact
 * count(*) up to ESTIMATE_ABOVE_ROWS rows, above that pg_class.reltuples, shown with
 * "~"), the last minute (index range on ingested_at), the dead_letter_queue count, the
 * latency percentiles (the last minute, at most LATENCY_SAMPLE_LIMIT newest rows) and
 * the events by type (exact up to ESTIMATE_ABOVE_ROWS, else from a TABLESAMPLE of
 * about 100,000 rows, scaled, shown with "~").
 *
 * Rates: produced/s is the change of XINFO STREAM `entries-added` (every XADD, trimmed
 * or not) over the interval; written/s the change of the exact total over Postgres's
 * own clock, or — when the total is estimated — the rows with `ingested_at` after the
 * previous snapshot's database time (an index range, exact).
 */
import type { TributaryConfig } from '../config/schema.js';
import { quoteIdent, type PgPool } from '../postgres/pool.js';
import { send, type RedisConnection } from '../redis/client.js';
import { statsKey } from '../redis/keys.js';
import { compareStreamIds, redisErrorIs, type RawReply } from '../redis/commands.js';
import {
  infoPairs,
  parseXinfoConsumers,
  parseXinfoStream,
  readGroups,
  type ConsumerInfo,
  type GroupInfo,
  type StreamInfo,
} from '../redis/xinfo.js';

/** Samples of rate history kept (one per refresh). */
export const MONITOR_HISTORY = 30;
/** Default lag above which a group is flagged. */
export const DEFAULT_LAG_WARNING = 10_000;
/** Default idle time above which a consumer holding pending entries is flagged. */
export const DEFAULT_IDLE_WARNING_MS = 60_000;
/** Above this many rows (pg_class.reltuples) the total and the types are estimated, not counted. */
export const ESTIMATE_ABOVE_ROWS = 1_000_000;
/** Latency percentiles use at most this many of the newest rows of the last minute. */
export const LATENCY_SAMPLE_LIMIT = 100_000;
const TYPE_SAMPLE_ROWS = 100_000;

/** Where a group's lag comes from: Redis itself, computed exactly here, estimated, or unknown. */
export type LagSource = 'redis' | 'computed' | 'estimated' | 'unknown';

export interface MonitorConsumer {
  name: string;
  /** Entries delivered to this consumer and not yet acknowledged. */
  pending: number;
  /** Since its last read, claim or ack, ms. */
  idleMs: number;
}

export interface MonitorGroup {
  name: string;
  /** True for the group of the configuration (GROUP), the one whose engine writes the events table. */
  configured: boolean;
  consumerCount: number;
  pending: number;
  lastDeliveredId: string;
  /** Redis ≥ 7.0 (null when unknown). */
  entriesRead: number | null;
  /** Entries not yet delivered to the group; null when it cannot be told. */
  lag: number | null;
  lagSource: LagSource;
  /** Sorted by pending (most first), then idle time (longest first). */
  consumers: MonitorConsumer[];
}

export interface MonitorBatchCounters {
  batches: number;
  rows: number;
  /** rows / batches; null when no batch. */
  avgSize: number | null;
  /** Batches per flush reason (`size`, `time`, `caught_up`, `capacity`, `shutdown`, `pending`, `reclaim`, ...). */
  flushReasons: Record<string, number>;
}

export interface MonitorBatches extends MonitorBatchCounters {
  /** Whether the engine publishes its counters (the hash exists). When false, every count is 0. */
  published: boolean;
  /** The hash read: `tributary:stats:<stream>:<group>` (src/redis/keys.ts statsKey), where the engine HINCRBYs its counters. */
  key: string;
  /** The change since the previous snapshot; null for the first snapshot, or when the counters went back (reset). */
  interval: MonitorBatchCounters | null;
}

export type MonitorWarningKind = 'lag' | 'dead_letters_growing' | 'consumer_idle' | 'table_missing';

export interface MonitorWarning {
  kind: MonitorWarningKind;
  message: string;
  group?: string;
  consumer?: string;
}

/**
 * One snapshot of the pipeline. Field names are stable (the `--json` output); new
 * fields may be added, and `version` changes if one ever changes meaning.
 */
export interface MonitorSnapshot {
  version: 1;
  /** When the snapshot was taken (this process's clock), ISO. */
  takenAt: string;
  /** Time since the previous snapshot, ms; null for the first. */
  intervalMs: number | null;
  stream: {
    key: string;
    exists: boolean;
    length: number;
    /** Every entry ever added (Redis ≥ 7.0), trimmed or not. */
    entriesAdded: number | null;
    lastGeneratedId: string | null;
    firstEntryId: string | null;
    lastEntryId: string | null;
    /** The configured group. */
    group: string;
    /** Pending entries of the configured group (the original dashboard's "Pending Messages"). */
    pending: number;
    /** Lag of the configured group (null: unknown, or no such group). */
    lag: number | null;
  };
  /** Every consumer group of the stream. */
  groups: MonitorGroup[];
  deadLetters: {
    stream: string;
    streamLength: number;
    /** Rows of `<schema>.dead_letter_queue` for this stream and group (retried ones included). */
    rows: number;
    /** The stream or the table grew since the previous snapshot. */
    growing: boolean;
  };
  postgres: {
    /** `schema.table` of the events table. */
    table: string;
    tableExists: boolean;
    /** Total rows: exact, or the planner's estimate when `eventsEstimated`. */
    events: number;
    eventsEstimated: boolean;
    /** Rows ingested in the last minute (exact). */
    eventsLastMinute: number;
    /** Table, indexes and TOAST, bytes. */
    tableBytes: number;
    /** The same, as Postgres prints it (e.g. `1256 kB`). */
    tableSize: string;
    /** Postgres's clock at the snapshot, ISO. */
    dbTime: string;
  };
  /** The 20 most frequent types. */
  eventsByType: Array<{ type: string; count: number }>;
  /** Counts scaled from a sample of the table (large tables). */
  eventsByTypeEstimated: boolean;
  /** ingested_at - produced_at over the last minute, ms. */
  latencyMs: { p50: number | null; p99: number | null; max: number | null; samples: number };
  rates: {
    /** Entries added to the stream per second over the last interval (XINFO STREAM entries-added). */
    producedPerSec: number | null;
    /** Rows added to the events table per second over the last interval. */
    writtenPerSec: number | null;
    /** The last MONITOR_HISTORY rates, oldest first. */
    history: { produced: number[]; written: number[] };
  };
  batches: MonitorBatches;
  warnings: MonitorWarning[];
}

export interface MonitorOptions {
  /** Flag a group whose lag is above this (default DEFAULT_LAG_WARNING). */
  lagWarning?: number;
  /** Flag a consumer idle longer than this with pending entries, ms (default DEFAULT_IDLE_WARNING_MS). */
  idleWarningMs?: number;
  /** Estimate the total and the types above this many rows (default ESTIMATE_ABOVE_ROWS). */
  estimateAboveRows?: number;
  /**
   * Read the events table (default true). False for a stream whose rows go elsewhere (a
   * pipeline file's table, another engine's EVENTS_TABLE): the Postgres side is then only
   * the dead-letter count, and a missing events table is no warning.
   */
  eventsTable?: boolean;
}

// ---------------------------------------------------------------------------
// Pure parts

/**
 * A group's lag: what Redis reports; else computed where the facts allow it (caught
 * up: 0; behind the first entry: the whole stream); else entries-added − entries-read,
 * an estimate (Redis withholds lag after deletions inside the unread part); else unknown.
 */
export function groupLag(group: GroupInfo, stream: StreamInfo | null): { lag: number | null; source: LagSource } {
  if (group.lag !== null) return { lag: group.lag, source: 'redis' };
  if (stream === null || stream.length === 0 || stream.firstEntryId === null) return { lag: 0, source: 'computed' };
  if (compareStreamIds(group.lastDeliveredId, stream.lastGeneratedId) >= 0) return { lag: 0, source: 'computed' };
  if (compareStreamIds(group.lastDeliveredId, stream.firstEntryId) < 0) return { lag: stream.length, source: 'computed' };
  if (group.entriesRead !== null && stream.entriesAdded !== null) {
    return { lag: Math.max(0, stream.entriesAdded - group.entriesRead), source: 'estimated' };
  }
  return { lag: null, source: 'unknown' };
}

/** Per-second rate of a counter between two readings; null when unknown or when it went back (reset). */
export function ratePerSec(previous: number | null | undefined, current: number | null, intervalMs: number | null): number | null {
  if (previous === null || previous === undefined || current === null || intervalMs === null || intervalMs <= 0) return null;
  if (current < previous) return null;
  return Math.round(((current - previous) * 1000 * 10) / intervalMs) / 10;
}

/** Appends a sample (when known) and keeps the last MONITOR_HISTORY. */
export function pushHistory(history: readonly number[] | undefined, value: number | null): number[] {
  const next = [...(history ?? [])];
  if (value !== null) next.push(value);
  return next.slice(-MONITOR_HISTORY);
}

/** The engine's counters from the HGETALL reply of its stats hash. */
export function parseBatchCounters(raw: RawReply): MonitorBatchCounters & { published: boolean } {
  const o = infoPairs(raw);
  const flushReasons: Record<string, number> = {};
  for (const [field, value] of Object.entries(o)) {
    if (field.startsWith('flush:')) flushReasons[field.slice('flush:'.length)] = Number(value);
  }
  const batches = Number(o.batches ?? 0);
  const rows = Number(o.rows ?? 0);
  return { published: Object.keys(o).length > 0, batches, rows, avgSize: avg(rows, batches), flushReasons };
}

/** The counters' change since `previous`; null when there is no previous reading or a counter went back. */
export function batchInterval(previous: MonitorBatchCounters | undefined, current: MonitorBatchCounters): MonitorBatchCounters | null {
  if (!previous) return null;
  const batches = current.batches - previous.batches;
  const rows = current.rows - previous.rows;
  if (batches < 0 || rows < 0) return null;
  const flushReasons: Record<string, number> = {};
  for (const [reason, n] of Object.entries(current.flushReasons)) {
    const d = n - (previous.flushReasons[reason] ?? 0);
    if (d < 0) return null;
    if (d > 0) flushReasons[reason] = d;
  }
  return { batches, rows, avgSize: avg(rows, batches), flushReasons };
}

function avg(rows: number, batches: number): number | null {
  return batches > 0 ? Math.round((rows / batches) * 10) / 10 : null;
}

/** The warnings of a snapshot (everything but `warnings` itself filled in). */
export function monitorWarnings(
  snapshot: Omit<MonitorSnapshot, 'warnings'>,
  options: MonitorOptions = {},
): MonitorWarning[] {
  const lagWarning = options.lagWarning ?? DEFAULT_LAG_WARNING;
  const idleWarningMs = options.idleWarningMs ?? DEFAULT_IDLE_WARNING_MS;
  const warnings: MonitorWarning[] = [];
  if (!snapshot.postgres.tableExists && options.eventsTable !== false) {
    warnings.push({ kind: 'table_missing', message: `table ${snapshot.postgres.table} does not exist (run tributary migrate)` });
  }
  for (const g of snapshot.groups) {
    if (g.lag !== null && g.lag > lagWarning) {
      warnings.push({ kind: 'lag', group: g.name, message: `group ${g.name}: lag ${g.lag} is above ${lagWarning}` });
    }
    for (const c of g.consumers) {
      if (c.pending > 0 && c.idleMs > idleWarningMs) {
        warnings.push({
          kind: 'consumer_idle',
          group: g.name,
          consumer: c.name,
          message: `consumer ${c.name} (group ${g.name}) idle ${formatDuration(c.idleMs)} with ${c.pending} pending`,
        });
      }
    }
  }
  if (snapshot.deadLetters.growing) {
    warnings.push({ kind: 'dead_letters_growing', message: 'dead letters are growing since the last refresh' });
  }
  return warnings;
}

// ---------------------------------------------------------------------------
// Collecting

interface RedisFacts {
  stream: StreamInfo | null;
  groups: Array<{ info: GroupInfo; consumers: ConsumerInfo[] }>;
  dlqLength: number;
  batches: MonitorBatchCounters & { published: boolean };
}

async function readRedis(redis: RedisConnection, config: TributaryConfig): Promise<RedisFacts> {
  const [stream, groups, dlqLength, hash] = await Promise.all([
    send(redis, ['XINFO', 'STREAM', config.streamKey]).then(parseXinfoStream, (err) => (redisErrorIs(err, 'ERR') ? null : Promise.reject(err))),
    readGroups(redis, config.streamKey),
    send(redis, ['XLEN', config.dlqStream]),
    send(redis, ['HGETALL', statsKey(config.streamKey, config.group)]),
  ]);
  const consumers = await Promise.all(
    groups.map((g) =>
      send(redis, ['XINFO', 'CONSUMERS', config.streamKey, g.name]).then(parseXinfoConsumers, (err) =>
        redisErrorIs(err, 'NOGROUP') ? [] : Promise.reject(err),
      ),
    ),
  );
  return {
    stream,
    groups: groups.map((info, i) => ({ info, consumers: consumers[i] ?? [] })),
    dlqLength: Number(dlqLength),
    batches: parseBatchCounters(hash),
  };
}

interface PostgresFacts {
  postgres: MonitorSnapshot['postgres'];
  deadLetterRows: number;
  eventsByType: MonitorSnapshot['eventsByType'];
  eventsByTypeEstimated: boolean;
  latencyMs: MonitorSnapshot['latencyMs'];
  /** Rows ingested since the previous snapshot's dbTime (only when the total is estimated). */
  writtenSincePrevious: number | null;
}

async function readPostgres(
  pool: PgPool,
  config: TributaryConfig,
  previous: MonitorSnapshot | undefined,
  estimateAboveRows: number,
  eventsTable = true,
): Promise<PostgresFacts> {
  const schema = quoteIdent(config.pgSchema);
  const table = `${schema}.${quoteIdent(config.eventsTable)}`;
  const dlq = `${schema}.dead_letter_queue`;
  const catalog = (
    await pool.query<{ db_now: Date; has_events: boolean; has_dlq: boolean; estimate: string; bytes: string; size: string }>(
      `SELECT now() AS db_now,
              to_regclass($1) IS NOT NULL AS has_events,
              to_regclass($2) IS NOT NULL AS has_dlq,
              COALESCE((SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)), -1) AS estimate,
              COALESCE(pg_total_relation_size(to_regclass($1)), 0) AS bytes,
              pg_size_pretty(COALESCE(pg_total_relation_size(to_regclass($1)), 0)) AS size`,
      [table, dlq],
    )
  ).rows[0]!;
  if (!eventsTable) catalog.has_events = false;
  const estimate = Number(catalog.estimate);
  const estimated = estimate > estimateAboveRows;
  const postgres: MonitorSnapshot['postgres'] = {
    table: `${config.pgSchema}.${config.eventsTable}`,
    tableExists: catalog.has_events,
    events: 0,
    eventsEstimated: estimated,
    eventsLastMinute: 0,
    tableBytes: Number(catalog.bytes),
    tableSize: catalog.size,
    dbTime: catalog.db_now.toISOString(),
  };
  const deadLetterRows = catalog.has_dlq
    ? pool
        .query<{ n: string }>(`SELECT count(*) AS n FROM ${dlq} WHERE stream_key = $1 AND group_name = $2`, [config.streamKey, config.group])
        .then((r) => Number(r.rows[0]!.n))
    : Promise.resolve(0);
  if (!catalog.has_events) {
    return {
      postgres,
      deadLetterRows: await deadLetterRows,
      eventsByType: [],
      eventsByTypeEstimated: false,
      latencyMs: { p50: null, p99: null, max: null, samples: 0 },
      writtenSincePrevious: null,
    };
  }
  const since = estimated && previous?.postgres.tableExists ? previous.postgres.dbTime : null;
  const samplePercent = estimated ? Math.min(100, (100 * TYPE_SAMPLE_ROWS) / estimate) : 100;
  const [counts, latency, byType, dead] = await Promise.all([
    pool.query<{ total: string | null; last_minute: string; since_previous: string | null }>(
      `SELECT ${estimated ? 'NULL' : `(SELECT count(*) FROM ${table})`} AS total,
              (SELECT count(*) FROM ${table} WHERE ingested_at > now() - interval '1 minute') AS last_minute,
              CASE WHEN $1::timestamptz IS NULL THEN NULL
                   ELSE (SELECT count(*) FROM ${table} WHERE ingested_at > $1::timestamptz) END AS since_previous`,
      [since],
    ),
    pool.query<{ p50: number | null; p99: number | null; max: number | null; n: string }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
              max(ms) AS max, count(*) AS n
         FROM (SELECT extract(epoch FROM ingested_at - produced_at) * 1000 AS ms
                 FROM ${table}
                WHERE ingested_at > now() - interval '1 minute' AND produced_at IS NOT NULL
                ORDER BY ingested_at DESC
                LIMIT ${LATENCY_SAMPLE_LIMIT}) t`,
    ),
    estimated
      ? pool.query<{ event_type: string; n: string }>(
          `SELECT event_type, round(count(*) * 100.0 / $1::float8) AS n
             FROM ${table} TABLESAMPLE SYSTEM ($1::float8)
            GROUP BY event_type ORDER BY n DESC, event_type LIMIT 20`,
          [samplePercent],
        )
      : pool.query<{ event_type: string; n: string }>(
          `SELECT event_type, count(*) AS n FROM ${table} GROUP BY event_type ORDER BY n DESC, event_type LIMIT 20`,
        ),
    deadLetterRows,
  ]);
  const c = counts.rows[0]!;
  const l = latency.rows[0]!;
  const round = (v: number | null) => (v === null ? null : Math.round(Number(v) * 10) / 10);
  postgres.events = estimated ? estimate : Number(c.total);
  postgres.eventsLastMinute = Number(c.last_minute);
  return {
    postgres,
    deadLetterRows: dead,
    eventsByType: byType.rows.map((r) => ({ type: r.event_type, count: Number(r.n) })),
    eventsByTypeEstimated: estimated,
    latencyMs: { p50: round(l.p50), p99: round(l.p99), max: round(l.max), samples: Number(l.n) },
    writtenSincePrevious: c.since_previous === null ? null : Number(c.since_previous),
  };
}

/**
 * Takes a snapshot. Pass the previous snapshot to get rates, interval batch counts,
 * the "dead letters growing" warning and the rate history. A stream, group or table
 * that does not exist yet reads as empty (the table's absence is a warning).
 */
export async function collectMonitorSnapshot(
  redis: RedisConnection,
  pool: PgPool,
  config: TributaryConfig,
  previous?: MonitorSnapshot,
  options: MonitorOptions = {},
): Promise<MonitorSnapshot> {
  const started = Date.now();
  const [r, p] = await Promise.all([readRedis(redis, config), readPostgres(pool, config, previous, options.estimateAboveRows ?? ESTIMATE_ABOVE_ROWS, options.eventsTable !== false)]);
  const intervalMs = previous ? started - Date.parse(previous.takenAt) : null;

  const groups: MonitorGroup[] = r.groups.map(({ info: g, consumers: members }) => {
    const { lag, source } = groupLag(g, r.stream);
    const consumers = members
      .map((c) => ({ name: c.name, pending: c.pending, idleMs: c.idleMs }))
      .sort((a, b) => b.pending - a.pending || b.idleMs - a.idleMs || a.name.localeCompare(b.name));
    return {
      name: g.name,
      configured: g.name === config.group,
      consumerCount: members.length,
      pending: g.pending,
      lastDeliveredId: g.lastDeliveredId,
      entriesRead: g.entriesRead,
      lag,
      lagSource: source,
      consumers,
    };
  });
  const own = groups.find((g) => g.configured);

  const producedPerSec = ratePerSec(previous?.stream.entriesAdded, r.stream?.entriesAdded ?? null, intervalMs);
  let writtenPerSec: number | null = null;
  if (previous?.postgres.tableExists && p.postgres.tableExists && intervalMs !== null) {
    const dbIntervalMs = Date.parse(p.postgres.dbTime) - Date.parse(previous.postgres.dbTime);
    writtenPerSec =
      !p.postgres.eventsEstimated && !previous.postgres.eventsEstimated
        ? ratePerSec(previous.postgres.events, p.postgres.events, dbIntervalMs)
        : p.writtenSincePrevious === null
          ? null
          : ratePerSec(0, p.writtenSincePrevious, dbIntervalMs);
  }

  const dlqGrowing =
    previous !== undefined &&
    (r.dlqLength > previous.deadLetters.streamLength || p.deadLetterRows > previous.deadLetters.rows);

  const { published, ...counters } = r.batches;
  const snapshot: Omit<MonitorSnapshot, 'warnings'> = {
    version: 1,
    takenAt: new Date(started).toISOString(),
    intervalMs,
    stream: {
      key: config.streamKey,
      exists: r.stream !== null,
      length: r.stream?.length ?? 0,
      entriesAdded: r.stream?.entriesAdded ?? null,
      lastGeneratedId: r.stream?.lastGeneratedId ?? null,
      firstEntryId: r.stream?.firstEntryId ?? null,
      lastEntryId: r.stream?.lastEntryId ?? null,
      group: config.group,
      pending: own?.pending ?? 0,
      lag: own?.lag ?? null,
    },
    groups,
    deadLetters: { stream: config.dlqStream, streamLength: r.dlqLength, rows: p.deadLetterRows, growing: dlqGrowing },
    postgres: p.postgres,
    eventsByType: p.eventsByType,
    eventsByTypeEstimated: p.eventsByTypeEstimated,
    latencyMs: p.latencyMs,
    rates: {
      producedPerSec,
      writtenPerSec,
      history: {
        produced: pushHistory(previous?.rates.history.produced, producedPerSec),
        written: pushHistory(previous?.rates.history.written, writtenPerSec),
      },
    },
    batches: {
      published,
      key: statsKey(config.streamKey, config.group),
      ...counters,
      interval: published && previous?.batches.published ? batchInterval(previous.batches, counters) : null,
    },
  };
  return { ...snapshot, warnings: monitorWarnings(snapshot, options) };
}

// ---------------------------------------------------------------------------
// Rendering

export interface FormatMonitorOptions {
  /** ANSI colours (warnings, headings, sparklines). */
  color: boolean;
  /** Lines are cut to this many columns (default: no limit). */
  width?: number;
  /** At most this many lines (default: no limit); the rest is summarised in the last line. */
  height?: number;
  /** Shown under the title, in red (e.g. a refresh that failed). */
  notice?: string;
  /** The last line (e.g. `refresh 5 s · q quits`). */
  footer?: string;
  /** Lag above which a group's lag is shown in red (default DEFAULT_LAG_WARNING). */
  lagWarning?: number;
}

const SPARKS = '▁▂▃▄▅▆▇█';

/** A unicode sparkline of the values, scaled to their maximum. Pure. */
export function sparkline(values: readonly number[]): string {
  const max = Math.max(0, ...values);
  return values.map((v) => SPARKS[max <= 0 ? 0 : Math.min(7, Math.round((Math.max(0, v) / max) * 7))]).join('');
}

/** `850 ms`, `4.2 s`, `3 m 20 s`, `2 h 5 m`. Pure. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} m ${Math.floor((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.floor((ms % 3_600_000) / 60_000)} m`;
}

/** Visible length of a string (ANSI colour sequences do not count). */
export function visibleLength(s: string): number {
  return s.replace(/\x1b\[[0-9;]*m/g, '').length;
}

/** Cuts a line to `width` visible columns, keeping colour sequences intact (and resetting after a cut). */
export function truncateLine(s: string, width: number): string {
  if (visibleLength(s) <= width) return s;
  let out = '';
  let seen = 0;
  for (let i = 0; i < s.length; ) {
    const m = /^\x1b\[[0-9;]*m/.exec(s.slice(i));
    if (m) {
      out += m[0];
      i += m[0].length;
      continue;
    }
    if (seen >= Math.max(0, width - 1)) break;
    out += s[i];
    seen++;
    i++;
  }
  return `${out}…${s.includes('\x1b[') ? '\x1b[0m' : ''}`;
}

const rate = (v: number | null) => (v === null ? 'n/a' : `${v.toFixed(1)}/s`);
const ms = (v: number | null) => (v === null ? 'n/a' : `${v} ms`);

/**
 * The dashboard as text: the original STREAMING PIPELINE DASHBOARD's sections and
 * labels (Redis Streams, Postgres, Events by Type), with warnings first, then rates,
 * consumer groups and consumers, latency and the engine's batches. Pure.
 */
export function formatMonitor(s: MonitorSnapshot, options: FormatMonitorOptions): string {
  const paint = (code: string, text: string) => (options.color ? `\x1b[${code}m${text}\x1b[0m` : text);
  const bold = (t: string) => paint('1', t);
  const lagWarning = options.lagWarning ?? DEFAULT_LAG_WARNING;
  const rule = '='.repeat(60);
  const approx = (estimated: boolean, n: number) => `${estimated ? '~' : ''}${n}`;
  const time = new Date(s.takenAt).toTimeString().slice(0, 8); // local time
  const rateLine = (label: string, value: number | null, history: number[]) =>
    history.length === 0 ? `  ${label}${rate(value)}` : `  ${label}${rate(value).padEnd(11)} ${paint('36', sparkline(history))}`;
  const idle = new Set(s.warnings.filter((w) => w.kind === 'consumer_idle').map((w) => `${w.group}\n${w.consumer}`));

  const lines: string[] = [rule, `${bold('STREAMING PIPELINE DASHBOARD')}${' '.repeat(60 - 28 - 9)} ${time}`, rule];
  if (options.notice) lines.push(paint('31', options.notice));
  if (s.warnings.length > 0) {
    lines.push('', paint('1;31', 'Warnings:'));
    for (const w of s.warnings) lines.push(paint(w.kind === 'consumer_idle' ? '33' : '31', `  ! ${w.message}`));
  }

  lines.push(
    '',
    bold('Redis Streams:'),
    `  Stream Length: ${s.stream.length}${s.stream.exists ? '' : ' (no such stream)'}`,
    `  Pending Messages: ${s.stream.pending}`,
    `  DLQ Length: ${s.deadLetters.streamLength}`,
    '',
    bold('Throughput (last interval):'),
    rateLine('Produced: ', s.rates.producedPerSec, s.rates.history.produced),
    rateLine('Written:  ', s.rates.writtenPerSec, s.rates.history.written),
  );

  lines.push('', bold('Consumer Groups:'));
  if (s.groups.length === 0) lines.push('  (none)');
  else {
    const nameWidth = Math.min(30, Math.max(5, ...s.groups.map((g) => g.name.length + (g.configured ? 1 : 0))));
    lines.push(`  ${'GROUP'.padEnd(nameWidth)}  ${'LAG'.padStart(9)}  ${'PENDING'.padStart(9)}  ${'CONSUMERS'.padStart(9)}  LAST DELIVERED`);
    for (const g of s.groups) {
      const lagText = (g.lag === null ? 'n/a' : `${g.lagSource === 'estimated' ? '~' : ''}${g.lag}`).padStart(9);
      const lagCell = g.lag !== null && g.lag > lagWarning ? paint('31', lagText) : lagText;
      const name = `${g.name}${g.configured ? '*' : ''}`.padEnd(nameWidth);
      lines.push(`  ${name}  ${lagCell}  ${String(g.pending).padStart(9)}  ${String(g.consumerCount).padStart(9)}  ${g.lastDeliveredId}`);
      const shown = g.consumers.slice(0, 8);
      for (const c of shown) {
        const text = `    - ${c.name}: pending ${c.pending}, idle ${formatDuration(c.idleMs)}`;
        lines.push(idle.has(`${g.name}\n${c.name}`) ? paint('33', text) : text);
      }
      if (g.consumers.length > shown.length) lines.push(`    ... and ${g.consumers.length - shown.length} more consumers`);
    }
  }

  const pg = s.postgres;
  lines.push(
    '',
    bold(`Postgres (${pg.table}):`),
    `  Total Events: ${pg.tableExists ? approx(pg.eventsEstimated, pg.events) : 'n/a (no table)'}`,
    `  Events (last minute): ${pg.eventsLastMinute}`,
    `  DLQ Count: ${s.deadLetters.rows}`,
    `  Table Size: ${pg.tableSize}`,
    `  End-to-end latency (last minute): p50 ${ms(s.latencyMs.p50)}, p99 ${ms(s.latencyMs.p99)} (${s.latencyMs.samples} events)`,
    '',
    `  Events by Type:${s.eventsByTypeEstimated ? ' (estimated from a sample)' : ''}`,
    ...s.eventsByType.slice(0, 10).map((t) => `    ${t.type}: ${approx(s.eventsByTypeEstimated, t.count)}`),
  );
  if (s.eventsByType.length > 10) lines.push(`    ... and ${s.eventsByType.length - 10} more types`);

  lines.push('', bold('Batches:'));
  const b = s.batches;
  if (!b.published) lines.push('  (not published by the engine)');
  else {
    const reasons = (r: Record<string, number>) =>
      Object.entries(r)
        .sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0]))
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none';
    lines.push(`  Total: ${b.batches} batches, ${b.rows} rows, avg ${b.avgSize ?? 'n/a'} per batch`);
    lines.push(`  Flush reasons: ${reasons(b.flushReasons)}`);
    if (b.interval) {
      lines.push(
        `  Last interval: ${b.interval.batches} batches, avg ${b.interval.avgSize ?? 'n/a'} per batch (${reasons(b.interval.flushReasons)})`,
      );
    }
  }
  lines.push('', rule);

  let out = lines;
  const footer = options.footer === undefined ? [] : [options.footer];
  if (options.height !== undefined && out.length + footer.length > options.height) {
    const keep = Math.max(0, options.height - footer.length - 1);
    out = [...out.slice(0, keep), `... ${out.length - keep} more lines (enlarge the terminal)`];
  }
  out = [...out, ...footer];
  if (options.width !== undefined) out = out.map((l) => truncateLine(l, options.width!));
  return out.join('\n');
}
