/** The Redis side of the orders pipeline: queue, dedup window, lookup cache, signals, revenue window, backpressure. */
export { DEFAULT_ORDERS_PREFIX, CACHE_TABLES, orderKeys, escapeGlob, type CacheTable, type OrderKeys } from './keys.js';
export {
  OrderQueue,
  type OrderQueueOptions,
  type AckResult,
  type RecoverOptions,
  type RecoverResult,
  type WorkerState,
} from './queue.js';
export { DedupWindow, liveBuckets, keepFirstUnseen, type DedupWindowOptions } from './dedup.js';
export {
  LookupCache,
  validateReferenceData,
  type LookupCacheOptions,
  type PublishResult,
  type CacheInfo,
  type CacheSizes,
} from './cache.js';
export {
  OrderSignals,
  ViewRefresher,
  parsePromotedSignal,
  type OrderSignalsOptions,
  type PromotedSignal,
  type PromotedInfo,
  type SubscribeOptions,
  type Unsubscribe,
  type RefreshOutcome,
  type ViewRefresherEvents,
  type ViewRefresherOptions,
  type ViewRefresherStats,
} from './signals.js';
export {
  RevenueWindow,
  sumMemberCents,
  toCents,
  type RevenueWindowOptions,
  type RevenueEntry,
  type RevenueAddResult,
  type RevenueSummary,
} from './revenue.js';
export {
  Backpressure,
  pushWithBackpressure,
  type BackpressureOptions,
  type BackpressureStats,
  type WaitForRoomOptions,
} from './backpressure.js';
export { redisOrderStats, type RedisOrderStats, type RedisOrderStatsOptions } from './stats.js';
