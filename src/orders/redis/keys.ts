/**
 * Every Redis key of the orders pipeline, built from one prefix (default `orders`), in one
 * place. Nothing else in src/orders/redis spells a key.
 *
 * On a Redis Cluster, give a prefix with a hash tag (e.g. `{orders}`): the Lua scripts
 * touch several of these keys at once (and the cache scripts derive version keys inside
 * the script), which needs them all in one slot.
 */

/** The default key prefix. */
export const DEFAULT_ORDERS_PREFIX = 'orders';

/** Names of the three lookup tables of one cache version. */
export const CACHE_TABLES = ['products', 'currencies', 'zips'] as const;
export type CacheTable = (typeof CACHE_TABLES)[number];

export interface OrderKeys {
  readonly prefix: string;
  /** List of order JSON texts: producers LPUSH, workers BLMOVE from the right. */
  readonly queue: string;
  /** Counter: orders queued plus orders taken but not yet acknowledged. */
  readonly depth: string;
  /** Sorted set of worker names scored by their last heartbeat (ms, Redis clock). */
  readonly workers: string;
  /**
   * Hash of worker name → fencing epoch: raised each time the worker's processing list is
   * taken from it (recovered as stale, or released). Takes and acks carry the epoch the
   * worker last adopted; the scripts refuse them once it was raised (the worker was fenced).
   */
  readonly fence: string;
  /** A worker's processing list: what it took and has not acknowledged yet. */
  processing(worker: string): string;
  /** Every processing key starts with this (the worker name follows). */
  readonly processingPrefix: string;
  /** SCAN MATCH pattern for all processing lists (prefix glob characters escaped). */
  readonly processingPattern: string;
  /** One dedup bucket: the set of order_ids marked seen during that bucket. */
  dedup(bucket: number): string;
  /** Counter INCRed to allocate each new cache version. */
  readonly cacheSeq: string;
  /** The current cache version (a number as text). */
  readonly cacheVersion: string;
  /** One lookup hash of one cache version. */
  cache(version: number, table: CacheTable): string;
  /** Hash describing one cache version (sizes, published_at); written last, before the swap. */
  cacheMeta(version: number): string;
  /** Key prefix of every per-version cache key: `<p>:cache:` (the scripts append `<v>:<table>`). */
  readonly cacheVersionPrefix: string;
  /** Sorted set of recent orders (score: order time in ms, member `<order_id>:<cents>`). */
  readonly window: string;
  /** Pub/sub channel announcing promoted batches. */
  readonly signals: string;
  /** Hash of the pipeline's running totals (taken, promoted, duplicates, rejected, ...), for `orders stats`. */
  readonly stats: string;
  /** Hash of the runner's batch counters (`batches`, `rows`, `flush:<reason>`), as every pipeline publishes them. */
  readonly batchStats: string;
  /** Counter of orders committed during one 10-second slot (ms / 10,000), expiring by itself: the throughput. */
  throughput(slot: number): string;
  /** When the first batch of a throughput slot was committed (ms since epoch), expiring with it: where a run's window starts. */
  throughputFirst(slot: number): string;
}

/** Escapes the glob characters of a SCAN MATCH pattern (`*`, `?`, `[`, `]`, `\`). */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** Builds every key name from `prefix` (default `orders`). */
export function orderKeys(prefix: string = DEFAULT_ORDERS_PREFIX): OrderKeys {
  if (prefix.length === 0) throw new RangeError('orders key prefix must be a non-empty string');
  const p = prefix;
  return {
    prefix: p,
    queue: `${p}:queue`,
    depth: `${p}:depth`,
    workers: `${p}:workers`,
    fence: `${p}:fence`,
    processing: (worker: string) => `${p}:processing:${worker}`,
    processingPrefix: `${p}:processing:`,
    processingPattern: `${escapeGlob(p)}:processing:*`,
    dedup: (bucket: number) => `${p}:dedup:${bucket}`,
    cacheSeq: `${p}:cache:seq`,
    cacheVersion: `${p}:cache:version`,
    cache: (version: number, table: CacheTable) => `${p}:cache:${version}:${table}`,
    cacheMeta: (version: number) => `${p}:cache:${version}:meta`,
    cacheVersionPrefix: `${p}:cache:`,
    window: `${p}:window`,
    signals: `${p}:signals`,
    stats: `${p}:stats`,
    batchStats: `${p}:batch-stats`,
    throughput: (slot: number) => `${p}:throughput:${slot}`,
    throughputFirst: (slot: number) => `${p}:throughput:${slot}:first`,
  };
}

/** Checks a worker name (non-empty, no newline); returns it. */
export function checkWorkerName(worker: string): string {
  if (typeof worker !== 'string' || worker.length === 0 || /[\r\n]/.test(worker)) {
    throw new RangeError(`worker name must be a non-empty single-line string, got ${JSON.stringify(worker)}`);
  }
  return worker;
}
