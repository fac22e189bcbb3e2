/**
 * The public pipeline API: `pipeline()` wires any source, stages and sink onto the one
 * runner; `consume()` is the worker of the seed guide — for each batch of a stream, call
 * my function, acknowledge after it returns.
 */
import { hostname } from 'node:os';
import type { DeadLetterStore, Sink, Source, Stage } from './core/contracts.js';
import { Runner, type RunnerOptions } from './core/runner.js';
import { TributaryError } from './errors.js';
import type { StreamEntry } from './redis/commands.js';
import { functionSink, type BatchHandler } from './sinks/function.js';
import { RedisStreamSource } from './sources/redis-stream.js';

export interface PipelineOptions<T> extends Omit<RunnerOptions<T>, 'consumers' | 'batch'> {
  source: Source<T>;
  stages?: Stage<any, any>[];
  sink: Sink<any>;
  deadLetters?: DeadLetterStore;
  /** Workers in this process, each a consumer of its own (default 1). */
  workers?: number;
  /** Consumer names are `<consumer>-<n>` (default `<host name>-<pid>`: unique per process). */
  consumer?: string;
  /** When a batch is flushed (defaults: 100 messages, no byte limit, 1000 ms). */
  batch?: Partial<RunnerOptions<T>['batch']>;
}

/** The default consumer name: unique per process on a host. */
export function defaultConsumerName(): string {
  return `${hostname()}-${process.pid}`;
}

function checkWorkers(workers: unknown): number {
  if (workers === undefined) return 1;
  if (typeof workers !== 'number' || !Number.isSafeInteger(workers) || workers < 1 || workers > 1000) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['pipeline workers', `must be an integer in [1, 1000] (got ${String(workers)})`]);
  }
  return workers;
}

/**
 * A pipeline of any parts on the one runner (not started):
 *
 *   const p = pipeline({ source, stages: [validate], sink, workers: 4 });
 *   p.on('batch', (report) => ...);
 *   await p.start();
 *   ...
 *   await p.close();
 */
export function pipeline<T>(options: PipelineOptions<T>): Runner<T> {
  if (!options?.source) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['pipeline source', 'is required']);
  if (!options.sink) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['pipeline sink', 'is required']);
  const workers = checkWorkers(options.workers);
  const consumer = options.consumer ?? defaultConsumerName();
  if (typeof consumer !== 'string' || !/^[^\s]+$/.test(consumer)) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['pipeline consumer', `must be non-empty, without spaces (got ${JSON.stringify(consumer)})`]);
  }
  const { workers: _w, consumer: _c, batch, ...rest } = options;
  return new Runner<T>({
    ...rest,
    consumers: Array.from({ length: workers }, (_, i) => `${consumer}-${i + 1}`),
    batch: { maxCount: 100, periodMs: 1000, ...batch },
    reclaim: options.reclaim ?? (options.source.reclaim ? { consumer: `${consumer}-reclaim`, minIdleMs: 60_000, intervalMs: 5000 } : undefined),
  });
}

/** A stream entry as a consume() handler sees it. */
export interface ConsumedMessage {
  /** The stream entry ID. */
  id: string;
  /** The entry's fields, as text. */
  fields: Record<string, string>;
  /** Times it has been handed out (1 on a first read; more after a crash or a reclaim). */
  deliveries: number;
}

export interface ConsumeOptions {
  /** Redis URL (default `redis://127.0.0.1:6379`). */
  redisUrl?: string;
  /** The stream key (required). */
  stream: string;
  /** The consumer group (required); created at `startId` when missing. */
  group: string;
  /** Where a new group starts: `0` (the whole stream, default), `$` (only new entries) or an entry ID. */
  startId?: string;
  /** Consumer names are `<consumer>-<n>` (default `<host name>-<pid>`: unique per process). */
  consumer?: string;
  /** Workers (concurrent batches) in this process (default 1). */
  workers?: number;
  /** Messages per batch at most (default 100). */
  batchSize?: number;
  /** A batch waits at most this long for more messages, ms (default 1000). */
  batchPeriodMs?: number;
  /** Bytes per batch at most (default: no limit). */
  batchBytes?: number;
  /** How long an idle read waits, ms (default 5000). */
  blockMs?: number;
  /** Messages held (read, not yet acknowledged) per process (default 4 batches per worker). */
  maxInFlight?: number;
  /** A message delivered more often than this goes to the dead letters (default 5). */
  maxDeliveries?: number;
  /** A message idle this long on a consumer that stopped is taken over, ms (default 60,000). */
  claimIdleMs?: number;
  /** How often idle messages are looked for, ms (default 5000). */
  claimIntervalMs?: number;
  /** The dead-letter stream (default `<stream>:dead`). */
  deadLetterStream?: string;
  /** Backoff of a retried batch: first ceiling and cap, ms (defaults 50 and 5000). */
  retry?: { baseMs?: number; maxMs?: number };
}

/**
 * Consumes a stream with a consumer group: `handler` gets each batch, and the batch is
 * acknowledged after it resolves. A thrown error retries the batch with backoff; a
 * message it rejects (`ctx.reject(message, reason)`) goes to the dead-letter stream.
 * A process that dies mid-batch loses nothing: its messages are handed out again (to
 * its next run under the same consumer name, or to another consumer after
 * `claimIdleMs`), so the handler sees a message at least once. Resolves once reading;
 * `close()` stops gracefully.
 *
 *   const consumer = await consume({ stream: 'orders', group: 'mailer' }, async (batch) => {
 *     for (const m of batch) await send(JSON.parse(m.fields.payload));
 *   });
 */
export async function consume(options: ConsumeOptions, handler: BatchHandler<ConsumedMessage>): Promise<Runner<StreamEntry>> {
  if (!options || typeof options !== 'object') throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['consume options', 'must be an object']);
  const claimIdleMs = options.claimIdleMs ?? 60_000;
  const source = new RedisStreamSource({
    redisUrl: options.redisUrl ?? 'redis://127.0.0.1:6379',
    key: options.stream,
    group: options.group,
    startId: options.startId,
    dlqStream: options.deadLetterStream ?? `${options.stream}:dead`,
  });
  const consumer = options.consumer ?? defaultConsumerName();
  const runner = pipeline<StreamEntry>({
    source,
    sink: functionSink(handler, (m) => ({ id: m.id, fields: m.body.fields, deliveries: m.deliveries })),
    workers: options.workers,
    consumer,
    batch: { maxCount: options.batchSize ?? 100, periodMs: options.batchPeriodMs ?? 1000, maxBytes: options.batchBytes },
    blockMs: options.blockMs,
    maxInFlight: options.maxInFlight,
    maxDeliveries: options.maxDeliveries,
    reclaim: { consumer: `${consumer}-reclaim`, minIdleMs: claimIdleMs, intervalMs: options.claimIntervalMs ?? 5000 },
    retry: options.retry,
  });
  await runner.start();
  return runner;
}
