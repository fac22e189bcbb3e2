/**
 * The events pipeline: a Redis stream's consumer group into the Postgres events table.
 *
 *   redis-stream source ──▶ validate-event ──▶ events table (COPY, statement fallback) ──▶ XACK
 *                                                    rejected ──▶ dead_letter_queue + <stream>:dlq
 *
 * `Engine` runs it from a TributaryConfig (what `tributary start` does) and adds what an
 * operator of the events table needs: migrations at start, trimming by TRIM_MAXLEN /
 * TRIM_MAX_AGE, batch counters published for `tributary monitor`, readiness and gauges.
 */
import { watchCommands } from '../redis/watchdog.js';
import type { TributaryConfig } from '../config/schema.js';
import type { DeadLetterStore, ServerName, Sink, Source, Stage } from '../core/contracts.js';
import { sleep } from '../core/backoff.js';
import { TypedEmitter } from '../core/emitter.js';
import { Runner, type BatchReport, type RunnerEvents, type RunnerStats } from '../core/runner.js';
import { probeStreamPipeline, type ProbeCheck, type StreamPipelineProbe } from '../observability/probe.js';
import { StatsPublisher } from '../observability/published-stats.js';
import { trimStream } from '../ops/retention.js';
import { parseDuration } from '../ops/time.js';
import { ensureEventsTable, migrate, recreateEventsTable } from '../postgres/migrate.js';
import { createPgPool, postgresRefusal, type PgPool } from '../postgres/pool.js';
import { createRedisConnection, destroyQuietly, isRedisAuthError, send, type RedisConnection } from '../redis/client.js';
import { PostgresDeadLetterStore } from '../sinks/dead-letters.js';
import { RedisStreamSource } from '../sources/redis-stream.js';
import { PartitionedStreamSource, type PartitionLeaseEvent, type PartitionReadEvent } from '../sources/partitioned-stream.js';
import { partitionDeadLetterKey, partitionStreamKeys } from '../redis/partitions.js';
import { EventsTableSink, PostgresEventsSink } from '../sinks/postgres-events.js';
import { validateEvents } from '../stages/validate-event.js';
import type { StreamEntry } from '../redis/commands.js';
import { eventsPipelineSpec } from '../pipeline-file/builtin.js';
import { isEventsLayout, planFor, type Plan } from '../pipeline-file/plan.js';
import type { PipelineSpec } from '../pipeline-file/spec.js';

/** Every event the engine emits: the runner's, and trimming. */
export interface EngineEvents extends RunnerEvents {
  /** The engine trimmed the stream (TRIM_MAXLEN / TRIM_MAX_AGE), never past what a group still needs. */
  trimmed: { deleted: number; cut: string | null; limitedBy: string };
  /** The events table had been dropped or renamed while the engine ran: it was created again (migrations on). */
  tableRecreated: { schema: string; table: string };
  /** The group was gone (Redis restarted without persistence, the stream deleted): it was created again. */
  groupRecreated: { key: string; group: string; startId: string };
  /** PARTITIONS > 1: a partition's lease was acquired (with its new fencing token), released, or lost (fenced). */
  lease: PartitionLeaseEvent;
  /** PARTITIONS > 1: a read under a lease brought entries (its partition, token and entry IDs). */
  partitionRead: PartitionReadEvent;
}

export type { PartitionLeaseEvent, PartitionReadEvent };

export type EngineStats = RunnerStats;

export type { ProbeCheck };

export type EngineProbe = StreamPipelineProbe;

export interface EngineOptions {
  /** Run the migrations on start (default true). */
  migrate?: boolean;
  /** Share an existing pool; it is not closed by the engine. */
  pool?: PgPool;
  /** Backoff of retried operations (for tests). */
  retry?: { baseMs?: number; maxMs?: number };
}

const FORWARDED = [
  'started',
  'deadLetter',
  'deadLetterDeferred',
  'reclaimed',
  'deleted',
  'consumersRemoved',
  'serverDown',
  'serverUp',
  'retry',
  'drained',
  'stopping',
  'stopped',
  'error',
] as const satisfies readonly (keyof RunnerEvents)[];

/**
 * The event engine: NUM_WORKERS consumers of one group and a reclaim loop, on the one
 * runner. Every process running an Engine on the same stream and group shares the work.
 * With PARTITIONS > 1 (config.partitions) the stream is N keys: one worker per partition,
 * reading it only while this process holds its lease (sources/partitioned-stream.ts), the
 * processes sharing the partitions between them.
 *
 *   const engine = new Engine(resolveConfig());
 *   engine.on('batch', (b) => ...);
 *   await engine.start();
 *   ...
 *   await engine.close();
 */
export class Engine extends TypedEmitter<EngineEvents> {
  readonly config: TributaryConfig;
  /** The pipeline it runs: the shipped events file (src/pipeline-file/builtin/events.yaml) with the settings over it. */
  readonly spec: PipelineSpec;
  readonly runner: Runner;
  private readonly options: EngineOptions;
  private readonly pool: PgPool;
  private readonly commands: RedisConnection;
  private readonly trimStop = new AbortController();
  private trimming: Promise<void> | undefined;
  private publisher: StatsPublisher | undefined;
  private closing: Promise<void> | undefined;
  /** PARTITIONS > 1: the source holding the leases (undefined for the one stream key). */
  readonly partitioned: PartitionedStreamSource | undefined;

  constructor(config: TributaryConfig, options: EngineOptions = {}) {
    super();
    const c = config;
    this.config = config;
    this.spec = eventsPipelineSpec(config);
    this.options = options;
    this.pool =
      options.pool ??
      createPgPool(c.databaseUrl, {
        // Partitioned: one writer per owned partition.
        max: (c.partitions > 1 ? Math.min(c.partitions, Math.max(c.numWorkers, 16)) : c.numWorkers) + 2,
        statementTimeoutMs: c.writeTimeoutMs,
        queryTimeoutMs: c.pgQueryTimeoutMs,
        applicationName: `tributary:${c.consumerName}`,
        onError: (err) => this.runner.reportFailure('postgres', err),
      });
    this.commands = createRedisConnection(c.redisUrl, {
      name: `tributary:${c.consumerName}:commands`,
      // A refused login is not an outage: start() fails with it (TRIB_ERR_REDIS_AUTH).
      onError: (err) => {
        if (!isRedisAuthError(err)) this.runner.reportFailure('redis', err);
      },
    });
    const pool = this.pool;
    let source: Source<StreamEntry>;
    let plan: Plan;
    let deadLetters: DeadLetterStore;
    let consumers: string[];
    if (c.partitions > 1) {
      // N stream keys, each read by one process at a time under a lease, by one worker (in order).
      const partitioned = new PartitionedStreamSource({
        redisUrl: c.redisUrl,
        commands: this.commands,
        key: c.streamKey,
        group: c.group,
        partitions: c.partitions,
        startId: c.groupStartId,
        owner: c.consumerName,
        leaseMs: c.partitionLeaseMs,
        commandTimeoutMs: c.redisCommandTimeoutMs,
        onLease: (e) => this.emit('lease', e),
        onRead: (e) => this.emit('partitionRead', e),
        onGroupRecreated: (info) => this.emit('groupRecreated', info),
        onError: (err) => this.emit('retry', { server: 'redis', error: err, step: 'partition leases', attempt: 1 }),
      });
      this.partitioned = partitioned;
      source = partitioned;
      consumers = partitioned.consumers;
      ({ plan, deadLetters } = partitionedParts(this.spec, pool, this.commands, partitioned, c));
    } else {
      this.partitioned = undefined;
      source = new RedisStreamSource({
        redisUrl: c.redisUrl,
        commands: this.commands,
        key: c.streamKey,
        group: c.group,
        startId: c.groupStartId,
        onGroupRecreated: (info) => this.emit('groupRecreated', info),
        dlqStream: c.dlqStream,
        commandTimeoutMs: c.redisCommandTimeoutMs,
      });
      // The shipped events pipeline file with the settings over it: the raw binary COPY path.
      plan = planFor(this.spec, pool);
      deadLetters = new PostgresDeadLetterStore(pool, this.commands, { streamKey: c.streamKey, group: c.group, dlqStream: c.dlqStream }, c.pgSchema);
      consumers = Array.from({ length: c.numWorkers }, (_, i) => `${c.consumerName}-${i + 1}`);
    }
    watchCommands(this.commands, c.redisCommandTimeoutMs, (err) => this.runner.reportFailure('redis', err));
    this.runner = new Runner({
      source,
      stages: plan.stages,
      sink: plan.sink,
      deadLetters,
      consumers,
      batch: { maxCount: c.batchSize, maxBytes: c.batchMaxBytes, periodMs: c.batchTimeoutMs },
      readCount: c.xreadCount,
      blockMs: c.xreadBlockMs,
      // Partitioned: a worker per partition, those of partitions held elsewhere waiting with a
      // read's worth reserved; room for one read each on top (MAX_IN_FLIGHT_BYTES still bounds memory).
      maxInFlight: c.partitions > 1 ? Math.max(c.maxInFlight, c.partitions * Math.min(c.xreadCount, c.batchSize) + c.batchSize) : c.maxInFlight,
      maxInFlightBytes: c.maxInFlightBytes,
      maxEntryBytes: c.maxEntryBytes,
      maxDeliveries: c.maxDeliveries,
      // Partitioned: no reclaim by idle time; a partition's next owner takes its pending list as a whole.
      reclaim: c.partitions > 1 ? undefined : { consumer: `${c.consumerName}-reclaim`, minIdleMs: c.claimIdleMs, intervalMs: c.claimIntervalMs },
      retry: options.retry,
      // A dropped or renamed events table (or schema) is created again, as the migrations would
      // at start: the entries held meanwhile are then written (with migrations off, they wait).
      repair:
        options.migrate === false
          ? undefined
          : async (fault) => {
              if (fault.code !== 'TRIB_ERR_POSTGRES_TABLE_MISSING') return;
              if (await recreateEventsTable(pool, c.pgSchema, c.eventsTable)) this.emit('tableRecreated', { schema: c.pgSchema, table: c.eventsTable });
            },
      prepare: [
        {
          name: options.migrate === false ? 'connect' : 'migrate',
          server: 'postgres',
          run: async () => {
            try {
              if (options.migrate === false) {
                await pool.query('SELECT 1');
              } else {
                await migrate(pool, c.pgSchema);
                await ensureEventsTable(pool, c.pgSchema, c.eventsTable);
              }
              // One connection per worker now, not at each worker's first batch: a
              // connection's start-up (TCP, the session's SET) is not in the first events'
              // latency.
              await warmPool(pool, c.partitions > 1 ? Math.min(c.partitions, 16) : c.numWorkers);
            } catch (err) {
              // A database, role or password Postgres refuses is a wrong setting: start() fails
              // with it at once. An outage (refused, unreachable) is retried, as before.
              throw postgresRefusal(err, c.databaseUrl) ?? err;
            }
          },
        },
      ],
    });
    for (const name of FORWARDED) this.forward(name);
    if (this.partitioned) {
      // A partition's worker stopped for good leaves its partition unread (the others' shares
      // do not include it): the whole engine stops, with that error (runner.failure), so its
      // partitions move to the other processes and a supervisor sees the failure.
      this.runner.on('error', () => {
        if (this.runner.failure) void this.runner.close();
      });
    }
    this.runner.on('batch', (report: BatchReport) => {
      this.publisher?.record(report);
      this.emit('batch', report);
    });
  }

  private forward<K extends (typeof FORWARDED)[number]>(name: K): void {
    this.runner.on(name, (arg: RunnerEvents[K]) => this.emit(name, arg as EngineEvents[K]));
  }

  get running(): boolean {
    return this.runner.running;
  }

  /** PARTITIONS > 1: the partitions this process holds the lease of now, with their fencing tokens (empty otherwise). */
  ownedPartitions(): Array<{ partition: number; token: number }> {
    return this.partitioned?.owned() ?? [];
  }

  /** PARTITIONS: 1 for the one stream key. */
  get partitionCount(): number {
    return this.config.partitions;
  }

  /** The stream keys read: STREAM_KEY, or its partitions' keys. */
  get streamKeys(): string[] {
    return partitionStreamKeys(this.config.streamKey, this.config.partitions);
  }

  /** Labels of this pipeline's metrics. */
  get metricsLabels(): { pipeline: string; stream: string; group: string } {
    return { pipeline: 'events', stream: this.config.streamKey, group: this.config.group };
  }

  onTrimmed(listener: (t: EngineEvents['trimmed']) => void): void {
    this.on('trimmed', listener);
  }

  stats(): EngineStats {
    return this.runner.stats();
  }

  /** Resolves when every worker and the reclaim loop have exited. */
  get done(): Promise<void> {
    return this.runner.done;
  }

  /**
   * Connects (waiting out an outage with backoff), creates the group, migrates and
   * starts the workers and the reclaim loop. Resolves once they run — or, when close()
   * is called meanwhile, as soon as start-up gives up, having started nothing.
   */
  async start(): Promise<void> {
    try {
      await this.runner.start();
    } catch (err) {
      // A start-up step failed for good (a migration, say): leave nothing open behind.
      await this.release();
      throw err;
    }
    if (!this.runner.running) return;
    const c = this.config;
    if (c.trimMaxLen !== undefined || c.trimMaxAge !== undefined) this.trimming = this.trimLoop();
    this.publisher = new StatsPublisher(this.commands, c.streamKey, c.group);
    this.publisher.start();
  }

  /**
   * Graceful stop: stop reading, finish and acknowledge in-flight batches, close.
   * Idempotent: a second call returns the same promise. `force` abandons in-flight
   * batches without acknowledging them (they stay pending and are reclaimed later).
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    const runnerClosed = this.runner.close(options);
    this.closing ??= (async () => {
      this.trimStop.abort();
      await runnerClosed;
      await this.trimming;
      await this.publisher?.stop();
      await this.release();
    })();
    return this.closing;
  }

  private async release(): Promise<void> {
    destroyQuietly(this.commands);
    if (!this.options.pool) await this.pool.end().catch(() => {});
  }

  /**
   * Readiness: Redis and Postgres answer and the group exists. Never throws; each
   * check says `ok` or why not.
   */
  probe(): Promise<EngineProbe> {
    const c = this.config;
    // Partitioned: every partition's group is created at start; the first one stands for them.
    return probeStreamPipeline({ what: 'engine', runner: this.runner, commands: this.commands, pool: this.pool, stream: this.streamKeys[0]!, group: c.group });
  }

  /** Stream length, the group's pending count and lag (null where Redis does not report it); summed over the partitions. */
  async gauges(): Promise<{ streamLength: number; pending: number; lag: number | null }> {
    const commands = this.commands;
    if (!commands.isReady) throw new Error('engine is not connected to Redis');
    const each = await Promise.all(this.streamKeys.map((key) => this.streamGauges(key)));
    return each.reduce((a, b) => ({
      streamLength: a.streamLength + b.streamLength,
      pending: a.pending + b.pending,
      lag: a.lag === null || b.lag === null ? null : a.lag + b.lag,
    }));
  }

  private async streamGauges(key: string): Promise<{ streamLength: number; pending: number; lag: number | null }> {
    const commands = this.commands;
    const c = this.config;
    const [length, groups] = await Promise.all([send(commands, ['XLEN', key]), send(commands, ['XINFO', 'GROUPS', key])]);
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

  /**
   * Trims the stream every TRIM_INTERVAL_MS to TRIM_MAXLEN / TRIM_MAX_AGE, never past an
   * entry some group has not received or acknowledged (see src/ops/retention.ts). A
   * failed or contended trim is simply tried again at the next interval.
   */
  private async trimLoop(): Promise<void> {
    const c = this.config;
    const stop = this.trimStop.signal;
    // Never while this engine's group is missing (destroyed, or lost with a Redis restart,
    // and not yet recreated by a worker): what was produced meanwhile is guarded by no
    // group and would be cut unread. The trim fails with TRIB_ERR_GROUP_NOT_FOUND (a
    // 'retry' event) and is tried again at the next interval.
    const options = {
      maxLen: c.trimMaxLen,
      maxAgeMs: c.trimMaxAge === undefined ? undefined : parseDuration(c.trimMaxAge, 'TRIM_MAX_AGE'),
      requireGroups: [c.group],
    };
    while (!stop.aborted) {
      await sleep(c.trimIntervalMs, stop);
      if (stop.aborted) return;
      // Partitioned: each process trims the partitions it holds.
      const keys = this.partitioned ? this.partitioned.owned().map((o) => this.partitioned!.keyOf(o.partition)) : [c.streamKey];
      for (const key of keys) {
        try {
          const result = await trimStream(this.commands, key, options);
          if (result.deleted > 0) this.emit('trimmed', { deleted: result.deleted, cut: result.cut, limitedBy: result.limitedBy });
        } catch (err) {
          this.emit('retry', { server: 'redis' as ServerName, error: err as Error, step: 'trim', attempt: 1 });
        }
      }
    }
  }
}

/**
 * The stages, sink and dead-letter store of a partitioned stream: each partition's own
 * (the default event_id `<partition key>/<entry ID>`, dead letters keyed by the partition's
 * key: entry IDs repeat across partitions), picked by the worker's consumer. The events
 * table's writer is one for all.
 */
function partitionedParts(
  spec: PipelineSpec,
  pool: PgPool,
  commands: RedisConnection,
  source: PartitionedStreamSource,
  c: TributaryConfig,
): { plan: Plan; deadLetters: DeadLetterStore } {
  const keys = source.consumers.map((_, i) => source.keyOf(i));
  let plans: Plan[];
  if (isEventsLayout(spec)) {
    const table = new PostgresEventsSink(pool, spec.sink.schema, spec.sink.table);
    plans = keys.map((key) => ({ stages: [validateEvents(key)], sink: new EventsTableSink(table, key), path: 'events' as const }));
  } else {
    plans = keys.map((key) => planFor({ ...spec, source: { ...spec.source, stream: key } }, pool));
  }
  const of = (consumer: string): number => {
    const i = source.partitionOf(consumer);
    if (i === undefined) throw new Error(`${consumer} reads no partition`);
    return i;
  };
  const first = plans[0]!;
  const stages: Stage<any, any>[] = first.stages.map((st, j) => ({
    name: st.name,
    server: st.server,
    retryable: st.retryable,
    run: (batch, ctx) => plans[of(ctx.consumer)]!.stages[j]!.run(batch, ctx),
    ...(st.afterCommit ? { afterCommit: (kept: any[], ctx: any) => plans[of(ctx.consumer)]!.stages[j]!.afterCommit!(kept, ctx) } : {}),
  }));
  const sink: Sink<any> = {
    name: first.sink.name,
    server: first.sink.server,
    writeEmpty: first.sink.writeEmpty,
    splittable: first.sink.splittable,
    write: (batch, ctx) => plans[of(ctx.consumer)]!.sink.write(batch, ctx),
    close: async () => {
      await Promise.all(plans.map((p) => p.sink.close?.()));
    },
  };
  const stores = keys.map(
    (key, i) => new PostgresDeadLetterStore(pool, commands, { streamKey: key, group: c.group, dlqStream: partitionDeadLetterKey(c.streamKey, c.dlqStream, i, c.partitions) }, c.pgSchema),
  );
  const deadLetters: DeadLetterStore = {
    server: 'postgres',
    record: (letters, describe, consumer) => stores[of(consumer)]!.record(letters, describe),
  };
  return { plan: { stages, sink, path: first.path }, deadLetters };
}

/** Opens `n` of the pool's connections (at most its size) and gives them back idle. */
async function warmPool(pool: PgPool, n: number): Promise<void> {
  const clients = await Promise.all(Array.from({ length: Math.max(1, Math.min(n, pool.options.max ?? n)) }, () => pool.connect()));
  for (const client of clients) client.release();
}
