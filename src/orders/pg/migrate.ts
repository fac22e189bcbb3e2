import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadMigrations, migrate, type MigrateResult } from '../../postgres/migrate.js';
import type { PgPool } from '../../postgres/pool.js';

/** The orders schema's default name. */
export const ORDERS_SCHEMA = 'orders';

/** Where the orders migrations live (`src/orders/migrations`, copied to `dist/orders/migrations`). */
export const ORDERS_MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'migrations');

/**
 * Creates or upgrades the orders pipeline's tables in `schema` (default `orders`):
 * products, currencies, zip_codes, orders_staging (UNLOGGED), orders, orders_rejected,
 * the materialized views sales_hourly and product_performance_daily, and
 * view_refreshes. Applied by the shared migration runner (recorded in
 * `<schema>.tributary_migrations`, serialised by an advisory lock); the orders files are
 * numbered from 101 so they can share a schema with the events migrations.
 */
export function migrateOrders(pool: PgPool, schema: string = ORDERS_SCHEMA): Promise<MigrateResult> {
  return migrate(pool, schema, loadMigrations(ORDERS_MIGRATIONS_DIR));
}
