/**
 * The orders pipeline: a short wiring of parts on the one runner.
 *
 *   redis-list source (BLMOVE queue → each worker's processing list)
 *   → parse → dedup window → enrich (lookup cache) → columnar transform
 *   → postgres-staging sink (COPY into UNLOGGED staging; promote in one transaction)
 *   → ack (remove from the processing list) with, after the commit: mark seen in the
 *     dedup window, revenue window, counters → completion signal (pub/sub).
 *
 * The runner gives it what every pipeline has: batching, overlap of the next take with
 * the write, one retry policy, keep-alive (heartbeats) of everything a worker holds,
 * recovery of dead workers' lists, health, graceful and forced close. Around it, this
 * file adds what is the orders pipeline's own: migrations and reference data, the lookup
 * cache published when empty, the view refresher driven by the signals, the staging
 * VACUUM, and its report and counters.
 *
 * The library never prints: it emits typed events and keeps counters (`stats()`).
 */
import { redactUrl } from '../config/index.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { sleep } from '../core/backoff.js';
import { stage, type ServerName, type Stage } from '../core/contracts.js';
import { TypedEmitter } from '../core/emitter.js';
import { asError } from '../core/retry.js';
import { Runner, type BatchReport } from '../core/runner.js';
import { StatsPublisher } from '../observability/published-stats.js';
import { isTributaryError, TributaryError } from '../errors.js';
import { createPgPool, isConnectionError, quoteIdent, type PgPool } from '../postgres/pool.js';
import { createRedisConnection, destroyQuietly, send, type RedisConnection } from '../redis/client.js';
import { lookupFor, rejectedTotal, THROUGHPUT_SLOT_MS, THROUGHPUT_TTL_S } from '../orders/batch.js';
import { analyzeReferenceTables } from '../orders/pg/analyze.js';
import { inTransaction, promoteLockKey } from '../orders/pg/promote.js';
import { migrateOrders, ORDERS_SCHEMA } from '../orders/pg/migrate.js';
import { refreshViews, type ViewRefresh } from '../orders/pg/views.js';
import { LookupCache, type PublishResult } from '../orders/redis/cache.js';
import { DedupWindow } from '../orders/redis/dedup.js';
import { DEFAULT_ORDERS_PREFIX, orderKeys } from '../orders/redis/keys.js';
import type { RecoverResult } from '../orders/redis/queue.js';
import { RevenueWindow } from '../orders/redis/revenue.js';
import { OrderSignals, ViewRefresher, type RefreshOutcome, type Unsubscribe } from '../orders/redis/signals.js';
import { loadReferenceData } from '../orders/seed.js';
import type { LookupResult, Order, ReferenceData, RejectReason } from '../orders/types.js';
import { PostgresStagingSink, type StagingDetails } from '../sinks/postgres-staging.js';
import { RedisListSource } from '../sources/redis-list.js';
import { dedupStage, enrichStage, parseOrdersStage, transformStage, type OrdersBatchState } from '../stages/orders.js';

export interface OrdersPipelineOptions {
  /** Redis URL (required). */
  redisUrl: string;
  /**
   * Postgres URL (required unless `pool` is given). A PgBouncer URL in transaction pool
   * mode works: the pipeline keeps no session state and uses no named prepared statements.
   */
  databaseUrl?: string;
  /** A pool to use instead of one from `databaseUrl` (not closed by close()); give it at least workers + 3 connections. */
  pool?: PgPool;
  /** Postgres schema of the orders tables (default `orders`). */
  schema?: string;
  /** Redis key prefix of the queue, dedup window, cache, ... (default `orders`). */
  prefix?: string;
  /** Workers in this process, each with its own Redis connection (default 4; 0: only the refresher and recovery run). */
  workers?: number;
  /** Orders taken per batch (default 5000). */
  batchSize?: number;
  /** How long an idle worker's take blocks waiting for orders, ms (default 1000). */
  blockMs?: number;
  /** Worker names are `<workerPrefix>-<n>`; must be unique per running pipeline (default `<host name>-<pid>-<random run token>`). */
  workerPrefix?: string;
  /** How long an order_id is remembered by the dedup window, s (default 3600). */
  dedupWindowSeconds?: number;
  /** Width of one dedup bucket, s (default 300). */
  dedupBucketSeconds?: number;
  /** Length of the revenue window (sorted set by order time), ms (default 900,000: 15 minutes). */
  revenueWindowMs?: number;
  /** TTL of a lookup-cache version the pipeline publishes, ms (default 86,400,000: 24 h). */
  cacheTtlMs?: number;
  /**
   * When the lookup cache is empty or expired, publish it from the Postgres reference
   * tables instead of waiting for `orders init-cache` (default true).
   */
  autoPublishCache?: boolean;
  /**
   * A worker whose heartbeat is this old is dead: its processing list goes back to the
   * queue (default 30,000 ms; at least 3 × blockMs). Workers beat every staleMs / 3 while
   * they hold a batch.
   */
  staleMs?: number;
  /** How often dead workers are looked for, ms (default 5000). */
  recoverIntervalMs?: number;
  /**
   * How often the staging table is vacuumed, ms (default 30,000; 0: never). Every order is
   * COPYed into it and deleted from it: without VACUUM (autovacuum off, or lagging) its dead
   * rows pile up, about 165 MB per million orders, and crowd out shared buffers.
   */
  vacuumIntervalMs?: number;
  /** Refresh the materialized views when a completion signal arrives (default true). */
  refreshViews?: boolean;
  /** At most one view refresh starts per this many ms; signals meanwhile are coalesced (default 5000). */
  viewRefreshMinIntervalMs?: number;
  /** Create or upgrade the orders schema at start (default true). */
  migrate?: boolean;
  /** Each worker stops at its first take that finds the queue empty; `done` resolves when all have (default false). */
  untilEmpty?: boolean;
  /** Backoff between retries of a failed step: first ceiling and cap, ms (default 100 and 5000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** How long start() waits for each server to answer, ms (default 5000), unless waitForServers. */
  connectTimeoutMs?: number;
  /**
   * Wait out servers that are not up yet at start (a long-running process: `orders
   * process`), reporting serverDown once, instead of failing after connectTimeoutMs with
   * a coded error (a one-shot run; the default).
   */
  waitForServers?: boolean;
}

const DEFAULTS = {
  schema: ORDERS_SCHEMA,
  prefix: DEFAULT_ORDERS_PREFIX,
  workers: 4,
  batchSize: 5000,
  blockMs: 1000,
  dedupWindowSeconds: 3600,
  dedupBucketSeconds: 300,
  revenueWindowMs: 900_000,
  cacheTtlMs: 86_400_000,
  autoPublishCache: true,
  staleMs: 30_000,
  recoverIntervalMs: 5000,
  vacuumIntervalMs: 30_000,
  refreshViews: true,
  viewRefreshMinIntervalMs: 5000,
  migrate: true,
  untilEmpty: false,
  retryBaseMs: 100,
  retryMaxMs: 5000,
  connectTimeoutMs: 5000,
  waitForServers: false,
};

type Resolved = Required<Omit<OrdersPipelineOptions, 'pool' | 'databaseUrl' | 'workerPrefix'>> & {
  databaseUrl: string | undefined;
  pool: PgPool | undefined;
  workerPrefix: string;
};

/** Per-stage wall time of one batch, ms. */
export interface StageTimings {
  /** The take that returned the batch (includes waiting for orders when the queue was empty). */
  takeMs: number;
  parseMs: number;
  dedupMs: number;
  enrichMs: number;
  transformMs: number;
  /** COPY into staging (and recording malformed items). */
  stageMs: number;
  promoteMs: number;
  /** Ack, mark seen, revenue window, counters, signal. */
  commitMs: number;
  totalMs: number;
}

/** What one batch did; the 'batch' event. */
export interface OrdersBatchReport {
  worker: string;
  batchId: string;
  /** Items taken from the queue. */
  taken: number;
  /** Items that did not parse (recorded as 'malformed' rejects). */
  malformed: number;
  /** Orders dropped by the dedup window. */
  duplicates: number;
  /** Orders staged and promoted or rejected. */
  staged: number;
  /** Rows newly inserted into `orders`. */
  promoted: number;
  /** Valid orders already in `orders` (redelivered, or a duplicate the window could not see). */
  pgDuplicates: number;
  /** Staged orders rejected, by reason. */
  rejected: Partial<Record<RejectReason, number>>;
  /** The lookup-cache version the batch was enriched from (null when nothing needed enriching). */
  cacheVersion: number | null;
  /** An earlier attempt's promote had committed (its reply was lost): counts are zeros. */
  landedEarlier: boolean;
  /** Attempts that failed and were retried while processing this batch. */
  retries: number;
  timings: StageTimings;
}

export interface OrdersPipelineStats {
  workers: number;
  batches: number;
  taken: number;
  malformed: number;
  duplicates: number;
  promoted: number;
  pgDuplicates: number;
  rejected: Partial<Record<RejectReason, number>>;
  rejectedTotal: number;
  /** Orders held now (taken, not yet acknowledged). */
  inFlight: number;
  retries: number;
  /** Orders returned to the queue from dead workers' processing lists. */
  recovered: number;
  viewRefreshes: number;
  cachePublishes: number;
}

export interface OrdersPipelineEvents {
  /** Workers are taking orders. */
  started: { workers: string[] };
  batch: OrdersBatchReport;
  /** Dead workers' processing lists went back to the queue; their staged rows were dropped. */
  recovered: RecoverResult & { stagingRowsDropped: number };
  /** The pipeline published the lookup cache from Postgres (it was empty or expired). */
  cachePublished: PublishResult;
  /** A view refresh ran (status 'refreshed' or 'failed'). */
  viewsRefreshed: RefreshOutcome<ViewRefresh[]>;
  /** A step failed and will be retried (every attempt; serverDown reports only the first). */
  retry: { server: ServerName | undefined; step: string; error: Error; attempt: number };
  serverDown: { server: ServerName; error: Error };
  serverUp: { server: ServerName; downMs: number };
  /** untilEmpty: every worker found the queue empty and stopped. */
  drained: { batches: number };
  stopping: { force: boolean };
  stopped: OrdersPipelineStats;
  error: Error;
}

/** Longest delay a Node timer honours (2^31-1 ms, ~24.8 days): a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647;

function checkInt(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [`OrdersPipeline ${name}`, `must be an integer ${range} (got ${String(value)})`]);
  }
  return value;
}

function resolveOptions(options: OrdersPipelineOptions): Resolved {
  if (!options?.redisUrl) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['OrdersPipeline redisUrl', 'is required']);
  if (!options.databaseUrl && !options.pool) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['OrdersPipeline databaseUrl', 'is required (or give a pool)']);
  const o = {
    ...DEFAULTS,
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
  } as Resolved;
  o.databaseUrl = options.databaseUrl;
  o.pool = options.pool;
  // The run token keeps two pipelines of one process apart: sharing worker names, one's
  // start would release the other's in-flight batch and they would share processing lists.
  o.workerPrefix = options.workerPrefix ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  if (!/^[^\s:]+$/.test(o.workerPrefix)) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['OrdersPipeline workerPrefix', `must be non-empty, without spaces or ':' (got ${JSON.stringify(o.workerPrefix)})`]);
  }
  checkInt('workers', o.workers, 0, 1000);
  checkInt('batchSize', o.batchSize, 1, 1_000_000);
  checkInt('blockMs', o.blockMs, 1, MAX_TIMER_MS);
  checkInt('dedupWindowSeconds', o.dedupWindowSeconds, 1);
  checkInt('dedupBucketSeconds', o.dedupBucketSeconds, 1, o.dedupWindowSeconds);
  checkInt('revenueWindowMs', o.revenueWindowMs, 1);
  checkInt('cacheTtlMs', o.cacheTtlMs, 1000);
  checkInt('staleMs', o.staleMs, Math.max(1000, 3 * o.blockMs), MAX_TIMER_MS);
  checkInt('recoverIntervalMs', o.recoverIntervalMs, 1, MAX_TIMER_MS);
  checkInt('vacuumIntervalMs', o.vacuumIntervalMs, 0, MAX_TIMER_MS);
  checkInt('viewRefreshMinIntervalMs', o.viewRefreshMinIntervalMs, 0, MAX_TIMER_MS);
  checkInt('retryBaseMs', o.retryBaseMs, 1, MAX_TIMER_MS);
  checkInt('retryMaxMs', o.retryMaxMs, o.retryBaseMs, MAX_TIMER_MS);
  checkInt('connectTimeoutMs', o.connectTimeoutMs, 1, MAX_TIMER_MS);
  if (!o.schema || !o.prefix) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['OrdersPipeline schema / prefix', 'must be non-empty']);
  return o;
}

/**
 * VACUUM of the staging table (not FULL: it takes no lock that blocks COPY or promote), so
 * the space of promoted rows is reused instead of piling up. One statement, fine through
 * PgBouncer.
 */
export async function vacuumStaging(pool: PgPool, schema: string): Promise<void> {
  await pool.query(`VACUUM ${quoteIdent(schema)}.orders_staging`);
}

/**
 * The reference tables (loadReferenceData), or TRIB_ERR_ORDERS_NO_REFERENCE_DATA when the
 * schema has no orders tables or one of them is empty.
 */
export async function loadReferenceDataOrFail(pool: PgPool, schema: string): Promise<ReferenceData> {
  let data: ReferenceData;
  try {
    data = await loadReferenceData(pool, schema);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === '42P01' || code === '3F000') throw new TributaryError('TRIB_ERR_ORDERS_NO_REFERENCE_DATA', [schema, 'no tables'], { cause: err });
    throw err;
  }
  const empty = (['products', 'currencies', 'zipCodes'] as const).filter((t) => data[t].length === 0);
  if (empty.length > 0) throw new TributaryError('TRIB_ERR_ORDERS_NO_REFERENCE_DATA', [schema, `${empty.join(', ')} empty`]);
  return data;
}

/** Connects a Redis connection, or TRIB_ERR_REDIS_UNAVAILABLE when it does not within `timeoutMs`. */
async function connectRedis(conn: RedisConnection, url: string, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let last: unknown;
  const onError = (err: unknown) => (last = err);
  conn.on('error', onError);
  try {
    await Promise.race([
      conn.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`no connection to ${redactUrl(url)} within ${timeoutMs} ms${last ? ` (${asError(last).message})` : ''}`])),
          timeoutMs,
        );
      }),
    ]);
  } catch (err) {
    destroyQuietly(conn);
    if (isTributaryError(err)) throw err;
    throw new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`cannot connect to ${redactUrl(url)}: ${asError(err).message}`], { cause: err });
  } finally {
    clearTimeout(timer);
    conn.off('error', onError);
  }
}


const EMPTY_LOOKUP: LookupResult = { version: 0, products: new Map(), currencies: new Map(), zipCodes: new Map() };

/**
 * The orders pipeline (see the module comment). `start()` connects (failing with a coded
 * error when a server does not answer, unless waitForServers), migrates, subscribes the
 * view refresher and starts the workers; `close()` stops it gracefully; `done` resolves
 * when the workers have stopped (after close(), or by themselves with `untilEmpty`).
 */
export class OrdersPipeline extends TypedEmitter<OrdersPipelineEvents> {
  readonly options: Readonly<Resolved>;
  /** Resolves once every worker has stopped. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private state: 'new' | 'starting' | 'running' | 'closing' | 'closed' = 'new';
  private readonly pool: PgPool;
  private readonly ownsPool: boolean;
  private readonly control: RedisConnection;
  private readonly source: RedisListSource;
  private readonly cache: LookupCache;
  readonly runner: Runner<string>;
  private refresher: ViewRefresher<ViewRefresh[]> | undefined;
  private unsubscribe: Unsubscribe | undefined;
  private vacuumTimer: NodeJS.Timeout | undefined;
  private vacuuming: Promise<void> | undefined;
  private lastRefreshStart = 0;
  private promotedSinceRefresh = false;
  private cacheRefill: Promise<void> | undefined;
  private readonly stopCtl = new AbortController();
  /** Each worker's connection and the Redis parts on it (its takes block another one, the source's). */
  private readonly workers = new Map<string, OrdersWorkerParts>();
  /** The runner's batch counters for `orders stats` (flush reasons, batch sizes). */
  private readonly publisher: StatsPublisher;
  private closing: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  private readonly counters = {
    batches: 0,
    taken: 0,
    malformed: 0,
    duplicates: 0,
    promoted: 0,
    pgDuplicates: 0,
    rejected: {} as Partial<Record<RejectReason, number>>,
    recovered: 0,
    viewRefreshes: 0,
    cachePublishes: 0,
  };

  constructor(options: OrdersPipelineOptions) {
    super();
    const o = (this.options = resolveOptions(options));
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.ownsPool = o.pool === undefined;
    this.pool = o.pool ?? createPgPool(o.databaseUrl!, { max: o.workers + 3, applicationName: `tributary:orders:${o.workerPrefix}`.slice(0, 63) });
    this.control = createRedisConnection(o.redisUrl, {
      name: `tributary:orders:${o.workerPrefix}`,
      failFast: true,
      connectTimeoutMs: o.connectTimeoutMs,
      onError: (err) => this.runner?.reportFailure('redis', err),
    });
    const keys = orderKeys(o.prefix);
    this.cache = new LookupCache({ client: this.control, prefix: o.prefix, ttlMs: o.cacheTtlMs });

    this.source = new RedisListSource({
      redisUrl: o.redisUrl,
      commands: this.control,
      prefix: o.prefix,
      staleMs: o.staleMs,
      connectTimeoutMs: o.connectTimeoutMs,
      connectionName: (worker) => `tributary:orders:${worker}`,
      onRecovered: (result) => this.dropStaged(result),
      scanOrphansEvery: Math.max(1, Math.round(60_000 / o.recoverIntervalMs)),
    });
    const stages = ordersStages({
      keys,
      worker: (consumer) => this.workerParts(consumer),
      onPromoted: () => (this.promotedSinceRefresh = true),
      onError: (err) => this.emit('error', err),
    });
    this.runner = new Runner<string>({
      source: this.source,
      stages,
      sink: new PostgresStagingSink(this.pool, o.schema),
      consumers: Array.from({ length: Math.max(1, o.workers) }, (_, i) => `${o.workerPrefix}-${i + 1}`),
      batch: { maxCount: o.batchSize, periodMs: Math.max(1, o.blockMs) },
      blockMs: o.blockMs,
      maxInFlight: o.batchSize * Math.max(1, o.workers) * 2,
      keepAliveMs: Math.max(100, Math.floor(o.staleMs / 3)),
      reclaim: { consumer: `${o.workerPrefix}-recover`, minIdleMs: o.staleMs, intervalMs: o.recoverIntervalMs },
      retry: { baseMs: o.retryBaseMs, maxMs: o.retryMaxMs },
      untilEmpty: o.untilEmpty,
      prepare: [
        ...(o.migrate ? [{ name: 'migrate', server: 'postgres' as const, retryable: isConnectionError, run: () => migrateOrders(this.pool, o.schema).then(() => {}) }] : []),
        { name: 'connect workers', server: 'redis' as const, run: () => this.connectWorkers() },
        // Planner statistics for promote's joins: an optimisation, never a reason not to start.
        { name: 'analyze', server: 'postgres' as const, run: () => analyzeReferenceTables(this.pool, o.schema).catch(() => {}) },
      ],
    });
    this.publisher = new StatsPublisher(this.control, keys.queue, o.prefix, 1000, keys.batchStats);
    this.runner.on('batch', (report) => {
      this.publisher.record(report);
      this.onBatch(report);
    });
    this.runner.on('retry', (r) => this.emit('retry', r));
    this.runner.on('serverDown', (e) => this.emit('serverDown', e));
    this.runner.on('serverUp', (e) => this.emit('serverUp', e));
    this.runner.on('error', (e) => this.emit('error', e));
    this.runner.on('drained', (e) => this.emit('drained', e));
  }

  /** Labels of this pipeline's metrics: the queue key and the prefix as the group. */
  get metricsLabels(): { pipeline: string; stream: string; group: string } {
    return { pipeline: 'orders', stream: this.source.queue.keys.queue, group: this.options.prefix };
  }

  /** Orders waiting in the queue (streamLength), taken and not yet acknowledged by any worker (pending); lag is the queue itself. */
  async gauges(): Promise<{ streamLength: number; pending: number; lag: number | null }> {
    if (!this.control.isReady) throw new Error('not connected to Redis');
    const [length, depth] = await Promise.all([this.source.queue.length(), this.source.queue.depth()]);
    return { streamLength: length, pending: Math.max(0, depth - length), lag: length };
  }

  /** Readiness: running, Redis and Postgres answer, the orders schema exists. Never throws. */
  async probe(): Promise<{ ready: boolean; redis: { ok: boolean; error?: string }; postgres: { ok: boolean; error?: string }; schema: { ok: boolean; error?: string } }> {
    const check = async (fn: () => Promise<unknown>) => {
      try {
        await fn();
        return { ok: true };
      } catch (err) {
        return { ok: false, error: asError(err).message };
      }
    };
    if (this.state !== 'running') {
      const error = `pipeline is ${this.state}`;
      return { ready: false, redis: { ok: false, error }, postgres: { ok: false, error }, schema: { ok: false, error } };
    }
    const [redis, postgres, schema] = await Promise.all([
      check(() => send(this.control, ['PING'])),
      check(() => this.pool.query('SELECT 1')),
      check(async () => {
        const r = await this.pool.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`${quoteIdent(this.options.schema)}.orders`]);
        if (!r.rows[0]?.t) throw new Error(`schema ${this.options.schema} has no orders table`);
      }),
    ]);
    return { ready: redis.ok && postgres.ok && schema.ok, redis, postgres, schema };
  }

  /** The names of this process's workers (`<workerPrefix>-<n>`). */
  get workerNames(): string[] {
    return Array.from({ length: this.options.workers }, (_, i) => `${this.options.workerPrefix}-${i + 1}`);
  }

  stats(): OrdersPipelineStats {
    const c = this.counters;
    const r = this.runner.stats();
    return {
      ...c,
      rejected: { ...c.rejected },
      rejectedTotal: rejectedTotal(c.rejected),
      workers: this.state === 'running' || this.state === 'closing' ? this.options.workers : 0,
      inFlight: r.inFlight,
      retries: r.retries,
    };
  }

  /**
   * Connects to Redis and Postgres (TRIB_ERR_REDIS_UNAVAILABLE / TRIB_ERR_POSTGRES_UNAVAILABLE
   * when one does not answer within connectTimeoutMs, unless waitForServers), migrates the
   * orders schema, subscribes the view refresher, and starts the workers; dead workers'
   * orders go back to the queue as the recovery loop starts.
   */
  start(): Promise<void> {
    if (this.state !== 'new') return Promise.reject(new TributaryError('TRIB_ERR_ENGINE_CLOSED', []));
    this.state = 'starting';
    this.starting = this.startUp();
    return this.starting;
  }

  private async startUp(): Promise<void> {
    const o = this.options;
    try {
      if (!o.waitForServers) await Promise.all([connectRedis(this.control, o.redisUrl, o.connectTimeoutMs), this.checkPostgres()]);
      if (o.workers === 0) {
        // Only the refresher and recovery run: the runner with its workers does not start.
        await this.startRunnerless();
      } else {
        await this.runner.start();
        if (this.stopCtl.signal.aborted || !this.runner.running) return;
        if (o.refreshViews) await this.startRefresher();
      }
    } catch (err) {
      this.state = 'closed';
      await this.releaseResources(false);
      this.resolveDone();
      throw err;
    }
    if (this.stopCtl.signal.aborted) return;
    this.state = 'running';
    if (o.workers > 0) {
      void this.runner.done.then(() => {
        if (o.untilEmpty) this.resolveDone();
      });
    }
    this.publisher.start();
    if (o.vacuumIntervalMs > 0) {
      this.vacuumTimer = setInterval(() => void this.vacuum(), o.vacuumIntervalMs);
      this.vacuumTimer.unref();
    }
    this.emit('started', { workers: o.workers > 0 ? this.workerNames : [] });
  }

  /** workers: 0 — no runner workers; the refresher and a recovery loop of its own. */
  private async startRunnerless(): Promise<void> {
    const o = this.options;
    if (!this.control.isOpen) await this.control.connect();
    if (o.migrate) await migrateOrders(this.pool, o.schema);
    if (o.refreshViews) await this.startRefresher();
    const recover = () => void this.source.reclaim('', 0, o.staleMs).catch((err: unknown) => this.emit('retry', { server: 'redis', step: 'recover', error: asError(err), attempt: 1 }));
    recover();
    const timer = setInterval(recover, o.recoverIntervalMs);
    timer.unref();
    this.stopCtl.signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  }

  /**
   * Stops: no more takes (blocked ones are released with CLIENT UNBLOCK), in-flight
   * batches are finished and acknowledged, the views get a last refresh if orders were
   * promoted since the previous one, then connections close. Safe to call twice (one
   * closing promise). `force`: in-flight batches are abandoned where they are (their
   * orders stay in the processing lists and are recovered later; nothing is lost).
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    const force = options.force === true;
    if (force) void this.runner.close({ force: true });
    this.closing ??= this.shutdown(force);
    return this.closing;
  }

  private async shutdown(force: boolean): Promise<void> {
    this.stopCtl.abort();
    this.emit('stopping', { force });
    await this.starting?.catch(() => {});
    if (this.state === 'closed' || this.state === 'new') {
      // Never started, or its start failed and cleaned up already.
      this.state = 'closed';
      this.resolveDone();
      return;
    }
    const wasRunning = this.state === 'running';
    this.state = 'closing';
    clearInterval(this.vacuumTimer);
    await this.runner.close();
    await this.publisher.stop();
    const forced = this.runner.status === 'stopped' && force;
    if (wasRunning && !forced) {
      await this.vacuuming?.catch(() => {});
      // Forget our heartbeats (the lists are empty after a graceful stop).
      await this.source.forget([...this.workerNames, `${this.options.workerPrefix}-recover`]);
      if (this.refresher && this.promotedSinceRefresh) await this.refresher.request();
    }
    await this.releaseResources(force);
    this.state = 'closed';
    this.resolveDone();
    this.emit('stopped', this.stats());
  }

  /** The parts of one worker, on its own connection (made on first use, connected by start). */
  private workerParts(consumer: string): OrdersWorkerParts {
    let w = this.workers.get(consumer);
    if (w) return w;
    const o = this.options;
    const client = createRedisConnection(o.redisUrl, {
      name: `tributary:orders:${consumer}:commands`,
      failFast: true,
      connectTimeoutMs: o.connectTimeoutMs,
      onError: (err) => this.runner.reportFailure('redis', err),
    });
    const cache = new LookupCache({ client, prefix: o.prefix, ttlMs: o.cacheTtlMs });
    w = {
      client,
      dedup: new DedupWindow({ client, prefix: o.prefix, windowSeconds: o.dedupWindowSeconds, bucketSeconds: o.dedupBucketSeconds }),
      revenue: new RevenueWindow({ client, prefix: o.prefix, windowMs: o.revenueWindowMs }),
      signals: new OrderSignals({ client, prefix: o.prefix }),
      lookup: (orders) => this.lookup(cache, orders),
    };
    this.workers.set(consumer, w);
    return w;
  }

  private async connectWorkers(): Promise<void> {
    await Promise.all(
      this.runner.consumers.map(async (consumer) => {
        const { client } = this.workerParts(consumer);
        if (!client.isOpen) await client.connect();
      }),
    );
  }

  private async releaseResources(force: boolean): Promise<void> {
    await this.unsubscribe?.().catch(() => {});
    if (this.refresher && !force) await this.refresher.close();
    await this.source.close();
    for (const w of this.workers.values()) destroyQuietly(w.client);
    destroyQuietly(this.control);
    if (this.ownsPool) {
      const ending = this.pool.end().catch(() => {});
      if (!force) await ending;
    }
  }

  private async checkPostgres(): Promise<void> {
    const timeoutMs = this.options.connectTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.pool.query('SELECT 1'),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs))),
      ]);
    } catch (err) {
      const url = this.options.databaseUrl ? redactUrl(this.options.databaseUrl) : 'the given pool';
      throw new TributaryError('TRIB_ERR_POSTGRES_UNAVAILABLE', [`cannot query ${url}: ${asError(err).message}`], { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  private onBatch(report: BatchReport): void {
    const d = report.details as unknown as StagingDetails | undefined;
    const r = d?.result;
    const c = this.counters;
    const malformed = d?.malformed ?? 0;
    c.batches++;
    c.taken += report.size;
    c.malformed += malformed;
    c.duplicates += d?.duplicates ?? 0;
    c.promoted += r?.promoted ?? 0;
    c.pgDuplicates += r?.duplicates ?? 0;
    for (const [reason, n] of Object.entries(r?.rejected ?? {}) as [RejectReason, number][]) c.rejected[reason] = (c.rejected[reason] ?? 0) + n;
    if (malformed > 0) c.rejected.malformed = (c.rejected.malformed ?? 0) + malformed;
    const t = report.timings;
    this.emit('batch', {
      worker: report.consumer,
      batchId: d?.batchId ?? '',
      taken: report.size,
      malformed,
      duplicates: d?.duplicates ?? 0,
      staged: r?.stagedRows ?? 0,
      promoted: r?.promoted ?? 0,
      pgDuplicates: r?.duplicates ?? 0,
      rejected: r?.rejected ?? {},
      cacheVersion: d?.cacheVersion ?? null,
      landedEarlier: r?.landedEarlier ?? false,
      retries: report.retries,
      timings: {
        takeMs: t.read ?? 0,
        parseMs: t.parse ?? 0,
        dedupMs: t.dedup ?? 0,
        enrichMs: t.enrich ?? 0,
        transformMs: t.transform ?? 0,
        stageMs: r?.stageMs ?? 0,
        promoteMs: r?.promoteMs ?? 0,
        commitMs: t.ack ?? 0,
        totalMs: Object.values(t).reduce((a, b) => a + b, 0),
      },
    });
  }

  /** The batch's lookups; an empty or expired cache is first published from Postgres (autoPublishCache). */
  private async lookup(cache: LookupCache, orders: Order[]): Promise<LookupResult> {
    if (orders.length === 0) return EMPTY_LOOKUP;
    try {
      return await lookupFor(cache, orders);
    } catch (err) {
      if (!this.options.autoPublishCache || !(isTributaryError(err, 'TRIB_ERR_ORDERS_CACHE_EMPTY') || isTributaryError(err, 'TRIB_ERR_ORDERS_CACHE_EXPIRED'))) throw err;
      await this.publishCache();
      return lookupFor(cache, orders);
    }
  }

  /** Publishes the reference tables to the lookup cache, once at a time; refuses empty tables. */
  private publishCache(): Promise<void> {
    this.cacheRefill ??= (async () => {
      // Publishing nothing would reject every order: wait for reference data instead.
      const data = await loadReferenceDataOrFail(this.pool, this.options.schema);
      const result = await this.cache.publish(data);
      this.counters.cachePublishes++;
      this.emit('cachePublished', result);
    })().finally(() => (this.cacheRefill = undefined));
    return this.cacheRefill;
  }

  private async startRefresher(): Promise<void> {
    const o = this.options;
    const refresher = new ViewRefresher<ViewRefresh[]>({
      refresh: async () => {
        const wait = this.lastRefreshStart + o.viewRefreshMinIntervalMs - Date.now();
        // Coalesce: signals arriving while this waits join this refresh. A stop ends the wait.
        if (wait > 0) await sleep(wait, this.stopCtl.signal);
        this.lastRefreshStart = Date.now();
        this.promotedSinceRefresh = false;
        return refreshViews(this.pool, o.schema);
      },
    });
    refresher.on('refreshed', (outcome) => {
      this.counters.viewRefreshes++;
      this.emit('viewsRefreshed', outcome);
    });
    refresher.on('failed', (outcome) => {
      this.promotedSinceRefresh = true;
      this.emit('viewsRefreshed', outcome);
    });
    refresher.on('error', (err) => this.emit('error', err));
    this.refresher = refresher;
    this.unsubscribe = await refresher.listen(new OrderSignals({ client: this.control, prefix: o.prefix }));
  }

  private vacuum(): Promise<void> {
    if (this.vacuuming || this.state !== 'running') return this.vacuuming ?? Promise.resolve();
    this.vacuuming = vacuumStaging(this.pool, this.options.schema)
      .catch((err: unknown) => this.emit('retry', { server: 'postgres', step: 'vacuum staging', error: asError(err), attempt: 1 }))
      .finally(() => (this.vacuuming = undefined));
    return this.vacuuming;
  }

  /**
   * After dead workers' processing lists went back to the queue: drops the rows they had
   * staged (never promoted: their orders are back in the queue and will be staged again).
   */
  private async dropStaged(result: RecoverResult): Promise<void> {
    let stagingRowsDropped = 0;
    const s = quoteIdent(this.options.schema);
    try {
      for (const worker of Object.keys(result.byWorker)) {
        // Under the promote lock, exclusively: a promote of this worker's batch (still
        // running, if the worker was only slow) sees all of its rows or none, never part.
        stagingRowsDropped += await inTransaction(this.pool, async (client) => {
          await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [promoteLockKey(this.options.schema)]);
          const res = await client.query(`DELETE FROM ${s}.orders_staging WHERE starts_with(batch_id, $1)`, [`${worker}:`]);
          return res.rowCount ?? 0;
        });
      }
    } catch (err) {
      this.emit('retry', { server: 'postgres', step: 'recover', error: asError(err), attempt: 1 });
    }
    this.counters.recovered += result.items;
    this.emit('recovered', { ...result, stagingRowsDropped });
  }
}

/** What the orders stages use for one worker: its own connection and the Redis parts on it. */
export interface OrdersWorkerParts {
  /** The connection for the worker's commands (non-blocking; never the one its takes block). */
  client: RedisConnection;
  dedup: DedupWindow;
  revenue: RevenueWindow;
  signals: OrderSignals;
  /** The lookups of a batch's orders (one cache version). */
  lookup: (orders: Order[]) => Promise<LookupResult>;
}

/** What the orders stages need. */
export interface OrdersStageParts {
  keys: ReturnType<typeof orderKeys>;
  /** The parts of the worker (consumer) processing a batch. */
  worker: (consumer: string) => OrdersWorkerParts;
  /** A batch promoted rows (the views are now stale). */
  onPromoted?: () => void;
  /** A completion signal could not be published (a hint only: nothing is retried). */
  onError?: (err: Error) => void;
}

/**
 * The orders pipeline's stages, in order: parse, dedup, enrich, transform, and announce
 * (after the commit: the counters `orders stats` reads and the completion signal). The
 * pipeline and the benchmark run these same objects. Each worker's Redis commands go on
 * its own connection: on one shared connection, the big commands of one batch (a
 * 5,000-id dedup check, the revenue ZADD) queue in front of every other worker's.
 */
export function ordersStages(p: OrdersStageParts): Stage<any, any>[] {
  const announce = stage<Order, Order>('announce', (batch) => ({ keep: batch }));
  announce.afterCommit = async (_kept, ctx) => {
    const w = p.worker(ctx.consumer);
    const details = ctx.state as { result?: StagingDetails['result']; batchId?: string };
    await countBatch(w.client, p.keys, ctx.state);
    const r = details.result;
    if (r && (r.stagedRows > 0 || r.landedEarlier)) {
      p.onPromoted?.();
      // The signal is a hint (pub/sub keeps nothing): a failure only delays a refresh.
      await w.signals
        .publishPromoted({ batchId: details.batchId ?? '', worker: ctx.consumer, promoted: r.promoted, duplicates: r.duplicates, rejected: rejectedTotal(r.rejected) })
        .catch((err: unknown) => p.onError?.(asError(err)));
    }
  };
  return [
    parseOrdersStage(),
    dedupStage((ctx) => p.worker(ctx.consumer).dedup),
    enrichStage((orders, ctx) => p.worker(ctx.consumer).lookup(orders)),
    transformStage((ctx) => p.worker(ctx.consumer).revenue),
    announce,
  ];
}

/** Counts a committed batch in the stats hash and its throughput slot (what `orders stats` reads). */
async function countBatch(client: RedisConnection, keys: ReturnType<typeof orderKeys>, state: Record<string, unknown>): Promise<void> {
  const st = state as OrdersBatchState;
  const r = (state as { result?: StagingDetails['result'] }).result;
  const taken = st.taken ?? 0;
  const now = Date.now();
  const slot = keys.throughput(Math.floor(now / THROUGHPUT_SLOT_MS));
  const malformed = st.malformed?.length ?? 0;
  const multi = client.multi();
  multi.addCommand(['HINCRBY', keys.stats, 'batches', '1']);
  multi.addCommand(['HINCRBY', keys.stats, 'taken', String(taken)]);
  multi.addCommand(['HINCRBY', keys.stats, 'promoted', String(r?.promoted ?? 0)]);
  multi.addCommand(['HINCRBY', keys.stats, 'duplicates', String(st.duplicates ?? 0)]);
  multi.addCommand(['HINCRBY', keys.stats, 'pg_duplicates', String(r?.duplicates ?? 0)]);
  multi.addCommand(['HINCRBY', keys.stats, 'rejected', String(rejectedTotal(r?.rejected ?? {}) + malformed)]);
  multi.addCommand(['HSET', keys.stats, 'last_batch_at', String(now)]);
  multi.addCommand(['INCRBY', slot, String(taken)]);
  multi.addCommand(['EXPIRE', slot, String(THROUGHPUT_TTL_S)]);
  await multi.execAsPipeline();
}
