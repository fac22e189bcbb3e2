import { Producer, type ProducerEvent } from '../producer/producer.js';
import { sampleEvent } from '../producer/sample.js';
import { sleep } from '../core/backoff.js';
import { quoteIdent } from '../postgres/pool.js';
import { createRedisConnection, destroyQuietly } from '../redis/client.js';
import { partitionStreamKeys } from '../redis/partitions.js';
import { readGroups } from '../redis/xinfo.js';
import { TributaryError } from '../errors.js';
import { redisCpuSecs } from './machine.js';
import type { LagFigures, ProduceFigures } from './result.js';
import { ratePerSec } from './stats.js';
import type { BenchWorkspace } from './workspace.js';

/** Appends `count` sample events to the workspace's stream in pipelined batches; returns the seconds taken. */
export async function preload(ws: BenchWorkspace, count: number, batch = 1000, onProgress?: (done: number) => void, payloadBytes?: number): Promise<number> {
  // PARTITIONS > 1: the events routed to their partitions by event_id, as a producer does.
  const producer = new Producer({
    redisUrl: ws.config.redisUrl,
    streamKey: ws.config.streamKey,
    name: `tributary:${ws.tag}:preload`,
    partitions: ws.config.partitions,
    partitionKey: ws.config.partitionKey,
  });
  // Large payloads: sample events padded to about payloadBytes of JSON, a few MB per produceBatch.
  const event = (): ProducerEvent => (payloadBytes === undefined ? sampleEvent() : paddedEvent(payloadBytes));
  if (payloadBytes !== undefined) batch = Math.max(1, Math.min(batch, Math.floor((8 << 20) / payloadBytes)));
  try {
    await producer.connect();
    const started = performance.now();
    for (let done = 0; done < count; ) {
      const n = Math.min(batch, count - done);
      await producer.produceBatch(Array.from({ length: n }, event));
      done += n;
      onProgress?.(done);
    }
    return (performance.now() - started) / 1000;
  } finally {
    await producer.close();
  }
}

/** A sample event whose payload is padded (a `pad` string) to about `bytes` bytes of JSON. */
export function paddedEvent(bytes: number): ProducerEvent {
  const e = sampleEvent();
  const base = JSON.stringify(e.payload).length;
  return { ...e, payload: { ...(e.payload as Record<string, unknown>), pad: 'x'.repeat(Math.max(0, bytes - base - 9)) } };
}

/** Events produced (to a throwaway key) before timing. */
export const PRODUCE_WARMUP = 5000;

/**
 * Producer.produceBatch throughput from this process: `events` (generated beforehand,
 * so the figure is the producer's, not the sample generator's) in batches of `batch`,
 * `concurrency` batches in flight, on a connection of its own, after an untimed
 * warm-up of PRODUCE_WARMUP events.
 */
export async function measureProduce(redisUrl: string, streamKey: string, events: readonly ProducerEvent[], batch: number, concurrency: number): Promise<ProduceFigures> {
  const producer = new Producer({ redisUrl, streamKey, name: 'tributary:bench-produce' });
  const warmKey = `${streamKey}:warmup`;
  const warm = new Producer({ redisUrl, streamKey: warmKey, name: 'tributary:bench-produce-warmup' });
  // INFO cpu before and after the timed part, and the warm-up key's removal: one connection of its own.
  const admin = createRedisConnection(redisUrl, { failFast: false });
  try {
    // Warm-up (not timed) on a key of its own: the JIT compiles the producer's hot paths.
    for (let i = 0; i < Math.min(events.length, PRODUCE_WARMUP); i += batch) await warm.produceBatch(events.slice(i, Math.min(i + batch, PRODUCE_WARMUP)));
    await producer.connect(); // before timing
    await admin.connect();
    let next = 0;
    const redis0 = await redisCpuSecs(admin);
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    const lane = async () => {
      while (next < events.length) {
        const slice = events.slice(next, (next += batch));
        await producer.produceBatch(slice);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, lane));
    const elapsedSecs = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const redis1 = await redisCpuSecs(admin);
    return {
      events: events.length,
      batch,
      concurrency,
      elapsedSecs: Number(elapsedSecs.toFixed(3)),
      eventsPerSec: ratePerSec(events.length, elapsedSecs),
      cpu: {
        producerSecs: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
        redisSecs: redis0 === null || redis1 === null ? null : Number((redis1 - redis0).toFixed(2)),
      },
    };
  } finally {
    await warm.close().catch(() => {});
    await producer.close().catch(() => {});
    // Connected unless the run failed before it was: then try once more, for the clean-up.
    await (admin.isOpen ? Promise.resolve() : admin.connect()).then(() => admin.del(warmKey)).catch(() => {});
    destroyQuietly(admin);
  }
}

export function sampleEvents(count: number): ProducerEvent[] {
  return Array.from({ length: count }, () => sampleEvent());
}

/**
 * The configured group's lag (undelivered) and pending (unacknowledged); null lag when
 * Redis cannot tell or there is no group yet. A partitioned stream: summed over the
 * partitions, and the group exists once it exists on every one.
 */
export async function readLag(ws: BenchWorkspace): Promise<LagFigures & { exists: boolean }> {
  const keys = partitionStreamKeys(ws.config.streamKey, ws.config.partitions);
  const groups = await Promise.all(keys.map(async (k) => (await readGroups(ws.redis, k)).find((x) => x.name === ws.config.group)));
  if (groups.some((g) => g === undefined)) return { exists: false, lag: null, pending: groups.reduce((t, g) => t + (g?.pending ?? 0), 0) };
  const lag = groups.some((g) => g!.lag === null) ? null : groups.reduce((t, g) => t + g!.lag!, 0);
  return { exists: true, lag, pending: groups.reduce((t, g) => t + g!.pending, 0) };
}

export interface RowCount {
  rows: number;
  deadLetters: number;
}

export async function countRows(ws: BenchWorkspace): Promise<RowCount> {
  const s = quoteIdent(ws.config.pgSchema);
  const r = await ws.pool.query<{ rows: string; dead: string }>(
    `SELECT (SELECT count(*) FROM ${s}.${quoteIdent(ws.config.eventsTable)}) AS rows,
            (SELECT count(*) FROM ${s}.dead_letter_queue) AS dead`,
  );
  return { rows: Number(r.rows[0]!.rows), deadLetters: Number(r.rows[0]!.dead) };
}

export interface WaitOptions {
  /** Poll interval; slow by default so that polling does not steal Postgres CPU from the engine. */
  pollMs?: number;
  timeoutMs: number;
  /** Called on every poll (e.g. to sample the engine's RSS); throwing aborts the wait. */
  onPoll?: () => void;
}

/**
 * Waits until `expected` events are in Postgres (rows plus dead letters). Polls the
 * group in Redis (cheap): rows are only counted once nothing is undelivered or
 * pending — entries are acknowledged after their rows commit, so that moment means
 * every row is in. When Redis cannot tell the lag, rows are counted on every poll.
 */
export async function waitForRows(ws: BenchWorkspace, expected: number, options: WaitOptions): Promise<RowCount> {
  const pollMs = options.pollMs ?? 250;
  const until = performance.now() + options.timeoutMs;
  let last: RowCount = { rows: 0, deadLetters: 0 };
  for (;;) {
    await sleep(pollMs);
    options.onPoll?.();
    const g = await readLag(ws);
    if (g.exists && (g.lag === null || (g.lag === 0 && g.pending === 0))) {
      last = await countRows(ws);
      if (last.rows + last.deadLetters >= expected) return last;
    }
    if (performance.now() > until) {
      throw new TributaryError('TRIB_ERR_WAIT_TIMEOUT', [options.timeoutMs, `${expected} events in Postgres (have ${last.rows}, lag ${g.lag}, pending ${g.pending})`]);
    }
  }
}

/** First and last ingested_at (ms since epoch) of the workspace's table. */
export async function ingestSpan(ws: BenchWorkspace): Promise<{ firstMs: number; lastMs: number }> {
  const r = await ws.pool.query<{ first: string; last: string }>(
    `SELECT extract(epoch FROM min(ingested_at)) * 1000 AS first, extract(epoch FROM max(ingested_at)) * 1000 AS last
       FROM ${quoteIdent(ws.config.pgSchema)}.${quoteIdent(ws.config.eventsTable)}`,
  );
  return { firstMs: Number(r.rows[0]!.first), lastMs: Number(r.rows[0]!.last) };
}
