/**
 * The orders pipeline end to end on real Redis and Postgres: duplicates, rejects, a cache
 * refresh racing the workers, views refreshed by the pub/sub signal, backpressure, a dead
 * worker's orders recovered, Postgres connections killed mid-stream, and a graceful stop.
 * Each test has its own Redis prefix and Postgres schema (test/helpers/orders.ts).
 */
import { describe, expect, it, vi } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { isTributaryError } from '../../src/errors.js';
import { OrderGenerator, produceOrders } from '../../src/orders/generate.js';
import { stageBatch } from '../../src/orders/pg/staging.js';
import { newIsolationState, newStagePromoteState, stageAndPromote, stageAndPromoteIsolating, StagedRowsVanished } from '../../src/orders/batch.js';
import { transformBatch } from '../../src/orders/transform.js';
import { randomBytes } from 'node:crypto';
import { OrdersPipeline } from '../../src/pipelines/orders.js';
import { Backpressure, LookupCache, OrderQueue } from '../../src/orders/redis/index.js';
import { REFERENCE_DATA } from '../../src/orders/seed.js';
import { collectOrdersStats } from '../../src/orders/stats.js';
import type { ReferenceData } from '../../src/orders/types.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { send } from '../../src/redis/client.js';
import { waitFor } from '../helpers/env.js';
import { stagingColumns } from '../helpers/orders-pg.js';
import { orderJson, ordersTestEnvs, type OrdersTestEnv } from '../helpers/orders.js';

const envs = ordersTestEnvs();

const idOf = (text: string) => (JSON.parse(text) as { order_id: string }).order_id;

/** Orders held in any processing list of the env's prefix. */
async function processingTotal(env: OrdersTestEnv): Promise<number> {
  return (await env.queue.workers()).reduce((n, w) => n + w.processing, 0);
}

/** Every given id has exactly one row in orders, and orders holds nothing else. */
async function expectExactlyOnce(env: OrdersTestEnv, ids: readonly string[]): Promise<void> {
  const s = quoteIdent(env.name);
  const r = await env.pool.query<{ n: string; d: string; missing: string }>(
    `SELECT (SELECT count(*) FROM ${s}.orders) AS n,
            (SELECT count(DISTINCT order_id) FROM ${s}.orders) AS d,
            (SELECT count(*) FROM unnest($1::text[]) AS i(id) WHERE NOT EXISTS (SELECT 1 FROM ${s}.orders o WHERE o.order_id = i.id)) AS missing`,
    [ids],
  );
  expect(Number(r.rows[0]!.missing), 'ids with no row in orders').toBe(0);
  expect(Number(r.rows[0]!.n)).toBe(ids.length);
  expect(Number(r.rows[0]!.d)).toBe(ids.length);
}

/** Nothing left behind: queue and processing lists empty, depth 0, staging empty. */
async function expectSettled(env: OrdersTestEnv): Promise<void> {
  expect(await env.queue.length(), 'queue').toBe(0);
  expect(await processingTotal(env), 'processing lists').toBe(0);
  expect(await env.queue.depth(), 'depth counter').toBe(0);
  expect(await env.count('orders_staging'), 'staging').toBe(0);
}

describe('OrdersPipeline', () => {
  it('duplicates in, none in orders: the window drops repeats, and a replay of everything adds nothing', async () => {
    const env = await envs.setup('dups');
    const texts = new OrderGenerator({ duplicates: 0.1, seed: 7 }).batch(3000);
    const ids = [...new Set(texts.map(idOf))];
    expect(ids.length).toBeLessThan(2800);
    await env.queue.push(texts);
    const first = await env.drain({ workers: 2, batchSize: 400 });
    await expectExactlyOnce(env, ids);
    const s = first.stats();
    expect(s.taken).toBe(3000);
    expect(s.promoted).toBe(ids.length);
    // Repeats dropped by the window, or (in a batch processed at the same time) by the primary key.
    expect(s.duplicates).toBeGreaterThan(0);
    expect(s.duplicates + s.pgDuplicates).toBe(3000 - ids.length);
    expect(s.rejectedTotal).toBe(0);
    await expectSettled(env);

    // The same 3,000 again within the window: all dropped before Postgres.
    await env.queue.push(texts);
    const replay = await env.drain({ workers: 2, batchSize: 400 });
    expect(replay.stats()).toMatchObject({ taken: 3000, duplicates: 3000, promoted: 0, pgDuplicates: 0, rejectedTotal: 0 });
    await expectExactlyOnce(env, ids);
    expect(await env.count('orders_rejected')).toBe(0);
    await expectSettled(env);
  });

  it('rejects carry the right reasons; valid batch-mates are promoted', async () => {
    const env = await envs.setup('rejects');
    const cases: Array<[string, string, string]> = [
      ['r-product', orderJson('r-product', { product_id: 'P999' }), 'unknown_product'],
      ['r-currency', orderJson('r-currency', { currency: 'XYZ' }), 'unknown_currency'],
      ['r-zip', orderJson('r-zip', { zip_code: '00000' }), 'unknown_zip'],
      ['r-qty-zero', orderJson('r-qty-zero', { quantity: 0 }), 'non_positive_quantity'],
      ['r-qty-negative', orderJson('r-qty-negative', { quantity: -3 }), 'non_positive_quantity'],
      ['r-time', orderJson('r-time', { order_timestamp: 'yesterday at noon' }), 'bad_timestamp'],
      ['r-truncated', '{"order_id":"r-truncated","customer_id":"cust-1","quantity":', 'malformed'],
      ['r-text-quantity', orderJson('r-text-quantity', { quantity: '3' }), 'malformed'],
      ['r-two-problems', orderJson('r-two-problems', { product_id: 'P999', zip_code: '00000' }), 'unknown_product'],
    ];
    await env.queue.push([orderJson('ok-1'), ...cases.map((c) => c[1]), orderJson('ok-2', { currency: 'EUR', quantity: 3 })]);
    const p = await env.drain({ workers: 1, batchSize: 100 });
    const s = quoteIdent(env.name);
    const rows = await env.pool.query<{ order_id: string | null; reason: string; detail: string; raw: string | null }>(
      `SELECT order_id, reason, detail, raw FROM ${s}.orders_rejected ORDER BY order_id`,
    );
    // Text that is not JSON names no order_id: its row has none (and sorts last).
    const expected = cases
      .map(([id, , reason]): [string | null, string] => [id === 'r-truncated' ? null : id, reason])
      .sort((a, b) => (a[0] === null ? 1 : b[0] === null ? -1 : a[0].localeCompare(b[0])));
    expect(rows.rows.map((r) => [r.order_id, r.reason])).toEqual(expected);
    const two = rows.rows.find((r) => r.order_id === 'r-two-problems')!;
    expect(two.detail).toMatch(/P999.*not in products.*00000.*not in zip_codes/);
    expect(rows.rows.find((r) => r.order_id === null)!.raw).toBe(cases[6]![1]);
    const ok = await env.pool.query<{ order_id: string; total_usd: string; line_total: string }>(`SELECT order_id, total_usd, line_total FROM ${s}.orders ORDER BY 1`);
    // P001 is 249.99 USD; EUR converts at 1.08 (amount × rate = USD).
    expect(ok.rows).toEqual([
      { order_id: 'ok-1', total_usd: '249.99', line_total: '249.99' },
      { order_id: 'ok-2', total_usd: '749.97', line_total: '694.42' },
    ]);
    expect(p.stats().rejected).toEqual({ malformed: 2, unknown_product: 2, unknown_currency: 1, unknown_zip: 1, non_positive_quantity: 2, bad_timestamp: 1 });
    await expectSettled(env);
  });

  it('a cache refresh during processing: every batch is enriched from exactly one complete version', async () => {
    const env = await envs.setup('cache_race');
    const cache = new LookupCache({ client: env.redis, prefix: env.name });
    /** Version k: every product k dollars dearer. */
    const version = (k: number): ReferenceData => ({
      ...REFERENCE_DATA,
      products: REFERENCE_DATA.products.map((pr) => ({ ...pr, unit_price: Math.round((pr.unit_price + k) * 100) / 100 })),
    });
    const texts = new OrderGenerator({ seed: 11 }).batch(6000);
    await env.queue.push(texts);
    const p = env.pipeline({ workers: 3, batchSize: 200, untilEmpty: true });
    let stop = false;
    let published = 0;
    const publisher = (async () => {
      for (let k = 1; !stop; k++) {
        await cache.publish(version(k % 50));
        published++;
        await sleep(5);
      }
    })();
    const versions = new Set<number>();
    p.on('batch', (b) => b.cacheVersion !== null && versions.add(b.cacheVersion));
    await p.start();
    await p.done;
    stop = true;
    await publisher;
    await p.close();
    expect(published).toBeGreaterThan(3);
    const s = quoteIdent(env.name);
    // Per batch: the price offsets (order's price − the seeded price) it saw.
    const offsets = await env.pool.query<{ batch_id: string; offsets: string[] }>(
      `SELECT o.batch_id, array_agg(DISTINCT (o.unit_price - p.unit_price)::text) AS offsets
       FROM ${s}.orders o JOIN ${s}.products p USING (product_id) GROUP BY o.batch_id`,
    );
    expect(offsets.rows.length).toBeGreaterThan(10);
    const mixed = offsets.rows.filter((r) => r.offsets.length !== 1);
    expect(mixed, 'batches enriched from more than one cache version').toEqual([]);
    // The refresh really raced the workers: batches saw several versions.
    expect(new Set(offsets.rows.map((r) => r.offsets[0])).size).toBeGreaterThan(1);
    expect(versions.size).toBeGreaterThan(1);
    expect(await env.count('orders')).toBe(6000);
  });

  it('views are refreshed by the pub/sub completion signal (a subscriber that never polls)', async () => {
    const env = await envs.setup('signal');
    // A pipeline with no workers: it only listens for signals and refreshes.
    const listener = env.pipeline({ workers: 0, refreshViews: true, viewRefreshMinIntervalMs: 0 });
    const refreshes: number[] = [];
    listener.on('viewsRefreshed', (o) => o.status === 'refreshed' && refreshes.push(Date.now()));
    await listener.start();
    await sleep(300);
    expect(refreshes, 'no refresh without a signal').toEqual([]);

    await env.queue.push(new OrderGenerator({ seed: 3 }).batch(1000));
    // The workers do not refresh themselves: only the listener can.
    await env.drain({ workers: 2, batchSize: 250, refreshViews: false });
    const orders = await env.count('orders');
    const s = quoteIdent(env.name);
    // Both views: one refresh round refreshes them one after the other.
    await waitFor(
      async () => {
        const r = await env.pool.query<{ a: string | null; b: string | null }>(
          `SELECT (SELECT sum(order_count) FROM ${s}.sales_hourly) AS a, (SELECT sum(orders) FROM ${s}.product_performance_daily) AS b`,
        );
        return Number(r.rows[0]!.a ?? 0) === orders && Number(r.rows[0]!.b ?? 0) === orders;
      },
      10_000,
      'both views to count every promoted order',
    );
    expect(refreshes.length).toBeGreaterThan(0);
    const ppd = await env.pool.query<{ n: string }>(`SELECT sum(orders) AS n FROM ${s}.product_performance_daily`);
    expect(Number(ppd.rows[0]!.n)).toBe(orders);
    const logged = await env.pool.query<{ view_name: string; concurrent: boolean }>(`SELECT view_name, concurrent FROM ${s}.view_refreshes ORDER BY 1`);
    expect(logged.rows).toEqual([
      { view_name: 'product_performance_daily', concurrent: true },
      { view_name: 'sales_hourly', concurrent: true },
    ]);
  });

  it('backpressure: producers wait while the depth is at MAX_QUEUE_DEPTH, and resume as workers drain', async () => {
    const env = await envs.setup('backpressure');
    const bp = new Backpressure(env.queue, { pollMs: 20 });
    const producing = produceOrders(env.queue, new OrderGenerator({ seed: 5 }), { count: 3000, batchSize: 250, maxQueueDepth: 1000, backpressure: bp });
    await waitFor(async () => bp.isEngaged, 10_000, 'backpressure to engage');
    const held = await env.queue.depth();
    expect(held).toBeGreaterThanOrEqual(1000);
    expect(held).toBeLessThan(1000 + 250); // soft limit: at most one batch over
    await sleep(300);
    expect(await env.queue.depth(), 'nothing pushed while held back').toBe(held);
    const stats = await collectOrdersStats(env.redis, env.pool, { prefix: env.name, schema: env.name, maxQueueDepth: 1000 });
    expect(stats.backpressure).toEqual({ maxQueueDepth: 1000, engaged: true });

    const p = env.pipeline({ workers: 2, batchSize: 300 });
    await p.start();
    const result = await producing;
    expect(result.pushed).toBe(3000);
    expect(result.waits).toBeGreaterThan(0);
    expect(result.maxDepth).toBeLessThan(1250);
    await waitFor(async () => (await env.queue.depth()) === 0, 20_000, 'the queue to drain');
    await p.close();
    expect(await env.count('orders')).toBe(3000);
  });

  it("a dead worker's processing list is recovered and processed exactly once; its staged rows are dropped", async () => {
    const env = await envs.setup('recover');
    const texts = Array.from({ length: 1000 }, (_, i) => orderJson(`rec-${i}`));
    await env.queue.push(texts);
    // A worker that took 300 orders, staged them, and died before promoting.
    const held = await env.queue.take('ghost-1', 300, 0);
    expect(held).toHaveLength(300);
    await stageBatch(env.pool, env.name, 'ghost-1:abc:1', stagingColumns(held.map((t) => ({ order_id: idOf(t) }))));
    await send(env.redis, ['ZINCRBY', env.queue.keys.workers, '-60000', 'ghost-1']);

    const p = env.pipeline({ workers: 2, batchSize: 200 });
    const recovered: Array<{ items: number; byWorker: Record<string, number>; stagingRowsDropped: number }> = [];
    p.on('recovered', (r) => recovered.push(r));
    await p.start();
    await waitFor(async () => (await env.queue.depth()) === 0, 20_000, 'every order acknowledged');
    await p.close();
    expect(recovered).toEqual([expect.objectContaining({ items: 300, byWorker: { 'ghost-1': 300 }, stagingRowsDropped: 300 })]);
    await expectExactlyOnce(env, texts.map(idOf));
    expect(p.stats().pgDuplicates).toBe(0);
    await expectSettled(env);
  });

  it('Postgres connections killed again and again mid-stream: every order lands once, nothing is acknowledged early', async () => {
    const env = await envs.setup('pg_kill');
    const texts = new OrderGenerator({ seed: 9 }).batch(4000);
    await env.queue.push(texts);
    const options = env.pipelineOptions({ workers: 2, batchSize: 250, untilEmpty: true, retryBaseMs: 20, retryMaxMs: 200 });
    const p = env.pipeline(options);
    let kills = 0;
    let stop = false;
    const killer = (async () => {
      while (!stop) {
        const r = await env.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`, [
          `tributary:orders:${options.workerPrefix}`.slice(0, 63),
        ]);
        kills += r.rowCount ?? 0;
        await sleep(40);
      }
    })();
    const retries: string[] = [];
    p.on('retry', (r) => retries.push(r.step));
    try {
      await p.start();
      await p.done;
    } finally {
      stop = true;
      await killer;
      await p.close();
    }
    expect(kills).toBeGreaterThan(0);
    expect(retries).toContain('stage and promote');
    await expectExactlyOnce(env, [...new Set(texts.map(idOf))]);
    await expectSettled(env);
  });

  it('close() is graceful: in-flight batches finish and are acknowledged; the rest waits in the queue; calling it twice is fine', async () => {
    const env = await envs.setup('graceful');
    const texts = Array.from({ length: 6000 }, (_, i) => orderJson(`g-${i}`));
    await env.queue.push(texts);
    const p = env.pipeline({ workers: 2, batchSize: 250 });
    const firstBatch = new Promise<void>((resolve) => p.on('batch', () => resolve()));
    await p.start();
    await firstBatch;
    const closing = p.close();
    expect(p.close()).toBe(closing);
    await closing;
    const s = p.stats();
    expect(s.inFlight).toBe(0);
    expect(await processingTotal(env), 'nothing held after a graceful stop').toBe(0);
    expect(await env.count('orders')).toBe(s.taken);
    expect(await env.queue.length()).toBe(6000 - s.taken);
    expect(await env.queue.depth()).toBe(6000 - s.taken);
    expect((await env.queue.workers()).length, 'heartbeats forgotten').toBe(0);
    await env.drain();
    await expectExactlyOnce(env, texts.map(idOf));
  });

  it('a poison order (a 3 kB random order_id) does not wedge its worker: its batch-mates land and close() returns', async () => {
    const env = await envs.setup('poison');
    const poisonId = randomBytes(1500).toString('hex');
    const texts = Array.from({ length: 999 }, (_, i) => orderJson(`ok-${i}`));
    texts.splice(500, 0, orderJson(poisonId));
    await env.queue.push(texts);
    const p = env.pipeline({ workers: 1, batchSize: 1000, untilEmpty: true });
    await p.start();
    await waitFor(async () => (await env.count('orders')) === 999, 20_000);
    await p.close();
    const s = quoteIdent(env.name);
    const rej = await env.pool.query<{ order_id: string | null; reason: string; detail: string; raw: string }>(`SELECT order_id, reason, detail, raw FROM ${s}.orders_rejected`);
    expect(rej.rows).toHaveLength(1);
    expect(rej.rows[0]).toMatchObject({ order_id: null, reason: 'malformed', detail: 'order_id: longer than 128 characters (3000)' });
    expect(idOf(rej.rows[0]!.raw)).toBe(poisonId);
    await expectExactlyOnce(env, texts.map(idOf).filter((id) => id !== poisonId));
    await expectSettled(env);
  });

  it('content Postgres refuses (SQLSTATE 54000, past the parse caps) is isolated, not retried: the rest of the batch lands', async () => {
    const env = await envs.setup('poison_pg');
    const poisonId = randomBytes(1500).toString('hex');
    const orders = Array.from({ length: 300 }, (_, i) => JSON.parse(orderJson(i === 137 ? poisonId : `iso-${i}`)) as Parameters<typeof transformBatch>[0][number]);
    const cols = transformBatch(orders, { version: 0, products: new Map(), currencies: new Map(), zipCodes: new Map() });
    const r = await stageAndPromoteIsolating(env.pool, env.name, 'w-1:t:1', cols, orders, [], newStagePromoteState(), newIsolationState());
    expect(r).toMatchObject({ promoted: 299, staged: 300, stagedRows: 300, rejected: { malformed: 1 } });
    const s = quoteIdent(env.name);
    const rej = await env.pool.query<{ order_id: string | null; detail: string; raw: string }>(`SELECT order_id, detail, raw FROM ${s}.orders_rejected`);
    expect(rej.rows).toHaveLength(1);
    expect(rej.rows[0]!.order_id).toBeNull();
    expect(rej.rows[0]!.detail).toMatch(/^Postgres refused the order: .*index row.*SQLSTATE 54000/);
    expect(idOf(rej.rows[0]!.raw)).toBe(poisonId);
    await expectExactlyOnce(env, orders.map((o) => o.order_id).filter((id) => id !== poisonId));
    expect(await env.count('orders_staging')).toBe(0);
  });

  it('staged rows vanishing at promote (part of the batch promoted) make the retry stage the whole batch again: nothing is lost', async () => {
    const env = await envs.setup('vanish');
    const s = quoteIdent(env.name);
    // One staged row disappears once, as a concurrent recovery's DELETE would make it.
    await env.pool.query(`
      CREATE TABLE ${s}.vanish_once (order_id text);
      INSERT INTO ${s}.vanish_once VALUES ('v-3');
      CREATE FUNCTION ${s}.vanish() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE n int;
      BEGIN
        WITH d AS (DELETE FROM ${s}.vanish_once WHERE order_id = NEW.order_id RETURNING 1) SELECT count(*) INTO n FROM d;
        IF n > 0 THEN DELETE FROM ${s}.orders_staging WHERE ctid = NEW.ctid; END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER vanish AFTER INSERT ON ${s}.orders_staging FOR EACH ROW EXECUTE FUNCTION ${s}.vanish();`);
    const orders = Array.from({ length: 10 }, (_, i) => JSON.parse(orderJson(`v-${i}`)) as Parameters<typeof transformBatch>[0][number]);
    const cols = transformBatch(orders, { version: 0, products: new Map(), currencies: new Map(), zipCodes: new Map() });
    const state = newStagePromoteState();
    await expect(stageAndPromote(env.pool, env.name, 'w-1:t:1', cols, [], state)).rejects.toBeInstanceOf(StagedRowsVanished);
    expect(await env.count('orders')).toBe(9);
    const retry = await stageAndPromote(env.pool, env.name, 'w-1:t:1', cols, [], state);
    expect(retry.landedEarlier).toBe(false);
    await expectExactlyOnce(env, orders.map((o) => o.order_id));
  });

  it('two pipelines in one process with the default worker prefix process a queue exactly once', async () => {
    const env = await envs.setup('two_in_process');
    const texts = Array.from({ length: 4000 }, (_, i) => orderJson(`two-${i}`));
    await env.queue.push(texts);
    const a = env.pipeline({ workerPrefix: undefined, workers: 2, batchSize: 100, untilEmpty: true });
    const b = env.pipeline({ workerPrefix: undefined, workers: 2, batchSize: 100, untilEmpty: true });
    await a.start();
    await b.start();
    await Promise.all([a.done, b.done]);
    await Promise.all([a.close(), b.close()]);
    expect(a.stats().taken + b.stats().taken).toBe(4000);
    expect(a.stats().pgDuplicates + b.stats().pgDuplicates).toBe(0);
    await expectExactlyOnce(env, texts.map(idOf));
    await expectSettled(env);
    expect(new Set([...a.workerNames, ...b.workerNames]).size).toBe(4);
  });

  it('a worker whose start-up release fails retries it (reported), then works; close() leaves no Redis connection behind', async () => {
    const env = await envs.setup('open_leak');
    const texts = Array.from({ length: 50 }, (_, i) => orderJson(`leak-${i}`));
    await env.queue.push(texts);
    const p = env.pipeline({ workers: 1, refreshViews: false, retryBaseMs: 5, retryMaxMs: 20 });
    const name = p.workerNames[0]!;
    const retries: string[] = [];
    p.on('retry', (r) => retries.push(`${r.step}: ${r.error.message}`));
    const spy = vi.spyOn(OrderQueue.prototype, 'releaseOwn').mockRejectedValueOnce(new Error('release failed'));
    try {
      await p.start();
      await waitFor(async () => (await env.count('orders')) === 50, 10_000, 'the batch after the retried release');
    } finally {
      spy.mockRestore();
    }
    expect(retries).toContain('resume: release failed');
    await p.close();
    const connName = `tributary:orders:${name}`;
    await waitFor(async () => !String(await send(env.redis, ['CLIENT', 'LIST'])).includes(`name=${connName} `), 5000, 'worker connection closed');
    await expectExactlyOnce(env, texts.map(idOf));
  });

  it('malformed items whose insert committed but whose reply was lost are not recorded twice on retry', async () => {
    const env = await envs.setup('malformed_once');
    let failNext = true;
    // A pool whose first malformed-items insert commits, then "loses" its reply.
    const flaky = new Proxy(env.pool, {
      get(target, prop, receiver) {
        if (prop !== 'query') return Reflect.get(target, prop, receiver) as unknown;
        return async (...args: Parameters<typeof target.query>) => {
          const res = await (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
          if (failNext && typeof args[0] === 'string' && args[0].includes('orders_rejected (order_id, batch_id, raw')) {
            failNext = false;
            throw new Error('Connection terminated unexpectedly');
          }
          return res;
        };
      },
    });
    const malformed = [
      { raw: '{"order_id":"m-1"', error: 'invalid JSON' },
      { raw: 'nope', error: 'invalid JSON' },
    ];
    const orders = [JSON.parse(orderJson('m-ok')) as Parameters<typeof transformBatch>[0][number]];
    const cols = transformBatch(orders, { version: 0, products: new Map(), currencies: new Map(), zipCodes: new Map() });
    const state = newStagePromoteState();
    await expect(stageAndPromote(flaky, env.name, 'w-1:t:1', cols, malformed, state)).rejects.toThrow(/Connection terminated/);
    const r = await stageAndPromote(flaky, env.name, 'w-1:t:1', cols, malformed, state);
    expect(r.promoted).toBe(1);
    expect(await env.count('orders_rejected')).toBe(2);
    await expectExactlyOnce(env, ['m-ok']);
  });

  it('the maintenance loop vacuums the staging table, whatever autovacuum does', async () => {
    const env = await envs.setup('vacuum');
    await env.queue.push(new OrderGenerator({ seed: 2 }).batch(2000));
    const p = env.pipeline({ workers: 2, batchSize: 500, recoverIntervalMs: 50, vacuumIntervalMs: 100 });
    await p.start();
    const vacuums = async () =>
      Number(
        (
          await env.pool.query<{ n: string | null }>(
            `SELECT vacuum_count + autovacuum_count AS n FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'orders_staging'`,
            [env.name],
          )
        ).rows[0]?.n ?? 0,
      );
    await waitFor(async () => (await vacuums()) > 0, 10_000, 'a VACUUM of orders_staging');
    await p.close();
    expect(await env.count('orders')).toBeGreaterThan(0);
  });

  it('start() fails with a coded error when Redis does not answer, and cleans up', async () => {
    const p = new OrdersPipeline({ redisUrl: 'redis://127.0.0.1:1', databaseUrl: 'postgres://127.0.0.1:5432/tributary', workers: 1, connectTimeoutMs: 500 });
    const err = await p.start().catch((e: unknown) => e);
    expect(isTributaryError(err, 'TRIB_ERR_REDIS_UNAVAILABLE')).toBe(true);
    await p.done;
    await p.close();
  });
});

describe('OrdersPipeline forced stop', () => {
  it('close({ force: true }) after a graceful close() returns promptly while a promote is stuck; the held orders stay in the processing list, nothing is lost', async () => {
    const env = await envs.setup('force_after_graceful');
    const texts = Array.from({ length: 300 }, (_, i) => orderJson(`fg-${i}`));
    await env.queue.push(texts);
    const locker = await env.pool.connect();
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${quoteIdent(env.name)}.orders IN ACCESS EXCLUSIVE MODE`);
    const p = env.pipeline({ workers: 1, batchSize: 300, refreshViews: false, vacuumIntervalMs: 0 });
    try {
      await p.start();
      await waitFor(async () => (await processingTotal(env)) === 300, 10_000, 'the batch taken');
      await sleep(300); // its promote is now waiting on the lock
      const graceful = p.close();
      await sleep(200);
      const t0 = Date.now();
      await p.close({ force: true });
      await graceful;
      expect(Date.now() - t0, 'the forced close returns promptly').toBeLessThan(3000);
      // Not forgotten: the held orders wait in the processing list for recovery.
      expect(await processingTotal(env)).toBe(300);
    } finally {
      await locker.query('COMMIT');
      locker.release();
    }
    // A later pipeline recovers the dead worker's list; every order lands once.
    await env.drain({ workers: 1, staleMs: 3000, recoverIntervalMs: 200 });
    await expectExactlyOnce(env, texts.map(idOf));
  }, 40_000);
});
