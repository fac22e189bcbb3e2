/**
 * The orders pipeline's options (one interface, defaults in one place, every value
 * checked when the pipeline is built, naming the option), its events and its report.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { ServerName } from '../core/contracts.js';
import { TributaryError } from '../errors.js';
import type { PgPool } from '../postgres/pool.js';
import type { ViewRefresh } from './pg/views.js';
import { ORDERS_SCHEMA } from './pg/migrate.js';
import type { PublishResult } from './redis/cache.js';
import { DEFAULT_ORDERS_PREFIX } from './redis/keys.js';
import type { RecoverResult } from './redis/queue.js';
import type { RefreshOutcome } from './redis/signals.js';
import type { RejectReason } from './types.js';

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
  /**
   * Each worker stops after this many batches (the original's `process --iterations N`);
   * `done` resolves when all have (default 0: no limit).
   */
  maxBatchesPerWorker?: number;
  /** Backoff between retries of a failed step: first ceiling and cap, ms (default 100 and 5000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** How long start() waits for each server to answer, ms (default 5000), unless waitForServers. */
  connectTimeoutMs?: number;
  /**
   * A Postgres query with no reply within this long drops its connection and is retried
   * (PG_QUERY_TIMEOUT_MS; default 120000, 0: no limit). Must exceed the longest COPY,
   * promote, view refresh and migration. Ignored with `pool` (the pool has its own).
   */
  queryTimeoutMs?: number;
  /**
   * A Redis command with no reply within this long (plus the block time of a take)
   * reconnects its connection (REDIS_COMMAND_TIMEOUT_MS; default 30000, 0: no limit).
   */
  redisCommandTimeoutMs?: number;
  /**
   * Wait out servers that are not up yet at start (a long-running process: `orders
   * process`), reporting serverDown once, instead of failing after connectTimeoutMs with
   * a coded error (a one-shot run; the default).
   */
  waitForServers?: boolean;
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
  maxBatchesPerWorker: 0,
  retryBaseMs: 100,
  retryMaxMs: 5000,
  connectTimeoutMs: 5000,
  queryTimeoutMs: 120_000,
  redisCommandTimeoutMs: 30_000,
  waitForServers: false,
};

export type Resolved = Required<Omit<OrdersPipelineOptions, 'pool' | 'databaseUrl' | 'workerPrefix'>> & {
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
  /** Orders held now (taken, not yet acknowledged). */
  inFlight: number;
  retries: number;
  /** Orders returned to the queue from dead workers' processing lists. */
  recovered: number;
  /** Takes, promotes and acks of this process's workers refused because the worker was fenced (stalled past staleMs). */
  fenced: number;
  viewRefreshes: number;
  cachePublishes: number;
}

export interface OrdersPipelineEvents {
  /** Workers are taking orders. */
  started: { workers: string[] };
  batch: OrdersBatchReport;
  /** Dead workers' processing lists went back to the queue; their staged rows were dropped. */
  recovered: RecoverResult & { stagingRowsDropped: number };
  /**
   * A worker of this process was fenced: stalled past staleMs, its processing list went
   * back to the queue (another worker processes those orders), and its take, promote or
   * ack was refused (code TRIB_ERR_ORDERS_FENCED). It returns what it holds and goes on.
   */
  fenced: { worker: string; step: 'take' | 'promote' | 'ack'; epoch: number; current: number; items: number; batchId?: string; code: 'TRIB_ERR_ORDERS_FENCED' };
  /** The pipeline published the lookup cache from Postgres (it was empty or expired). */
  cachePublished: PublishResult;
  /** A view refresh ran (status 'refreshed' or 'failed'). */
  viewsRefreshed: RefreshOutcome<ViewRefresh[]>;
  /** A step failed and will be retried (every attempt; serverDown reports only the first). */
  retry: { server: ServerName | undefined; step: string; error: Error; attempt: number };
  serverDown: { server: ServerName; error: Error };
  serverUp: { server: ServerName; downMs: number };
  /** untilEmpty: every worker found the queue empty and stopped. */
  drained: { batches: number };
  stopping: { force: boolean };
  stopped: OrdersPipelineStats;
  error: Error;
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

export function resolveOptions(options: OrdersPipelineOptions): Resolved {
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
  checkInt('queryTimeoutMs', o.queryTimeoutMs, 0, MAX_TIMER_MS);
  checkInt('redisCommandTimeoutMs', o.redisCommandTimeoutMs, 0, MAX_TIMER_MS);
  checkInt('maxBatchesPerWorker', o.maxBatchesPerWorker, 0);
  if (!o.schema || !o.prefix) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['OrdersPipeline schema / prefix', 'must be non-empty']);
  return o;
}
