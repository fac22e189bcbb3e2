import type { TributaryConfig } from '../config/schema.js';
import { sleep } from '../core/backoff.js';
import { Engine } from '../pipelines/events.js';
import { quoteIdent } from '../postgres/pool.js';
import { Producer } from '../producer/producer.js';
import { sampleEvent } from '../producer/sample.js';
import { ingestSpan, readLag, waitForRows } from './load.js';
import type { LagFigures, RateFigures } from './result.js';
import { summarizeLatencies } from './stats.js';
import { openWorkspace } from './workspace.js';
import { externalXadd, PipeProducer, type IdShape } from './external.js';
import { TailRecorder } from './tail.js';

export interface RateOptions {
  config: TributaryConfig;
  /** Target events per second. */
  rate: number;
  durationSecs: number;
  /** Run an engine in this process (`new Engine(config)`) and measure end-to-end latency and lag. */
  withEngine: boolean;
  /** Events per produceBatch (default: rate / 100, between 1 and 1000: a batch every 10 ms). */
  batch?: number;
  /** How often the group's lag is sampled (default 250 ms). */
  lagSampleMs?: number;
  /** How long to wait for the engine to catch up after producing (default max(60 s, duration)). */
  catchUpTimeoutMs?: number;
  /** After every produced batch, with the running total. */
  onProduced?: (done: number) => void;
  onProgress?: (message: string) => void;
  /** Produce with `redis-cli --pipe` in a process of its own (an outside producer, external.ts), event_ids of this shape, instead of our Producer. */
  external?: IdShape;
}

export interface RateRun {
  settings: Record<string, unknown> & { rate: number; durationSecs: number; withEngine: boolean; batch: number };
  figures: RateFigures;
}

export function defaultRateBatch(rate: number): number {
  return Math.max(1, Math.min(1000, Math.round(rate / 100)));
}

/**
 * Produces at a target rate for a duration (paced on a schedule: after each batch,
 * wait until `done / rate` seconds have passed). With the engine: samples the group's
 * lag (XINFO GROUPS) and pending count during the run, waits for every event to be
 * written, and reads the end-to-end latency (ingested_at - produced_at) of every
 * event of the run from Postgres.
 */
export async function runRate(options: RateOptions): Promise<RateRun> {
  const progress = options.onProgress ?? (() => {});
  const { rate, durationSecs } = options;
  const total = Math.round(rate * durationSecs);
  const batch = options.batch ?? defaultRateBatch(rate);
  const ws = await openWorkspace('rate', options.config);
  const c = ws.config;
  const producer = new Producer({ redisUrl: c.redisUrl, streamKey: c.streamKey, name: `tributary:${ws.tag}:producer` });
  let pipe: PipeProducer | undefined;
  let tail: TailRecorder | undefined;
  let engine: Engine | undefined;
  let sampler: NodeJS.Timeout | undefined;
  let checkpointTimer: NodeJS.Timeout | undefined;
  try {
    if (options.external) pipe = new PipeProducer(c.redisUrl);
    else await producer.connect();
    if (options.withEngine) {
      engine = new Engine(c);
      tail = new TailRecorder();
      const recorder = tail;
      engine.on('batch', (b) => recorder.batch(b));
      engine.on('error', (err) => progress(`engine error: ${err.message}`));
      await engine.start();
      progress(`engine started in-process: ${c.numWorkers} ${c.numWorkers === 1 ? 'worker' : 'workers'}, batch ${c.batchSize} / ${c.batchTimeoutMs} ms`);
    }

    const samples: Array<[number, number | null, number]> = [];
    const max = { lag: null as number | null, pending: 0, backlog: 0 };
    const started = performance.now();
    const record = (l: LagFigures) => {
      samples.push([Math.round(performance.now() - started), l.lag, l.pending]);
      if (l.lag !== null) max.lag = Math.max(max.lag ?? 0, l.lag);
      max.pending = Math.max(max.pending, l.pending);
      max.backlog = Math.max(max.backlog, (l.lag ?? 0) + l.pending);
    };
    if (tail) {
      // Postgres' checkpoints, once a second: a tail that lines up with one is the server's.
      const recorder = tail;
      const read = () =>
        ws.pool
          .query<{ started: string; sync: number; write: number }>(
            'SELECT checkpoints_timed + checkpoints_req AS started, checkpoint_sync_time AS sync, checkpoint_write_time AS write FROM pg_stat_bgwriter',
          )
          .then((r) => recorder.server({ started: Number(r.rows[0]!.started), syncMs: Number(r.rows[0]!.sync), writeMs: Number(r.rows[0]!.write) }))
          .catch(() => {}); // a server without these columns (PostgreSQL 17: pg_stat_checkpointer): no checkpoint figures
      await read();
      checkpointTimer = setInterval(() => void read(), 1000);
    }
    if (engine) {
      let busy = false;
      sampler = setInterval(() => {
        if (busy) return;
        busy = true;
        readLag(ws)
          .then(record, () => {})
          .finally(() => (busy = false));
      }, options.lagSampleMs ?? 250);
    }

    let done = 0;
    let lastSentAtMs = Date.now();
    while (done < total) {
      const n = Math.min(batch, total - done);
      if (pipe) {
        const now = Date.now();
        let resp = '';
        for (let i = 0; i < n; i++) resp += externalXadd(c.streamKey, done + i, options.external!, now);
        await pipe.write(resp);
      } else {
        await producer.produceBatch(Array.from({ length: n }, () => sampleEvent()));
      }
      done += n;
      lastSentAtMs = Date.now();
      options.onProduced?.(done);
      const wait = started + (done / rate) * 1000 - performance.now();
      if (wait > 0) await sleep(wait);
    }
    if (pipe) {
      await pipe.end(total);
      pipe = undefined;
    }
    const elapsedSecs = (performance.now() - started) / 1000;
    const actualRate = total / elapsedSecs;
    const figures: RateFigures = {
      totalEvents: total,
      elapsedSecs: Number(elapsedSecs.toFixed(3)),
      actualRate: Number(actualRate.toFixed(2)),
      targetRate: rate,
      accuracyPct: Number(((100 * actualRate) / rate).toFixed(2)),
    };

    if (engine) {
      const finalLag = await readLag(ws);
      record(finalLag);
      clearInterval(sampler);
      sampler = undefined;
      progress(`waiting for the engine to write all ${total} events`);
      const counted = await waitForRows(ws, total, { timeoutMs: options.catchUpTimeoutMs ?? Math.max(60_000, durationSecs * 1000), pollMs: 100 });
      clearInterval(checkpointTimer);
      checkpointTimer = undefined;
      const span = await ingestSpan(ws);
      await engine.close();
      engine = undefined;
      const lat = await ws.pool.query<[number]>({
        text: `SELECT extract(epoch FROM ingested_at - produced_at) * 1000 FROM ${quoteIdent(c.pgSchema)}.${quoteIdent(c.eventsTable)}`,
        rowMode: 'array',
      });
      figures.engine = {
        written: counted.rows,
        deadLetters: counted.deadLetters,
        latencyMs: summarizeLatencies(lat.rows.map((r) => Number(r[0]))),
        finalLag: { lag: finalLag.lag, pending: finalLag.pending },
        maxLagSeen: max,
        caughtUpSecs: Number(Math.max(0, (span.lastMs - lastSentAtMs) / 1000).toFixed(3)),
        lagSamples: samples,
        ...(tail ? { tail: tail.stop() } : {}),
      };
      tail = undefined;
    }
    return {
      settings: {
        rate,
        durationSecs,
        withEngine: options.withEngine,
        batch,
        producer: options.external ? 'external' : 'ours',
        ...(options.external ? { idShape: options.external } : {}),
        ...(options.withEngine ? { numWorkers: c.numWorkers, batchSize: c.batchSize, batchTimeoutMs: c.batchTimeoutMs, xreadCount: c.xreadCount } : {}),
      },
      figures,
    };
  } finally {
    if (sampler) clearInterval(sampler);
    if (checkpointTimer) clearInterval(checkpointTimer);
    tail?.stop();
    pipe?.kill();
    await engine?.close({ force: true }).catch(() => {});
    await producer.close().catch(() => {});
    await ws.cleanup();
  }
}
