/** One snapshot of the orders pipeline's Redis side, for `tributary orders stats`. */
import type { RedisConnection } from '../../redis/client.js';
import { LookupCache, type CacheInfo } from './cache.js';
import { DedupWindow } from './dedup.js';
import { DEFAULT_ORDERS_PREFIX } from './keys.js';
import { OrderQueue, type WorkerState } from './queue.js';
import { RevenueWindow, type RevenueSummary } from './revenue.js';

export interface RedisOrderStatsOptions {
  /** The dedup window's settings, to pick the live buckets (defaults as DedupWindow's: 3600 / 300 s). */
  dedup?: { windowSeconds?: number; bucketSeconds?: number };
  /** The revenue window's length, ms (default 900,000); the summary covers all of it. */
  revenueWindowMs?: number;
}

export interface RedisOrderStats {
  prefix: string;
  queue: {
    /** Orders waiting (LLEN of the queue). */
    length: number;
    /** The depth counter: queued plus in-processing, uncommitted orders. */
    depth: number;
    /** Orders in all processing lists. */
    processing: number;
    /** Every worker with a heartbeat or a processing list. */
    workers: WorkerState[];
  };
  dedup: { size: number; windowSeconds: number; bucketSeconds: number; buckets: number };
  cache: CacheInfo;
  revenue: RevenueSummary & { windowMs: number };
}

/** Reads queue, processing lists, depth, dedup window size, cache version and sizes, and the revenue window. */
export async function redisOrderStats(client: RedisConnection, prefix: string = DEFAULT_ORDERS_PREFIX, options: RedisOrderStatsOptions = {}): Promise<RedisOrderStats> {
  const queue = new OrderQueue({ client, prefix });
  const dedup = new DedupWindow({ client, prefix, ...options.dedup });
  const cache = new LookupCache({ client, prefix });
  const revenue = new RevenueWindow({ client, prefix, ...(options.revenueWindowMs === undefined ? {} : { windowMs: options.revenueWindowMs }) });
  const [length, depth, workers, dedupSize, cacheInfo, summary] = await Promise.all([
    queue.length(),
    queue.depth(),
    queue.workers(),
    dedup.size(),
    cache.info(),
    revenue.summary(),
  ]);
  return {
    prefix,
    queue: { length, depth, processing: workers.reduce((sum, w) => sum + w.processing, 0), workers },
    dedup: { size: dedupSize, windowSeconds: dedup.windowSeconds, bucketSeconds: dedup.bucketSeconds, buckets: dedup.liveBucketKeys().length },
    cache: cacheInfo,
    revenue: { ...summary, windowMs: revenue.windowMs },
  };
}
