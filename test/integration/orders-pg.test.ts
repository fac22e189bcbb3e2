import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../src/errors.js';
import { migrateOrders } from '../../src/orders/pg/migrate.js';
import { promote, recordMalformed } from '../../src/orders/pg/promote.js';
import { stageBatch } from '../../src/orders/pg/staging.js';
import { ordersCounts, refreshViews, viewStats } from '../../src/orders/pg/views.js';
import { loadReferenceData, REFERENCE_DATA, seedReferenceData } from '../../src/orders/seed.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { ordersSchemas, stagingColumns, type OrdersSchema } from '../helpers/orders-pg.js';

const schemas = ordersSchemas();

async function rows<T>(t: OrdersSchema, sql: string): Promise<T[]> {
  return (await t.pool.query(sql.replaceAll('$s', quoteIdent(t.schema)))).rows as T[];
}

describe('orders schema and reference data', () => {
  it('migrates idempotently, creates every table and view, and the staging table is UNLOGGED', async () => {
    const t = await schemas.setup('migrate', { seed: false });
    const again = await migrateOrders(t.pool, t.schema);
    expect(again.applied).toEqual([]);
    const rels = await rows<{ relname: string; relkind: string; relpersistence: string }>(
      t,
      `SELECT c.relname, c.relkind, c.relpersistence FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = '${t.schema}' AND c.relkind IN ('r', 'm') ORDER BY 1`,
    );
    expect(Object.fromEntries(rels.map((r) => [r.relname, `${r.relkind}${r.relpersistence}`]))).toEqual({
      currencies: 'rp',
      orders: 'rp',
      orders_fences: 'rp',
      orders_rejected: 'rp',
      orders_staging: 'ru',
      product_performance_daily: 'mp',
      products: 'rp',
      sales_hourly: 'mp',
      tributary_migrations: 'rp',
      view_refreshes: 'rp',
      zip_codes: 'rp',
    });
    // The keys every promote compares and sorts are byte-compared (migration 105).
    const keys = await rows<{ t: string; c: string; collation_name: string | null }>(
      t,
      `SELECT table_name AS t, column_name AS c, collation_name FROM information_schema.columns
       WHERE table_schema = '${t.schema}' AND column_name IN ('order_id', 'batch_id') AND table_name IN ('orders', 'orders_staging') ORDER BY 1, 2`,
    );
    expect(keys.map((k) => `${k.t}.${k.c} ${k.collation_name}`)).toEqual(['orders.batch_id null', 'orders.order_id C', 'orders_staging.batch_id C', 'orders_staging.order_id C']);
  });

  it('seeds the sample data once: seeding again changes nothing; a changed row is updated', async () => {
    const t = await schemas.setup('seed', { seed: false });
    expect(REFERENCE_DATA.products).toHaveLength(48);
    expect(REFERENCE_DATA.currencies).toHaveLength(10);
    expect(REFERENCE_DATA.zipCodes).toHaveLength(300);
    expect(await seedReferenceData(t.pool, t.schema)).toEqual({ products: 48, currencies: 10, zipCodes: 300 });
    expect(await seedReferenceData(t.pool, t.schema)).toEqual({ products: 0, currencies: 0, zipCodes: 0 });

    const loaded = await loadReferenceData(t.pool, t.schema);
    expect(loaded.products).toEqual([...REFERENCE_DATA.products].sort((a, b) => a.product_id.localeCompare(b.product_id)));
    expect(loaded.currencies).toEqual([...REFERENCE_DATA.currencies].sort((a, b) => a.code.localeCompare(b.code)));
    expect(loaded.zipCodes).toEqual([...REFERENCE_DATA.zipCodes].sort((a, b) => a.zip_code.localeCompare(b.zip_code)));

    const changed = { ...REFERENCE_DATA, currencies: REFERENCE_DATA.currencies.map((c) => (c.code === 'EUR' ? { ...c, rate_to_usd: 1.1 } : c)) };
    expect(await seedReferenceData(t.pool, t.schema, changed)).toEqual({ products: 0, currencies: 1, zipCodes: 0 });
    expect((await loadReferenceData(t.pool, t.schema)).currencies.find((c) => c.code === 'EUR')?.rate_to_usd).toBe(1.1);
  });
});

describe('stageBatch', () => {
  it('round-trips nasty text through one COPY: tabs, newlines, CR, backslashes, \\N, quotes, unicode', async () => {
    const t = await schemas.setup('stage_text');
    const nasty = [
      'tab\there',
      'new\nline',
      'carriage\r\nreturn',
      'back\\slash \\N \\t',
      '\\N',
      `quotes ' " \` and ;--`,
      'unicode: café, 東京, 🚀, Ω, \u00a0nbsp, \u200bzwsp',
      ' leading and trailing spaces ',
      'end with backslash\\',
    ];
    const cols = stagingColumns(nasty.map((text, i) => ({ order_id: `nasty-${i}`, customer_id: text, zip_code: text, region: text })));
    expect(await stageBatch(t.pool, t.schema, 'batch\twith\\odd "id"', cols)).toBe(nasty.length);
    const staged = await rows<{ batch_id: string; order_id: string; customer_id: string; zip_code: string; region: string; stage_error: string | null }>(
      t,
      `SELECT batch_id, order_id, customer_id, zip_code, region, stage_error FROM $s.orders_staging ORDER BY order_id`,
    );
    expect(staged).toEqual(
      nasty.map((text, i) => ({ batch_id: 'batch\twith\\odd "id"', order_id: `nasty-${i}`, customer_id: text, zip_code: text, region: text, stage_error: null })),
    );
  });

  it('stages numbers and timestamps exactly, nulls as NULL, and makes unstageable values rejectable', async () => {
    const t = await schemas.setup('stage_values');
    const cols = stagingColumns([
      { order_id: 'a', quantity: 3, unit_price: 1234567.89, total_usd: 3703703.67, rate_to_usd: 0.0067, order_ts: '2026-01-02T03:04:05.678Z' },
      { order_id: 'b', category: null, unit_price: null, total_usd: null, line_total: null, rate_to_usd: null, shipping_zone: null, region: null },
      { order_id: 'c', order_ts: 'yesterday' },
      { order_id: 'd', order_ts: '2026-02-30T00:00:00.000Z' },
      { order_id: 'e\u0000nul', quantity: Number.NaN },
      { order_id: 'f', unit_price: Number.POSITIVE_INFINITY },
    ]);
    expect(await stageBatch(t.pool, t.schema, 'b1', cols)).toBe(6);
    const staged = await rows<Record<string, unknown>>(
      t,
      `SELECT order_id, quantity::text, unit_price::text, total_usd::text, rate_to_usd::text, line_total::text,
              category, shipping_zone, region, to_char(order_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS ts, stage_error
       FROM $s.orders_staging ORDER BY order_id`,
    );
    expect(staged[0]).toMatchObject({ order_id: 'a', quantity: '3', unit_price: '1234567.89', total_usd: '3703703.67', rate_to_usd: '0.0067', ts: '2026-01-02T03:04:05.678', stage_error: null });
    expect(staged[1]).toMatchObject({ order_id: 'b', unit_price: null, total_usd: null, rate_to_usd: null, line_total: null, category: null, shipping_zone: null, region: null, ts: '2026-11-22T10:15:00.000' });
    expect(staged[2]).toMatchObject({ order_id: 'c', ts: null, stage_error: null });
    expect(staged[3]).toMatchObject({ order_id: 'd', ts: null });
    expect(staged[4]).toMatchObject({ order_id: 'e\uFFFDnul', quantity: null });
    expect(staged[4]!.stage_error).toBe('order_id contains NUL characters (staged as U+FFFD); quantity is not a finite number (NaN)');
    expect(staged[5]).toMatchObject({ order_id: 'f', unit_price: null, stage_error: null });
  });

  it('refuses a batch whose columns disagree with its length, and stages nothing for an empty one', async () => {
    const t = await schemas.setup('stage_bad');
    const cols = stagingColumns([{ order_id: 'x' }, { order_id: 'y' }]);
    cols.region.pop();
    const err = await stageBatch(t.pool, t.schema, 'b', cols).catch((e: unknown) => e);
    expect(isTributaryError(err, 'TRIB_ERR_ORDERS_BAD_BATCH')).toBe(true);
    expect((err as Error).message).toContain('column region has 1 values, length is 2');
    expect(isTributaryError(await stageBatch(t.pool, t.schema, '', stagingColumns([{ order_id: 'x' }])).catch((e: unknown) => e), 'TRIB_ERR_ORDERS_BAD_BATCH')).toBe(true);
    expect(await stageBatch(t.pool, t.schema, 'empty', stagingColumns([]))).toBe(0);
    expect((await ordersCounts(t.pool, t.schema)).staging).toBe(0);
  });
});

describe('promote', () => {
  it('moves valid rows to orders, fills lookup misses from the reference tables, and empties staging', async () => {
    const t = await schemas.setup('promote_valid');
    await stageBatch(
      t.pool,
      t.schema,
      'b1',
      stagingColumns([
        { order_id: 'o1', quantity: 2, currency: 'EUR', rate_to_usd: 1.08, total_usd: 499.98, line_total: 462.94 },
        // The lookup cache missed everything: promote enriches from Postgres (authoritative).
        { order_id: 'o2', product_id: 'P013', quantity: 3, currency: 'JPY', zip_code: '98105', category: null, unit_price: null, total_usd: null, line_total: null, rate_to_usd: null, shipping_zone: null, region: null },
      ]),
    );
    const result = await promote(t.pool, t.schema);
    expect(result).toEqual({ promoted: 2, duplicates: 0, rejected: {}, staged: 2 });
    const orders = await rows<Record<string, unknown>>(
      t,
      `SELECT order_id, quantity, currency, category, unit_price::text, line_total::text, rate_to_usd::text, total_usd::text,
              shipping_zone, region, batch_id
       FROM $s.orders ORDER BY order_id`,
    );
    expect(orders).toEqual([
      { order_id: 'o1', quantity: 2, currency: 'EUR', category: 'Electronics', unit_price: '249.99', line_total: '462.94', rate_to_usd: '1.08', total_usd: '499.98', shipping_zone: 'zone-5', region: 'Northeast', batch_id: 'b1' },
      // P013 is 'Designing Data-Intensive Applications', 44.99 USD; 3 × 44.99 = 134.97 USD = 20144.78 JPY at 0.0067.
      { order_id: 'o2', quantity: 3, currency: 'JPY', category: 'Books', unit_price: '44.99', line_total: '20144.78', rate_to_usd: '0.0067', total_usd: '134.97', shipping_zone: 'zone-8', region: 'West', batch_id: 'b1' },
    ]);
    expect(await ordersCounts(t.pool, t.schema)).toMatchObject({ staging: 0, orders: 2, rejectedTotal: 0 });
  });

  it('rejects each invalid row with its reason and every problem in the detail', async () => {
    const t = await schemas.setup('promote_reasons');
    await stageBatch(
      t.pool,
      t.schema,
      'b1',
      stagingColumns([
        { order_id: 'ok' },
        { order_id: 'r-product', product_id: 'P999', category: 'Electronics' }, // the cache said it exists: Postgres says no
        { order_id: 'r-currency', currency: 'XXX', rate_to_usd: 2 },
        { order_id: 'r-zip', zip_code: '00000' },
        { order_id: 'r-zero', quantity: 0 },
        { order_id: 'r-negative', quantity: -2 },
        { order_id: 'r-ts', order_ts: null },
        { order_id: 'r-fraction', quantity: 1.5 },
        { order_id: 'r-huge', quantity: 3_000_000_000 },
        { order_id: '', customer_id: '' },
        { order_id: 'r-nul\u0000' },
        { order_id: 'r-many', product_id: 'P999', zip_code: '00000', quantity: -1, order_ts: 'not a time' },
      ]),
    );
    const result = await promote(t.pool, t.schema, { batchId: 'b1' });
    expect(result).toEqual({
      promoted: 1,
      duplicates: 0,
      rejected: { malformed: 4, unknown_product: 2, unknown_currency: 1, unknown_zip: 1, non_positive_quantity: 2, bad_timestamp: 1 },
      staged: 12,
      rejectedIds: expect.arrayContaining(['r-product', 'r-currency', 'r-zip', 'r-zero', 'r-negative', 'r-many']),
    });
    expect(result.rejectedIds).toHaveLength(11);
    const rejects = await rows<{ order_id: string; reason: string; detail: string; batch_id: string }>(
      t,
      `SELECT order_id, reason, detail, batch_id FROM $s.orders_rejected ORDER BY order_id`,
    );
    const byId = Object.fromEntries(rejects.map((r) => [r.order_id, r]));
    expect(byId['r-product']).toMatchObject({ reason: 'unknown_product', detail: "product_id 'P999' is not in products", batch_id: 'b1' });
    expect(byId['r-currency']).toMatchObject({ reason: 'unknown_currency', detail: "currency 'XXX' is not in currencies" });
    expect(byId['r-zip']).toMatchObject({ reason: 'unknown_zip', detail: "zip_code '00000' is not in zip_codes" });
    expect(byId['r-zero']).toMatchObject({ reason: 'non_positive_quantity', detail: 'quantity 0 is not positive' });
    expect(byId['r-negative']).toMatchObject({ reason: 'non_positive_quantity' });
    expect(byId['r-ts']).toMatchObject({ reason: 'bad_timestamp', detail: 'order_ts is missing or not a valid time' });
    expect(byId['r-fraction']).toMatchObject({ reason: 'malformed', detail: 'quantity 1.5 is not a whole number' });
    expect(byId['r-huge']).toMatchObject({ reason: 'malformed', detail: 'quantity 3000000000 is out of range' });
    expect(byId['']).toMatchObject({ reason: 'malformed', detail: 'order_id is empty; customer_id is empty' });
    expect(byId['r-nul\uFFFD']).toMatchObject({ reason: 'malformed', detail: 'order_id contains NUL characters (staged as U+FFFD)' });
    expect(byId['r-many']).toMatchObject({
      reason: 'unknown_product',
      detail:
        "product_id 'P999' is not in products; zip_code '00000' is not in zip_codes; quantity -1 is not positive; order_ts is missing or not a valid time",
    });
    expect(await rows(t, `SELECT order_id FROM $s.orders`)).toEqual([{ order_id: 'ok' }]);
    expect(await ordersCounts(t.pool, t.schema)).toEqual({
      staging: 0,
      orders: 1,
      rejected: { malformed: 4, unknown_product: 2, unknown_currency: 1, unknown_zip: 1, non_positive_quantity: 2, bad_timestamp: 1 },
      rejectedTotal: 11,
      products: 48,
      currencies: 10,
      zipCodes: 300,
    });
  });

  it('never makes a second row: duplicates within staging and orders already promoted are no-ops', async () => {
    const t = await schemas.setup('promote_dupes');
    await stageBatch(t.pool, t.schema, 'b1', stagingColumns([{ order_id: 'o1', quantity: 1 }, { order_id: 'o2' }]));
    expect(await promote(t.pool, t.schema, { batchId: 'b1' })).toEqual({ promoted: 2, duplicates: 0, rejected: {}, staged: 2 });

    // A redelivery of o1 and o2, o3 twice in the same batch (the first staged wins), and o3 again in another batch.
    await stageBatch(
      t.pool,
      t.schema,
      'b2',
      stagingColumns([{ order_id: 'o1', quantity: 9 }, { order_id: 'o3', quantity: 4 }, { order_id: 'o2' }, { order_id: 'o3', quantity: 5 }]),
    );
    await stageBatch(t.pool, t.schema, 'b3', stagingColumns([{ order_id: 'o3', quantity: 6 }]));
    expect(await promote(t.pool, t.schema, { batchId: 'b2' })).toEqual({ promoted: 1, duplicates: 3, rejected: {}, staged: 4 });
    expect(await promote(t.pool, t.schema, { batchId: 'b2' })).toEqual({ promoted: 0, duplicates: 0, rejected: {}, staged: 0 });
    expect(await promote(t.pool, t.schema)).toEqual({ promoted: 0, duplicates: 1, rejected: {}, staged: 1 });
    expect(await rows(t, `SELECT order_id, quantity, batch_id FROM $s.orders ORDER BY order_id`)).toEqual([
      { order_id: 'o1', quantity: 1, batch_id: 'b1' },
      { order_id: 'o2', quantity: 1, batch_id: 'b1' },
      { order_id: 'o3', quantity: 4, batch_id: 'b2' },
    ]);
  });

  it('promotes one batch only when given its id', async () => {
    const t = await schemas.setup('promote_batch');
    await stageBatch(t.pool, t.schema, 'mine', stagingColumns([{ order_id: 'm1' }, { order_id: 'm2' }]));
    await stageBatch(t.pool, t.schema, 'theirs', stagingColumns([{ order_id: 't1' }]));
    expect(await promote(t.pool, t.schema, { batchId: 'mine' })).toMatchObject({ promoted: 2, staged: 2 });
    expect(await rows(t, `SELECT batch_id, order_id FROM $s.orders_staging`)).toEqual([{ batch_id: 'theirs', order_id: 't1' }]);
  });

  it('concurrent promoters never consume a staged row twice nor double-count', async () => {
    const t = await schemas.setup('promote_concurrent', { max: 10 });
    const batches = 12;
    const perBatch = 500;
    // Every batch shares half its order_ids with the next one, in reverse order: key locks
    // taken in different orders would deadlock without the sorted insert.
    for (let b = 0; b < batches; b++) {
      const ids = Array.from({ length: perBatch }, (_, i) => `o${b * (perBatch / 2) + i}`);
      if (b % 2) ids.reverse();
      await stageBatch(t.pool, t.schema, `b${b}`, stagingColumns(ids.map((order_id) => ({ order_id }))));
    }
    const distinct = (batches + 1) * (perBatch / 2);
    const results = await Promise.all([
      ...Array.from({ length: batches }, (_, b) => promote(t.pool, t.schema, { batchId: `b${b}` })),
      promote(t.pool, t.schema),
      promote(t.pool, t.schema),
      promote(t.pool, t.schema, { batchId: 'b0' }),
    ]);
    const sum = (k: 'promoted' | 'duplicates' | 'staged') => results.reduce((n, r) => n + r[k], 0);
    expect(sum('staged')).toBe(batches * perBatch);
    expect(sum('promoted')).toBe(distinct);
    expect(sum('duplicates')).toBe(batches * perBatch - distinct);
    expect(await ordersCounts(t.pool, t.schema)).toMatchObject({ staging: 0, orders: distinct, rejectedTotal: 0 });
  });

  it('records malformed queue items with their raw text and any order_id they still name', async () => {
    const t = await schemas.setup('malformed');
    const n = await recordMalformed(t.pool, t.schema, 'b1', [
      { raw: '{"order_id": "o7", "quantity": "three"}', error: 'quantity: expected an integer, got string "three"' },
      { raw: 'not json \u0000', error: 'invalid JSON' },
    ]);
    expect(n).toBe(2);
    expect(await rows(t, `SELECT order_id, raw, reason, detail FROM $s.orders_rejected ORDER BY id`)).toEqual([
      { order_id: 'o7', raw: '{"order_id": "o7", "quantity": "three"}', reason: 'malformed', detail: 'quantity: expected an integer, got string "three"' },
      { order_id: null, raw: 'not json \uFFFD', reason: 'malformed', detail: 'invalid JSON' },
    ]);
  });
});

describe('materialized views', () => {
  it('refresh concurrently from the start, reflect promoted orders, and record their refreshes', async () => {
    const t = await schemas.setup('views');
    expect((await viewStats(t.pool, t.schema)).map((v) => [v.view, v.rows, v.populated, v.lastRefreshedAt])).toEqual([
      ['sales_hourly', 0, true, null],
      ['product_performance_daily', 0, true, null],
    ]);
    await stageBatch(
      t.pool,
      t.schema,
      'b1',
      stagingColumns([
        { order_id: 'a', product_id: 'P001', quantity: 2, order_ts: '2026-11-22T10:15:00.000Z' },
        { order_id: 'b', product_id: 'P001', quantity: 1, order_ts: '2026-11-22T10:59:59.999Z' },
        { order_id: 'c', product_id: 'P013', category: 'Books', unit_price: 44.99, order_ts: '2026-11-22T11:00:00.000Z' },
        { order_id: 'd', product_id: 'P013', category: 'Books', unit_price: 44.99, order_ts: '2026-11-23T00:30:00.000Z' },
      ]),
    );
    await promote(t.pool, t.schema);
    const first = await refreshViews(t.pool, t.schema);
    expect(first.map((r) => [r.view, r.concurrently, r.rows])).toEqual([
      ['sales_hourly', true, 3],
      ['product_performance_daily', true, 3],
    ]);
    expect(
      await rows(t, `SELECT to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24') AS hour, category, order_count::int, revenue_usd::text FROM $s.sales_hourly ORDER BY 1, 2`),
    ).toEqual([
      { hour: '2026-11-22 10', category: 'Electronics', order_count: 2, revenue_usd: '749.97' },
      { hour: '2026-11-22 11', category: 'Books', order_count: 1, revenue_usd: '44.99' },
      { hour: '2026-11-23 00', category: 'Books', order_count: 1, revenue_usd: '44.99' },
    ]);
    expect(
      await rows(t, `SELECT day::text, product_id, name, category, orders::int, units::int, revenue_usd::text FROM $s.product_performance_daily ORDER BY 1, 2`),
    ).toEqual([
      { day: '2026-11-22', product_id: 'P001', name: 'Wireless Noise-Cancelling Headphones', category: 'Electronics', orders: 2, units: 3, revenue_usd: '749.97' },
      { day: '2026-11-22', product_id: 'P013', name: 'Designing Data-Intensive Applications', category: 'Books', orders: 1, units: 1, revenue_usd: '44.99' },
      { day: '2026-11-23', product_id: 'P013', name: 'Designing Data-Intensive Applications', category: 'Books', orders: 1, units: 1, revenue_usd: '44.99' },
    ]);
    await refreshViews(t.pool, t.schema);
    const stats = await viewStats(t.pool, t.schema);
    expect(stats.map((v) => [v.view, v.rows, v.refreshes])).toEqual([
      ['sales_hourly', 3, 2],
      ['product_performance_daily', 3, 2],
    ]);
    for (const v of stats) {
      expect(v.lastRefreshedAt).toBeInstanceOf(Date);
      expect(v.lastRefreshMs).toBeGreaterThanOrEqual(0);
      expect(v.sizeBytes).toBeGreaterThan(0);
    }
  });

  it('refreshes a view that was never populated (plainly), and a reader is not blocked by a concurrent refresh', async () => {
    const t = await schemas.setup('views_unpopulated');
    await t.pool.query(`REFRESH MATERIALIZED VIEW ${quoteIdent(t.schema)}.sales_hourly WITH NO DATA`);
    expect((await viewStats(t.pool, t.schema))[0]).toMatchObject({ view: 'sales_hourly', populated: false, rows: 0 });
    await stageBatch(t.pool, t.schema, 'b1', stagingColumns([{ order_id: 'a' }]));
    await promote(t.pool, t.schema);
    const refreshed = await refreshViews(t.pool, t.schema);
    expect(refreshed.map((r) => [r.view, r.concurrently, r.rows])).toEqual([
      ['sales_hourly', false, 1],
      ['product_performance_daily', true, 1],
    ]);

    // A refresh held open in a transaction: CONCURRENTLY lets readers through meanwhile.
    const holder = await t.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`REFRESH MATERIALIZED VIEW CONCURRENTLY ${quoteIdent(t.schema)}.sales_hourly`);
      const read = await t.pool.query({ text: `SELECT count(*)::int AS n FROM ${quoteIdent(t.schema)}.sales_hourly`, rowMode: 'array' });
      expect(read.rows).toEqual([[1]]);
      await holder.query('COMMIT');
    } finally {
      holder.release();
    }
  });
});
