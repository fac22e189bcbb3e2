/**
 * The whole orders pipeline through a real PgBouncer in transaction pool mode (started
 * by the test on a free port): migrate, seed, lookup cache published from Postgres,
 * four workers staging (COPY) and promoting (transactions), malformed rejects, views
 * refreshed on the completion signal: all through 3 server connections, no session state.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderGenerator } from '../../src/orders/generate.js';
import { seedReferenceData } from '../../src/orders/seed.js';
import { createPgPool, quoteIdent } from '../../src/postgres/pool.js';
import { waitFor } from '../helpers/env.js';
import { ordersTestEnvs } from '../helpers/orders.js';
import { startPgBouncer, stopPgBouncer, type PgBouncer } from '../helpers/pgbouncer.js';

const SERVER_POOL = 3;
let bouncer: PgBouncer | undefined;
beforeAll(async () => {
  bouncer = await startPgBouncer({ poolMode: 'transaction', defaultPoolSize: SERVER_POOL });
});
afterAll(async () => stopPgBouncer(bouncer));

const envs = ordersTestEnvs();

describe('the orders pipeline through PgBouncer (transaction pool mode)', () => {
  it('migrates, seeds, publishes the cache, processes, promotes and refreshes the views on 3 server connections', async () => {
    const b = bouncer!;
    const env = await envs.setup('bouncer', 'none');
    const through = createPgPool(b.url, { max: 2 });
    envs.defer(() => through.end());
    const texts = new OrderGenerator({ duplicates: 0.05, invalid: 0.02, seed: 17 }).batch(5000);
    await env.queue.push(texts);

    // Migrations and the reference data go through PgBouncer too; the cache is empty, so
    // the pipeline publishes it from the reference tables (read through PgBouncer).
    const p = env.pipeline({ databaseUrl: b.url, workers: 4, batchSize: 250, untilEmpty: true, migrate: true, retryMaxMs: 200 });
    const published: number[] = [];
    p.on('cachePublished', (r) => published.push(r.version));
    const refreshed: string[] = [];
    p.on('viewsRefreshed', (o) => refreshed.push(o.status));
    const errors: Error[] = [];
    p.on('error', (e) => errors.push(e));
    // Seed once the schema exists: start() migrates, then the workers wait for reference data.
    const started = p.start();
    await waitFor(async () => (await through.query(`SELECT to_regclass($1) AS t`, [`${env.name}.products`])).rows[0].t !== null, 10_000, 'the schema');
    await seedReferenceData(through, env.name);
    await started;
    await p.done;
    await p.close();
    expect(errors).toEqual([]);
    expect(published.length).toBeGreaterThan(0);
    expect(refreshed).toContain('refreshed');

    const s = quoteIdent(env.name);
    const valid = new Set<string>();
    const counted = await env.pool.query<{ orders: string; rejected: string; staging: string; hourly: string | null }>(
      `SELECT (SELECT count(*) FROM ${s}.orders) AS orders, (SELECT count(*) FROM ${s}.orders_rejected) AS rejected,
              (SELECT count(*) FROM ${s}.orders_staging) AS staging, (SELECT sum(order_count) FROM ${s}.sales_hourly) AS hourly`,
    );
    const st = p.stats();
    expect(st.taken).toBe(5000);
    expect(Number(counted.rows[0]!.orders)).toBe(st.promoted);
    expect(Number(counted.rows[0]!.rejected)).toBe(st.rejectedTotal);
    expect(st.rejectedTotal).toBeGreaterThan(0);
    expect(Number(counted.rows[0]!.staging)).toBe(0);
    // Views refreshed once more at close: they count every promoted order.
    expect(Number(counted.rows[0]!.hourly)).toBe(st.promoted);
    for (const t of texts) {
      try {
        const o = JSON.parse(t) as { order_id: string; quantity: number; product_id: string; currency: string; zip_code: string; order_timestamp: string };
        if (o.quantity > 0 && o.product_id !== 'P-DISCONTINUED' && o.currency !== 'XYZ' && o.zip_code !== '00000' && !o.order_timestamp.includes(' ')) valid.add(o.order_id);
      } catch {
        // malformed
      }
    }
    expect(st.promoted).toBe(valid.size);
    expect(await env.queue.depth()).toBe(0);

    const pools = await b.admin<{ database: string; pool_mode: string }>('SHOW POOLS');
    const database = new URL(b.url).pathname.slice(1);
    expect(pools.find((x) => x.database === database)?.pool_mode).toBe('transaction');
    const servers = (await b.admin<{ database: string }>('SHOW SERVERS')).filter((x) => x.database === database);
    expect(servers.length).toBeLessThanOrEqual(SERVER_POOL);
  });
});
