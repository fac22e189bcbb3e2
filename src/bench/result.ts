import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CompareFigures } from './compare-original.js';
import type { TailFigures } from './tail.js';
import type { LatencySummary } from './stats.js';

/**
 * Benchmark result files: `<bench>-<timestamp>.json` under bench/results/, each with
 * the machine's facts, the settings and the figures. The README's benchmark tables
 * are generated from them (scripts/bench-report.mjs), never typed by hand.
 *
 * Format version 1. The first drain files (written by bench/drain.mjs) have no
 * `version` field and the same drain figures: they read as version 1.
 */
export const RESULT_VERSION = 1;

export type BenchKind = 'drain' | 'ceiling' | 'rate' | 'sweep' | 'produce' | 'orders-transform' | 'orders' | 'pipelines' | 'large-entries' | 'ingest' | 'cluster-drain' | 'compare-original';

export interface MachineFacts {
  cores: number;
  cpu: string | undefined;
  memoryGiB: number;
  node: string;
  redis: string | undefined;
  postgres: string | undefined;
  /** `${platform} ${kernel release}`. */
  os?: string;
  /** 1-minute load average when the bench began: other work on the machine skews the figures. */
  loadAvg1?: number;
}

/** CPU seconds spent while a stage ran (best effort: null where it cannot be read). */
export interface CpuFigures {
  /** The engine process (user + system). */
  engineSecs: number | null;
  /** Redis server (INFO cpu), whoever its clients were. */
  redisSecs: number | null;
  /** Every process called `postgres` on this host (server and backends). */
  postgresSecs: number | null;
  /** Share of all cores busy over the stage, machine-wide (/proc/stat). */
  hostBusyPct: number | null;
}

export interface DrainFigures {
  rows: number;
  pendingAfter: number;
  loadEventsPerSec: number | null;
  /** From spawning the engine (process start, connect, migrate included) to the last row committed. */
  drainWallSecs: number;
  drainEventsPerSec: number;
  /** First to last ingested_at: the steady write rate. */
  ingestSpanSecs: number;
  ingestEventsPerSec: number;
  enginePeakRssMiB: number;
  /** From spawn to the engine's "engine started" log line. */
  engineStartupSecs?: number | null;
  /** From "engine started" to the last row committed. */
  afterStartSecs?: number | null;
  afterStartEventsPerSec?: number | null;
  /**
   * The engine's CPU from "engine started" to the last row (its start-up left out: node
   * and module loading, connecting, migrations), and that per event drained, µs.
   */
  engineCpuAfterStartSecs?: number | null;
  engineUsPerEventAfterStart?: number | null;
  /** Postgres' CPU over the drain per event, µs (what the engine's share is compared with). */
  postgresUsPerEvent?: number | null;
  deadLetters?: number;
  cpu?: CpuFigures;
  /** The engine's CPU profile file (drain --engine-cpu-prof), relative to the results directory. */
  cpuProfile?: string;
}

export interface ProduceFigures {
  events: number;
  batch: number;
  concurrency: number;
  elapsedSecs: number;
  eventsPerSec: number;
  /**
   * CPU seconds over the timed part: this process's (the producer: user + system) and the
   * Redis server's (INFO cpu; null when Redis would not say). Absent in older results.
   */
  cpu?: { producerSecs: number; redisSecs: number | null };
}

export interface CeilingFigures {
  /** One COPY (text format) of the N rows into a table like `events`. */
  postgresCopySecs: number;
  postgresCopyEventsPerSec: number;
  /** The engine's write path alone (binary COPY), NUM_WORKERS writers of BATCH_SIZE rows, no Redis. */
  sinkWriteSecs: number;
  sinkWriteEventsPerSec: number;
  /** XADD of the N entries, pipelined (pre-built arguments). */
  redisXaddSecs: number;
  redisXaddEventsPerSec: number;
  /** XREADGROUP (COUNT 1000) + XACK of the N entries, one consumer. */
  redisReadAckSecs: number;
  redisReadAckEventsPerSec: number;
  /** Producer.produceBatch from this process (events generated before timing). */
  produce: ProduceFigures;
  /** The engine draining the same N entries (see DrainFigures). */
  drain: DrainFigures;
  /** min(Postgres COPY, Redis read+ack): no consumer can write faster on this machine. */
  ceilingEventsPerSec: number;
  /** drain (incl. start-up) / ceiling. */
  drainFractionOfCeiling: number;
  /** steady write rate / ceiling. */
  steadyFractionOfCeiling: number;
}

export interface LagFigures {
  /** Entries not yet delivered to the group (XINFO GROUPS lag). */
  lag: number | null;
  /** Entries delivered and not yet acknowledged (XPENDING). */
  pending: number;
}

export interface RateFigures {
  totalEvents: number;
  elapsedSecs: number;
  actualRate: number;
  targetRate: number;
  accuracyPct: number;
  engine?: {
    written: number;
    deadLetters: number;
    /** ingested_at - produced_at of every event of the run, ms. */
    latencyMs: LatencySummary;
    /** When production ended. */
    finalLag: LagFigures;
    maxLagSeen: { lag: number | null; pending: number; backlog: number };
    /** From the end of production to the last row written. */
    caughtUpSecs: number;
    /** [ms since production began, lag, pending], about every 250 ms. */
    lagSamples: Array<[number, number | null, number]>;
    /** Per-batch timings and GC pauses during the run (tail.ts). */
    tail?: TailFigures;
  };
}

export interface SweepPoint {
  setting: 'numWorkers' | 'batchSize';
  value: number;
  numWorkers: number;
  batchSize: number;
  figures: DrainFigures;
}

export interface SweepFigures {
  points: SweepPoint[];
}

/** Orders/s of one transform implementation at one batch size, over the timed rounds. */
export interface TransformTiming {
  medianOrdersPerSec: number;
  minOrdersPerSec: number;
  maxOrdersPerSec: number;
  /** Median time for one batch, ms. */
  medianBatchMs: number;
}

/** The orders transform in plain TypeScript against nodejs-polars (src/bench/orders-transform.ts). */
export interface OrdersTransformFigures {
  points: Array<{
    batchSize: number;
    /** Orders per timed round (a whole number of batches). */
    ordersPerRound: number;
    typescript: TransformTiming;
    polars: TransformTiming;
    /** typescript / polars median orders/s: above 1, TypeScript is faster. */
    typescriptSpeedup: number;
  }>;
  /** The faster implementation at every batch size, or 'mixed'. */
  faster: 'typescript' | 'polars' | 'mixed';
}

/** The stages `orders benchmark` times (src/bench/orders.ts). */
export type OrdersStageName = 'generate' | 'ingest' | 'take' | 'parse' | 'dedup' | 'enrich' | 'transform' | 'stage' | 'promote' | 'commit' | 'refresh';

export interface OrdersBenchStage {
  stage: OrdersStageName;
  /** Orders through the stage (ingest, take, parse, commit: all; dedup: the parsed ones; enrich to promote: those the window kept). */
  orders: number;
  /** Wall time of the stage, summed over the rounds. */
  secs: number;
  ordersPerSec: number;
  /** CPU seconds while the stage ran: this process, every postgres process (best effort: one that exits meanwhile drops out of the sum), the Redis server. */
  cpuSecs: { node: number; postgres: number; redis: number } | null;
  /** Share of all cores busy while the stage ran, machine-wide (other work included). */
  hostBusyPct: number | null;
}

/** `tributary orders benchmark` (src/bench/orders.ts). */
export interface OrdersBenchFigures {
  orders: {
    total: number;
    duplicatesGenerated: number;
    invalidGenerated: number;
    promoted: number;
    duplicatesDropped: number;
    /** Valid orders already in `orders` (duplicates the window could not see yet: in a batch processed at the same time). */
    pgDuplicates: number;
    rejected: Partial<Record<string, number>>;
    rejectedTotal: number;
    /** Rows in `orders` / `orders_rejected` / `orders_staging` after the stage-by-stage run. */
    inOrders: number;
    inRejected: number;
    stagingLeft: number;
    /** The queue's depth counter after the run (0: everything acknowledged). */
    queueLeft: number;
  };
  stages: OrdersBenchStage[];
  /** orders/s: ingestion = ingest; processing = take + parse + dedup + enrich + transform; staging; promotion; overall = ingest through refresh. */
  summary: { ingestion: number; processing: number; staging: number; promotion: number; overall: number };
  targets: { ingestion: number; processing: number; staging: number; promotion: number };
  processingSecs: number;
  overallSecs: number;
  views: Array<{ view: string; rows: number; ms: number }>;
  /** The end-to-end run: an OrdersPipeline draining `orders` more orders (null when skipped). */
  pipeline: {
    orders: number;
    workers: number;
    batchSize: number;
    /** From start() (connections included) until every worker found the queue empty. */
    secs: number;
    ordersPerSec: number;
    promoted: number;
    duplicatesDropped: number;
    pgDuplicates: number;
    rejected: number;
    retries: number;
    cpuSecs: { node: number; postgres: number | null };
  } | null;
}

import type { PipelineDrainFigures } from './pipeline-drain.js';
import type { IngestBenchFigures } from './ingest.js';
import type { ClusterDrainFigures } from './cluster-drain.js';

export type BenchResult =
  | ResultOf<'drain', DrainFigures>
  | ResultOf<'ceiling', CeilingFigures>
  | ResultOf<'rate', RateFigures>
  | ResultOf<'sweep', SweepFigures>
  | ResultOf<'produce', ProduceFigures>
  | ResultOf<'orders-transform', OrdersTransformFigures>
  | ResultOf<'orders', OrdersBenchFigures>
  | ResultOf<'pipelines', PipelineDrainFigures>
  | ResultOf<'large-entries', DrainFigures>
  | ResultOf<'ingest', IngestBenchFigures>
  | ResultOf<'cluster-drain', ClusterDrainFigures>
  | ResultOf<'compare-original', CompareFigures>;

export interface ResultOf<K extends BenchKind, F> {
  bench: K;
  version: number;
  /** When the bench began (ISO 8601); also its file name's timestamp. */
  at: string;
  /** Wall time of the whole bench, set-up and clean-up included. */
  wallSecs?: number;
  machine: MachineFacts;
  settings: Record<string, unknown>;
  figures: F;
  /** Other files written with the result (charts, profiles), relative to its directory. */
  files?: string[];
}

/** A result object (pure): the fields in a fixed order, figures as given. */
export function buildResult<K extends BenchKind, F>(
  bench: K,
  parts: { at: Date | string; machine: MachineFacts; settings: Record<string, unknown>; figures: F; wallSecs?: number; files?: string[] },
): ResultOf<K, F> {
  const at = typeof parts.at === 'string' ? parts.at : parts.at.toISOString();
  const result: ResultOf<K, F> = { bench, version: RESULT_VERSION, at, machine: parts.machine, settings: parts.settings, figures: parts.figures };
  if (parts.wallSecs !== undefined) result.wallSecs = Number(parts.wallSecs.toFixed(3));
  if (parts.files?.length) result.files = parts.files;
  return result;
}

/** `2026-11-22T15:56:27.935Z` → `2026-11-22T15-56-27-935Z` (safe in file names everywhere). */
export function fileTimestamp(at: string): string {
  return at.replace(/[:.]/g, '-');
}

/** `<bench>-<timestamp>.json`. */
export function resultFileName(bench: BenchKind, at: string): string {
  return `${bench}-${fileTimestamp(at)}.json`;
}

/** bench/results of this package (whether running from src/ or dist/). */
export function defaultResultsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BENCH_RESULTS_DIR) return resolve(env.BENCH_RESULTS_DIR);
  return fileURLToPath(new URL('../../bench/results', import.meta.url));
}

/** Writes the result (and companion files named in `extra`) to `dir`; returns the result's path. */
export function writeResult(dir: string, result: BenchResult, extra: Array<{ name: string; content: string }> = []): string {
  mkdirSync(dir, { recursive: true });
  for (const f of extra) writeFileSync(join(dir, f.name), f.content);
  const path = join(dir, resultFileName(result.bench, result.at));
  writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}

/** Every result file in `dir`, oldest first, with its file name. Unknown files are skipped. */
export function readResults(dir: string): Array<{ file: string; result: BenchResult }> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: Array<{ file: string; result: BenchResult }> = [];
  for (const file of names.filter((f) => /^[a-z]+-.+\.json$/.test(f)).sort()) {
    const parsed = JSON.parse(readFileSync(join(dir, file), 'utf8')) as BenchResult;
    if (typeof parsed?.bench !== 'string' || typeof parsed.figures !== 'object') continue;
    parsed.version ??= RESULT_VERSION;
    out.push({ file, result: parsed });
  }
  // By start time, not name: every kind sorts together.
  return out.sort((a, b) => a.result.at.localeCompare(b.result.at));
}
