/**
 * The orders pipeline, wired from the parts in src/orders: N workers, each
 *
 *   take a batch (BLMOVE queue → its processing list)
 *   → parse (malformed items become 'malformed' rejects)
 *   → dedup window (order_ids seen in the window, or repeated in the batch, are dropped)
 *   → lookup cache (one round trip, one cache version)
 *   → columnar transform
 *   → stage (one COPY into the UNLOGGED staging table)
 *   → promote (one transaction: valid → orders, invalid → orders_rejected)
 *   → commit (ack: remove the batch from the processing list; mark its order_ids seen;
 *     add its orders to the revenue window; count it) → publish the completion signal.
 *
 * Nothing is acknowledged before its promote has committed: until then the orders stay
 * in the worker's processing list. The staging table is UNLOGGED (a Postgres crash
 * empties it), which is why staging is not a commit point. Around the workers:
 * - a maintenance loop returns the processing lists of dead workers (stale heartbeat) to
 *   the queue and drops their staged rows (their orders will be staged again), and
 *   vacuums the staging table every `vacuumIntervalMs`;
 * - a view refresher subscribed to the completion signals refreshes the materialized
 *   views (coalesced, at most one refresh per `viewRefreshMinIntervalMs`);
 * - transient Redis and Postgres failures are retried with capped exponential backoff,
 *   never dropping an order; an outage is reported once (serverDown / serverUp).
 *
 * The library never prints: it emits typed events and keeps counters (`stats()`).
 */
import { redactUrl } from '../config/index.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { backoffDelay, sleep } from '../core/backoff.js';
import { TypedEmitter } from '../core/emitter.js';
import type { ServerName } from '../core/contracts.js';
import { ServerHealth } from '../core/retry.js';
import { isTributaryError, TributaryError } from '../errors.js';
import { createPgPool, isConnectionError, quoteIdent, type PgPool } from '../postgres/pool.js';
import { createRedisConnection, destroyQuietly, send, type RedisConnection } from '../redis/client.js';
import { commitBatch, dropDuplicates, lookupFor, newIsolationState, newStagePromoteState, rejectedTotal, revenueEntries, stageAndPromoteIsolating } from './batch.js';
import { analyzeReferenceTables } from './pg/analyze.js';
import { inTransaction, promoteLockKey } from './pg/promote.js';
import { migrateOrders, ORDERS_SCHEMA } from './pg/migrate.js';
import { refreshViews, type ViewRefresh } from './pg/views.js';
import { LookupCache, type PublishResult } from './redis/cache.js';
import { DedupWindow } from './redis/dedup.js';
import { DEFAULT_ORDERS_PREFIX } from './redis/keys.js';
import { OrderQueue, type RecoverResult } from './redis/queue.js';
import { RevenueWindow } from './redis/revenue.js';
import { OrderSignals, ViewRefresher, type RefreshOutcome, type Unsubscribe } from './redis/signals.js';
import { loadReferenceData } from './seed.js';
import type { ReferenceData } from './types.js';
import { parseOrders, transformBatch } from './transform.js';
import type { LookupResult, RejectReason } from './types.js';

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
  /** How long start() waits for each server to answer, ms (default 5000). */
  connectTimeoutMs?: number;
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
  /** Batches being processed now. */
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
  retry: { server: ServerName; step: string; error: Error; attempt: number };
  serverDown: { server: ServerName; error: Error };
  serverUp: { server: ServerName; downMs: number };
  /** untilEmpty: every worker found the queue empty and stopped. */
  drained: { batches: number };
  stopping: { force: boolean };
  stopped: OrdersPipelineStats;
  error: Error;
}

/** Thrown inside a worker when close({ force: true }) abandons its batch. */
class ForcedStop extends Error {
  constructor() {
    super('forced stop');
    this.name = 'ForcedStop';
  }
}

interface Worker {
  name: string;
  conn: RedisConnection;
  /** CLIENT ID of the connection (for CLIENT UNBLOCK); refreshed on reconnect. */
  clientId: string | null;
  queue: OrderQueue;
  dedup: DedupWindow;
  cache: LookupCache;
  revenue: RevenueWindow;
  signals: OrderSignals;
  seq: number;
  loop: Promise<void>;
}

const EMPTY_LOOKUP: LookupResult = { version: 0, products: new Map(), currencies: new Map(), zipCodes: new Map() };

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
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


/**
 * The orders pipeline (see the module comment). `start()` connects (failing with a coded
 * error when a server does not answer), migrates, recovers dead workers' orders and starts
 * the workers; `close()` stops it gracefully; `done` resolves when the workers have
 * stopped (after close(), or by themselves with `untilEmpty`).
 */
export class OrdersPipeline extends TypedEmitter<OrdersPipelineEvents> {
  readonly options: Readonly<Resolved>;
  /** Resolves once every worker has stopped. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private state: 'new' | 'starting' | 'running' | 'closing' | 'closed' = 'new';
  private pool: PgPool | undefined;
  private ownsPool = false;
  private control: RedisConnection | undefined;
  private controlQueue: OrderQueue | undefined;
  private controlCache: LookupCache | undefined;
  private readonly workers: Worker[] = [];
  private refresher: ViewRefresher<ViewRefresh[]> | undefined;
  private unsubscribe: Unsubscribe | undefined;
  private maintenance: NodeJS.Timeout | undefined;
  private maintaining: Promise<void> | undefined;
  private maintenanceRuns = 0;
  private lastVacuum = Date.now();
  private lastRefreshStart = 0;
  private promotedSinceRefresh = false;
  private cacheRefill: Promise<void> | undefined;
  private readonly stopCtl = new AbortController();
  private readonly forceCtl = new AbortController();
  private closing: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  private readonly health: ServerHealth;
  private readonly runToken = randomBytes(3).toString('hex');
  private readonly counters = {
    batches: 0,
    taken: 0,
    malformed: 0,
    duplicates: 0,
    promoted: 0,
    pgDuplicates: 0,
    rejected: {} as Partial<Record<RejectReason, number>>,
    inFlight: 0,
    retries: 0,
    recovered: 0,
    viewRefreshes: 0,
    cachePublishes: 0,
  };

  constructor(options: OrdersPipelineOptions) {
    super();
    this.options = resolveOptions(options);
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.health = new ServerHealth(({ server, up, error, downMs }) => {
      if (up) this.emit('serverUp', { server, downMs: downMs ?? 0 });
      else this.emit('serverDown', { server, error: error! });
    });
  }

  /** The names of this process's workers (`<workerPrefix>-<n>`). */
  get workerNames(): string[] {
    return Array.from({ length: this.options.workers }, (_, i) => `${this.options.workerPrefix}-${i + 1}`);
  }

  stats(): OrdersPipelineStats {
    const c = this.counters;
    return { ...c, rejected: { ...c.rejected }, rejectedTotal: rejectedTotal(c.rejected), workers: this.workers.length };
  }

  /**
   * Connects to Redis and Postgres (TRIB_ERR_REDIS_UNAVAILABLE / TRIB_ERR_POSTGRES_UNAVAILABLE
   * when one does not answer within connectTimeoutMs), migrates the orders schema, returns
   * dead workers' orders to the queue, subscribes the view refresher, and starts the workers.
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
      this.pool = o.pool ?? createPgPool(o.databaseUrl!, { max: o.workers + 3, applicationName: `tributary:orders:${o.workerPrefix}`.slice(0, 63) });
      this.ownsPool = o.pool === undefined;
      if (this.ownsPool) {
        // Idle pooled clients whose server went away: the next query reconnects.
        this.pool.on('error', () => {});
        // A backend that dies just as its client is handed out (ReadyForQuery and the
        // FATAL in one read, before the borrower attaches its listener) must not become an
        // uncaught 'error': the borrower's next query fails instead, and is retried.
        this.pool.on('connect', (client) => client.on('error', () => {}));
      }
      this.control = createRedisConnection(o.redisUrl, { name: `tributary:orders:${o.workerPrefix}`, failFast: true, connectTimeoutMs: o.connectTimeoutMs });
      await Promise.all([connectRedis(this.control, o.redisUrl, o.connectTimeoutMs), this.checkPostgres()]);
      this.controlQueue = new OrderQueue({ client: this.control, prefix: o.prefix });
      this.controlCache = new LookupCache({ client: this.control, prefix: o.prefix, ttlMs: o.cacheTtlMs });
      if (o.migrate) await this.startupStep('migrate', () => migrateOrders(this.pool!, o.schema));
      // Planner statistics for promote's joins: an optimisation, never a reason not to start.
      await analyzeReferenceTables(this.pool, o.schema).catch(() => {});
      // Orders left by dead workers: the maintenance loop tries again if this fails.
      await this.recoverDead(true).catch((err: unknown) => this.emit('retry', { server: 'redis', step: 'recover', error: asError(err), attempt: 1 }));
      if (o.refreshViews) await this.startRefresher();
      for (const name of this.workerNames) {
        if (this.stopCtl.signal.aborted) break;
        this.workers.push(await this.openWorker(name));
      }
    } catch (err) {
      this.state = 'closed';
      await this.releaseResources();
      this.resolveDone();
      throw err;
    }
    // close() during start: it cleans up; nothing is started.
    if (this.stopCtl.signal.aborted) return;
    this.state = 'running';
    for (const w of this.workers) w.loop = this.runWorker(w);
    void Promise.all(this.workers.map((w) => w.loop)).then(() => {
      if (this.options.untilEmpty && this.state === 'running') this.emit('drained', { batches: this.counters.batches });
      this.resolveDone();
    });
    this.maintenance = setInterval(() => void this.maintain(), o.recoverIntervalMs);
    this.maintenance.unref();
    this.emit('started', { workers: this.workers.map((w) => w.name) });
  }

  /**
   * Stops: no more takes (blocked ones are released with CLIENT UNBLOCK), in-flight
   * batches are finished and acknowledged, the views get a last refresh if orders were
   * promoted since the previous one, then connections close. Safe to call twice (one
   * closing promise). `force`: in-flight batches are abandoned where they are (their
   * orders stay in the processing lists and are recovered later; nothing is lost).
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    if (options.force) this.forceCtl.abort();
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.stopCtl.abort();
    this.emit('stopping', { force: this.forceCtl.signal.aborted });
    await this.starting?.catch(() => {});
    if (this.state === 'closed' || this.state === 'new') {
      // Never started, or its start failed and cleaned up already.
      this.state = 'closed';
      this.resolveDone();
      return;
    }
    const wasRunning = this.state === 'running';
    this.state = 'closing';
    clearInterval(this.maintenance);
    if (wasRunning) {
      // Release blocked takes until every loop has noticed the stop.
      const loops = Promise.all(this.workers.map((w) => w.loop));
      let settled = false;
      void loops.then(() => (settled = true));
      while (!settled && !this.forceCtl.signal.aborted) {
        await this.unblockWorkers();
        await Promise.race([loops, sleep(100, this.forceCtl.signal)]);
      }
      if (!this.forceCtl.signal.aborted) {
        await this.maintaining?.catch(() => {});
        // Forget our heartbeats (the lists are empty after a graceful stop).
        await Promise.all(this.workers.map((w) => w.queue.release(w.name).catch(() => 0)));
        if (this.refresher && this.promotedSinceRefresh) await this.refresher.request();
      }
    }
    await this.releaseResources();
    this.state = 'closed';
    this.resolveDone();
    this.emit('stopped', this.stats());
  }

  private async releaseResources(): Promise<void> {
    await this.unsubscribe?.().catch(() => {});
    if (this.refresher) await (this.forceCtl.signal.aborted ? Promise.resolve() : this.refresher.close());
    for (const w of this.workers) destroyQuietly(w.conn);
    destroyQuietly(this.control);
    if (this.ownsPool && this.pool) {
      const ending = this.pool.end().catch(() => {});
      if (!this.forceCtl.signal.aborted) await ending;
    }
  }

  /** A start-up step, retried (with backoff, a few times) when it fails on a lost Postgres connection. */
  private async startupStep<T>(step: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isConnectionError(err) || attempt >= 9 || this.stopCtl.signal.aborted) throw err;
        this.emit('retry', { server: 'postgres', step, error: asError(err), attempt: attempt + 1 });
        await sleep(backoffDelay(attempt, { baseMs: this.options.retryBaseMs, maxMs: this.options.retryMaxMs }), this.stopCtl.signal);
      }
    }
  }

  private async checkPostgres(): Promise<void> {
    const timeoutMs = this.options.connectTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.pool!.query('SELECT 1'),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs))),
      ]);
    } catch (err) {
      const url = this.options.databaseUrl ? redactUrl(this.options.databaseUrl) : 'the given pool';
      throw new TributaryError('TRIB_ERR_POSTGRES_UNAVAILABLE', [`cannot query ${url}: ${asError(err).message}`], { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  private async openWorker(name: string): Promise<Worker> {
    const o = this.options;
    const conn = createRedisConnection(o.redisUrl, { name: `tributary:orders:${name}`, failFast: true, connectTimeoutMs: o.connectTimeoutMs });
    const w: Worker = {
      name,
      conn,
      clientId: null,
      queue: new OrderQueue({ client: conn, prefix: o.prefix }),
      dedup: new DedupWindow({ client: conn, prefix: o.prefix, windowSeconds: o.dedupWindowSeconds, bucketSeconds: o.dedupBucketSeconds }),
      cache: new LookupCache({ client: conn, prefix: o.prefix, ttlMs: o.cacheTtlMs }),
      revenue: new RevenueWindow({ client: conn, prefix: o.prefix, windowMs: o.revenueWindowMs }),
      signals: new OrderSignals({ client: conn, prefix: o.prefix }),
      seq: 0,
      loop: Promise.resolve(),
    };
    // The ID changes with every reconnect; CLIENT UNBLOCK needs the current one.
    conn.on('ready', () => {
      send(conn, ['CLIENT', 'ID']).then(
        (id) => (w.clientId = String(id)),
        () => (w.clientId = null),
      );
    });
    try {
      await connectRedis(conn, o.redisUrl, o.connectTimeoutMs);
      w.clientId = String(await send(conn, ['CLIENT', 'ID']));
      // A worker of the same name (an earlier run) may have left orders: back to the queue.
      await w.queue.release(name);
    } catch (err) {
      // Not yet in this.workers, so close() would never end it: the connection would leak.
      destroyQuietly(conn);
      throw err;
    }
    return w;
  }

  private async unblockWorkers(): Promise<void> {
    if (!this.control?.isReady) return;
    await Promise.all(
      this.workers.map((w) => (w.clientId ? send(this.control!, ['CLIENT', 'UNBLOCK', w.clientId]).catch(() => 0) : Promise.resolve(0))),
    );
  }

  /**
   * Runs `fn` until it succeeds, retrying failures with capped, jittered backoff. Throws
   * ForcedStop once close({ force: true }) was called, and `stopped` (when given) once a
   * graceful stop began.
   */
  private async attempt<T>(server: ServerName, step: string, fn: () => Promise<T>, onRetry?: () => void, stopped?: () => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (this.forceCtl.signal.aborted) throw new ForcedStop();
      try {
        const value = await fn();
        this.health.ok(server);
        return value;
      } catch (err) {
        if (this.forceCtl.signal.aborted) throw new ForcedStop();
        const error = asError(err);
        this.counters.retries++;
        onRetry?.();
        this.health.failed(server, error);
        this.emit('retry', { server, step, error, attempt: attempt + 1 });
        await sleep(backoffDelay(attempt, { baseMs: this.options.retryBaseMs, maxMs: this.options.retryMaxMs }), stopped ? this.stopCtl.signal : this.forceCtl.signal);
        if (stopped && this.stopCtl.signal.aborted) return stopped();
      }
    }
  }

  private async runWorker(w: Worker): Promise<void> {
    const o = this.options;
    let needRelease = false;
    try {
      while (!this.stopCtl.signal.aborted) {
        const t0 = performance.now();
        const items = await this.attempt(
          'redis',
          'take',
          async () => {
            // A failed take may have moved orders into the list without us seeing them.
            if (needRelease) {
              await w.queue.release(w.name);
              needRelease = false;
            }
            try {
              // untilEmpty: a short wait is enough to call the queue empty.
              return await w.queue.take(w.name, o.batchSize, o.untilEmpty ? Math.min(o.blockMs, 100) : o.blockMs);
            } catch (err) {
              needRelease = true;
              throw err;
            }
          },
          undefined,
          () => [] as string[],
        );
        if (items.length === 0) {
          if (o.untilEmpty && !needRelease) break;
          continue;
        }
        await this.processBatch(w, items, performance.now() - t0);
      }
    } catch (err) {
      if (!(err instanceof ForcedStop)) this.emit('error', asError(err));
    }
  }

  private async processBatch(w: Worker, items: string[], takeMs: number): Promise<void> {
    const o = this.options;
    const batchId = `${w.name}:${this.runToken}:${++w.seq}`;
    const started = performance.now();
    let retries = 0;
    const counted = () => retries++;
    this.counters.inFlight++;
    const stopBeating = w.queue.keepAlive(w.name, Math.max(100, Math.floor(o.staleMs / 3)));
    try {
      let t = performance.now();
      const parsed = parseOrders(items);
      const parseMs = performance.now() - t;

      t = performance.now();
      const fresh = await this.attempt('redis', 'dedup', () => dropDuplicates(w.dedup, parsed.orders), counted);
      const dedupMs = performance.now() - t;

      t = performance.now();
      const lookup = fresh.orders.length === 0 ? EMPTY_LOOKUP : await this.attempt('redis', 'enrich', () => this.lookup(w, fresh.orders), counted);
      const enrichMs = performance.now() - t;

      t = performance.now();
      const cols = transformBatch(fresh.orders, lookup);
      const transformMs = performance.now() - t;

      const state = newStagePromoteState();
      // Content Postgres refuses (SQLSTATE 22/23/54) is not retried: the batch is split to isolate it.
      const isolation = newIsolationState();
      const pg = await this.attempt(
        'postgres',
        'stage and promote',
        () => stageAndPromoteIsolating(this.pool!, o.schema, batchId, cols, fresh.orders, parsed.malformed, state, isolation),
        counted,
      );

      t = performance.now();
      const rejected = rejectedTotal(pg.rejected);
      const freshIds = cols.order_id;
      await this.attempt(
        'redis',
        'commit',
        () =>
          commitBatch(
            { queue: w.queue, dedup: w.dedup, revenue: w.revenue, client: w.conn, keys: w.queue.keys },
            {
              worker: w.name,
              taken: items.length,
              freshIds,
              revenue: revenueEntries(cols),
              counts: { promoted: pg.promoted, pgDuplicates: pg.duplicates, rejected, malformed: parsed.malformed.length, duplicates: fresh.duplicates },
            },
          ),
        counted,
      );
      if (pg.stagedRows > 0 || pg.landedEarlier) {
        this.promotedSinceRefresh = true;
        // The signal is a hint (pub/sub keeps nothing): a failure only delays a refresh.
        await w.signals
          .publishPromoted({ batchId, worker: w.name, promoted: pg.promoted, duplicates: pg.duplicates, rejected })
          .catch((err: unknown) => this.emit('error', asError(err)));
      }
      const commitMs = performance.now() - t;

      const c = this.counters;
      c.batches++;
      c.taken += items.length;
      c.malformed += parsed.malformed.length;
      c.duplicates += fresh.duplicates;
      c.promoted += pg.promoted;
      c.pgDuplicates += pg.duplicates;
      for (const [reason, n] of Object.entries(pg.rejected) as [RejectReason, number][]) c.rejected[reason] = (c.rejected[reason] ?? 0) + n;
      if (parsed.malformed.length > 0) c.rejected.malformed = (c.rejected.malformed ?? 0) + parsed.malformed.length;
      this.emit('batch', {
        worker: w.name,
        batchId,
        taken: items.length,
        malformed: parsed.malformed.length,
        duplicates: fresh.duplicates,
        staged: pg.stagedRows,
        promoted: pg.promoted,
        pgDuplicates: pg.duplicates,
        rejected: pg.rejected,
        cacheVersion: fresh.orders.length === 0 ? null : lookup.version,
        landedEarlier: pg.landedEarlier,
        retries,
        timings: { takeMs, parseMs, dedupMs, enrichMs, transformMs, stageMs: pg.stageMs, promoteMs: pg.promoteMs, commitMs, totalMs: performance.now() - started + takeMs },
      });
    } finally {
      stopBeating();
      this.counters.inFlight--;
    }
  }

  /** The batch's lookups; an empty or expired cache is first published from Postgres (autoPublishCache). */
  private async lookup(w: Worker, orders: Parameters<typeof lookupFor>[1]): Promise<LookupResult> {
    try {
      return await lookupFor(w.cache, orders);
    } catch (err) {
      if (!this.options.autoPublishCache || !(isTributaryError(err, 'TRIB_ERR_ORDERS_CACHE_EMPTY') || isTributaryError(err, 'TRIB_ERR_ORDERS_CACHE_EXPIRED'))) throw err;
      await this.publishCache();
      return lookupFor(w.cache, orders);
    }
  }

  /** Publishes the reference tables to the lookup cache, once at a time; refuses empty tables. */
  private publishCache(): Promise<void> {
    this.cacheRefill ??= (async () => {
      // Publishing nothing would reject every order: wait for reference data instead.
      const data = await loadReferenceDataOrFail(this.pool!, this.options.schema);
      const result = await this.controlCache!.publish(data);
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
        return refreshViews(this.pool!, o.schema);
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
    this.unsubscribe = await refresher.listen(new OrderSignals({ client: this.control!, prefix: o.prefix }));
  }

  private maintain(): Promise<void> {
    if (this.maintaining || this.state !== 'running') return this.maintaining ?? Promise.resolve();
    const o = this.options;
    // A SCAN for orphaned lists (no heartbeat at all) about once a minute; the heartbeat set every time.
    const scan = this.maintenanceRuns++ % Math.max(1, Math.round(60_000 / o.recoverIntervalMs)) === 0;
    const vacuum = o.vacuumIntervalMs > 0 && Date.now() - this.lastVacuum >= o.vacuumIntervalMs;
    this.maintaining = (async () => {
      await this.recoverDead(scan).catch((err: unknown) => this.emit('retry', { server: 'redis', step: 'recover', error: asError(err), attempt: 1 }));
      if (!vacuum) return;
      this.lastVacuum = Date.now();
      await vacuumStaging(this.pool!, o.schema).catch((err: unknown) => this.emit('retry', { server: 'postgres', step: 'vacuum staging', error: asError(err), attempt: 1 }));
    })().finally(() => (this.maintaining = undefined));
    return this.maintaining;
  }

  /**
   * Returns dead workers' processing lists to the queue, then drops the rows they had
   * staged (never promoted: their orders are back in the queue and will be staged again).
   */
  private async recoverDead(scanOrphans: boolean): Promise<void> {
    const result = await this.controlQueue!.recover({ staleMs: this.options.staleMs, scanOrphans });
    if (result.workers === 0) return;
    let stagingRowsDropped = 0;
    const s = quoteIdent(this.options.schema);
    for (const worker of Object.keys(result.byWorker)) {
      // Under the promote lock, exclusively: a promote of this worker's batch (still
      // running, if the worker was only slow) sees all of its rows or none, never part.
      stagingRowsDropped += await inTransaction(this.pool!, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [promoteLockKey(this.options.schema)]);
        const res = await client.query(`DELETE FROM ${s}.orders_staging WHERE starts_with(batch_id, $1)`, [`${worker}:`]);
        return res.rowCount ?? 0;
      });
    }
    this.counters.recovered += result.items;
    this.emit('recovered', { ...result, stagingRowsDropped });
  }
}
