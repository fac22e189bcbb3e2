/**
 * The steps one batch of orders goes through, as plain functions over explicit
 * dependencies: the pipeline's workers run them in sequence with retries around them,
 * and the benchmark runs each one over every batch to time it alone.
 *
 *   parse → dedup → enrich → transform → stage + promote → commit
 *
 * `commitBatch` is the only step that acknowledges, and it runs only after the batch's
 * promote has committed.
 */
import { quoteIdent, type PgPool } from '../postgres/pool.js';
import type { RedisConnection } from '../redis/client.js';
import { promote, recordMalformed } from './pg/promote.js';
import { stageBatch } from './pg/staging.js';
import type { LookupCache } from './redis/cache.js';
import type { DedupWindow } from './redis/dedup.js';
import type { OrderKeys } from './redis/keys.js';
import type { AckResult, OrderQueue } from './redis/queue.js';
import type { RevenueEntry, RevenueWindow } from './redis/revenue.js';
import type { OrderSignals } from './redis/signals.js';
import type { MalformedOrder } from './transform.js';
import type { LookupResult, Order, PromoteResult, RejectReason, StagingColumns } from './types.js';

/** Throughput slots are this long (ms); `orders stats` sums the last few. */
export const THROUGHPUT_SLOT_MS = 10_000;
/** A throughput slot's counter lives this long (s). */
const THROUGHPUT_TTL_S = 180;

/**
 * Keeps the orders not seen in the dedup window and first of their order_id in the
 * batch: one round trip (the window's Lua check). Marks nothing.
 */
export async function dropDuplicates(dedup: DedupWindow, orders: readonly Order[]): Promise<{ orders: Order[]; duplicates: number }> {
  if (orders.length === 0) return { orders: [], duplicates: 0 };
  const ids = new Array<string>(orders.length);
  for (let i = 0; i < orders.length; i++) ids[i] = orders[i]!.order_id;
  const keep = await dedup.filterUnseen(ids);
  const fresh: Order[] = [];
  for (let i = 0; i < orders.length; i++) if (keep[i]) fresh.push(orders[i]!);
  return { orders: fresh, duplicates: orders.length - fresh.length };
}

/** The lookup cache entries these orders name, from one cache version: one round trip. */
export function lookupFor(cache: LookupCache, orders: readonly Order[]): Promise<LookupResult> {
  const products = new Set<string>();
  const currencies = new Set<string>();
  const zips = new Set<string>();
  for (const o of orders) {
    products.add(o.product_id);
    currencies.add(o.currency);
    zips.add(o.zip_code);
  }
  return cache.lookup(products, currencies, zips);
}

/** What staging and promoting one batch did. */
export interface StagePromoteResult extends PromoteResult {
  /** Rows staged by the COPY that was promoted (0 when the batch was empty). */
  stagedRows: number;
  /** Malformed items recorded as rejects. */
  malformedRecorded: number;
  /**
   * True when an earlier attempt's promote had committed (its reply was lost) and the
   * batch's rows were found in `orders` / `orders_rejected`: the counts are then zeros.
   */
  landedEarlier: boolean;
  stageMs: number;
  promoteMs: number;
}

/** Where one stage-and-promote of a batch stands between attempts. */
export interface StagePromoteState {
  /** The malformed items are recorded. */
  malformedRecorded: boolean;
  /** A COPY of this batch may have committed (an attempt got that far): promote it before staging again. */
  maybeStaged: boolean;
}

export function newStagePromoteState(): StagePromoteState {
  return { malformedRecorded: false, maybeStaged: false };
}

/** Thrown when staged rows were gone at promote (a Postgres restart empties the UNLOGGED staging table): the batch is staged again. */
export class StagedRowsVanished extends Error {
  constructor(
    readonly batchId: string,
    readonly expected: number,
    readonly found: number,
  ) {
    super(`batch ${batchId}: ${expected} rows staged, ${found} found at promote (staging emptied, e.g. by a Postgres restart); staging again`);
    this.name = 'StagedRowsVanished';
  }
}

/**
 * True when rows of this batch are in `orders` or (staged and rejected) in
 * `orders_rejected`: an earlier promote of it committed. Reads without an index on
 * batch_id: used only after a failure left that unknown.
 */
export async function batchLanded(pool: PgPool, schema: string, batchId: string): Promise<boolean> {
  const s = quoteIdent(schema);
  const res = await pool.query<{ landed: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ${s}.orders WHERE batch_id = $1)
         OR EXISTS (SELECT 1 FROM ${s}.orders_rejected WHERE batch_id = $1 AND raw IS NULL) AS landed`,
    [batchId],
  );
  return res.rows[0]!.landed;
}

/**
 * Stages the batch (one COPY) and promotes it (one transaction), recording malformed
 * items first. Safe to call again with the same `state` after it threw, whatever the
 * failure left behind:
 * - a COPY that may have committed is promoted first (`maybeStaged`), so its rows are
 *   neither lost nor staged twice;
 * - a promote whose commit's reply was lost is recognised (`batchLanded`) and not redone;
 * - rows that vanished from staging (a Postgres restart empties the UNLOGGED table)
 *   make it throw StagedRowsVanished, and the next call stages them again.
 * Returns once the batch's orders are committed in `orders` / `orders_rejected`.
 */
export async function stageAndPromote(
  pool: PgPool,
  schema: string,
  batchId: string,
  cols: StagingColumns,
  malformed: readonly MalformedOrder[],
  state: StagePromoteState,
): Promise<StagePromoteResult> {
  let stageMs = 0;
  let promoteMs = 0;
  let malformedRecorded = 0;
  const t0 = performance.now();
  if (!state.malformedRecorded && malformed.length > 0) {
    malformedRecorded = await recordMalformed(pool, schema, batchId, malformed);
  }
  state.malformedRecorded = true;
  if (cols.length === 0) {
    stageMs = performance.now() - t0;
    return { promoted: 0, duplicates: 0, rejected: {}, staged: 0, stagedRows: 0, malformedRecorded, landedEarlier: false, stageMs, promoteMs };
  }
  if (state.maybeStaged) {
    const t1 = performance.now();
    const leftover = await promote(pool, schema, { batchId });
    promoteMs += performance.now() - t1;
    if (leftover.staged === cols.length) {
      state.maybeStaged = false;
      return { ...leftover, stagedRows: leftover.staged, malformedRecorded, landedEarlier: false, stageMs, promoteMs };
    }
    if (leftover.staged === 0 && (await batchLanded(pool, schema, batchId))) {
      state.maybeStaged = false;
      return { promoted: 0, duplicates: 0, rejected: {}, staged: 0, stagedRows: 0, malformedRecorded, landedEarlier: true, stageMs, promoteMs };
    }
    // Nothing (or only part) was there: stage the whole batch again. Rows already in
    // `orders` are skipped by its primary key.
  }
  state.maybeStaged = true;
  const t2 = performance.now();
  const stagedRows = await stageBatch(pool, schema, batchId, cols);
  stageMs += performance.now() - t2;
  const t3 = performance.now();
  const result = await promote(pool, schema, { batchId });
  promoteMs += performance.now() - t3;
  if (result.staged !== stagedRows) throw new StagedRowsVanished(batchId, stagedRows, result.staged);
  state.maybeStaged = false;
  return { ...result, stagedRows, malformedRecorded, landedEarlier: false, stageMs, promoteMs };
}

/** The orders of a batch that count towards windowed revenue: valid by the cache's data. Pure. */
export function revenueEntries(cols: StagingColumns): RevenueEntry[] {
  const out: RevenueEntry[] = [];
  for (let i = 0; i < cols.length; i++) {
    const ts = cols.order_ts[i];
    const total = cols.total_usd[i];
    if (ts === null || ts === undefined || total === null || total === undefined) continue;
    if (cols.rate_to_usd[i] === null || cols.shipping_zone[i] === null || !(cols.quantity[i]! > 0)) continue;
    out.push({ orderId: cols.order_id[i]!, timestampMs: Date.parse(ts), totalUsd: total });
  }
  return out;
}

/** Total rejects of a promote result. */
export function rejectedTotal(rejected: Partial<Record<RejectReason, number>>): number {
  let n = 0;
  for (const v of Object.values(rejected)) n += v ?? 0;
  return n;
}

export interface CommitParts {
  queue: OrderQueue;
  dedup: DedupWindow;
  revenue: RevenueWindow;
  /** The connection the counters go on (the worker's). */
  client: RedisConnection;
  keys: OrderKeys;
}

export interface CommitInput {
  worker: string;
  /** Items taken (the whole batch: malformed and duplicates included). */
  taken: number;
  /** order_ids to mark seen in the dedup window. */
  freshIds: readonly string[];
  /** Orders for the revenue window. */
  revenue: readonly RevenueEntry[];
  counts: { promoted: number; pgDuplicates: number; rejected: number; malformed: number; duplicates: number };
}

/**
 * After the batch's promote has committed: acknowledges the whole batch (removes it from
 * the processing list and the depth counter), marks its order_ids seen, adds its orders
 * to the revenue window and counts it in the stats hash and the throughput slot. All
 * sent together (one round trip); each part is safe to repeat if the call is retried.
 */
export async function commitBatch(parts: CommitParts, input: CommitInput, now = Date.now()): Promise<AckResult> {
  const { keys } = parts;
  const c = input.counts;
  const slot = keys.throughput(Math.floor(now / THROUGHPUT_SLOT_MS));
  const stats = parts.client.multi();
  stats.addCommand(['HINCRBY', keys.stats, 'batches', '1']);
  stats.addCommand(['HINCRBY', keys.stats, 'taken', String(input.taken)]);
  stats.addCommand(['HINCRBY', keys.stats, 'promoted', String(c.promoted)]);
  stats.addCommand(['HINCRBY', keys.stats, 'duplicates', String(c.duplicates)]);
  stats.addCommand(['HINCRBY', keys.stats, 'pg_duplicates', String(c.pgDuplicates)]);
  stats.addCommand(['HINCRBY', keys.stats, 'rejected', String(c.rejected + c.malformed)]);
  stats.addCommand(['HSET', keys.stats, 'last_batch_at', String(now)]);
  stats.addCommand(['INCRBY', slot, String(input.taken)]);
  stats.addCommand(['EXPIRE', slot, String(THROUGHPUT_TTL_S)]);
  const [ack] = await Promise.all([
    parts.queue.ack(input.worker, input.taken),
    parts.dedup.markSeen(input.freshIds),
    input.revenue.length > 0 ? parts.revenue.add(input.revenue) : null,
    stats.execAsPipeline(),
  ]);
  return ack;
}

/** Publishes the completion signal of a promoted batch (the view refresher listens). Returns the subscribers reached. */
export function announce(signals: OrderSignals, info: { batchId: string; worker: string; promoted: number; duplicates: number; rejected: number }): Promise<number> {
  return signals.publishPromoted(info);
}
