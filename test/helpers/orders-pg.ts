/**
 * Helpers for the orders Postgres tests: a private schema per test (migrated and seeded
 * on request, dropped after), and StagingColumns built from a few readable rows.
 */
import { randomBytes } from 'node:crypto';
import { afterEach } from 'vitest';
import { resolveConfig } from '../../src/config/index.js';
import { migrateOrders } from '../../src/orders/pg/migrate.js';
import { seedReferenceData } from '../../src/orders/seed.js';
import type { StagingColumns } from '../../src/orders/types.js';
import { createPgPool, quoteIdent, type PgPool } from '../../src/postgres/pool.js';

/** The Postgres the tests use: DATABASE_URL, else what `tributary up` chose, else the default. */
export function testDatabaseUrl(): string {
  return resolveConfig({ envFile: false }).databaseUrl;
}

export interface OrdersSchema {
  pool: PgPool;
  schema: string;
}

/**
 * Per-test schemas with clean-up: `setup(label)` creates a pool and a fresh schema name,
 * migrates and seeds it unless told not to; everything is dropped after the test.
 * `databaseUrl` points the pool elsewhere (PgBouncer); the schema is dropped through a
 * direct connection all the same.
 */
export function ordersSchemas() {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    async setup(
      label: string,
      options: { migrate?: boolean; seed?: boolean; databaseUrl?: string; max?: number } = {},
    ): Promise<OrdersSchema> {
      const schema = `t_orders_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
      const pool = createPgPool(options.databaseUrl ?? testDatabaseUrl(), { max: options.max ?? 4 });
      cleanups.push(async () => {
        await pool.end();
        const direct = createPgPool(testDatabaseUrl(), { max: 1 });
        await direct.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`).catch(() => {});
        await direct.end();
      });
      if (options.migrate !== false) await migrateOrders(pool, schema);
      if (options.migrate !== false && options.seed !== false) await seedReferenceData(pool, schema);
      return { pool, schema };
    },
  };
}

/** One staged order; fields not given take valid sample values. */
export interface StagingRow {
  order_id: string;
  customer_id?: string;
  product_id?: string;
  quantity?: number;
  currency?: string;
  zip_code?: string;
  order_ts?: string | null;
  category?: string | null;
  unit_price?: number | null;
  line_total?: number | null;
  rate_to_usd?: number | null;
  total_usd?: number | null;
  shipping_zone?: string | null;
  region?: string | null;
}

/**
 * Rows → StagingColumns. Defaults: customer C1, product P001 (Electronics, 249.99), 1 unit
 * in USD, zip 10001 (New York, zone-5), 2026-11-22T10:15:00.000Z, enrichment as the
 * lookup cache would give it.
 */
export function stagingColumns(rows: readonly StagingRow[]): StagingColumns {
  const cols: StagingColumns = {
    length: rows.length,
    order_id: [],
    customer_id: [],
    product_id: [],
    quantity: [],
    currency: [],
    zip_code: [],
    order_ts: [],
    category: [],
    unit_price: [],
    line_total: [],
    rate_to_usd: [],
    total_usd: [],
    shipping_zone: [],
    region: [],
  };
  for (const r of rows) {
    const quantity = r.quantity ?? 1;
    const unitPrice = r.unit_price === undefined ? 249.99 : r.unit_price;
    const rate = r.rate_to_usd === undefined ? 1 : r.rate_to_usd;
    const totalUsd = r.total_usd === undefined ? (unitPrice === null ? null : Math.round(quantity * unitPrice * 100) / 100) : r.total_usd;
    cols.order_id.push(r.order_id);
    cols.customer_id.push(r.customer_id ?? 'C1');
    cols.product_id.push(r.product_id ?? 'P001');
    cols.quantity.push(quantity);
    cols.currency.push(r.currency ?? 'USD');
    cols.zip_code.push(r.zip_code ?? '10001');
    cols.order_ts.push(r.order_ts === undefined ? '2026-11-22T10:15:00.000Z' : r.order_ts);
    cols.category.push(r.category === undefined ? 'Electronics' : r.category);
    cols.unit_price.push(unitPrice);
    cols.total_usd.push(totalUsd);
    cols.rate_to_usd.push(rate);
    cols.line_total.push(
      r.line_total === undefined ? (totalUsd === null || rate === null ? null : Math.round((totalUsd / rate) * 100) / 100) : r.line_total,
    );
    cols.shipping_zone.push(r.shipping_zone === undefined ? 'zone-5' : r.shipping_zone);
    cols.region.push(r.region === undefined ? 'Northeast' : r.region);
  }
  return cols;
}
