import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Runner } from '../core/runner.js';

/** What a pipeline offers its metrics: its runner's events and stats, labels, and gauges read when scraped. */
export interface ObservedPipeline {
  /** `pipeline` (its name), `stream` (the stream or queue key) and `group` (the consumer group, or the queue's prefix). */
  readonly metricsLabels: { pipeline: string; stream: string; group: string };
  readonly runner: Runner<any>;
  /** Backlog gauges: length of the stream (queue), held by the group (pending / in processing), not yet delivered (lag; null: unknown). */
  gauges(): Promise<{ streamLength: number; pending: number; lag: number | null }>;
  /** The events pipeline's retention reports what it trimmed. */
  onTrimmed?(listener: (t: { deleted: number }) => void): void;
  /** A partitioned stream (PARTITIONS > 1): its partition count, and the partitions this process holds the lease of now. */
  readonly partitionCount?: number;
  ownedPartitions?(): Array<{ partition: number; token: number }>;
}

/**
 * Prometheus metrics for one pipeline, in their own registry. Counters and histograms
 * follow the runner's events; gauges are read from Redis when scraped.
 *
 * Names follow Prometheus conventions: `tributary_` prefix, `_total` on counters,
 * base units (seconds) in the name; labels `pipeline`, `stream` and `group` on everything.
 */
export function createPipelineMetrics(pipeline: ObservedPipeline, registry = new Registry()): Registry {
  const labels = { ...pipeline.metricsLabels };
  const labelNames = ['pipeline', 'stream', 'group'] as const;
  const engine = pipeline.runner;

  const read = new Counter({ name: 'tributary_entries_read_total', help: 'Stream entries read by the workers (XREADGROUP).', labelNames, registers: [registry] });
  const written = new Counter({ name: 'tributary_entries_written_total', help: 'Rows newly inserted into Postgres.', labelNames, registers: [registry] });
  const duplicates = new Counter({ name: 'tributary_entries_duplicate_total', help: 'Entries already in Postgres (redeliveries), skipped by ON CONFLICT.', labelNames, registers: [registry] });
  const dead = new Counter({ name: 'tributary_entries_dead_lettered_total', help: 'Entries sent to the dead letters, by error code.', labelNames: [...labelNames, 'code'], registers: [registry] });
  const reclaimed = new Counter({ name: 'tributary_entries_reclaimed_total', help: 'Entries claimed from idle consumers (XAUTOCLAIM).', labelNames, registers: [registry] });
  const retried = new Counter({ name: 'tributary_retries_total', help: 'Failed operations retried with backoff, by server.', labelNames: [...labelNames, 'server'], registers: [registry] });
  const trimmed = new Counter({ name: 'tributary_entries_trimmed_total', help: 'Stream entries removed by the events pipeline\'s retention (TRIM_MAXLEN / TRIM_MAX_AGE).', labelNames, registers: [registry] });
  const flushes = new Counter({ name: 'tributary_batches_total', help: 'Batches committed and acknowledged, by flush reason.', labelNames: [...labelNames, 'reason'], registers: [registry] });
  const batchSize = new Histogram({
    name: 'tributary_batch_size',
    help: 'Entries per batch.',
    labelNames,
    buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    registers: [registry],
  });
  const writeSeconds = new Histogram({
    name: 'tributary_batch_write_duration_seconds',
    help: 'Time to write a batch to Postgres, retries included.',
    labelNames,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'tributary_end_to_end_latency_seconds',
    help: 'From produced_at to the commit of the row in Postgres.',
    labelNames,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });

  let lastRead = 0;
  // Label-bound children: observe() per event without hashing the labels each time
  // (a string per call: measurable garbage at 100k events/s).
  const latencyChild = latency.labels(labels);
  engine.on('batch', (b) => {
    const s = engine.stats();
    read.inc(labels, s.read - lastRead);
    lastRead = s.read;
    written.inc(labels, b.written);
    duplicates.inc(labels, b.duplicates);
    flushes.inc({ ...labels, reason: b.reason });
    batchSize.observe(labels, b.size);
    writeSeconds.observe(labels, b.writeMs / 1000);
    for (const at of b.producedAt) latencyChild.observe(Math.max(0, (b.committedAt - at) / 1000));
  });
  engine.on('deadLetter', (d) => dead.inc({ ...labels, code: d.code }));
  engine.on('reclaimed', (r) => reclaimed.inc(labels, r.count));
  engine.on('retry', (r) => retried.inc({ ...labels, server: r.server ?? 'none' }));
  pipeline.onTrimmed?.((t) => trimmed.inc(labels, t.deleted));

  // Gauges: read when scraped, one Redis round trip for all three.
  let gaugesAt = 0;
  let gauges: Promise<{ streamLength: number; pending: number; lag: number | null } | undefined> = Promise.resolve(undefined);
  const current = () => {
    if (Date.now() - gaugesAt > 500) {
      gaugesAt = Date.now();
      gauges = pipeline.gauges().catch(() => undefined);
    }
    return gauges;
  };
  new Gauge({
    name: 'tributary_gauges_up',
    help: '1 when the stream gauges below were read from Redis for this scrape; 0 when they could not be (they are then absent, not stale).',
    labelNames,
    registers: [registry],
    async collect() {
      this.set(labels, (await current()) ? 1 : 0);
    },
  });
  // The Redis-read gauges: absent (not stale) when this scrape could not read them.
  const fromRedis = (name: string, help: string, pick: (g: NonNullable<Awaited<typeof gauges>>) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const g = await current();
        const value = g ? pick(g) : null;
        if (value === null) this.reset();
        else this.set(labels, value);
      },
    });
  fromRedis('tributary_stream_length', 'Entries in the stream (XLEN).', (g) => g.streamLength);
  fromRedis('tributary_group_pending', 'Entries delivered to the group and not yet acknowledged (all consumers).', (g) => g.pending);
  fromRedis('tributary_group_lag', 'Entries in the stream not yet delivered to the group (XINFO GROUPS lag).', (g) => g.lag);
  new Gauge({
    name: 'tributary_in_flight',
    help: 'Entries read by this process and not yet acknowledged.',
    labelNames,
    registers: [registry],
    collect() {
      this.set(labels, engine.stats().inFlight);
    },
  });
  new Gauge({
    name: 'tributary_in_flight_bytes',
    help: 'Bytes of the entries read by this process and not yet acknowledged (capped near MAX_IN_FLIGHT_BYTES).',
    labelNames,
    registers: [registry],
    collect() {
      this.set(labels, engine.stats().inFlightBytes);
    },
  });
  if ((pipeline.partitionCount ?? 1) > 1 && pipeline.ownedPartitions) {
    const owned = () => pipeline.ownedPartitions!();
    new Gauge({
      name: 'tributary_partitions_owned',
      help: 'Partitions of the stream this process holds the lease of (reads) now.',
      labelNames,
      registers: [registry],
      collect() {
        this.set(labels, owned().length);
      },
    });
    new Gauge({
      name: 'tributary_partition_lease_token',
      help: 'The fencing token of each partition lease this process holds (one series per partition held; larger for every new holder).',
      labelNames: [...labelNames, 'partition'],
      registers: [registry],
      collect() {
        this.reset();
        for (const o of owned()) this.set({ ...labels, partition: String(o.partition) }, o.token);
      },
    });
  }
  return registry;
}
