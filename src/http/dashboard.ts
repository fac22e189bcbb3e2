/**
 * The dashboard: its JSON API under `/api/...` and its single-page app (built into
 * dist/web by `npm run build`) at `/`, registered on the HTTP server through its
 * `routes` option.
 *
 * Every read and action calls the library functions the CLI calls: the overview is
 * `collectMonitorSnapshot` (tributary monitor) per pipeline found on Redis
 * (`discoverPipelines`), dead letters are `listDeadLetters` / `getDeadLetter` /
 * `retryDeadLetters` / `purgeDeadLetters` (tributary dlq), pending entries
 * `pendingSummary` / `claimIdle` (tributary pending, claim), the orders page
 * `collectOrdersStats` (tributary orders stats). Writes (retry, purge, claim) take the
 * bearer token (`requireToken`): on a read-only server they answer 401.
 *
 * Live figures: snapshots are taken on demand, at most one per `refreshMs` (default 1 s)
 * whatever the number of viewers, and each taken snapshot adds a point to a server-side
 * ring buffer of the last `historyMs` (default 15 min) per pipeline (and for the orders
 * pipeline, sampled with the overview when it runs on this Redis), so a page opened later
 * shows the history since the first viewer. No viewer, no snapshot.
 *
 * Errors are coded JSON with a fixed message saying what to do (start Redis, check
 * REDIS_URL, start the engine): never a driver's message, a URL or a secret.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClientClosedError, ClientOfflineError, ConnectionTimeoutError, SocketClosedUnexpectedlyError, SocketTimeoutError } from '@redis/client';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TributaryConfig } from '../config/schema.js';
import { isTributaryError, TributaryError, type ErrorCode } from '../errors.js';
import { discoverPipelines, keysExist, type DiscoveredPipeline } from '../observability/discover.js';
import { batchInterval, collectMonitorSnapshot, parseBatchCounters, type MonitorBatchCounters, type MonitorSnapshot } from '../observability/monitor.js';
import {
  describePurge,
  getDeadLetter,
  planPurge,
  listDeadLetters,
  purgeDeadLetters,
  retryDeadLetters,
  type DeadLetterOps,
  type RetrySelector,
} from '../ops/dead-letters.js';
import { claimIdle, pendingSummary } from '../ops/pending.js';
import { parseTime } from '../ops/time.js';
import { collectOrdersStats, ordersStatsOptions, type OrdersStats } from '../orders/stats.js';
import { orderKeys } from '../orders/redis/keys.js';
import { migrate } from '../postgres/migrate.js';
import { createPgPool, isConnectionError, postgresRefusal, type PgPool } from '../postgres/pool.js';
import { connectChecked, createRedisConnection, destroyQuietly, send, type RedisConnection } from '../redis/client.js';
import { statsKey } from '../redis/keys.js';
import { partitionDeadLetterKey } from '../redis/partitions.js';
import { HttpError, sendError, statusOf } from './errors.js';
import type { HttpLogger, HttpRouteContext, HttpRoutes } from './server.js';

export type DashboardConfig = Pick<
  TributaryConfig,
  | 'redisUrl'
  | 'databaseUrl'
  | 'streamKey'
  | 'group'
  | 'dlqStream'
  | 'pgSchema'
  | 'eventsTable'
  | 'ordersPrefix'
  | 'ordersSchema'
  | 'maxQueueDepth'
  | 'dedupWindowS'
  | 'dedupBucketS'
  | 'revenueWindowMin'
> & { partitions?: number };

export interface DashboardOptions {
  config: DashboardConfig;
  /** At most one snapshot per this many ms (default 1000). */
  refreshMs?: number;
  /** How much history the charts keep (default 15 minutes). */
  historyMs?: number;
  /** Pipelines are looked for again after this long (default 10 s). */
  discoverEveryMs?: number;
  /** Where the built app is (default: dist/web next to this module, or the repository's dist/web from src/). */
  webRoot?: string;
}

/** A fixed message per code: what the user can do. Never a driver's text. */
const ADVICE: Partial<Record<ErrorCode, string>> = {
  TRIB_ERR_REDIS_UNAVAILABLE: 'Redis does not answer: start it (tributary up) or check REDIS_URL',
  TRIB_ERR_REDIS_AUTH: 'Redis refused the credentials: check the password in REDIS_URL',
  TRIB_ERR_REDIS_OOM: 'Redis is out of memory: raise maxmemory or trim the streams',
  TRIB_ERR_POSTGRES_UNAVAILABLE: 'Postgres does not answer: start it (tributary up) or check DATABASE_URL',
  TRIB_ERR_POSTGRES_AUTH: 'Postgres refused the credentials: check DATABASE_URL',
  TRIB_ERR_POSTGRES_DATABASE_MISSING: 'the database of DATABASE_URL does not exist: create it or check DATABASE_URL',
  TRIB_ERR_POSTGRES_TABLE_MISSING: 'a table is missing: run tributary migrate (or start the engine, which migrates)',
  TRIB_ERR_GROUP_NOT_FOUND: 'the consumer group does not exist yet: start the engine (tributary start)',
};

/** An error from below a route as a coded HttpError with a fixed message; undefined: not ours to describe. */
export function dashboardError(err: unknown, databaseUrl: string): HttpError | undefined {
  if (err instanceof HttpError) return err;
  let code: ErrorCode | undefined;
  if (isTributaryError(err)) code = err.code;
  else if (isRedisConnectionLost(err)) code = 'TRIB_ERR_REDIS_UNAVAILABLE';
  else if (err instanceof Error && /^OOM\b/.test(err.message)) code = 'TRIB_ERR_REDIS_OOM';
  else {
    const sqlstate = (err as { code?: unknown })?.code;
    if (sqlstate === '42P01' || sqlstate === '3F000') code = 'TRIB_ERR_POSTGRES_TABLE_MISSING';
    else if (isPgError(err)) code = postgresRefusal(err, databaseUrl)?.code ?? (isConnectionError(err) ? 'TRIB_ERR_POSTGRES_UNAVAILABLE' : undefined);
  }
  if (code === undefined) return undefined;
  switch (code) {
    case 'TRIB_ERR_DLQ_NOT_FOUND':
      return new HttpError(404, code, (err as Error).message);
    case 'TRIB_ERR_CONFIG_INVALID':
      return new HttpError(400, 'TRIB_ERR_HTTP_BAD_REQUEST', [(err as Error).message.replace(/^invalid setting /, '')]);
    case 'TRIB_ERR_GROUP_NOT_FOUND':
      return new HttpError(404, code, ADVICE[code]!);
  }
  return new HttpError(ADVICE[code] ? 503 : statusOf(code), code, ADVICE[code] ?? `${code}: see the server log`);
}

/** node-redis errors that mean the connection is gone (not a command's own error reply). */
function isRedisConnectionLost(err: unknown): boolean {
  return (
    err instanceof ClientOfflineError ||
    err instanceof ClientClosedError ||
    err instanceof SocketClosedUnexpectedlyError ||
    err instanceof ConnectionTimeoutError ||
    err instanceof SocketTimeoutError
  );
}

/**
 * A connected, fail-fast Redis connection within `timeoutMs`, else TRIB_ERR_REDIS_UNAVAILABLE
 * (at once when nothing listens on the port), or TRIB_ERR_REDIS_AUTH for refused credentials.
 */
async function connectRedis(url: string, timeoutMs: number): Promise<RedisConnection> {
  const unavailable = () => new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', ['no connection to Redis']);
  let refused: (() => void) | undefined;
  const client = createRedisConnection(url, {
    name: 'tributary:dashboard',
    failFast: true,
    connectTimeoutMs: timeoutMs,
    onError: (err) => {
      const code = (err as { code?: unknown }).code;
      if (code === 'ECONNREFUSED' || code === 'ENOTFOUND') refused?.();
    },
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      connectChecked(client, url),
      new Promise<never>((_, reject) => {
        refused = () => reject(unavailable());
        timer = setTimeout(() => reject(unavailable()), timeoutMs);
      }),
    ]);
    return client;
  } catch (err) {
    destroyQuietly(client);
    throw isTributaryError(err) ? err : unavailable();
  } finally {
    clearTimeout(timer);
  }
}

/** A pg error or a socket error from pg (not a TypeError of ours). */
function isPgError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' || /Connection terminated|connect|timeout/i.test(err.message);
}

/** Redis and Postgres for the dashboard: opened on first use, reopened after a failure, never waited on for long. */
class Servers {
  private redis: RedisConnection | undefined;
  private opening: Promise<RedisConnection> | undefined;
  private failure: { at: number; err: unknown } | undefined;
  readonly pool: PgPool;
  private migrated = new Set<string>();

  constructor(private readonly config: DashboardConfig) {
    this.pool = createPgPool(config.databaseUrl, { max: 4, statementTimeoutMs: 10_000, applicationName: 'tributary:dashboard', onError: () => {} });
  }

  /** The connection; TRIB_ERR_REDIS_UNAVAILABLE within 2 s when Redis does not answer (the last failure is reused for 1 s). */
  async getRedis(): Promise<RedisConnection> {
    if (this.redis?.isReady) return this.redis;
    if (this.redis && !this.redis.isReady) {
      // node-redis reconnects by itself; while it does, the answer is "unavailable" at once.
      throw new HttpError(503, 'TRIB_ERR_REDIS_UNAVAILABLE', ADVICE.TRIB_ERR_REDIS_UNAVAILABLE!);
    }
    if (this.failure && performance.now() - this.failure.at < 1000) throw this.failure.err;
    this.opening ??= connectRedis(this.config.redisUrl, 2000)
      .then((r) => {
        this.redis = r;
        this.failure = undefined;
        return r;
      })
      .catch((err: unknown) => {
        this.failure = { at: performance.now(), err };
        throw err;
      })
      .finally(() => (this.opening = undefined));
    return this.opening;
  }

  /** Dead-letter actions need the retry columns: migrate the schema once (as the CLI's dlq commands do). */
  async ensureMigrated(schema: string): Promise<void> {
    if (this.migrated.has(schema)) return;
    await migrate(this.pool, schema);
    this.migrated.add(schema);
  }

  async close(): Promise<void> {
    destroyQuietly(this.redis);
    await this.opening?.then(destroyQuietly, () => {});
    await this.pool.end().catch(() => {});
  }
}

/** One point of a pipeline's charts. */
export interface SeriesPoint {
  /** ms since epoch. */
  t: number;
  produced: number | null;
  written: number | null;
  lag: number | null;
  deadLetters: number;
}

/** One stream key of a pipeline (the stream, or one partition), as the overview shows it. */
export interface DashboardPart {
  key: string;
  deadLetterStream: string;
  snapshot: MonitorSnapshot;
}

export interface DashboardPipeline {
  /** `<stream>/<group>`: stable between refreshes. */
  id: string;
  stream: string;
  partitioned: boolean;
  /** The group shown (GROUP when the stream has it, else its first group); null: no group yet. */
  group: string | null;
  groups: string[];
  /** Whether this is the configured pipeline (STREAM_KEY; its events table is read). */
  configured: boolean;
  parts: DashboardPart[];
  totals: {
    length: number;
    pending: number;
    lag: number | null;
    producedPerSec: number | null;
    writtenPerSec: number | null;
    deadLetters: number;
    deadLettersGrowing: boolean;
  };
  /** The engine's batch counters (`tributary:stats:<stream>:<group>`) with their change since the previous refresh. */
  batches: MonitorBatchCounters & { published: boolean; interval: MonitorBatchCounters | null };
  latencyMs: MonitorSnapshot['latencyMs'] | null;
  events: { table: string; exists: boolean; rows: number; estimated: boolean } | null;
  warnings: string[];
  series: SeriesPoint[];
}

export interface DashboardOverview {
  takenAt: string;
  refreshMs: number;
  historyMs: number;
  pipelines: DashboardPipeline[];
  orders: { prefix: string; present: boolean };
}

interface PipelineState {
  parts: Map<string, MonitorSnapshot>;
  batches: MonitorBatchCounters | undefined;
  series: SeriesPoint[];
}

function trimSeries(series: SeriesPoint[], now: number, historyMs: number): void {
  let drop = 0;
  while (drop < series.length && series[drop]!.t < now - historyMs) drop++;
  if (drop > 0) series.splice(0, drop);
}

/** How long a rise in dead letters keeps the overview's warning on (ms). */
export const DEAD_LETTERS_GROWING_MS = 60_000;

/** Whether the last point's dead letters are more than any point's of the last DEAD_LETTERS_GROWING_MS. Pure. */
export function deadLettersGrowing(series: readonly SeriesPoint[], now: number): boolean {
  const last = series.at(-1);
  if (!last) return false;
  return series.some((p) => p.t >= now - DEAD_LETTERS_GROWING_MS && p.deadLetters < last.deadLetters);
}

const sum = (values: ReadonlyArray<number | null>): number | null => (values.some((v) => v === null) ? null : values.reduce<number>((a, b) => a + (b ?? 0), 0));

/** The overview's sampler: discovery, snapshots per pipeline, and the charts' history. */
class Overview {
  private discovered: { at: number; pipelines: DiscoveredPipeline[] } | undefined;
  private state = new Map<string, PipelineState>();
  private last: { at: number; value: DashboardOverview } | undefined;
  private running: Promise<DashboardOverview> | undefined;
  private ordersSeries: Array<{ t: number; depth: number; ordersPerSec: number }> = [];
  private ordersLast: { at: number; value: OrdersStats } | undefined;
  private ordersRunning: Promise<OrdersStats> | undefined;

  constructor(
    private readonly servers: Servers,
    private readonly config: DashboardConfig,
    private readonly refreshMs: number,
    private readonly historyMs: number,
    private readonly discoverEveryMs: number,
  ) {}

  /** The latest overview: a new one when the last is older than refreshMs (one at a time for every viewer). */
  get(): Promise<DashboardOverview> {
    if (this.last && Date.now() - this.last.at < this.refreshMs * 0.9) return Promise.resolve(this.last.value);
    this.running ??= this.collect()
      .then((value) => {
        this.last = { at: Date.now(), value };
        return value;
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** Forget the pipelines found (a refresh after an action looks again). */
  rediscover(): void {
    this.discovered = undefined;
    this.last = undefined;
  }

  async pipelines(redis: RedisConnection): Promise<DiscoveredPipeline[]> {
    if (this.discovered && Date.now() - this.discovered.at < this.discoverEveryMs) return this.discovered.pipelines;
    const partitions = new Map<string, number>((this.config.partitions ?? 1) > 1 ? [[this.config.streamKey, this.config.partitions!]] : []);
    const pipelines = await discoverPipelines(redis, { include: [this.config.streamKey], partitions });
    this.discovered = { at: Date.now(), pipelines };
    return pipelines;
  }

  /** The dead-letter stream of a stream key: DLQ_STREAM for STREAM_KEY, `{<partition>}:dead` for a partition, `<key>:dead` when it exists, else DLQ_STREAM. */
  async deadLetterStream(redis: RedisConnection, p: Pick<DiscoveredPipeline, 'stream' | 'keys' | 'partitioned'>, key: string): Promise<string> {
    if (p.partitioned) return partitionDeadLetterKey(p.stream, this.config.dlqStream, p.keys.indexOf(key), p.keys.length);
    if (key === this.config.streamKey) return this.config.dlqStream;
    const [own] = await keysExist(redis, [`${key}:dead`]);
    return own ? `${key}:dead` : this.config.dlqStream;
  }

  private async collect(): Promise<DashboardOverview> {
    const redis = await this.servers.getRedis();
    const found = await this.pipelines(redis);
    const now = Date.now();
    const keep = new Set<string>();
    const pipelines = await Promise.all(
      found.map(async (p) => {
        const group = p.groups.includes(this.config.group) ? this.config.group : (p.groups[0] ?? null);
        const id = `${p.stream}/${group ?? ''}`;
        keep.add(id);
        const state: PipelineState = this.state.get(id) ?? { parts: new Map(), batches: undefined, series: [] };
        this.state.set(id, state);
        const configured = p.stream === this.config.streamKey;
        const parts = await Promise.all(
          p.keys.map(async (key, i) => {
            const deadLetterStream = await this.deadLetterStream(redis, p, key);
            const scope = { ...this.config, streamKey: key, group: group ?? this.config.group, dlqStream: deadLetterStream } as TributaryConfig;
            // The events table is the configured pipeline's, read once (with the first partition).
            const snapshot = await collectMonitorSnapshot(redis, this.servers.pool, scope, state.parts.get(key), { eventsTable: configured && i === 0 });
            state.parts.set(key, snapshot);
            return { key, deadLetterStream, snapshot };
          }),
        );
        // A partitioned engine publishes its batch counters under the logical stream.
        const counters = p.partitioned
          ? parseBatchCounters(await send(redis, ['HGETALL', statsKey(p.stream, group ?? this.config.group)]))
          : { ...parts[0]!.snapshot.batches };
        const previousBatches = state.batches;
        const interval = batchInterval(previousBatches, counters);
        state.batches = { batches: counters.batches, rows: counters.rows, avgSize: counters.avgSize, flushReasons: counters.flushReasons };
        const first = parts[0]!.snapshot;
        const intervalMs = first.intervalMs;
        const producedPerSec = sum(parts.map((x) => x.snapshot.rates.producedPerSec));
        // Rows written: the events table for the configured pipeline, else the engine's published row counter.
        const writtenPerSec = configured
          ? first.rates.writtenPerSec
          : interval && intervalMs
            ? Math.round((interval.rows * 10_000) / intervalMs) / 10
            : null;
        const ownGroups = parts.map((x) => x.snapshot.groups.find((g) => g.name === group));
        const totals = {
          length: parts.reduce((a, x) => a + x.snapshot.stream.length, 0),
          pending: ownGroups.reduce((a, g) => a + (g?.pending ?? 0), 0),
          lag: group === null ? null : sum(ownGroups.map((g) => g?.lag ?? null)),
          producedPerSec,
          writtenPerSec,
          // The dead-letter stream holds what is not retried; rows include the retried ones.
          deadLetters: parts.reduce((a, x) => a + x.snapshot.deadLetters.rows, 0),
          deadLettersGrowing: false,
        };
        const series = state.series;
        series.push({ t: now, produced: producedPerSec, written: writtenPerSec, lag: totals.lag, deadLetters: totals.deadLetters });
        trimSeries(series, now, this.historyMs);
        // Growing: more than at some point of the last minute (a warning that lasts, not one refresh long).
        totals.deadLettersGrowing = deadLettersGrowing(series, now);
        // The monitor's "growing since the last refresh" lasts one refresh here: the minute-long one replaces it.
        const warnings = [...new Set(parts.flatMap((x) => x.snapshot.warnings.filter((w) => w.kind !== 'dead_letters_growing').map((w) => w.message)))];
        if (totals.deadLettersGrowing) warnings.push(`dead letters grew in the last minute (${totals.deadLetters} now): see the dead letters page`);
        if (group === null) warnings.unshift(`no consumer group on ${p.stream} yet: start the engine (tributary start)`);
        return {
          id,
          stream: p.stream,
          partitioned: p.partitioned,
          group,
          groups: p.groups,
          configured,
          parts,
          totals,
          batches: { published: counters.published, batches: counters.batches, rows: counters.rows, avgSize: counters.avgSize, flushReasons: counters.flushReasons, interval },
          latencyMs: configured ? first.latencyMs : null,
          events: configured ? { table: first.postgres.table, exists: first.postgres.tableExists, rows: first.postgres.events, estimated: first.postgres.eventsEstimated } : null,
          warnings,
          series: [...series],
        } satisfies DashboardPipeline;
      }),
    );
    for (const id of this.state.keys()) if (!keep.has(id)) this.state.delete(id);
    const keys = orderKeys(this.config.ordersPrefix);
    const present = (await keysExist(redis, [keys.stats, keys.queue, keys.depth])).some(Boolean);
    // The orders page's history builds while the overview is watched, too (its failures are the orders page's to show).
    if (present) void this.orders().catch(() => {});
    return { takenAt: new Date(now).toISOString(), refreshMs: this.refreshMs, historyMs: this.historyMs, pipelines, orders: { prefix: this.config.ordersPrefix, present } };
  }

  /** The orders pipeline's stats (tributary orders stats), at most one per refreshMs, with its depth and throughput history. */
  orders(): Promise<OrdersStats & { series: Array<{ t: number; depth: number; ordersPerSec: number }> }> {
    const withSeries = (s: OrdersStats) => ({ ...s, series: [...this.ordersSeries] });
    if (this.ordersLast && Date.now() - this.ordersLast.at < this.refreshMs * 0.9) return Promise.resolve(withSeries(this.ordersLast.value));
    this.ordersRunning ??= (async () => {
      const redis = await this.servers.getRedis();
      const s = await collectOrdersStats(redis, this.servers.pool, ordersStatsOptions(this.config));
      const now = Date.now();
      this.ordersSeries.push({ t: now, depth: s.redis.queue.depth, ordersPerSec: Math.round(s.throughput.ordersPerSec * 10) / 10 });
      while (this.ordersSeries.length > 0 && this.ordersSeries[0]!.t < now - this.historyMs) this.ordersSeries.shift();
      this.ordersLast = { at: now, value: s };
      return s;
    })().finally(() => (this.ordersRunning = undefined));
    return this.ordersRunning.then(withSeries);
  }
}

// ---------------------------------------------------------------------------
// Request parameters

type Params = Record<string, unknown>;

const bad = (what: string) => new HttpError(400, 'TRIB_ERR_HTTP_BAD_REQUEST', [what]);

/** A name (stream, group, type, code, consumer): 1 to 256 characters, no control characters. */
function name(p: Params, key: string, fallback?: string): string {
  const v = p[key];
  if (v === undefined || v === '') {
    if (fallback !== undefined) return fallback;
    throw bad(`${key} is required`);
  }
  if (typeof v !== 'string' || v.length > 256 || /\p{Cc}/u.test(v)) throw bad(`${key} must be a name of 1 to 256 characters`);
  return v;
}

function optionalName(p: Params, key: string): string | undefined {
  return p[key] === undefined || p[key] === '' ? undefined : name(p, key);
}

function integer(p: Params, key: string, o: { min: number; max: number; fallback?: number }): number {
  const v = p[key];
  if (v === undefined || v === '') {
    if (o.fallback !== undefined) return o.fallback;
    throw bad(`${key} is required`);
  }
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < o.min || n > o.max) throw bad(`${key} must be an integer from ${o.min} to ${o.max}`);
  return n;
}

function time(p: Params, key: string): Date | undefined {
  const v = p[key];
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string') throw bad(`${key} must be an ISO time or a duration ago such as 15m`);
  try {
    return parseTime(v, key);
  } catch {
    throw bad(`${key} must be an ISO time or a duration ago such as 15m (got ${JSON.stringify(v.slice(0, 40))})`);
  }
}

function body(request: FastifyRequest): Params {
  const b = request.body;
  if (b === undefined || b === null) return {};
  if (typeof b !== 'object' || Array.isArray(b)) throw bad('the body must be a JSON object');
  return b as Params;
}

// ---------------------------------------------------------------------------
// Static files

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

/** dist/web: next to the compiled module (dist/http → dist/web), or the repository's dist/web when running from src/. */
export function defaultWebRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '..', 'web'), join(here, '..', '..', 'dist', 'web')];
  return candidates.find((c) => existsSync(join(c, 'index.html'))) ?? candidates[0]!;
}

/** The page and its assets: `/` (index.html) and `/assets/<file>` (hashed names: cached for a year). */
function registerStatic(app: FastifyInstance, root: string): void {
  const security = (reply: FastifyReply) =>
    reply
      .header('x-content-type-options', 'nosniff')
      .header('x-frame-options', 'DENY')
      .header('referrer-policy', 'no-referrer')
      .header('content-security-policy', "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'");
  const notBuilt = () => new HttpError(404, 'TRIB_ERR_HTTP_NOT_FOUND', 'no such route: the dashboard is not built here (run npm run build)');
  const index = (_request: FastifyRequest, reply: FastifyReply) => {
    const file = join(root, 'index.html');
    if (!existsSync(file)) return sendError(reply, notBuilt());
    return security(reply).header('cache-control', 'no-cache').type(TYPES['.html']!).send(readFileSync(file));
  };
  app.get('/', index);
  app.get('/index.html', index);
  app.get('/assets/:file', (request, reply) => {
    const file = (request.params as { file: string }).file;
    const ext = /\.[a-z0-9]+$/.exec(file)?.[0] ?? '';
    const path = join(root, 'assets', file);
    // Only plain file names of known types (no `..`, no slash: the router gives one segment).
    if (!/^[\w.-]+$/.test(file) || file.startsWith('.') || !TYPES[ext] || !existsSync(path) || !statSync(path).isFile()) {
      return sendError(reply, new HttpError(404, 'TRIB_ERR_HTTP_NOT_FOUND', [`GET ${JSON.stringify(`/assets/${file.slice(0, 80)}`)}`]));
    }
    return security(reply).header('cache-control', 'public, max-age=31536000, immutable').type(TYPES[ext]!).send(readFileSync(path));
  });
}

// ---------------------------------------------------------------------------
// Routes

/**
 * The dashboard's routes, to pass in the server's `routes`. Its connections close with
 * the server.
 */
export function dashboardRoutes(options: DashboardOptions): HttpRoutes {
  const { config } = options;
  const refreshMs = options.refreshMs ?? 1000;
  const historyMs = options.historyMs ?? 15 * 60_000;
  return async (app: FastifyInstance, context: HttpRouteContext) => {
    const servers = new Servers(config);
    const overview = new Overview(servers, config, refreshMs, historyMs, options.discoverEveryMs ?? 10_000);
    const log: HttpLogger = context.log;
    app.addHook('onClose', async () => servers.close());
    registerStatic(app, options.webRoot ?? defaultWebRoot());

    /** Runs a route's work; an error from below becomes coded JSON (logged by code, never by message). */
    const answer = async <T>(request: FastifyRequest, reply: FastifyReply, work: () => Promise<T>) => {
      try {
        const value = await work();
        return reply.header('cache-control', 'no-store').send(value);
      } catch (err) {
        const coded = dashboardError(err, config.databaseUrl);
        if (!coded) throw err;
        if (coded.status >= 500) log.warn({ code: coded.code, path: request.url.split('?')[0] }, `dashboard: ${coded.code} (${coded.message})`);
        return sendError(reply, coded);
      }
    };
    const scopeOf = (p: Params): DeadLetterOps['config'] => {
      const streamKey = name(p, 'stream', config.streamKey);
      return { streamKey, group: name(p, 'group', config.group), dlqStream: config.dlqStream, pgSchema: config.pgSchema };
    };
    /** The dead-letter scope with the stream's own dead-letter stream (a partition's, `<stream>:dead`, or DLQ_STREAM). */
    const deadLetterOps = async (p: Params): Promise<DeadLetterOps> => {
      const scope = scopeOf(p);
      const redis = await servers.getRedis();
      const found = (await overview.pipelines(redis)).find((x) => x.keys.includes(scope.streamKey));
      const dlqStream = await overview.deadLetterStream(redis, found ?? { stream: scope.streamKey, keys: [scope.streamKey], partitioned: false }, scope.streamKey);
      return { redis, pool: servers.pool, config: { ...scope, dlqStream } };
    };

    app.get('/api/info', async (_request, reply) =>
      reply.header('cache-control', 'no-store').send({
        readOnly: context.readOnly,
        refreshMs,
        historyMs,
        stream: config.streamKey,
        group: config.group,
        partitions: config.partitions ?? 1,
        pgSchema: config.pgSchema,
        eventsTable: config.eventsTable,
        orders: { prefix: config.ordersPrefix, schema: config.ordersSchema, maxQueueDepth: config.maxQueueDepth },
      }),
    );

    app.get('/api/overview', (request, reply) => answer(request, reply, () => overview.get()));

    app.get('/api/dead-letters', (request, reply) =>
      answer(request, reply, async () => {
        const q = request.query as Params;
        const limit = integer(q, 'limit', { min: 1, max: 1000, fallback: 50 });
        const since = time(q, 'since');
        const until = time(q, 'until');
        const ops = await deadLetterOps(q);
        const page = await listDeadLetters(ops, { limit, type: optionalName(q, 'type'), errorCode: optionalName(q, 'code'), since, until });
        return { stream: ops.config.streamKey, group: ops.config.group, deadLetterStream: ops.config.dlqStream, ...page };
      }),
    );

    app.get('/api/dead-letters/:id', (request, reply) =>
      answer(request, reply, async () => {
        const id = integer(request.params as Params, 'id', { min: 1, max: Number.MAX_SAFE_INTEGER });
        return getDeadLetter(await deadLetterOps(request.query as Params), id);
      }),
    );

    app.post('/api/dead-letters/retry', { onRequest: context.requireToken }, (request, reply) =>
      answer(request, reply, async () => {
        const b = body(request);
        let selector: RetrySelector;
        if (b.all === true) {
          if (b.ids !== undefined) throw bad('give either ids or all, not both');
          selector = { all: true, ...(optionalName(b, 'type') ? { type: optionalName(b, 'type')! } : {}) };
        } else {
          const ids = b.ids;
          if (!Array.isArray(ids) || ids.length === 0 || ids.length > 10_000 || !ids.every((i) => Number.isSafeInteger(i) && (i as number) > 0)) {
            throw bad('ids must be a list of 1 to 10,000 dead-letter IDs (or all: true)');
          }
          selector = { ids: ids as number[] };
        }
        const ops = await deadLetterOps(b);
        await servers.ensureMigrated(ops.config.pgSchema);
        const outcomes = await retryDeadLetters(ops, selector);
        const retried = outcomes.filter((o) => o.status === 'retried').length;
        log.info({ stream: ops.config.streamKey, group: ops.config.group, retried, of: outcomes.length, ip: request.ip }, `dashboard: retried ${retried} of ${outcomes.length} dead letters of stream ${ops.config.streamKey}, group ${ops.config.group}`);
        overview.rediscover();
        return { retried, outcomes };
      }),
    );

    app.post('/api/dead-letters/purge', { onRequest: context.requireToken }, (request, reply) =>
      answer(request, reply, async () => {
        const b = body(request);
        if (b.confirm !== undefined && typeof b.confirm !== 'boolean') throw bad('confirm must be true or false');
        const before = time(b, 'before');
        const ops = await deadLetterOps(b);
        await servers.ensureMigrated(ops.config.pgSchema);
        if (b.confirm !== true) {
          // The confirmation step: what would go, and nothing deleted (as `dlq purge` without --yes).
          const plan = await planPurge(ops, { before });
          if (plan.rows === 0) return { purged: false, ...plan };
          throw new HttpError(409, 'TRIB_ERR_CONFIRMATION_REQUIRED', `would ${describePurge(ops.config, plan)}; nothing was changed: send confirm: true to delete`, {
            rows: plan.rows,
            streamEntries: plan.streamEntries,
          });
        }
        const counts = await purgeDeadLetters(ops, { before, confirm: true });
        log.info({ stream: ops.config.streamKey, group: ops.config.group, rows: counts.rows, ip: request.ip }, `dashboard: purged ${counts.rows} dead letters of stream ${ops.config.streamKey}, group ${ops.config.group}`);
        return { purged: true, ...counts };
      }),
    );

    app.get('/api/pending', (request, reply) =>
      answer(request, reply, async () => {
        const q = request.query as Params;
        const limit = integer(q, 'limit', { min: 1, max: 1000, fallback: 20 });
        const target = { streamKey: name(q, 'stream', config.streamKey), group: name(q, 'group', config.group) };
        return pendingSummary(await servers.getRedis(), target, { limit });
      }),
    );

    app.post('/api/pending/claim', { onRequest: context.requireToken }, (request, reply) =>
      answer(request, reply, async () => {
        const b = body(request);
        const target = { streamKey: name(b, 'stream', config.streamKey), group: name(b, 'group', config.group) };
        const minIdleMs = integer(b, 'minIdleMs', { min: 0, max: 365 * 86_400_000 });
        const consumer = name(b, 'consumer');
        const count = b.count === undefined ? undefined : integer(b, 'count', { min: 1, max: 100_000 });
        const result = await claimIdle(await servers.getRedis(), target, { minIdleMs, consumer, count });
        log.info({ ...target, consumer, claimed: result.claimed.length, ip: request.ip }, `dashboard: claimed ${result.claimed.length} entries of stream ${target.streamKey}, group ${target.group} to ${consumer}`);
        return result;
      }),
    );

    app.get('/api/orders', (request, reply) => answer(request, reply, () => overview.orders()));
  };
}
