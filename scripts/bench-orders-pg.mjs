// Measures the orders pipeline's Postgres side on the real server: stageBatch (one COPY
// per batch), promote (per batch and all at once) and refreshViews, in a scratch schema
// that is dropped at the end. Prints one JSON object.
//
//   npm run build && node scripts/bench-orders-pg.mjs [--batches 100] [--batch-size 1000] [--promote-rows 100000]
//
// DATABASE_URL picks the server (default postgres://127.0.0.1:5432/tributary); a PgBouncer
// URL works too. TRIBUTARY_DIST points at another build directory (default dist/).
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

const dist = new URL(process.env.TRIBUTARY_DIST ? `file://${process.env.TRIBUTARY_DIST.replace(/\/?$/, '/')}` : '../dist/', import.meta.url);
const { createPgPool, quoteIdent } = await import(new URL('postgres/pool.js', dist).href);
const { migrateOrders } = await import(new URL('orders/pg/migrate.js', dist).href);
const { stageBatch } = await import(new URL('orders/pg/staging.js', dist).href);
const { promote } = await import(new URL('orders/pg/promote.js', dist).href);
const { refreshViews } = await import(new URL('orders/pg/views.js', dist).href);
const { stagingCopyChunks } = await import(new URL('orders/pg/copy-text.js', dist).href);
const { REFERENCE_DATA, seedReferenceData } = await import(new URL('orders/seed.js', dist).href);

const { values } = parseArgs({
  options: {
    batches: { type: 'string', default: '100' },
    'batch-size': { type: 'string', default: '1000' },
    'promote-rows': { type: 'string', default: '100000' },
  },
});
const batches = Number(values.batches);
const batchSize = Number(values['batch-size']);
const promoteRows = Number(values['promote-rows']);

// A deterministic generator (LCG), so runs compare: ~2% of orders carry an unknown zip.
let seed = 42;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const pick = (a) => a[Math.floor(rand() * a.length)];
let nextId = 0;

function batch(n) {
  const cols = {
    length: n, order_id: [], customer_id: [], product_id: [], quantity: [], currency: [], zip_code: [], order_ts: [],
    category: [], unit_price: [], line_total: [], rate_to_usd: [], total_usd: [], shipping_zone: [], region: [],
  };
  const start = Date.UTC(2026, 10, 1);
  for (let i = 0; i < n; i++) {
    const p = pick(REFERENCE_DATA.products);
    const c = pick(REFERENCE_DATA.currencies);
    const z = rand() < 0.02 ? { zip_code: '00000', shipping_zone: null, region: null } : pick(REFERENCE_DATA.zipCodes);
    const q = 1 + Math.floor(rand() * 5);
    const totalUsd = Math.round(q * p.unit_price * 100) / 100;
    cols.order_id.push(`ord-${String(nextId++).padStart(9, '0')}`);
    cols.customer_id.push(`cust-${Math.floor(rand() * 50_000)}`);
    cols.product_id.push(p.product_id);
    cols.quantity.push(q);
    cols.currency.push(c.code);
    cols.zip_code.push(z.zip_code);
    cols.order_ts.push(new Date(start + Math.floor(rand() * 21 * 86_400_000)).toISOString());
    cols.category.push(p.category);
    cols.unit_price.push(p.unit_price);
    cols.total_usd.push(totalUsd);
    cols.rate_to_usd.push(c.rate_to_usd);
    cols.line_total.push(Math.round((totalUsd / c.rate_to_usd) * 100) / 100);
    cols.shipping_zone.push(z.shipping_zone);
    cols.region.push(z.region);
  }
  return cols;
}

const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

const pool = createPgPool(process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/tributary', { max: 4 });
const schema = `bench_orders_${randomBytes(4).toString('hex')}`;
const result = { schema, batchSize, batches, promoteRows };
try {
  await migrateOrders(pool, schema);
  await seedReferenceData(pool, schema);

  // 1. Encoding alone (no I/O).
  const sample = batch(batchSize);
  for (let i = 0; i < 50; i++) for (const _ of stagingCopyChunks('b', sample)); // warm-up
  let t = performance.now();
  for (let i = 0; i < 200; i++) for (const _ of stagingCopyChunks('b', sample));
  const encodeMs = (performance.now() - t) / 200;
  result.encode = { msPerBatch: round(encodeMs, 3), rowsPerSec: Math.round(batchSize / (encodeMs / 1000)) };

  // 2. stageBatch: `batches` sequential batches, then promote each (the pipeline's per-batch path).
  const stageMs = [];
  const promoteMs = [];
  const generated = Array.from({ length: batches }, () => batch(batchSize));
  for (let b = 0; b < batches; b++) {
    t = performance.now();
    await stageBatch(pool, schema, `b${b}`, generated[b]);
    stageMs.push(performance.now() - t);
    t = performance.now();
    await promote(pool, schema, { batchId: `b${b}` });
    promoteMs.push(performance.now() - t);
  }
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  result.stageBatch = {
    rowsPerSec: Math.round((batches * batchSize) / (sum(stageMs) / 1000)),
    p50Ms: round(pct(stageMs, 50), 2),
    p99Ms: round(pct(stageMs, 99), 2),
  };
  result.promotePerBatch = {
    rowsPerSec: Math.round((batches * batchSize) / (sum(promoteMs) / 1000)),
    p50Ms: round(pct(promoteMs, 50), 2),
    p99Ms: round(pct(promoteMs, 99), 2),
  };

  // 3. promote of promoteRows staged rows at once (a backlog), on top of what is in orders.
  const backlog = Array.from({ length: Math.ceil(promoteRows / batchSize) }, () => batch(batchSize));
  t = performance.now();
  for (let b = 0; b < backlog.length; b++) await stageBatch(pool, schema, `backlog-${b}`, backlog[b]);
  const stageBacklogMs = performance.now() - t;
  t = performance.now();
  const big = await promote(pool, schema);
  const bigMs = performance.now() - t;
  result.promoteAll = { ...big, ms: Math.round(bigMs), rowsPerSec: Math.round(big.staged / (bigMs / 1000)), stageMs: Math.round(stageBacklogMs) };

  // 4. The views over everything promoted.
  t = performance.now();
  const refreshed = await refreshViews(pool, schema);
  result.refreshViews = { ms: Math.round(performance.now() - t), views: refreshed.map((r) => ({ view: r.view, rows: r.rows, ms: round(r.durationMs) })) };
  const total = await pool.query(`SELECT count(*)::int AS n FROM ${quoteIdent(schema)}.orders`);
  result.ordersRows = total.rows[0].n;
} finally {
  await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`).catch(() => {});
  await pool.end();
}
console.log(JSON.stringify(result, null, 2));
