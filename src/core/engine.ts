import type { TributaryConfig } from '../config/schema.js';
import { TributaryError } from '../errors.js';
import { ensureEventsTable, migrate } from '../postgres/migrate.js';
import { trimStream } from '../ops/retention.js';
import { parseDuration } from '../ops/time.js';
import { StatsPublisher } from '../observability/published-stats.js';
import { createPgPool, type PgPool } from '../postgres/pool.js';
import { createRedisConnection, destroyQuietly, send, type RedisConnection } from '../redis/client.js';
import { PostgresEventsSink } from '../sinks/postgres-events.js';
import { RedisStreamSource } from '../sources/redis-stream.js';
import { backoffDelay, sleep } from './backoff.js';
import { BatchPolicy } from './batch-policy.js';
import { DeadLetterWriter, type DeadLetter } from './dead-letter.js';
import { TypedEmitter } from './emitter.js';
import { InFlight } from './in-flight.js';
import { BatchProcessor, ForcedStop, ServerHealth, splitByDeliveries, type BatchReport, type ServerName } from './processor.js';
import { drainOwnPending, Worker, type WorkerDeps } from './worker.js';

/** Every event the engine emits, with its argument. */
export interface EngineEvents {
  /** All workers are reading. */
  started: { consumers: string[] };
  /** A batch was committed and acknowledged. */
  batch: BatchReport;
  /** An entry went to the dead letters. */
  deadLetter: { id: string; code: string; error: string; deliveries: number };
  /** Entries idle on another consumer were claimed by this process. */
  reclaimed: { count: number; consumer: string };
  /** Pending entries whose stream entry had been deleted (trimmed) were cleared. */
  deleted: { consumer: string; ids: string[] };
  /** A server became unreachable (reported once per outage). */
  serverDown: { server: ServerName; error: Error };
  /** A server is reachable again. */
  serverUp: { server: ServerName; downMs: number };
  /** The engine trimmed the stream (TRIM_MAXLEN / TRIM_MAX_AGE), never past what a group still needs. */
  trimmed: { deleted: number; cut: string | null; limitedBy: string };
  /** An operation failed and will be retried (every attempt; serverDown reports only the first). */
  retry: { server: ServerName; error: Error };
  /** Graceful stop begun. */
  stopping: { force: boolean };
  stopped: { stats: EngineStats };
  error: Error;
}

export interface EngineStats {
  read: number;
  written: number;
  duplicates: number;
  deadLettered: number;
  reclaimed: number;
  batches: number;
  /** Failed attempts that were retried (any server). */
  retries: number;
  inFlight: number;
  flushReasons: Record<string, number>;
}

export interface ProbeCheck {
  ok: boolean;
  error?: string;
}

export interface EngineProbe {
  ready: boolean;
  redis: ProbeCheck;
  postgres: ProbeCheck;
  group: ProbeCheck;
}

export interface EngineOptions {
  /** Run the migrations on start (default true). */
  migrate?: boolean;
  /** Share an existing pool; it is not closed by the engine. */
  pool?: PgPool;
  /** Backoff of retried operations (for tests). */
  retry?: { baseMs?: number; maxMs?: number };
}

/**
 * The event engine: NUM_WORKERS consumers of one group, a reclaim loop, a shared
 * batch processor. Every process running an Engine on the same stream and group
 * shares the work.
 *
 *   const engine = new Engine(resolveConfig());
 *   engine.on('batch', (b) => ...);
 *   await engine.start();
 *   ...
 *   await engine.close();
 */
export class Engine extends TypedEmitter<EngineEvents> {
  readonly config: TributaryConfig;
  private readonly options: EngineOptions;
  private readonly forceController = new AbortController();
  private readonly stopController = new AbortController();
  private readonly inFlight: InFlight;
  private readonly health: ServerHealth;
  private pool: PgPool | undefined;
  private commands: RedisConnection | undefined;
  private workers: Worker[] = [];
  private loops: Promise<void>[] = [];
  private closing: Promise<void> | undefined;
  private publisher: StatsPublisher | undefined;
  private state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  private readonly counters: EngineStats = {
    read: 0,
    written: 0,
    duplicates: 0,
    deadLettered: 0,
    reclaimed: 0,
    batches: 0,
    retries: 0,
    inFlight: 0,
    flushReasons: {},
  };

  constructor(config: TributaryConfig, options: EngineOptions = {}) {
    super();
    this.config = config;
    this.options = options;
    this.inFlight = new InFlight(config.maxInFlight);
    this.health = new ServerHealth(
      ({ server, up, error, downMs }) => {
        if (up) this.emit('serverUp', { server, downMs: downMs ?? 0 });
        else this.emit('serverDown', { server, error: error! });
      },
      (server, error) => {
        this.counters.retries++;
        this.emit('retry', { server, error });
      },
    );
  }

  get running(): boolean {
    return this.state === 'running';
  }

  stats(): EngineStats {
    return { ...this.counters, inFlight: this.inFlight.held, flushReasons: { ...this.counters.flushReasons } };
  }

  /** Resolves when every worker and the reclaim loop have exited. */
  get done(): Promise<void> {
    return Promise.all(this.loops).then(() => {});
  }

  /**
   * Connects (waiting out an outage with backoff), migrates, creates the group and
   * starts the workers and the reclaim loop. Resolves once they run — or, when close()
   * is called meanwhile, as soon as start-up gives up, having started nothing.
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new TributaryError('TRIB_ERR_ENGINE_CLOSED');
    this.state = 'starting';
    const c = this.config;
    this.pool =
      this.options.pool ??
      createPgPool(c.databaseUrl, {
        max: c.numWorkers + 2,
        statementTimeoutMs: c.writeTimeoutMs,
        applicationName: `tributary:${c.consumerName}`,
        onError: (err) => this.health.failed('postgres', err),
      });
    this.commands = createRedisConnection(c.redisUrl, {
      name: `tributary:${c.consumerName}:commands`,
      onError: (err) => this.health.failed('redis', err),
    });
    const commands = this.commands;
    const pool = this.pool;
    const source = new RedisStreamSource(commands, { key: c.streamKey, group: c.group });

    let ready: boolean;
    try {
      ready = await this.prepare(commands, pool, source);
    } catch (err) {
      // A start-up step failed for good (a migration, say): leave nothing open behind.
      destroyQuietly(commands);
      if (!this.options.pool) await pool.end().catch(() => {});
      this.state = 'stopped';
      throw err;
    }

    if (!ready || this.closing) {
      // close() was called while we were still connecting: start nothing.
      destroyQuietly(commands);
      if (!this.options.pool) await pool.end().catch(() => {});
      return;
    }

    const processor = new BatchProcessor({
      source,
      sink: new PostgresEventsSink(pool, c.pgSchema, c.eventsTable),
      deadLetters: new DeadLetterWriter(pool, commands, { streamKey: c.streamKey, group: c.group, dlqStream: c.dlqStream }, c.pgSchema),
      health: this.health,
      force: this.forceController.signal,
      claimIdleMs: c.claimIdleMs,
      retry: this.options.retry,
      onDeadLetter: (l) => this.onDeadLetter(l),
    });
    const deps: WorkerDeps = {
      redisUrl: c.redisUrl,
      source,
      commands,
      processor,
      inFlight: this.inFlight,
      health: this.health,
      policy: new BatchPolicy({ maxCount: c.batchSize, maxBytes: c.batchMaxBytes, periodMs: c.batchTimeoutMs }),
      readCount: c.xreadCount,
      stop: this.stopController.signal,
      maxDeliveries: c.maxDeliveries,
      blockMs: c.xreadBlockMs,
      force: this.forceController.signal,
      onBatch: (report) => this.onBatch(report),
      onDeleted: (consumer, ids) => this.emit('deleted', { consumer, ids }),
      onRead: (n) => (this.counters.read += n),
    };
    this.workers = Array.from({ length: c.numWorkers }, (_, i) => new Worker(`${c.consumerName}-${i + 1}`, deps));
    this.loops = [
      ...this.workers.map((w) => w.run().catch((err) => this.emit('error', err))),
      this.reclaimLoop(deps, processor, source).catch((err) => {
        if (!(err instanceof ForcedStop)) this.emit('error', err);
      }),
    ];
    if (c.trimMaxLen !== undefined || c.trimMaxAge !== undefined) this.loops.push(this.trimLoop(commands));
    this.publisher = new StatsPublisher(commands, c.streamKey, c.group);
    this.publisher.start();
    this.state = 'running';
    this.emit('started', { consumers: this.workers.map((w) => w.consumer) });
  }

  /**
   * Graceful stop: stop reading, finish and acknowledge in-flight batches, close.
   * Idempotent: a second call returns the same promise. `force` abandons in-flight
   * batches without acknowledging them (they stay pending and are reclaimed later).
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    if (options.force) this.forceController.abort();
    if (this.closing) return this.closing;
    this.emit('stopping', { force: options.force === true });
    this.state = 'stopping';
    this.stopController.abort();
    this.closing = (async () => {
      await Promise.resolve(); // let a start() in progress see `closing`
      for (const w of this.workers) w.stop();
      await this.done;
      await this.publisher?.stop();
      destroyQuietly(this.commands);
      if (!this.options.pool) await this.pool?.end().catch(() => {});
      this.state = 'stopped';
      this.emit('stopped', { stats: this.stats() });
    })();
    return this.closing;
  }

  /** Connect, migrate, create the group; false when a stop came first. */
  private async prepare(commands: RedisConnection, pool: PgPool, source: RedisStreamSource): Promise<boolean> {
    const c = this.config;
    return (
      (await this.untilReady('redis', () => commands.connect().then(() => {}))) &&
      (this.options.migrate === false ||
        (await this.untilReady('postgres', async () => {
          await migrate(pool, c.pgSchema);
          await ensureEventsTable(pool, c.pgSchema, c.eventsTable);
        }))) &&
      (await this.untilReady('redis', () => source.ensureGroup(c.groupStartId).then(() => {})))
    );
  }

  /**
   * Readiness: Redis and Postgres answer and the group exists. Never throws; each
   * check says `ok` or why not.
   */
  async probe(): Promise<EngineProbe> {
    const c = this.config;
    const check = async (fn: () => Promise<unknown>): Promise<ProbeCheck> => {
      try {
        await fn();
        return { ok: true };
      } catch (err) {
        return { ok: false, error: (err as Error).message };
      }
    };
    const commands = this.commands;
    const pool = this.pool;
    if (!commands?.isReady || !pool) {
      const error = this.state === 'starting' ? 'engine is starting' : `engine is ${this.state}`;
      return { ready: false, redis: { ok: false, error }, postgres: { ok: false, error }, group: { ok: false, error } };
    }
    const [redis, postgres, group] = await Promise.all([
      check(() => send(commands, ['PING'])),
      check(() => pool.query('SELECT 1')),
      check(async () => {
        const groups = await send(commands, ['XINFO', 'GROUPS', c.streamKey]);
        const names = (Array.isArray(groups) ? groups : []).map((g) => (Array.isArray(g) ? String(g[g.indexOf('name') + 1]) : ''));
        if (!names.includes(c.group)) throw new Error(`group ${c.group} does not exist on ${c.streamKey}`);
      }),
    ]);
    return { ready: this.state === 'running' && redis.ok && postgres.ok && group.ok, redis, postgres, group };
  }

  /** Stream length, the group's pending count and lag (null where Redis does not report it). */
  async gauges(): Promise<{ streamLength: number; pending: number; lag: number | null }> {
    const commands = this.commands;
    if (!commands?.isReady) throw new Error('engine is not connected to Redis');
    const c = this.config;
    const [length, groups] = await Promise.all([send(commands, ['XLEN', c.streamKey]), send(commands, ['XINFO', 'GROUPS', c.streamKey])]);
    const info = (Array.isArray(groups) ? groups : [])
      .filter(Array.isArray)
      .map((g) => Object.fromEntries(g.flatMap((v, i) => (i % 2 === 0 ? [[String(v), g[i + 1]]] : []))))
      .find((g) => g.name === c.group);
    const lag = info?.lag;
    return {
      streamLength: Number(length),
      pending: Number(info?.pending ?? 0),
      lag: lag === null || lag === undefined ? null : Number(lag),
    };
  }

  private onBatch(report: BatchReport): void {
    const c = this.counters;
    c.batches++;
    c.written += report.inserted;
    c.duplicates += report.duplicates;
    c.flushReasons[report.reason] = (c.flushReasons[report.reason] ?? 0) + 1;
    this.publisher?.record(report);
    this.emit('batch', report);
  }

  private onDeadLetter(letter: DeadLetter): void {
    this.counters.deadLettered++;
    this.emit('deadLetter', { id: letter.entry.id, code: letter.code, error: letter.error, deliveries: letter.deliveries });
  }

  /**
   * Runs a start-up step until it succeeds (true), waiting out outages with backoff,
   * or until a stop is asked for (false): a stop during start-up is not an error.
   */
  private async untilReady(server: ServerName, fn: () => Promise<void>): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (this.forceController.signal.aborted || this.stopController.signal.aborted) return false;
      try {
        await fn();
        this.health.ok(server);
        return true;
      } catch (err) {
        if (err instanceof TributaryError && !err.retryable) throw err;
        this.health.failed(server, err as Error);
        await sleep(backoffDelay(attempt, { baseMs: 200, maxMs: 5000, ...this.options.retry }), this.stopController.signal);
      }
    }
  }

  /**
   * Trims the stream every TRIM_INTERVAL_MS to TRIM_MAXLEN / TRIM_MAX_AGE, never past an
   * entry some group has not received or acknowledged (see src/ops/retention.ts). A
   * failed or contended trim is simply tried again at the next interval.
   */
  private async trimLoop(commands: RedisConnection): Promise<void> {
    const c = this.config;
    const options = { maxLen: c.trimMaxLen, maxAgeMs: c.trimMaxAge === undefined ? undefined : parseDuration(c.trimMaxAge, 'TRIM_MAX_AGE') };
    while (!this.stopController.signal.aborted) {
      await sleep(c.trimIntervalMs, this.stopController.signal);
      if (this.stopController.signal.aborted) return;
      try {
        const result = await trimStream(commands, c.streamKey, options);
        if (result.deleted > 0) this.emit('trimmed', { deleted: result.deleted, cut: result.cut, limitedBy: result.limitedBy });
      } catch (err) {
        this.emit('retry', { server: 'redis', error: err as Error });
      }
    }
  }

  /**
   * Reclaims entries left idle by stalled or dead consumers (XAUTOCLAIM), first
   * finishing whatever this process's reclaim consumer itself left pending. An entry
   * delivered more than MAX_DELIVERIES times is dead-lettered instead of retried.
   */
  private async reclaimLoop(deps: WorkerDeps, processor: BatchProcessor, source: RedisStreamSource): Promise<void> {
    const c = this.config;
    const consumer = `${c.consumerName}-reclaim`;
    const stopping = () => this.stopController.signal.aborted;
    await drainOwnPending(deps, consumer, c.batchSize, stopping);
    while (!stopping()) {
      let cursor = '0-0';
      do {
        const granted = await this.inFlight.acquire(c.batchSize, this.forceController.signal);
        let claimed;
        try {
          claimed = await processor.retry('redis', () => source.autoclaim(consumer, c.claimIdleMs, cursor, granted), {
            giveUpOn: this.stopController.signal,
          });
        } catch (err) {
          this.inFlight.received(granted, 0);
          throw err;
        }
        this.inFlight.received(granted, claimed.entries.length);
        try {
          cursor = claimed.cursor;
          if (claimed.deletedIds.length > 0) this.emit('deleted', { consumer, ids: claimed.deletedIds });
          if (claimed.entries.length > 0) {
            const ids = claimed.entries.map((e) => e.id);
            // Claimed and held now: if a stop comes, they stay pending on this consumer and
            // the next start finishes them.
            const deliveries = await processor.retry('redis', () => source.deliveries(consumer, ids[0]!, ids.at(-1)!, c.batchSize * 2), {
              giveUpOn: this.stopController.signal,
            });
            const { keep, dead } = splitByDeliveries(claimed.entries, deliveries, c.maxDeliveries);
            this.counters.reclaimed += claimed.entries.length;
            this.emit('reclaimed', { count: claimed.entries.length, consumer });
            this.onBatch(await processor.process(keep, { consumer, reason: 'reclaim', deliveries, deadLetters: dead }));
          }
          if (claimed.nilCount > 0) {
            // Redis 6.2 keeps deleted entries pending and replies nil without their IDs:
            // the own-pending drain finds them (XRANGE is empty) and clears them.
            await drainOwnPending(deps, consumer, c.batchSize, stopping);
          }
        } finally {
          this.inFlight.release(claimed.entries.length);
        }
      } while (cursor !== '0-0' && !stopping());
      await sleep(c.claimIntervalMs, this.stopController.signal);
    }
  }
}
