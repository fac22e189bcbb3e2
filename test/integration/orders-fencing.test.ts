/**
 * Issue 11, item 12: the orders pipeline's stalled workers, rejects and dedup window.
 *
 * - A worker alive but stalled past ORDERS_STALE_MS (a `tributary orders process` child,
 *   its COPY held by a trigger, then SIGSTOPped) has its list requeued by another
 *   process's pipeline, which promotes those orders. Resumed, the stalled worker's late
 *   promote and ack are refused (TRIB_ERR_ORDERS_FENCED, logged); every order is promoted
 *   once, by one worker, and counted once.
 * - The queue's fence: a fenced worker's take and ack are refused; nothing it took since
 *   is popped by a stale ack.
 * - orders_rejected has a key: a redelivered batch adds no second reject row.
 * - A rejected order is not marked seen: its corrected resend is promoted.
 * - Dedup buckets that left the window are UNLINKed before their TTL.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { sleep } from '../../src/core/backoff.js';
import { promote, recordMalformed } from '../../src/orders/pg/promote.js';
import { stageBatch } from '../../src/orders/pg/staging.js';
import { DedupWindow } from '../../src/orders/redis/dedup.js';
import { fencedReply } from '../../src/orders/redis/queue.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { send } from '../../src/redis/client.js';
import { assertBuilt, EngineProcess, killChildren } from '../helpers/child.js';
import { waitFor } from '../helpers/env.js';
import { stagingColumns } from '../helpers/orders-pg.js';
import { orderJson, ordersTestEnvs, type OrdersTestEnv } from '../helpers/orders.js';

const envs = ordersTestEnvs();
beforeAll(() => assertBuilt());
afterEach(async () => killChildren());

async function stats(env: OrdersTestEnv): Promise<Record<string, number>> {
  const flat = (await send(env.redis, ['HGETALL', `${env.name}:stats`])) as string[];
  const out: Record<string, number> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = Number(flat[i + 1]);
  return out;
}

describe('a worker stalled past ORDERS_STALE_MS is fenced', () => {
  it('its list is requeued and promoted by another worker; its late promote and ack are refused and logged; every order once', async () => {
    const env = await envs.setup('fence');
    const s = quoteIdent(env.name);
    const lockKey = `stall-${env.name}`;
    const name = `stalled${randomBytes(2).toString('hex')}`;
    // The stalled worker's COPY waits on an advisory lock the test holds.
    await env.pool.query(`
      CREATE FUNCTION ${s}.stall() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF starts_with(NEW.batch_id, '${name}-') THEN
          PERFORM pg_advisory_xact_lock_shared(hashtext('${lockKey}'));
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER stall BEFORE INSERT ON ${s}.orders_staging FOR EACH ROW EXECUTE FUNCTION ${s}.stall();`);
    const holder = await env.pool.connect();
    await holder.query('SELECT pg_advisory_lock(hashtext($1))', [lockKey]);
    let held = true;
    envs.defer(async () => {
      if (held) await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [lockKey]).catch(() => {});
      holder.release();
    });

    const first = Array.from({ length: 200 }, (_, i) => `f-${String(i).padStart(3, '0')}`);
    const invalid = first.slice(0, 5);
    await env.queue.push(first.map((id, i) => orderJson(id, i < 5 ? { product_id: 'NOPE' } : {})));

    const stalled = new EngineProcess(
      {
        ...env.childEnv,
        CONSUMER_NAME: name,
        ORDERS_WORKERS: '1',
        ORDERS_BATCH_SIZE: '500',
        ORDERS_BLOCK_MS: '100',
        ORDERS_STALE_MS: '1500',
        ORDERS_RECOVER_INTERVAL_MS: '200',
        VIEW_REFRESH_MIN_MS: '60000',
      },
      'stalled',
      ['orders', 'process'],
    );
    await stalled.waitForLog('orders pipeline started', 30_000);
    // Its batch of 200 is taken and its COPY waits on the lock.
    await waitFor(
      async () => {
        const r = await env.pool.query<{ n: string }>(
          `SELECT count(*) AS n FROM pg_stat_activity WHERE starts_with(application_name, $1) AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
          [`tributary:orders:${name}-`],
        );
        return Number(r.rows[0]!.n) > 0;
      },
      20_000,
      'the stalled worker waiting in its COPY',
    );
    // The CLI names its workers <CONSUMER_NAME>-<pid>-<random>-<n>.
    const stalledWorker = (await env.queue.workers()).find((w) => w.worker.startsWith(`${name}-`));
    expect(stalledWorker?.processing).toBe(200);
    stalled.kill('SIGSTOP'); // alive, but no heartbeat any more

    const survivor = env.pipeline({ workers: 1, batchSize: 500, staleMs: 1500, recoverIntervalMs: 200, workerPrefix: `surv${randomBytes(2).toString('hex')}` });
    const recovered: string[] = [];
    survivor.on('recovered', (r) => recovered.push(...Object.keys(r.byWorker)));
    await survivor.start();
    await waitFor(async () => (await env.count('orders')) === 195 && (await env.queue.depth()) === 0, 20_000, 'the survivor promoting the requeued orders');
    expect(recovered).toContain(stalledWorker!.worker);

    // The stalled worker goes on: its COPY lands, then its promote and its ack come late.
    await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [lockKey]);
    held = false;
    stalled.kill('SIGCONT');
    await stalled.waitForLog(/TRIB_ERR_ORDERS_FENCED[^\n]*promote/, 20_000);
    await stalled.waitForLog(/TRIB_ERR_ORDERS_FENCED[^\n]*ack/, 20_000);

    // Both go on working: the fenced worker adopted a new epoch.
    const second = Array.from({ length: 300 }, (_, i) => `s-${String(i).padStart(3, '0')}`);
    await env.queue.push(second.map((id) => orderJson(id)));
    await waitFor(async () => (await env.queue.depth()) === 0 && (await env.count('orders')) === 495, 20_000, 'the second round promoted');
    stalled.kill('SIGTERM');
    expect((await stalled.waitExit(20_000))?.code).toBe(0);
    await survivor.close();

    const r = await env.pool.query<{ n: string; d: string; by_stalled: string }>(
      `SELECT count(*) AS n, count(DISTINCT order_id) AS d,
              count(*) FILTER (WHERE order_id = ANY($1) AND starts_with(batch_id, $2)) AS by_stalled
       FROM ${s}.orders`,
      [first, `${name}-`],
    );
    expect(Number(r.rows[0]!.n)).toBe(495);
    expect(Number(r.rows[0]!.d)).toBe(495);
    expect(Number(r.rows[0]!.by_stalled), 'first-round orders promoted by the fenced worker').toBe(0);
    const rejected = await env.pool.query<{ order_id: string }>(`SELECT order_id FROM ${s}.orders_rejected ORDER BY order_id`);
    expect(rejected.rows.map((x) => x.order_id)).toEqual(invalid);
    expect(await env.count('orders_staging'), 'the fenced batch’s staged rows dropped').toBe(0);
    // Counted once: the refused batch counts nowhere.
    const st = await stats(env);
    expect(st.taken).toBe(500);
    expect(st.promoted).toBe(495);
    expect(st.pg_duplicates ?? 0).toBe(0);
    expect(st.rejected).toBe(5);
    expect(await env.queue.length()).toBe(0);
    for (const w of await env.queue.workers()) expect(w.processing, `processing list of ${w.worker}`).toBe(0);
    expect(stalled.output).toMatch(/worker [^ ]+ was fenced: its promote was refused/);
  }, 90_000);
});

describe('the queue fence', () => {
  it('a recovered worker’s take and ack are refused; its stale ack pops nothing it took since', async () => {
    const env = await envs.setup('qfence', 'none');
    const q = env.queue;
    await q.push(['a', 'b', 'c', 'd']);
    const { epoch } = await q.releaseOwn('w');
    expect(await q.take('w', 2, 0, epoch)).toEqual(['a', 'b']);
    // Another process judges w dead (staleMs 1: its heartbeat is older than that).
    await sleep(5);
    const hooked: Array<[string, number]> = [];
    const rec = await q.recover({ staleMs: 1, fence: async (worker, e) => void hooked.push([worker, e]) });
    expect(rec.byWorker).toEqual({ w: 2 });
    expect(hooked).toEqual([['w', epoch + 1]]);
    // Its next take is refused (FENCED), moving nothing.
    const err = await q.take('w', 2, 0, epoch).catch((e: unknown) => e);
    expect(fencedReply(err)).toEqual({ epoch, current: epoch + 1 });
    expect(await q.length()).toBe(4);
    // Taken under the new epoch (after releasing), another batch; the stale ack of the
    // first batch by count must not pop it.
    const again = await q.releaseOwn('w');
    expect(again.epoch).toBe(epoch + 2);
    expect(await q.take('w', 2, 0, again.epoch)).toEqual(['a', 'b']);
    expect(await q.ack('w', 2, epoch)).toEqual({ acked: 0, missing: 2, depth: 4, fenced: { epoch, current: epoch + 2 } });
    expect(await send(env.redis, ['LRANGE', q.keys.processing('w'), '0', '-1'])).toEqual(['b', 'a']);
    expect(await q.ack('w', 2, again.epoch)).toEqual({ acked: 2, missing: 0, depth: 2 });
    // The blocking take checks the fence too.
    await sleep(5);
    expect((await q.recover({ staleMs: 1 })).workers).toBe(1);
    expect(fencedReply(await q.take('w', 2, 50, again.epoch).catch((e: unknown) => e))).toBeDefined();
  });

  it('a promote carrying an epoch older than the worker’s fence in Postgres is refused and its staged rows dropped', async () => {
    const env = await envs.setup('pgfence', 'seed');
    const { fenceWorker } = await import('../../src/orders/pg/promote.js');
    const fence = { prefix: env.name, worker: 'w-1', epoch: 3 };
    await stageBatch(env.pool, env.name, 'w-1:x:1', stagingColumns([{ order_id: 'o1' }, { order_id: 'o2' }]));
    expect(await promote(env.pool, env.name, { batchId: 'w-1:x:1', fence })).toMatchObject({ promoted: 2, staged: 2 });
    await stageBatch(env.pool, env.name, 'w-1:x:2', stagingColumns([{ order_id: 'o3' }]));
    // Another process fences w-1 at epoch 4: its staged rows go; a later stage of epoch 3 is refused.
    expect(await fenceWorker(env.pool, env.name, { ...fence, epoch: 4 })).toBe(1);
    await stageBatch(env.pool, env.name, 'w-1:x:2', stagingColumns([{ order_id: 'o3' }]));
    expect(await promote(env.pool, env.name, { batchId: 'w-1:x:2', fence })).toEqual({ promoted: 0, duplicates: 0, rejected: {}, staged: 0, fenced: { epoch: 3, current: 4 } });
    expect(await env.count('orders_staging')).toBe(0);
    expect(await env.count('orders')).toBe(2);
    // A fence is never lowered; the new epoch promotes.
    await fenceWorker(env.pool, env.name, { ...fence, epoch: 2 });
    await stageBatch(env.pool, env.name, 'w-1:x:3', stagingColumns([{ order_id: 'o3' }]));
    expect(await promote(env.pool, env.name, { batchId: 'w-1:x:3', fence: { ...fence, epoch: 4 } })).toMatchObject({ promoted: 1 });
    // Another queue prefix's worker of the same name is not fenced.
    await stageBatch(env.pool, env.name, 'w-1:y:1', stagingColumns([{ order_id: 'o4' }]));
    expect(await promote(env.pool, env.name, { batchId: 'w-1:y:1', fence: { ...fence, prefix: 'other', epoch: 0 } })).toMatchObject({ promoted: 1 });
  });
});

describe('a fence Postgres holds and Redis forgot', () => {
  it('the refused batch is not acknowledged: its orders go back to the queue and are promoted under an epoch above the fence', async () => {
    const env = await envs.setup('fenceforgot');
    const { fenceWorker } = await import('../../src/orders/pg/promote.js');
    const workerPrefix = `ff${randomBytes(2).toString('hex')}`;
    // Fenced at epoch 5 in Postgres; Redis lost its fence hash (a restart without persistence, a clear).
    await fenceWorker(env.pool, env.name, { prefix: env.name, worker: `${workerPrefix}-1`, epoch: 5 });
    const pipeline = env.pipeline({ workers: 1, workerPrefix });
    const fenced: string[] = [];
    pipeline.on('fenced', (e) => fenced.push(e.step));
    await pipeline.start();
    const ids = Array.from({ length: 50 }, (_, i) => `ff-${i}`);
    await env.queue.push(ids.map((id) => orderJson(id)));
    await waitFor(async () => (await env.queue.depth()) === 0, 15_000, 'every order acknowledged');
    await pipeline.close();
    expect(fenced).toContain('promote');
    expect(await env.count('orders'), 'orders promoted (none acknowledged unwritten)').toBe(50);
    expect(Number(await send(env.redis, ['HGET', env.queue.keys.fence, `${workerPrefix}-1`]))).toBeGreaterThan(5);
  });
});

describe('rejects', () => {
  it('a redelivered batch adds no second reject row; a corrected resend does', async () => {
    const env = await envs.setup('rejkey', 'seed');
    const bad = [{ order_id: 'r1', product_id: 'NOPE' }, { order_id: 'r2', quantity: 0 }];
    await stageBatch(env.pool, env.name, 'b1', stagingColumns(bad));
    expect(await promote(env.pool, env.name, { batchId: 'b1' })).toMatchObject({ rejected: { unknown_product: 1, non_positive_quantity: 1 }, staged: 2, rejectedIds: ['r1', 'r2'] });
    // The same items again (a redelivery under another batch id): counted as duplicates, no row added.
    await stageBatch(env.pool, env.name, 'b2', stagingColumns(bad));
    expect(await promote(env.pool, env.name, { batchId: 'b2' })).toMatchObject({ promoted: 0, duplicates: 2, rejected: {}, staged: 2, rejectedIds: ['r1', 'r2'] });
    expect(await recordMalformed(env.pool, env.name, 'b1', [{ raw: '{not json', error: 'bad' }])).toBe(1);
    expect(await recordMalformed(env.pool, env.name, 'b2', [{ raw: '{not json', error: 'bad' }])).toBe(0);
    expect(await env.count('orders_rejected')).toBe(3);
    // Corrected, but still wrong in another way: a row of its own.
    await stageBatch(env.pool, env.name, 'b3', stagingColumns([{ order_id: 'r1', product_id: 'NOPE2' }]));
    await promote(env.pool, env.name, { batchId: 'b3' });
    expect(await env.count('orders_rejected')).toBe(4);
  });

  it('a rejected order is not marked seen: its corrected resend passes the dedup window and is promoted', async () => {
    const env = await envs.setup('rejseen');
    await env.queue.push([orderJson('fix-1', { product_id: 'NOPE' }), orderJson('ok-1')]);
    await env.drain({ workers: 1 });
    expect(await env.count('orders')).toBe(1);
    expect(await env.count('orders_rejected')).toBe(1);
    await env.queue.push([orderJson('fix-1'), orderJson('ok-1')]);
    const p = await env.drain({ workers: 1 });
    expect(p.stats()).toMatchObject({ promoted: 1, duplicates: 1 });
    const r = await env.pool.query<{ order_id: string }>(`SELECT order_id FROM ${quoteIdent(env.name)}.orders ORDER BY order_id`);
    expect(r.rows.map((x) => x.order_id)).toEqual(['fix-1', 'ok-1']);
  });
});

describe('dedup buckets', () => {
  it('a bucket that left the window is UNLINKed before its TTL would free it', async () => {
    const env = await envs.setup('dedupsweep', 'none');
    const dedup = new DedupWindow({ client: env.redis, prefix: env.name, windowSeconds: 2, bucketSeconds: 2 });
    // Marked at the end of a bucket: the bucket leaves the window ~2.1 s later, while its TTL runs on.
    while (Date.now() % 2000 < 1850) await sleep(10);
    await dedup.markSeen(['z']);
    const key = dedup.liveBucketKeys().at(-1)!;
    const ttlMs = Number(await send(env.redis, ['PTTL', key]));
    const markedAt = Date.now();
    await sleep(2400);
    expect(await dedup.filterUnseen(['z'])).toEqual([true]);
    await dedup.markSeen(['y']); // a later batch sweeps
    const gone = Number(await send(env.redis, ['EXISTS', key])) === 0;
    const elapsed = Date.now() - markedAt;
    expect(elapsed, 'checked before the TTL ran out').toBeLessThan(ttlMs);
    expect(gone, 'bucket deleted by the sweep, before its TTL').toBe(true);
    // The sweep alone (the pipeline's timer, when no batch comes).
    const keyY = dedup.liveBucketKeys().at(-1)!;
    expect(Number(await send(env.redis, ['EXISTS', keyY]))).toBe(1);
    await sleep(4100);
    expect(await dedup.sweep()).toBe(1);
    expect(Number(await send(env.redis, ['EXISTS', keyY]))).toBe(0);
  });
});
