/**
 * `kill -9` of an orders worker process in the middle of a batch: `tributary orders
 * process` runs as a child, is frozen while it holds orders in its processing lists,
 * and SIGKILLed. A survivor (another process's pipeline, here in-process) returns the
 * dead worker's lists to the queue once their heartbeats are stale, and every order ends
 * up in `orders` exactly once, with nothing left in staging, the queue or the lists.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { quoteIdent } from '../../src/postgres/pool.js';
import { send } from '../../src/redis/client.js';
import { assertBuilt, EngineProcess, freezeHolding, killChildren } from '../helpers/child.js';
import { waitFor } from '../helpers/env.js';
import { orderJson, ordersTestEnvs, type OrdersTestEnv } from '../helpers/orders.js';

const envs = ordersTestEnvs();
beforeAll(() => assertBuilt());
afterEach(async () => killChildren());

/** Orders in the processing lists of workers whose name starts with `prefix`. */
async function heldBy(env: OrdersTestEnv, prefix: string): Promise<string[]> {
  const held: string[] = [];
  for (const w of await env.queue.workers()) {
    if (w.worker.startsWith(prefix)) held.push(...((await send(env.redis, ['LRANGE', env.queue.keys.processing(w.worker), '0', '-1'])) as string[]));
  }
  return held;
}

describe('orders worker killed mid-batch', () => {
  it('its orders are recovered and processed exactly once', async () => {
    const env = await envs.setup('crash');
    const ids = Array.from({ length: 30_000 }, (_, i) => `k-${String(i).padStart(5, '0')}`);
    await env.queue.push(ids.map((id) => orderJson(id)));

    const victim = new EngineProcess(
      {
        ...env.childEnv,
        CONSUMER_NAME: 'victim',
        ORDERS_WORKERS: '2',
        ORDERS_BATCH_SIZE: '1000',
        ORDERS_BLOCK_MS: '200',
        ORDERS_STALE_MS: '2000',
        ORDERS_RECOVER_INTERVAL_MS: '200',
        VIEW_REFRESH_MIN_MS: '60000',
      },
      'victim',
      ['orders', 'process'],
    );
    await victim.waitForLog('orders pipeline started', 30_000);
    const frozenWith = await freezeHolding(victim, async () => (await heldBy(env, 'victim-')).length, { atLeast: 1000 });
    expect(frozenWith, 'orders held by the frozen process').toBeGreaterThan(0);
    const held = await heldBy(env, 'victim-');
    await victim.killHard();
    expect(held.length).toBe(frozenWith);

    const survivor = env.pipeline({ workers: 2, batchSize: 1000, staleMs: 2000, recoverIntervalMs: 200 });
    const recovered: number[] = [];
    survivor.on('recovered', (r) => recovered.push(r.items));
    await survivor.start();
    await waitFor(async () => (await env.queue.depth()) === 0, 60_000, 'every order acknowledged');
    await survivor.close();

    expect(recovered.reduce((a, b) => a + b, 0), 'orders recovered from the dead process').toBe(held.length);
    const s = quoteIdent(env.name);
    const r = await env.pool.query<{ n: string; d: string; missing: string; held: string }>(
      `SELECT (SELECT count(*) FROM ${s}.orders) AS n,
              (SELECT count(DISTINCT order_id) FROM ${s}.orders) AS d,
              (SELECT count(*) FROM unnest($1::text[]) AS i(id) WHERE NOT EXISTS (SELECT 1 FROM ${s}.orders o WHERE o.order_id = i.id)) AS missing,
              (SELECT count(*) FROM ${s}.orders WHERE order_id = ANY($2)) AS held`,
      [ids, held.map((t) => (JSON.parse(t) as { order_id: string }).order_id)],
    );
    expect(Number(r.rows[0]!.missing), 'orders missing').toBe(0);
    expect(Number(r.rows[0]!.n)).toBe(ids.length);
    expect(Number(r.rows[0]!.d)).toBe(ids.length);
    expect(Number(r.rows[0]!.held), 'the held orders, each once').toBe(held.length);
    expect(await env.count('orders_rejected')).toBe(0);
    expect(await env.count('orders_staging'), 'staged rows of the dead worker dropped').toBe(0);
    expect(await heldBy(env, ''), 'processing lists').toEqual([]);
    expect(await env.queue.length()).toBe(0);
  });
});
