import type { PoolClient } from 'pg';
import { TributaryError } from '../../errors.js';
import { isConnectionError, quoteIdent, type PgPool } from '../../postgres/pool.js';
import { REJECT_REASONS, type PromoteResult, type RejectReason } from '../types.js';

export interface PromoteOptions {
  /** Promote only the rows staged with this batch id. Default: every staged row. */
  batchId?: string;
  /** Attempts when concurrent promoters deadlock (SQLSTATE 40P01) or fail serialisation (40001). Default 3. */
  attempts?: number;
  /**
   * The worker's fence (needs batchId): the promote is refused (PromoteResult.fenced, its
   * staged rows dropped) when `<schema>.orders_fences` holds a higher epoch for the worker
   * (see fenceWorker). Checked under the promote lock, in the promote's transaction.
   */
  fence?: WorkerFence;
}

/** Who promotes a batch, and the fencing epoch it took the batch under. */
export interface WorkerFence {
  /** The Redis key prefix of the queue. */
  prefix: string;
  worker: string;
  epoch: number;
}

/**
 * The validate-and-promote statement: one statement, so one snapshot and all or nothing.
 *
 *   moved     the staged rows it consumes (DELETE ... RETURNING: a row another promoter
 *             deleted first is skipped, so no row is ever consumed twice)
 *   checked   each row against the reference tables (authoritative, whatever the lookup
 *             cache said), with one problem text per check; lookup misses (null
 *             enrichment) are filled from the reference tables
 *   judged    reason = the first failed check in REJECT_REASONS order, detail = all of them
 *   rejected  invalid rows → orders_rejected
 *   inserted  valid rows → orders, one per order_id (the first staged), in order_id
 *             order so concurrent promoters take key locks in the same order;
 *             ON CONFLICT DO NOTHING makes an order already promoted a no-op
 */
/** @internal The statement (exported for EXPLAIN in benchmarks and tests). */
export function promoteSql(schema: string, byBatch: boolean): string {
  const s = quoteIdent(schema);
  return `
WITH moved AS (
  DELETE FROM ${s}.orders_staging
  ${byBatch ? 'WHERE batch_id = $1' : ''}
  RETURNING *, ctid AS staged_ctid
),
checked AS (
  SELECT m.*,
         nullif(concat_ws('; ',
           m.stage_error,
           CASE WHEN coalesce(m.order_id, '') = '' THEN 'order_id is empty' END,
           CASE WHEN coalesce(m.customer_id, '') = '' THEN 'customer_id is empty' END,
           CASE WHEN m.quantity IS NULL AND m.stage_error IS NULL THEN 'quantity is missing'
                WHEN m.quantity <> trunc(m.quantity) THEN format('quantity %s is not a whole number', m.quantity)
                WHEN m.quantity > 2147483647 THEN format('quantity %s is out of range', m.quantity) END,
           CASE WHEN abs(m.unit_price) >= 1e10 THEN format('unit_price %s is out of range', m.unit_price) END
         ), '') AS malformed,
         CASE WHEN p.product_id IS NULL THEN format('product_id %L is not in products', m.product_id) END AS unknown_product,
         CASE WHEN c.code IS NULL THEN format('currency %L is not in currencies', m.currency) END AS unknown_currency,
         CASE WHEN z.zip_code IS NULL THEN format('zip_code %L is not in zip_codes', m.zip_code) END AS unknown_zip,
         CASE WHEN m.quantity <= 0 THEN format('quantity %s is not positive', m.quantity) END AS non_positive_quantity,
         CASE WHEN m.order_ts IS NULL THEN 'order_ts is missing or not a valid time' END AS bad_timestamp,
         -- Enrichment the lookup cache missed, from the reference tables.
         coalesce(m.category, p.category)                                      AS category_,
         coalesce(m.unit_price, p.unit_price)                                  AS unit_price_,
         CASE WHEN m.rate_to_usd > 0 THEN m.rate_to_usd ELSE c.rate_to_usd END AS rate_,
         coalesce(m.total_usd, round(m.quantity * coalesce(m.unit_price, p.unit_price), 2)) AS total_usd_,
         coalesce(m.shipping_zone, z.shipping_zone)                            AS shipping_zone_,
         coalesce(m.region, z.region)                                          AS region_
  FROM moved m
  LEFT JOIN ${s}.products   p ON p.product_id = m.product_id
  LEFT JOIN ${s}.currencies c ON c.code = m.currency
  LEFT JOIN ${s}.zip_codes  z ON z.zip_code = m.zip_code
),
judged AS (
  SELECT *,
         CASE WHEN malformed IS NOT NULL             THEN 'malformed'
              WHEN unknown_product IS NOT NULL       THEN 'unknown_product'
              WHEN unknown_currency IS NOT NULL      THEN 'unknown_currency'
              WHEN unknown_zip IS NOT NULL           THEN 'unknown_zip'
              WHEN non_positive_quantity IS NOT NULL THEN 'non_positive_quantity'
              WHEN bad_timestamp IS NOT NULL         THEN 'bad_timestamp' END AS reason,
         concat_ws('; ', malformed, unknown_product, unknown_currency, unknown_zip,
                   non_positive_quantity, bad_timestamp) AS detail
  FROM checked
),
rejected AS (
  INSERT INTO ${s}.orders_rejected
         (order_id, batch_id, customer_id, product_id, quantity, currency, zip_code, order_ts,
          reason, detail, staged_at, reject_key)
  SELECT order_id, batch_id, customer_id, product_id, quantity, currency, zip_code, order_ts,
         reason, detail, staged_at,
         md5(row(order_id, customer_id, product_id, quantity, currency, zip_code, order_ts, stage_error)::text)
  FROM judged
  WHERE reason IS NOT NULL
  -- The same item rejected again (a redelivered batch): no second row.
  ON CONFLICT (reject_key, reason) DO NOTHING
  RETURNING reason
),
inserted AS (
  INSERT INTO ${s}.orders
         (order_id, customer_id, product_id, quantity, currency, zip_code, order_ts, category,
          unit_price, line_total, rate_to_usd, total_usd, shipping_zone, region, batch_id, staged_at)
  SELECT order_id, customer_id, product_id, quantity::integer, currency, zip_code, order_ts, category_,
         unit_price_, coalesce(line_total, round(total_usd_ / rate_, 2)), rate_, total_usd_,
         shipping_zone_, region_, batch_id, staged_at
  FROM (SELECT DISTINCT ON (order_id) *
        FROM judged
        WHERE reason IS NULL
        ORDER BY order_id, staged_at, staged_ctid) AS first_staged
  ORDER BY order_id
  ON CONFLICT (order_id) DO NOTHING
  RETURNING 1
)
SELECT (SELECT count(*) FROM moved)::int                      AS staged,
       (SELECT count(*) FROM judged WHERE reason IS NULL)::int AS valid,
       (SELECT count(*) FROM inserted)::int                   AS promoted,
       -- Rejects recorded now; one already recorded (the same item again: ON CONFLICT) counts as a duplicate.
       (SELECT coalesce(json_object_agg(reason, n), '{}')
        FROM (SELECT reason, count(*)::int AS n FROM rejected GROUP BY reason) AS r) AS rejected,
       (SELECT coalesce(array_agg(order_id), '{}') FROM judged WHERE reason IS NOT NULL AND order_id IS NOT NULL) AS rejected_ids`;
}

/** The advisory lock key (hashtext) every promote of the schema holds for its transaction. */
export function promoteLockKey(schema: string): string {
  return `tributary:orders:promote:${schema}`;
}

const RETRYABLE_SQLSTATES = new Set(['40P01', '40001']);

/**
 * Validates staged orders and promotes them, in ONE transaction:
 * - valid rows go to `orders` (`INSERT ... ON CONFLICT (order_id) DO NOTHING`, deduped
 *   within what is promoted too: an order_id staged twice or already in `orders` never
 *   becomes a second row);
 * - invalid rows go to `orders_rejected` with a reason (the first that applies, in
 *   REJECT_REASONS order) and a detail listing every problem: 'malformed' (a stage_error,
 *   an empty order_id or customer_id, a quantity that is not a whole number in integer
 *   range), 'unknown_product' / 'unknown_currency' / 'unknown_zip' (not in the
 *   Postgres reference table, whatever the lookup cache said), 'non_positive_quantity',
 *   'bad_timestamp' (order_ts null);
 * - the consumed staging rows are deleted.
 * Lookup misses in a valid row (null category, price, rate, zone...) are filled from
 * the reference tables.
 *
 * `batchId` promotes one batch; without it, every staged row. Concurrent promoters are
 * safe: rows are claimed with DELETE ... RETURNING, so none is consumed twice; batch
 * promoters share an advisory transaction lock that an all-rows promoter takes
 * exclusively (their row-lock orders differ and could deadlock otherwise); a deadlock
 * that still happens is retried (`attempts`, default 3). Works through PgBouncer in
 * transaction mode (one transaction, unnamed statements, no session state).
 *
 * `staged = promoted + duplicates + Σ rejected`: duplicates are valid rows whose order_id
 * was already in `orders`, and invalid rows whose item was already in `orders_rejected`
 * with the same reason (a redelivery: no second reject row).
 *
 * @throws TributaryError TRIB_ERR_ORDERS_PROMOTE_CONTENDED when every attempt deadlocked;
 *   other Postgres errors as pg raised them. Either way nothing was promoted.
 */
export async function promote(pool: PgPool, schema: string, options: PromoteOptions = {}): Promise<PromoteResult> {
  const attempts = options.attempts ?? 3;
  if (!Number.isSafeInteger(attempts) || attempts < 1) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['attempts', `must be a positive integer (got ${String(attempts)})`]);
  }
  const byBatch = options.batchId !== undefined;
  const sql = promoteSql(schema, byBatch);
  const lockSql = byBatch ? 'SELECT pg_advisory_xact_lock_shared(hashtext($1))' : 'SELECT pg_advisory_xact_lock(hashtext($1))';
  const lockKey = promoteLockKey(schema);
  let last: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await inTransaction(pool, async (client) => {
        await client.query(lockSql, [lockKey]);
        if (options.fence && byBatch) {
          const refused = await refuseFenced(client, schema, options.batchId!, options.fence);
          if (refused) return refused;
        }
        const res = await client.query<PromoteRow>(sql, byBatch ? [options.batchId] : []);
        return promoteResult(res.rows[0]!);
      });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== 'string' || !RETRYABLE_SQLSTATES.has(code)) throw err;
      last = err;
      await new Promise((r) => setTimeout(r, 10 * attempt + Math.random() * 20));
    }
  }
  throw new TributaryError(
    'TRIB_ERR_ORDERS_PROMOTE_CONTENDED',
    [byBatch ? `batch ${JSON.stringify(options.batchId)}` : 'all staged rows', attempts, (last as Error).message],
    { cause: last },
  );
}

interface PromoteRow {
  staged: number;
  valid: number;
  promoted: number;
  rejected: Record<string, number>;
  rejected_ids?: string[];
}

/**
 * Inside a promote's transaction, under the promote lock: when the worker was fenced
 * (orders_fences holds a higher epoch than the batch's), drops the batch's staged rows
 * and returns the refusal; undefined when the worker may promote.
 */
async function refuseFenced(client: PoolClient, schema: string, batchId: string, fence: WorkerFence): Promise<PromoteResult | undefined> {
  const s = quoteIdent(schema);
  const res = await client.query<{ epoch: string }>(`SELECT epoch FROM ${s}.orders_fences WHERE prefix = $1 AND worker = $2`, [fence.prefix, fence.worker]);
  const current = res.rows[0] ? Number(res.rows[0].epoch) : 0;
  if (current <= fence.epoch) return undefined;
  await client.query(`DELETE FROM ${s}.orders_staging WHERE batch_id = $1`, [batchId]);
  return { promoted: 0, duplicates: 0, rejected: {}, staged: 0, fenced: { epoch: fence.epoch, current } };
}

/**
 * Fences a worker in Postgres: records its new epoch (never lowering it) and drops every
 * row it staged, in one transaction holding the promote lock exclusively, so a promote of
 * its batches has either committed before or is refused after (refuseFenced). Waits at
 * most `lockTimeoutMs` for the lock (a promote of a frozen process may hold it): then it
 * throws and the caller tries again later. Returns the staged rows dropped.
 */
export async function fenceWorker(pool: PgPool, schema: string, fence: WorkerFence, lockTimeoutMs = 5000): Promise<number> {
  const s = quoteIdent(schema);
  return inTransaction(pool, async (client) => {
    await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`);
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [promoteLockKey(schema)]);
    await client.query(
      `INSERT INTO ${s}.orders_fences (prefix, worker, epoch) VALUES ($1, $2, $3)
       ON CONFLICT (prefix, worker) DO UPDATE SET epoch = greatest(${s}.orders_fences.epoch, excluded.epoch), fenced_at = now()`,
      [fence.prefix, fence.worker, fence.epoch],
    );
    const res = await client.query(`DELETE FROM ${s}.orders_staging WHERE starts_with(batch_id, $1)`, [`${fence.worker}:`]);
    return res.rowCount ?? 0;
  });
}

/** The statement's one row → PromoteResult (reasons in REJECT_REASONS order; duplicates = staged − promoted − rejected). Pure. */
export function promoteResult(row: PromoteRow): PromoteResult {
  const rejected: Partial<Record<RejectReason, number>> = {};
  for (const reason of REJECT_REASONS) {
    const n = row.rejected[reason];
    if (n) rejected[reason] = n;
  }
  // Valid rows already in orders, and rejected items already in orders_rejected, are the duplicates.
  let rejectedNow = 0;
  for (const n of Object.values(rejected)) rejectedNow += n ?? 0;
  const out: PromoteResult = { promoted: row.promoted, duplicates: row.staged - row.promoted - rejectedNow, rejected, staged: row.staged };
  if (row.rejected_ids && row.rejected_ids.length > 0) out.rejectedIds = row.rejected_ids;
  return out;
}

/** Runs fn in BEGIN ... COMMIT on one pooled client (ROLLBACK on error; a broken client is destroyed). */
export async function inTransaction<T>(pool: PgPool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A backend that dies while we hold the client must not become an uncaught 'error'.
  const onError = () => {};
  client.on('error', onError);
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    if (isConnectionError(err)) broken = err as Error;
    else await client.query('ROLLBACK').catch((e: unknown) => (broken = e as Error));
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/** A queue item that never parsed as an order, as the transform's parse reports it. */
export interface MalformedItem {
  /** The item as received. */
  raw: string;
  /** Why it is not an order. */
  error: string;
}

/**
 * Longest order_id a malformed item's row keeps (orders_rejected.order_id is indexed, and
 * Postgres refuses an index entry over ~2.7 kB); a longer one stays only in `raw`.
 */
const MAX_RECORDED_ORDER_ID = 128;

/** The order_id of a malformed item when its text is a JSON object with a string order_id of at most 128 characters, else null. Pure. */
export function malformedOrderId(raw: string): string | null {
  try {
    const value = JSON.parse(raw) as unknown;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const id = (value as Record<string, unknown>).order_id;
      if (typeof id === 'string' && id.length > 0 && id.length <= MAX_RECORDED_ORDER_ID) return id;
    }
  } catch {
    // not JSON: no order_id to keep
  }
  return null;
}

/** Postgres text cannot hold U+0000: kept visible as U+FFFD. */
function pgText(value: string): string {
  return value.includes('\0') ? value.replaceAll('\0', '\uFFFD') : value;
}

/**
 * Records queue items that never parsed as orders in `orders_rejected` with reason
 * 'malformed' (the raw text in `raw`, the parse error in `detail`, the order_id when the
 * text still names one), in one statement. Returns the number of rows written.
 */
export async function recordMalformed(pool: PgPool, schema: string, batchId: string, items: readonly MalformedItem[]): Promise<number> {
  if (items.length === 0) return 0;
  // The same item recorded again (a redelivered batch) adds no second row.
  const res = await pool.query(
    `INSERT INTO ${quoteIdent(schema)}.orders_rejected (order_id, batch_id, raw, reason, detail, reject_key)
     SELECT order_id, $1, raw, 'malformed', detail, md5(raw)
     FROM unnest($2::text[], $3::text[], $4::text[]) AS m(order_id, raw, detail)
     ON CONFLICT (reject_key, reason) DO NOTHING`,
    [
      pgText(batchId),
      items.map((m) => {
        const id = malformedOrderId(m.raw);
        return id === null ? null : pgText(id);
      }),
      items.map((m) => pgText(m.raw)),
      items.map((m) => pgText(m.error)),
    ],
  );
  return res.rowCount ?? 0;
}
