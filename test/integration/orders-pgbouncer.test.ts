import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateOrders, ORDERS_MIGRATIONS_DIR } from '../../src/orders/pg/migrate.js';
import { loadMigrations } from '../../src/postgres/migrate.js';
import { promote } from '../../src/orders/pg/promote.js';
import { stageBatch } from '../../src/orders/pg/staging.js';
import { ordersCounts, refreshViews, viewStats } from '../../src/orders/pg/views.js';
import { loadReferenceData, seedReferenceData } from '../../src/orders/seed.js';
import { createPgPool } from '../../src/postgres/pool.js';
import { ordersSchemas, stagingColumns, testDatabaseUrl } from '../helpers/orders-pg.js';
import { startPgBouncer, stopPgBouncer, type PgBouncer } from '../helpers/pgbouncer.js';

const SERVER_POOL = 3;
let bouncer: PgBouncer | undefined;

beforeAll(async () => {
  bouncer = await startPgBouncer({ poolMode: 'transaction', defaultPoolSize: SERVER_POOL });
});

afterAll(async () => {
  await stopPgBouncer(bouncer);
});

const schemas = ordersSchemas();

/** Server connections PgBouncer holds for the test database. */
async function serverConnections(b: PgBouncer): Promise<number> {
  const database = new URL(b.url).pathname.slice(1);
  return (await b.admin<{ database: string }>('SHOW SERVERS')).filter((s) => s.database === database).length;
}

describe('the orders Postgres side through PgBouncer (transaction pool mode)', () => {
  it('migrates, seeds, stages, promotes concurrently and refreshes views with 12 clients on 3 server connections', async () => {
    const b = bouncer!;
    const database = new URL(b.url).pathname.slice(1);
    const pools = await b.admin<{ database: string; pool_mode: string }>('SHOW POOLS');
    expect(pools.find((p) => p.database === database)?.pool_mode).toBe('transaction');

    const t = await schemas.setup('bouncer', { databaseUrl: b.url, max: 12, migrate: false });
    // Four runners at once, through 3 server connections: migrate() locks per transaction
    // (pg_advisory_xact_lock), so exactly one applies each migration and no lock outlives
    // its transaction, whichever server connection PgBouncer gave each statement.
    const runs = await Promise.all(Array.from({ length: 4 }, () => migrateOrders(t.pool, t.schema)));
    expect(runs.flatMap((r) => r.applied).sort()).toEqual(loadMigrations(ORDERS_MIGRATIONS_DIR).map((m) => m.name));
    const direct = createPgPool(testDatabaseUrl(), { max: 1 });
    try {
      const leaked = await direct.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_locks
         WHERE locktype = 'advisory' AND ((classid::bigint << 32) | objid::bigint) = hashtext($1)::bigint`,
        [`tributary:migrate:${t.schema}`],
      );
      expect(leaked.rows[0]!.n).toBe(0);
    } finally {
      await direct.end();
    }
    expect(await seedReferenceData(t.pool, t.schema)).toEqual({ products: 48, currencies: 10, zipCodes: 300 });
    expect((await loadReferenceData(t.pool, t.schema)).zipCodes).toHaveLength(300);

    // 12 batches of 250 valid rows and one reject, every batch overlapping the next by half: staged concurrently
    // (one COPY each), then promoted concurrently, by batch and all at once.
    const batches = 12;
    const perBatch = 250;
    const staged = await Promise.all(
      Array.from({ length: batches }, (_, b) =>
        stageBatch(
          t.pool,
          t.schema,
          `batch-${b}`,
          stagingColumns([
            ...Array.from({ length: perBatch }, (_, i) => ({ order_id: `o${b * (perBatch / 2) + i}`, customer_id: `tab\there\nline ${b}` })),
            { order_id: `r${b}`, zip_code: '00000' }, // one reject per batch, so rejects travel the same way
          ]),
        ),
      ),
    );
    expect(staged).toEqual(Array.from({ length: batches }, () => perBatch + 1));
    expect(t.pool.totalCount).toBeGreaterThan(SERVER_POOL);
    expect(await serverConnections(b)).toBeLessThanOrEqual(SERVER_POOL);

    const results = await Promise.all([
      ...Array.from({ length: batches }, (_, i) => promote(t.pool, t.schema, { batchId: `batch-${i}` })),
      promote(t.pool, t.schema),
      promote(t.pool, t.schema),
    ]);
    const distinctValid = (batches + 1) * (perBatch / 2);
    expect(results.reduce((n, r) => n + r.staged, 0)).toBe(batches * (perBatch + 1));
    expect(results.reduce((n, r) => n + r.promoted, 0)).toBe(distinctValid);
    expect(results.reduce((n, r) => n + (r.rejected.unknown_zip ?? 0), 0)).toBe(batches);

    const [first, second] = await Promise.all([refreshViews(t.pool, t.schema), refreshViews(t.pool, t.schema)]);
    expect(first!.map((r) => r.concurrently)).toEqual([true, true]);
    expect(second!.map((r) => r.rows)).toEqual([1, 1]);
    expect((await viewStats(t.pool, t.schema)).map((v) => [v.view, v.rows, v.refreshes])).toEqual([
      ['sales_hourly', 1, 2],
      ['product_performance_daily', 1, 2],
    ]);
    expect(await ordersCounts(t.pool, t.schema)).toMatchObject({ staging: 0, orders: distinctValid, rejected: { unknown_zip: batches } });
    const texts = await t.pool.query<{ customer_id: string }>(`SELECT DISTINCT customer_id FROM "${t.schema}".orders ORDER BY 1 LIMIT 1`);
    expect(texts.rows[0]!.customer_id).toBe('tab\there\nline 0');
    expect(await serverConnections(b)).toBeLessThanOrEqual(SERVER_POOL);
  });
});
