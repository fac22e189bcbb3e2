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
import { sleep } from '../core/backoff.js';
import { TypedEmitter } from '../core/emitter.js';
import { asError } from '../core/retry.js';
import { Runner, type BatchReport } from '../core/runner.js';
import { isTributaryError, TributaryError } from '../errors.js';
import { probeCheck, unlessFault, type ProbeCheck } from '../observability/probe.js';
import { StatsPublisher } from '../observability/published-stats.js';
import { lookupFor, rejectedTotal } from '../orders/batch.js';
import { resolveOptions, type OrdersPipelineEvents, type OrdersPipelineOptions, type OrdersPipelineStats, type Resolved } from '../orders/options.js';
import { analyzeReferenceTables } from '../orders/pg/analyze.js';
import { migrateOrders } from '../orders/pg/migrate.js';
import { fenceWorker } from '../orders/pg/promote.js';
import { refreshViews, type ViewRefresh } from '../orders/pg/views.js';
import { LookupCache } from '../orders/redis/cache.js';
import { DedupWindow } from '../orders/redis/dedup.js';
import { orderKeys } from '../orders/redis/keys.js';
import type { RecoverResult } from '../orders/redis/queue.js';
import { RevenueWindow } from '../orders/redis/revenue.js';
import { OrderSignals, ViewRefresher, type Unsubscribe } from '../orders/redis/signals.js';
import { connectRedis, loadReferenceDataOrFail, vacuumStaging } from '../orders/setup.js';
import type { LookupResult, Order, RejectReason } from '../orders/types.js';
import { createPgPool, isConnectionError, postgresRefusal, quoteIdent, type PgPool } from '../postgres/pool.js';
import { createRedisConnection, destroyQuietly, isRedisAuthError, send, type RedisConnection } from '../redis/client.js';
import { watchCommands } from '../redis/watchdog.js';
import { PostgresStagingSink, type StagingDetails } from '../sinks/postgres-staging.js';
import { RedisListSource } from '../sources/redis-list.js';
import { ordersStages, type OrdersWorkerParts } from '../stages/orders.js';

export { MAX_TIMER_MS, type OrdersPipelineOptions, type OrdersPipelineEvents, type OrdersPipelineStats, type OrdersBatchReport, type StageTimings } from '../orders/options.js';
export { vacuumStaging, loadReferenceDataOrFail } from '../orders/setup.js';
export { ordersStages, type OrdersStageParts, type OrdersWorkerParts } from '../stages/orders.js';

const EMPTY_LOOKUP: LookupResult = { version: 0, products: new Map(), currencies: new Map(), zipCodes: new Map() };

/** Start-up steps retry a lost connection, never a coded error that says retrying cannot help (a refused login, say). */
function retryableAtStart(err: unknown): boolean {
  return isTributaryError(err) ? err.retryable : isConnectionError(err);
}

/**
 * The orders pipeline (see the module comment). `start()` connects (failing with a coded
 * error when a server does not answer, unless waitForServers), migrates, subscribes the
 * view refresher and starts the workers; `close()` stops it gracefully; `done` resolves
 * when the workers have stopped (after close(), or by themselves with `untilEmpty` or `maxBatchesPerWorker`).
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
  private sweepTimer: NodeJS.Timeout | undefined;
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
    fenced: 0,
    viewRefreshes: 0,
    cachePublishes: 0,
  };

  constructor(options: OrdersPipelineOptions) {
    super();
    const o = (this.options = resolveOptions(options));
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.ownsPool = o.pool === undefined;
    this.pool = o.pool ?? createPgPool(o.databaseUrl!, { max: o.workers + 3, queryTimeoutMs: o.queryTimeoutMs, applicationName: `tributary:orders:${o.workerPrefix}`.slice(0, 63) });
    this.control = createRedisConnection(o.redisUrl, {
      name: `tributary:orders:${o.workerPrefix}`,
      failFast: true,
      connectTimeoutMs: o.connectTimeoutMs,
      // A refused login is not an outage: start() fails with it (TRIB_ERR_REDIS_AUTH).
      onError: (err) => {
        if (!isRedisAuthError(err)) this.runner?.reportFailure('redis', err);
      },
    });
    watchCommands(this.control, o.redisCommandTimeoutMs, (err) => this.runner?.reportFailure('redis', err));
    const keys = orderKeys(o.prefix);
    this.cache = new LookupCache({ client: this.control, prefix: o.prefix, ttlMs: o.cacheTtlMs });

    this.source = new RedisListSource({
      redisUrl: o.redisUrl,
      commands: this.control,
      prefix: o.prefix,
      staleMs: o.staleMs,
      connectTimeoutMs: o.connectTimeoutMs,
      commandTimeoutMs: o.redisCommandTimeoutMs,
      connectionName: (worker) => `tributary:orders:${worker}`,
      fence: (worker, epoch) => this.fence(worker, epoch),
      onRecovered: async (result) => this.onRecovered(result),
      onFenced: (e) => this.onFenced({ worker: e.consumer, step: e.step, epoch: e.epoch, current: e.current, items: e.items }),
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
      sink: new PostgresStagingSink(this.pool, o.schema, o.prefix, (consumer, fenced) => this.source.fencedDownstream(consumer, fenced.current)),
      consumers: Array.from({ length: Math.max(1, o.workers) }, (_, i) => `${o.workerPrefix}-${i + 1}`),
      batch: { maxCount: o.batchSize, periodMs: Math.max(1, o.blockMs) },
      blockMs: o.blockMs,
      maxInFlight: o.batchSize * Math.max(1, o.workers) * 2,
      reclaim: { consumer: `${o.workerPrefix}-recover`, minIdleMs: o.staleMs, intervalMs: o.recoverIntervalMs },
      retry: { baseMs: o.retryBaseMs, maxMs: o.retryMaxMs },
      untilEmpty: o.untilEmpty,
      ...(o.maxBatchesPerWorker > 0 ? { maxBatches: o.maxBatchesPerWorker } : {}),
      prepare: [
        ...(o.migrate ? [{ name: 'migrate', server: 'postgres' as const, retryable: retryableAtStart, run: () => this.migrateAtStart() }] : []),
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
  async probe(): Promise<{ ready: boolean; redis: ProbeCheck; postgres: ProbeCheck; schema: ProbeCheck }> {
    if (this.state !== 'running') {
      const error = `pipeline is ${this.state}`;
      return { ready: false, redis: { ok: false, error }, postgres: { ok: false, error }, schema: { ok: false, error } };
    }
    const [redis, answers, schema] = await Promise.all([
      probeCheck(() => send(this.control, ['PING'])),
      probeCheck(() => this.pool.query('SELECT 1')),
      probeCheck(async () => {
        const r = await this.pool.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`${quoteIdent(this.options.schema)}.orders`]);
        if (!r.rows[0]?.t) throw new Error(`schema ${this.options.schema} has no orders table`);
      }),
    ]);
    // Postgres may answer SELECT 1 while refusing every write (a fault that is not an outage).
    const postgres = unlessFault(answers, this.runner.fault('postgres'));
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
        if (o.untilEmpty || o.maxBatchesPerWorker > 0) this.resolveDone();
      });
    }
    this.publisher.start();
    if (o.vacuumIntervalMs > 0) {
      this.vacuumTimer = setInterval(() => void this.vacuum(), o.vacuumIntervalMs);
      this.vacuumTimer.unref();
    }
    // Dedup buckets that left the window are UNLINKed (freed off Redis's main thread)
    // before their EXPIRE backstop would free them in it, busy or idle.
    const dedup = new DedupWindow({ client: this.control, prefix: o.prefix, windowSeconds: o.dedupWindowSeconds, bucketSeconds: o.dedupBucketSeconds });
    this.sweepTimer = setInterval(() => {
      if (this.control.isReady) dedup.sweep().catch((err: unknown) => this.emit('retry', { server: 'redis', step: 'sweep dedup buckets', error: asError(err), attempt: 1 }));
    }, Math.max(500, o.dedupBucketSeconds * 500));
    this.sweepTimer.unref();
    this.emit('started', { workers: o.workers > 0 ? this.workerNames : [] });
  }

  /** Migrates the orders schema; a database, role or password Postgres refuses fails as the wrong setting it is (not retried). */
  private async migrateAtStart(): Promise<void> {
    try {
      await migrateOrders(this.pool, this.options.schema);
    } catch (err) {
      throw (this.options.databaseUrl ? postgresRefusal(err, this.options.databaseUrl) : undefined) ?? err;
    }
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
    if (force) void this.runner.close({ force: true });
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
    clearInterval(this.sweepTimer);
    await this.runner.close();
    await this.publisher.stop();
    // Forced now, whether by this call or by a second one while this one was stopping.
    const forced = () => this.runner.forceSignal.aborted;
    if (wasRunning && !forced()) {
      await this.vacuuming?.catch(() => {});
      // Forget our heartbeats (the lists are empty after a graceful stop).
      if (!forced()) await this.source.forget([...this.workerNames, `${this.options.workerPrefix}-recover`]);
      if (!forced() && this.refresher && this.promotedSinceRefresh) await this.refresher.request();
    }
    await this.releaseResources(forced());
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
    watchCommands(client, o.redisCommandTimeoutMs, (err) => this.runner.reportFailure('redis', err));
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

  /**
   * One query within connectTimeoutMs. A connection that breaks under it (a backend
   * terminated, a reset) is tried again until then: only a server that keeps not
   * answering, or refuses the login or the database, fails the start.
   */
  private async checkPostgres(): Promise<void> {
    const timeoutMs = this.options.connectTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    for (;;) {
      try {
        await Promise.race([
          this.pool.query('SELECT 1'),
          new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), Math.max(1, deadline - Date.now())))),
        ]);
        return;
      } catch (err) {
        const refusal = this.options.databaseUrl ? postgresRefusal(err, this.options.databaseUrl) : undefined;
        if (refusal) throw refusal;
        if (isConnectionError(err) && Date.now() + 50 < deadline) {
          await sleep(50);
          continue;
        }
        const url = this.options.databaseUrl ? redactUrl(this.options.databaseUrl) : 'the given pool';
        throw new TributaryError('TRIB_ERR_POSTGRES_UNAVAILABLE', [`cannot query ${url}: ${asError(err).message}`], { cause: err });
      } finally {
        clearTimeout(timer);
      }
    }
  }

  private onBatch(report: BatchReport): void {
    const d = report.details as unknown as StagingDetails | undefined;
    const r = d?.result;
    const c = this.counters;
    if (r?.fenced) {
      // Refused: the worker that now holds these orders counts them.
      this.onFenced({ worker: report.consumer, step: 'promote', epoch: r.fenced.epoch, current: r.fenced.current, items: report.size, batchId: d?.batchId });
      return;
    }
    const malformed = d?.malformed ?? 0;
    // Malformed items recorded now; one already in orders_rejected (the same item again) is a duplicate.
    const malformedNew = Math.min(malformed, r?.malformedRecorded ?? malformed);
    c.batches++;
    c.taken += report.size;
    c.malformed += malformed;
    c.duplicates += d?.duplicates ?? 0;
    c.promoted += r?.promoted ?? 0;
    c.pgDuplicates += (r?.duplicates ?? 0) + (malformed - malformedNew);
    for (const [reason, n] of Object.entries(r?.rejected ?? {}) as [RejectReason, number][]) c.rejected[reason] = (c.rejected[reason] ?? 0) + n;
    if (malformedNew > 0) c.rejected.malformed = (c.rejected.malformed ?? 0) + malformedNew;
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

  /** Staged rows dropped by fence() since the last 'recovered' event, per worker. */
  private readonly droppedByFence = new Map<string, number>();

  /**
   * A stale worker was fenced in Redis; before its list goes back to the queue: its
   * fence in Postgres (its later promotes are refused) and the rows it had staged dropped
   * (never promoted: its orders will be staged again by whoever takes them), under the
   * promote lock exclusively. Throws (the list stays; the next recovery tries again) when
   * Postgres does not answer.
   */
  private async fence(worker: string, epoch: number): Promise<void> {
    try {
      const dropped = await fenceWorker(this.pool, this.options.schema, { prefix: this.options.prefix, worker, epoch });
      this.droppedByFence.set(worker, (this.droppedByFence.get(worker) ?? 0) + dropped);
    } catch (err) {
      this.emit('retry', { server: 'postgres', step: 'fence stale worker', error: asError(err), attempt: 1 });
      throw err;
    }
  }

  private onFenced(e: Omit<OrdersPipelineEvents['fenced'], 'code'>): void {
    this.counters.fenced++;
    this.emit('fenced', { ...e, code: 'TRIB_ERR_ORDERS_FENCED' });
  }

  /** Dead workers' processing lists went back to the queue (each fenced first). */
  private onRecovered(result: RecoverResult): void {
    let stagingRowsDropped = 0;
    for (const worker of Object.keys(result.byWorker)) {
      stagingRowsDropped += this.droppedByFence.get(worker) ?? 0;
      this.droppedByFence.delete(worker);
    }
    this.counters.recovered += result.items;
    this.emit('recovered', { ...result, stagingRowsDropped });
  }
}
