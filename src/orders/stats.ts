/**
 * One snapshot of the whole orders pipeline for `tributary orders stats`: the Redis side
 * (queue, processing lists, depth and backpressure, dedup window, lookup cache, revenue
 * window), the pipeline's published totals and throughput, and the Postgres side
 * (staging, orders, rejects by reason, views with their freshness). Collecting it never
 * prints; `formatOrdersStats` renders it as text.
 */
import type { TributaryConfig } from '../config/schema.js';
import type { PgPool } from '../postgres/pool.js';
import { send, type RedisConnection } from '../redis/client.js';
import { THROUGHPUT_SLOT_MS } from './batch.js';
import { ordersCounts, viewStats, type OrdersCounts, type ViewStats } from './pg/views.js';
import { orderKeys } from './redis/keys.js';
import { redisOrderStats, type RedisOrderStats } from './redis/stats.js';
import { REJECT_REASONS } from './types.js';

/** Slots summed for the throughput figure (the current one and 5 before it: the last 50–60 s). */
const THROUGHPUT_SLOTS = 6;

export interface OrdersStatsOptions {
  prefix: string;
  schema: string;
  /** Backpressure threshold, to say whether producers are held back. */
  maxQueueDepth: number;
  dedupWindowSeconds?: number;
  dedupBucketSeconds?: number;
  revenueWindowMs?: number;
  /** Clock, ms (default Date.now). */
  now?: () => number;
}

/** The totals the workers publish in `<prefix>:stats` (all processes together). */
export interface PipelineTotals {
  batches: number;
  taken: number;
  promoted: number;
  /** Dropped by the dedup window. */
  duplicates: number;
  /** Valid orders already in `orders` (caught by its primary key). */
  pgDuplicates: number;
  /** Rejected at promote plus malformed. */
  rejected: number;
  /** When the last batch was committed (ms since epoch), or null. */
  lastBatchAt: number | null;
  /** Batches by why they were flushed (size, time, caught_up, capacity, shutdown), from the runner's counters. */
  flushReasons: Record<string, number>;
}

export interface OrdersStats {
  version: 1;
  takenAt: string;
  prefix: string;
  schema: string;
  redis: RedisOrderStats;
  backpressure: { maxQueueDepth: number; engaged: boolean };
  pipeline: PipelineTotals;
  /** Orders taken per second over the last minute (committed batches, every process). */
  throughput: { ordersPerSec: number; windowSecs: number };
  /** Null when the schema is not migrated or Postgres could not be read (see `postgresError`). */
  postgres: (OrdersCounts & { views: ViewStats[] }) | null;
  postgresError?: string;
}

function num(v: unknown): number {
  const n = Number(v ?? 0);
  return Number.isFinite(n) ? n : 0;
}

/** An HGETALL reply as an object (RESP2: a flat array; node-redis may also give an object). */
function asRecord(hash: unknown): Record<string, string> {
  const h: Record<string, string> = {};
  if (Array.isArray(hash)) for (let i = 0; i + 1 < hash.length; i += 2) h[String(hash[i])] = String(hash[i + 1]);
  else if (hash && typeof hash === 'object') for (const [k, v] of Object.entries(hash)) h[k] = String(v);
  return h;
}

/**
 * The window the throughput is measured over, seconds: the last minute or so (the current
 * slot and the ones before it), but no longer than the pipeline has been committing in it
 * — after a 1-second run, a rate over the last 58 s would be a fiftieth of the truth.
 * `counts[i]` and `firstAt[i]` are slot `current - i`'s orders and first commit time.
 * At least one second, so a single batch is not a rate over a few milliseconds.
 */
export function throughputWindowSecs(nowMs: number, counts: readonly number[], firstAt: readonly (number | null)[]): number {
  const current = Math.floor(nowMs / THROUGHPUT_SLOT_MS);
  const windowStart = (current - (THROUGHPUT_SLOTS - 1)) * THROUGHPUT_SLOT_MS;
  let oldest = -1;
  for (let i = 0; i < THROUGHPUT_SLOTS; i++) if ((counts[i] ?? 0) > 0) oldest = i;
  // Busy since before the window (its oldest slot has commits), or nothing at all: the whole window.
  let start = windowStart;
  if (oldest >= 0 && oldest < THROUGHPUT_SLOTS - 1) {
    const slotStart = (current - oldest) * THROUGHPUT_SLOT_MS;
    // A slot counted before its first commit was recorded: from the start of the slot.
    start = Math.max(windowStart, firstAt[oldest] ?? slotStart);
  }
  return Math.max(1, (nowMs - start) / 1000);
}

/** Reads the pipeline totals hash and the throughput slots (one pipelined round trip). */
async function pipelineTotals(redis: RedisConnection, prefix: string, nowMs: number): Promise<{ totals: PipelineTotals; ordersPerSec: number; windowSecs: number }> {
  const keys = orderKeys(prefix);
  const current = Math.floor(nowMs / THROUGHPUT_SLOT_MS);
  // The current slot (still filling) and the ones before it: the last minute or so, to now.
  const slots = Array.from({ length: THROUGHPUT_SLOTS }, (_, i) => keys.throughput(current - i));
  const firsts = Array.from({ length: THROUGHPUT_SLOTS }, (_, i) => keys.throughputFirst(current - i));
  const multi = redis.multi();
  multi.addCommand(['HGETALL', keys.stats]);
  multi.addCommand(['MGET', ...slots]);
  multi.addCommand(['HGETALL', keys.batchStats]);
  multi.addCommand(['MGET', ...firsts]);
  const [hash, counts, batchHash, firstAts] = (await multi.execAsPipeline()) as unknown as [unknown, unknown[], unknown, unknown[]];
  const spanSecs = throughputWindowSecs(nowMs, (counts ?? []).map(num), (firstAts ?? []).map((v) => (v == null ? null : num(v))));
  const h = asRecord(hash);
  const flushReasons: Record<string, number> = {};
  for (const [field, v] of Object.entries(asRecord(batchHash))) if (field.startsWith('flush:')) flushReasons[field.slice('flush:'.length)] = num(v);
  const total = (counts ?? []).reduce<number>((sum, v) => sum + num(v), 0);
  return {
    totals: {
      batches: num(h.batches),
      taken: num(h.taken),
      promoted: num(h.promoted),
      duplicates: num(h.duplicates),
      pgDuplicates: num(h.pg_duplicates),
      rejected: num(h.rejected),
      lastBatchAt: h.last_batch_at === undefined ? null : num(h.last_batch_at),
      flushReasons,
    },
    ordersPerSec: total / spanSecs,
    windowSecs: spanSecs,
  };
}

/** The options of `orders stats` (and the dashboard's orders page) from the configuration. */
export function ordersStatsOptions(
  config: Pick<TributaryConfig, 'ordersPrefix' | 'ordersSchema' | 'maxQueueDepth' | 'dedupWindowS' | 'dedupBucketS' | 'revenueWindowMin'>,
): OrdersStatsOptions {
  return {
    prefix: config.ordersPrefix,
    schema: config.ordersSchema,
    maxQueueDepth: config.maxQueueDepth,
    dedupWindowSeconds: config.dedupWindowS,
    dedupBucketSeconds: config.dedupBucketS,
    revenueWindowMs: config.revenueWindowMin * 60_000,
  };
}

/** Collects the snapshot: Redis and Postgres read at the same time. */
export async function collectOrdersStats(redis: RedisConnection, pool: PgPool, options: OrdersStatsOptions): Promise<OrdersStats> {
  const now = (options.now ?? Date.now)();
  const pg = (async () => {
    const [counts, views] = await Promise.all([ordersCounts(pool, options.schema), viewStats(pool, options.schema)]);
    return { ...counts, views };
  })();
  const [r, totals, postgres] = await Promise.all([
    redisOrderStats(redis, options.prefix, {
      dedup: { windowSeconds: options.dedupWindowSeconds, bucketSeconds: options.dedupBucketSeconds },
      ...(options.revenueWindowMs === undefined ? {} : { revenueWindowMs: options.revenueWindowMs }),
    }),
    pipelineTotals(redis, options.prefix, now),
    pg.then(
      (v) => ({ ok: v, error: undefined }),
      (err: unknown) => ({ ok: null, error: err }),
    ),
  ]);
  const stats: OrdersStats = {
    version: 1,
    takenAt: new Date(now).toISOString(),
    prefix: options.prefix,
    schema: options.schema,
    redis: r,
    backpressure: { maxQueueDepth: options.maxQueueDepth, engaged: r.queue.depth >= options.maxQueueDepth },
    pipeline: totals.totals,
    throughput: { ordersPerSec: totals.ordersPerSec, windowSecs: Math.round(totals.windowSecs * 10) / 10 },
    postgres: postgres.ok,
  };
  if (postgres.error !== undefined) {
    const code = (postgres.error as { code?: unknown }).code;
    // 42P01 / 3F000: table or schema missing. Anything else (a server down) is the caller's to report.
    if (code !== '42P01' && code !== '3F000') throw postgres.error;
    stats.postgresError = `schema ${options.schema} is not migrated (run: tributary orders init-cache --all)`;
  }
  return stats;
}

const n = (v: number) => Math.round(v).toLocaleString('en-US');

function ago(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms ago`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s ago`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min ago`;
  return `${(ms / 3_600_000).toFixed(1)} h ago`;
}

function bytes(b: number): string {
  if (b < 1024) return `${b} B`;
  if (b < 1024 ** 2) return `${(b / 1024).toFixed(0)} kB`;
  return `${(b / 1024 ** 2).toFixed(1)} MB`;
}

/** The snapshot as the `orders stats` text. Pure. */
export function formatOrdersStats(s: OrdersStats): string {
  const now = Date.parse(s.takenAt);
  const r = s.redis;
  const lines: string[] = [];
  const rule = '='.repeat(60);
  lines.push(rule, `ORDERS PIPELINE${' '.repeat(37)}${s.takenAt.slice(11, 19)}`, rule);
  lines.push(`Queue (redis prefix ${s.prefix}):`);
  lines.push(`  Waiting:            ${n(r.queue.length)}`);
  lines.push(`  In processing:      ${n(r.queue.processing)} (${r.queue.workers.length} ${r.queue.workers.length === 1 ? 'worker' : 'workers'})`);
  for (const w of r.queue.workers.slice(0, 10)) {
    lines.push(`    - ${w.worker}: ${n(w.processing)} held, heartbeat ${w.heartbeatAgeMs === null ? 'none' : ago(w.heartbeatAgeMs)}`);
  }
  if (r.queue.workers.length > 10) lines.push(`    ... and ${r.queue.workers.length - 10} more`);
  lines.push(
    `  Depth (backpressure): ${n(r.queue.depth)} / MAX_QUEUE_DEPTH ${n(s.backpressure.maxQueueDepth)}${s.backpressure.engaged ? '  ENGAGED: producers wait' : ''}`,
  );
  lines.push(`Dedup window: ${n(r.dedup.size)} order_ids (${r.dedup.windowSeconds} s, ${r.dedup.buckets} buckets of ${r.dedup.bucketSeconds} s)`);
  const c = r.cache;
  if (c.version === null) lines.push('Lookup cache: not initialised (run: tributary orders init-cache)');
  else if (c.expired || !c.sizes) lines.push(`Lookup cache: version ${c.version} EXPIRED`);
  else {
    lines.push(
      `Lookup cache: version ${c.version}, ${n(c.sizes.products)} products, ${n(c.sizes.currencies)} currencies, ${n(c.sizes.zipCodes)} zip codes` +
        `${c.publishedAt === null ? '' : `, published ${ago(now - c.publishedAt)}`}${c.ttlMs === null ? '' : `, expires in ${Math.round(c.ttlMs / 60_000)} min`}`,
    );
  }
  const rev = r.revenue;
  lines.push(`Revenue (last ${Math.round(rev.windowMs / 60_000)} min): $${rev.revenueUsd.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })} from ${n(rev.orders)} orders${rev.exact ? '' : ' (extrapolated)'}`);
  const p = s.pipeline;
  lines.push('Pipeline (all processes):');
  const window = s.throughput.windowSecs < 10 ? s.throughput.windowSecs.toFixed(1) : Math.round(s.throughput.windowSecs);
  lines.push(`  Throughput:         ${n(s.throughput.ordersPerSec)} orders/s (last ${window} s)`);
  lines.push(
    `  Totals:             ${n(p.taken)} taken in ${n(p.batches)} batches; ${n(p.promoted)} promoted, ${n(p.duplicates)} duplicates dropped, ` +
      `${n(p.pgDuplicates)} already in orders, ${n(p.rejected)} rejected`,
  );
  const reasons = Object.entries(p.flushReasons ?? {}).filter(([, v]) => v > 0);
  if (reasons.length > 0) lines.push(`  Flushed by:         ${reasons.map(([r, v]) => `${r} ${n(v)}`).join(', ')}`);
  lines.push(`  Last batch:         ${p.lastBatchAt === null ? 'never' : ago(now - p.lastBatchAt)}`);
  if (!s.postgres) {
    lines.push(`Postgres (schema ${s.schema}): ${s.postgresError ?? 'unavailable'}`);
  } else {
    const pg = s.postgres;
    lines.push(`Postgres (schema ${s.schema}):`);
    lines.push(`  Staging:            ${n(pg.staging)} rows (UNLOGGED)`);
    lines.push(`  Orders:             ${n(pg.orders)} rows`);
    lines.push(`  Rejected:           ${n(pg.rejectedTotal)} rows`);
    for (const reason of REJECT_REASONS) if (pg.rejected[reason]) lines.push(`    ${reason}: ${n(pg.rejected[reason]!)}`);
    lines.push(`  Reference data:     ${n(pg.products)} products, ${n(pg.currencies)} currencies, ${n(pg.zipCodes)} zip codes`);
    lines.push('  Materialized views:');
    for (const v of pg.views) {
      const fresh = v.lastRefreshedAt === null ? 'never refreshed' : `refreshed ${ago(now - v.lastRefreshedAt.getTime())} (${(v.lastRefreshMs ?? 0).toFixed(0)} ms, ${n(v.refreshes)} refreshes)`;
      lines.push(`    ${v.view}: ${n(v.rows)} rows, ${bytes(v.sizeBytes)}, ${fresh}`);
    }
  }
  lines.push(rule);
  return lines.join('\n');
}

/** Deletes every Redis key of the prefix matching `pattern` (SCAN, then DEL in chunks); returns how many. */
export async function deleteKeys(redis: RedisConnection, pattern: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const reply = (await send(redis, ['SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000'])) as [string, string[]];
    cursor = String(reply[0]);
    if (reply[1].length > 0) deleted += Number(await send(redis, ['UNLINK', ...reply[1]]));
  } while (cursor !== '0');
  return deleted;
}
