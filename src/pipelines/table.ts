/**
 * A pipeline file's pipeline: a Redis stream's consumer group into the user's own table,
 * on the one runner.
 *
 *   redis-stream source ──▶ map (contract, filter, typed columns) ──▶ table (insert | upsert | append) ──▶ XACK
 *                                    rejected ──▶ dead_letter_queue + the pipeline's dead-letter stream
 *
 *   const p = new TablePipeline(loadPipelineFile('page-views.yaml'), { redisUrl, databaseUrl });
 *   await p.start();
 *   ...
 *   await p.close();
 */
import type { ServerName } from '../core/contracts.js';
import { TypedEmitter } from '../core/emitter.js';
import { Runner } from '../core/runner.js';
import { probeStreamPipeline, type StreamPipelineProbe } from '../observability/probe.js';
import { planFor } from '../pipeline-file/plan.js';
import type { PipelineSpec } from '../pipeline-file/spec.js';
import { migrate } from '../postgres/migrate.js';
import { createPgPool, postgresRefusal, type PgPool } from '../postgres/pool.js';
import { createRedisConnection, destroyQuietly, isRedisAuthError, type RedisConnection } from '../redis/client.js';
import { clusterDeadLetterStream, isClusterUrl } from '../redis/cluster.js';
import type { StreamEntry } from '../redis/commands.js';
import { PostgresDeadLetterStore } from '../sinks/dead-letters.js';
import { ensureTable } from '../sinks/postgres-table.js';
import { RedisStreamSource } from '../sources/redis-stream.js';

export interface TablePipelineOptions {
  redisUrl: string;
  databaseUrl: string;
  /** Consumer names are `<consumer>-<n>` (default: the pipeline's name, the host and the pid). */
  consumer: string;
  /** Schema of the dead_letter_queue table (default public). */
  deadLetterSchema?: string;
  /** Messages held per process (default 4 batches per worker). */
  maxInFlight?: number;
  /** Bytes held per process at which reads wait (default 256 MiB: MAX_IN_FLIGHT_BYTES). */
  maxInFlightBytes?: number;
  /** A larger entry is dead-lettered unprocessed (default 64 MiB: MAX_ENTRY_BYTES). */
  maxEntryBytes?: number;
  /** How long an idle read waits, ms (default 5000). */
  blockMs?: number;
  /** A message idle this long on a consumer that stopped is taken over (default 60 s). */
  claimIdleMs?: number;
  claimIntervalMs?: number;
  /** statement_timeout of the pipeline's Postgres sessions, ms (default 30,000). */
  writeTimeoutMs?: number;
  /** Backoff of retried operations (for tests). */
  retry?: { baseMs?: number; maxMs?: number };
}

export interface TablePipelineEvents {
  /** The table (or the dead-letter table) was missing mid-run and create: true made it again. */
  tableRecreated: { table: string };
  error: Error;
}

/** Readiness of a pipeline file's pipeline (see TablePipeline.probe). */
export type TablePipelineProbe = StreamPipelineProbe;

export class TablePipeline extends TypedEmitter<TablePipelineEvents> {
  readonly runner: Runner<StreamEntry>;
  readonly spec: PipelineSpec;
  /** 'events': the events table's layout, written by one binary COPY of the bytes Redis sent; 'table': mapped columns. */
  readonly writePath: 'events' | 'table';
  private readonly pool: PgPool;
  private readonly commands: RedisConnection;
  private closing: Promise<void> | undefined;

  constructor(spec: PipelineSpec, options: TablePipelineOptions) {
    super();
    // On a Redis Cluster the dead-letter stream must share the source stream's slot: the
    // default <name>:dead becomes {<stream>}:dead; one set in another slot is refused.
    if (isClusterUrl(options.redisUrl)) {
      spec = { ...spec, deadLetters: { stream: clusterDeadLetterStream(spec.source.stream, spec.deadLetters.stream, `${spec.name}:dead`) } };
    }
    this.spec = spec;
    const report = (server: ServerName) => (err: Error) => this.runner.reportFailure(server, err);
    this.pool = createPgPool(options.databaseUrl, {
      max: spec.workers + 2,
      statementTimeoutMs: options.writeTimeoutMs ?? 30_000,
      applicationName: `tributary:${spec.name}`,
      onError: report('postgres'),
    });
    this.commands = createRedisConnection(options.redisUrl, {
      name: `tributary:${spec.name}:commands`,
      // A refused login is not an outage: start() fails with it (TRIB_ERR_REDIS_AUTH).
      onError: (err) => {
        if (!isRedisAuthError(err)) this.runner.reportFailure('redis', err);
      },
    });
    const { stream, group, start } = spec.source;
    const source = new RedisStreamSource({
      redisUrl: options.redisUrl,
      commands: this.commands,
      key: stream,
      group,
      startId: start,
      dlqStream: spec.deadLetters.stream,
    });
    const pool = this.pool;
    const schema = options.deadLetterSchema ?? 'public';
    const plan = planFor(spec, pool);
    this.writePath = plan.path;
    this.runner = new Runner<StreamEntry>({
      source,
      stages: plan.stages,
      sink: plan.sink,
      deadLetters: new PostgresDeadLetterStore(pool, this.commands, { streamKey: stream, group, dlqStream: spec.deadLetters.stream }, schema),
      consumers: Array.from({ length: spec.workers }, (_, i) => `${options.consumer}-${i + 1}`),
      batch: { maxCount: spec.batch.count, maxBytes: spec.batch.bytes, periodMs: spec.batch.periodMs },
      readCount: spec.batch.count,
      blockMs: options.blockMs,
      maxInFlight: options.maxInFlight,
      maxInFlightBytes: options.maxInFlightBytes,
      maxEntryBytes: options.maxEntryBytes,
      maxDeliveries: spec.maxDeliveries,
      reclaim: { consumer: `${options.consumer}-reclaim`, minIdleMs: options.claimIdleMs ?? 60_000, intervalMs: options.claimIntervalMs ?? 5000 },
      retry: options.retry,
      // A table dropped or renamed mid-run (or its schema, or the dead-letter table) is made
      // again when the file allows creating it, as at start: the entries held are then
      // written. With create: false the fault is reported and the entries wait.
      repair: async (fault) => {
        if (fault.code !== 'TRIB_ERR_POSTGRES_TABLE_MISSING') return;
        await migrate(pool, schema);
        if (!spec.sink.create) return;
        const { created } = await ensureTable(pool, spec);
        if (created) this.emit('tableRecreated', { table: `${spec.sink.schema}.${spec.sink.table}` });
      },
      prepare: [
        {
          name: 'table',
          server: 'postgres',
          run: async () => {
            try {
              await migrate(pool, schema);
              await ensureTable(pool, spec);
            } catch (err) {
              // A database, role or password Postgres refuses is a wrong setting, not an outage: start() fails at once.
              throw postgresRefusal(err, options.databaseUrl) ?? err;
            }
          },
        },
      ],
    });
  }

  /**
   * Connects (waiting out an outage), checks or creates the table, creates the group and
   * starts the workers. Throws TRIB_ERR_TABLE_MISMATCH when the table does not fit.
   */
  async start(): Promise<void> {
    try {
      await this.runner.start();
    } catch (err) {
      await this.release();
      throw err;
    }
  }

  /** Graceful stop (finish and acknowledge in-flight batches); `force` abandons them. Idempotent. */
  close(options: { force?: boolean } = {}): Promise<void> {
    const runnerClosed = this.runner.close(options);
    this.closing ??= (async () => {
      await runnerClosed;
      await this.release();
    })();
    return this.closing;
  }

  get done(): Promise<void> {
    return this.runner.done;
  }

  /**
   * Readiness: Redis and Postgres answer, Postgres takes the writes (no fault such as a
   * missing table, a permission or a read-only server), and the group exists. Never
   * throws; each check says `ok` or why not.
   */
  probe(): Promise<TablePipelineProbe> {
    const { stream, group } = this.spec.source;
    return probeStreamPipeline({ what: 'pipeline', runner: this.runner, commands: this.commands, pool: this.pool, stream, group });
  }

  private async release(): Promise<void> {
    destroyQuietly(this.commands);
    await this.pool.end().catch(() => {});
  }
}
