import { quoteIdent, type PgPool } from '../../postgres/pool.js';
import { REJECT_REASONS, type RejectReason } from '../types.js';

/** The orders pipeline's materialized views, in refresh order. */
export const ORDERS_VIEWS = ['sales_hourly', 'product_performance_daily'] as const;
export type OrdersView = (typeof ORDERS_VIEWS)[number];

/** One view's refresh, as refreshViews did it. */
export interface ViewRefresh {
  view: OrdersView;
  /** False when the view was not populated yet and so was refreshed plainly (CONCURRENTLY needs a populated view). */
  concurrently: boolean;
  durationMs: number;
  /** Rows in the view after the refresh. */
  rows: number;
}

/**
 * Refreshes both views, one after the other, with `REFRESH MATERIALIZED VIEW
 * CONCURRENTLY` (readers are never blocked; each view has the unique index it needs),
 * and records each refresh in `<schema>.view_refreshes`. A view that is not populated
 * (created or truncated WITH NO DATA) is refreshed plainly, as CONCURRENTLY requires a
 * populated view. Each refresh is its own statement in autocommit, so it works through
 * PgBouncer in transaction mode; two concurrent callers simply take turns per view.
 */
export async function refreshViews(pool: PgPool, schema: string): Promise<ViewRefresh[]> {
  const s = quoteIdent(schema);
  const populated = await pool.query<{ relname: string; relispopulated: boolean }>(
    `SELECT c.relname, c.relispopulated
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind = 'm'`,
    [schema],
  );
  const isPopulated = new Map(populated.rows.map((r) => [r.relname, r.relispopulated]));
  const refreshes: ViewRefresh[] = [];
  for (const view of ORDERS_VIEWS) {
    const concurrently = isPopulated.get(view) === true;
    const started = performance.now();
    await pool.query(`REFRESH MATERIALIZED VIEW ${concurrently ? 'CONCURRENTLY ' : ''}${s}.${quoteIdent(view)}`);
    const durationMs = performance.now() - started;
    const res = await pool.query<{ row_count: string }>(
      `INSERT INTO ${s}.view_refreshes AS r (view_name, refreshed_at, duration_ms, row_count, concurrent)
       SELECT $1, now(), $2, count(*), $3 FROM ${s}.${quoteIdent(view)}
       ON CONFLICT (view_name) DO UPDATE
         SET refreshed_at = excluded.refreshed_at, duration_ms = excluded.duration_ms,
             row_count = excluded.row_count, concurrent = excluded.concurrent,
             refreshes = r.refreshes + 1
       RETURNING row_count`,
      [view, durationMs, concurrently],
    );
    refreshes.push({ view, concurrently, durationMs, rows: Number(res.rows[0]!.row_count) });
  }
  return refreshes;
}

/** One view, as viewStats reports it. */
export interface ViewStats {
  view: OrdersView;
  /** Rows in the view now. 0 when it is not populated. */
  rows: number;
  populated: boolean;
  /** On-disk size, indexes included. */
  sizeBytes: number;
  /** When refreshViews last refreshed it; null if it never did. */
  lastRefreshedAt: Date | null;
  lastRefreshMs: number | null;
  /** How many times refreshViews refreshed it. */
  refreshes: number;
}

/** Row counts, sizes and last refresh of both views (two queries: catalog, then counts of the populated ones). */
export async function viewStats(pool: PgPool, schema: string): Promise<ViewStats[]> {
  const s = quoteIdent(schema);
  const meta = await pool.query<{
    view_name: OrdersView;
    populated: boolean;
    size_bytes: string;
    refreshed_at: Date | null;
    duration_ms: number | null;
    refreshes: string | null;
  }>(
    `SELECT v.view_name, c.relispopulated AS populated, pg_total_relation_size(c.oid) AS size_bytes,
            r.refreshed_at, r.duration_ms, r.refreshes
     FROM unnest($1::text[]) WITH ORDINALITY AS v(view_name, ord)
     JOIN pg_class c ON c.oid = format('%I.%I', $2::text, v.view_name)::regclass
     LEFT JOIN ${s}.view_refreshes r ON r.view_name = v.view_name
     ORDER BY v.ord`,
    [ORDERS_VIEWS, schema],
  );
  // Reading a view that is not populated is an error: count only the populated ones.
  const populated = meta.rows.filter((r) => r.populated).map((r) => r.view_name);
  const rows = new Map<string, number>();
  if (populated.length > 0) {
    const counts = await pool.query<{ view_name: string; n: string }>(
      populated.map((v) => `SELECT '${v}' AS view_name, count(*) AS n FROM ${s}.${quoteIdent(v)}`).join(' UNION ALL '),
    );
    for (const c of counts.rows) rows.set(c.view_name, Number(c.n));
  }
  return meta.rows.map((r) => ({
    view: r.view_name,
    rows: rows.get(r.view_name) ?? 0,
    populated: r.populated,
    sizeBytes: Number(r.size_bytes),
    lastRefreshedAt: r.refreshed_at,
    lastRefreshMs: r.duration_ms,
    refreshes: Number(r.refreshes ?? 0),
  }));
}

/** What `orders stats` shows about the Postgres side. */
export interface OrdersCounts {
  /** Rows waiting in orders_staging (not promoted yet). */
  staging: number;
  orders: number;
  /** orders_rejected rows by reason (reasons with none are absent). */
  rejected: Partial<Record<RejectReason, number>>;
  rejectedTotal: number;
  products: number;
  currencies: number;
  zipCodes: number;
}

/**
 * Exact row counts of the orders tables, in one query. `count(*)` reads the whole
 * table: cheap at the sizes this pipeline stages, worth knowing on a very large `orders`.
 */
export async function ordersCounts(pool: PgPool, schema: string): Promise<OrdersCounts> {
  const s = quoteIdent(schema);
  const res = await pool.query<{
    staging: string;
    orders: string;
    products: string;
    currencies: string;
    zip_codes: string;
    rejected: Record<string, number>;
  }>(
    `SELECT (SELECT count(*) FROM ${s}.orders_staging) AS staging,
            (SELECT count(*) FROM ${s}.orders)         AS orders,
            (SELECT count(*) FROM ${s}.products)       AS products,
            (SELECT count(*) FROM ${s}.currencies)     AS currencies,
            (SELECT count(*) FROM ${s}.zip_codes)      AS zip_codes,
            (SELECT coalesce(json_object_agg(reason, n), '{}')
             FROM (SELECT reason, count(*) AS n FROM ${s}.orders_rejected GROUP BY reason) AS r) AS rejected`,
  );
  const row = res.rows[0]!;
  const rejected: Partial<Record<RejectReason, number>> = {};
  let rejectedTotal = 0;
  for (const reason of REJECT_REASONS) {
    const n = Number(row.rejected[reason] ?? 0);
    if (n > 0) rejected[reason] = n;
    rejectedTotal += n;
  }
  return {
    staging: Number(row.staging),
    orders: Number(row.orders),
    rejected,
    rejectedTotal,
    products: Number(row.products),
    currencies: Number(row.currencies),
    zipCodes: Number(row.zip_codes),
  };
}
