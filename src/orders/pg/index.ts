/** The Postgres side of the orders pipeline: schema, staging, promote, views, counts. */
export { migrateOrders, ORDERS_SCHEMA, ORDERS_MIGRATIONS_DIR } from './migrate.js';
export { stageBatch } from './staging.js';
export { promote, recordMalformed, fenceWorker, type PromoteOptions, type MalformedItem, type WorkerFence } from './promote.js';
export { refreshViews, viewStats, ordersCounts, ORDERS_VIEWS, type OrdersView, type ViewRefresh, type ViewStats, type OrdersCounts } from './views.js';
export { copyTextField, utcTimestampOrNull, STAGING_COPY_COLUMNS } from './copy-text.js';
export { analyzeReferenceTables } from './analyze.js';
