import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { createRedisConnection, destroyQuietly, RedisScript, send, type RedisConnection } from '../../src/redis/client.js';
import {
  Backpressure,
  CACHE_TABLES,
  DedupWindow,
  escapeGlob,
  LookupCache,
  OrderQueue,
  OrderSignals,
  pushWithBackpressure,
  redisOrderStats,
  RevenueWindow,
  ViewRefresher,
  type PromotedSignal,
} from '../../src/orders/redis/index.js';
import type { ReferenceData } from '../../src/orders/types.js';
import { codeOf } from '../helpers/env.js';
import { redisKit } from '../helpers/redis-kit.js';

const { redisUrl, cleanups, admin: connect } = redisKit();

/** A private prefix for one test; its keys are deleted after the test. */
async function setup(label: string): Promise<{ client: RedisConnection; prefix: string }> {
  const client = await connect();
  const prefix = `t_orders_${label}_${randomBytes(4).toString('hex')}`;
  cleanups.push(async () => {
    const admin = createRedisConnection(redisUrl, { failFast: false });
    await admin.connect();
    const keys = await admin.keys(`${escapeGlob(prefix)}:*`);
    if (keys.length > 0) await admin.del(keys);
    destroyQuietly(admin);
  });
  return { client, prefix };
}

const orders = (n: number, from = 0) => Array.from({ length: n }, (_, i) => JSON.stringify({ order_id: `o-${from + i}` }));

async function lrange(client: RedisConnection, key: string): Promise<string[]> {
  return (await send(client, ['LRANGE', key, '0', '-1'])) as string[];
}

/** Ages a worker's heartbeat by `ms` (instead of sleeping past staleMs). */
async function ageHeartbeat(client: RedisConnection, queue: OrderQueue, worker: string, ms: number): Promise<void> {
  await send(client, ['ZINCRBY', queue.keys.workers, String(-ms), worker]);
}

describe('OrderQueue', () => {
  it('push and take: FIFO, one MULTI for LPUSH + INCRBY, take moves into the processing list', async () => {
    const { client, prefix } = await setup('fifo');
    const queue = new OrderQueue({ client, prefix });
    expect(await queue.push(orders(10))).toBe(10);
    expect(await queue.push([])).toBe(10);
    const batch = await queue.take('w1', 4, 100);
    expect(batch).toEqual(orders(4));
    expect(await queue.length()).toBe(6);
    expect(await queue.depth()).toBe(10); // taken but uncommitted: still counted
    // The processing list holds them, the oldest at the right end.
    expect(await lrange(client, queue.keys.processing('w1'))).toEqual(orders(4).reverse());
    expect(await queue.take('w1', 100, 0)).toEqual(orders(6, 4));
    expect(await queue.take('w1', 100, 0)).toEqual([]);
    expect((await queue.workers()).map((w) => [w.worker, w.processing])).toEqual([['w1', 10]]);
  });

  it('a blocking take waits up to blockMs, and wakes at once when orders arrive', async () => {
    const { client, prefix } = await setup('block');
    const queue = new OrderQueue({ client, prefix });
    let t0 = performance.now();
    expect(await queue.take('w1', 10, 300)).toEqual([]);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(250);

    const producer = new OrderQueue({ client: await connect(), prefix });
    t0 = performance.now();
    const taking = queue.take('w1', 10, 10_000);
    await sleep(100);
    await producer.push(orders(3));
    expect(await taking).toEqual(orders(3)); // the first by BLMOVE, the rest by the script behind it
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('a large push is one MULTI: every order queued and counted', async () => {
    const { client, prefix } = await setup('bigpush');
    const queue = new OrderQueue({ client, prefix });
    expect(await queue.push(orders(25_000))).toBe(25_000);
    expect(await queue.length()).toBe(25_000);
    const batch = await queue.take('w', 5000, 100);
    expect(batch.length).toBe(5000);
    expect(batch[0]).toBe(orders(1)[0]);
    // The bulk move (LPUSH in chunks of 1000) keeps take order across chunks: oldest first,
    // the oldest rightmost in the processing list, the next take continuing where it stopped.
    expect(batch).toEqual(orders(5000));
    expect(await lrange(client, queue.keys.processing('w'))).toEqual(orders(5000).reverse());
    expect(await queue.take('w2', 1500, 0)).toEqual(orders(1500, 5000));
    expect(await queue.ack('w', batch.length)).toEqual({ acked: 5000, missing: 0, depth: 20_000 });
  });

  it('ack removes exactly the committed orders and decrements depth by what it removed', async () => {
    const { client, prefix } = await setup('ack');
    const queue = new OrderQueue({ client, prefix });
    await queue.push(orders(10));
    const batch = await queue.take('w1', 10, 100);
    const committed = [batch[7]!, batch[2]!, batch[5]!, batch[0]!];
    expect(await queue.ack('w1', committed)).toEqual({ acked: 4, missing: 0, depth: 6 });
    const left = batch.filter((o) => !committed.includes(o));
    expect((await lrange(client, queue.keys.processing('w1'))).sort()).toEqual([...left].sort());
    // Acknowledging again removes nothing and subtracts nothing.
    expect(await queue.ack('w1', committed)).toEqual({ acked: 0, missing: 4, depth: 6 });
    // By count: the oldest taken first.
    expect(await queue.ack('w1', 2)).toEqual({ acked: 2, missing: 0, depth: 4 });
    expect((await lrange(client, queue.keys.processing('w1'))).sort()).toEqual(left.slice(2).sort());
    expect(await queue.ack('w1', 10)).toEqual({ acked: 4, missing: 6, depth: 0 });
    expect(await queue.ack('w1', 0)).toEqual({ acked: 0, missing: 0, depth: 0 });
    expect(await queue.ack('w1', [])).toEqual({ acked: 0, missing: 0, depth: 0 });
    expect(await send(client, ['EXISTS', queue.keys.processing('w1')])).toBe(0);
  });

  it('ack of one of two equal orders removes one', async () => {
    const { client, prefix } = await setup('ackdup');
    const queue = new OrderQueue({ client, prefix });
    await queue.push(['same', 'same', 'other']);
    expect(await queue.take('w', 3, 0)).toEqual(['same', 'same', 'other']);
    expect(await queue.ack('w', ['same'])).toEqual({ acked: 1, missing: 0, depth: 2 });
    expect((await lrange(client, queue.keys.processing('w'))).sort()).toEqual(['other', 'same']);
  });

  it('crash: a worker takes and dies without ack; recover returns its orders to the front of the queue, nothing lost, depth consistent', async () => {
    const { client, prefix } = await setup('crash');
    const queue = new OrderQueue({ client, prefix });
    const pushed = orders(20);
    await queue.push(pushed);

    // The doomed worker runs on its own connection and is destroyed mid-batch.
    const doomedClient = await connect();
    const doomed = new OrderQueue({ client: doomedClient, prefix });
    const lost = await doomed.take('doomed', 5, 100);
    expect(lost).toEqual(pushed.slice(0, 5));
    destroyQuietly(doomedClient);

    // A live worker with work in hand is not touched.
    const live = await queue.take('live', 3, 100);
    expect(live).toEqual(pushed.slice(5, 8));
    expect(await queue.depth()).toBe(20);

    expect(await queue.recover({ staleMs: 60_000 })).toEqual({ items: 0, workers: 0, byWorker: {} });
    await ageHeartbeat(client, queue, 'doomed', 120_000);
    expect(await queue.recover({ staleMs: 60_000 })).toEqual({ items: 5, workers: 1, byWorker: { doomed: 5 } });
    expect(await queue.depth()).toBe(20); // recovered orders are still uncommitted
    expect(await send(client, ['EXISTS', queue.keys.processing('doomed')])).toBe(0);
    expect((await queue.workers()).map((w) => w.worker)).toEqual(['live']);

    // Recovered orders come next, in their original order; then the rest of the queue.
    const next = await queue.take('w2', 100, 100);
    expect(next).toEqual([...pushed.slice(0, 5), ...pushed.slice(8)]);
    expect((await queue.ack('w2', next)).depth).toBe(3);
    expect((await queue.ack('live', live)).depth).toBe(0);
    expect(new Set([...live, ...next])).toEqual(new Set(pushed));
    expect(await queue.resyncDepth()).toEqual({ before: 0, after: 0 });
  });

  it('a worker presumed dead that acks late: its ack finds nothing and the depth stays right', async () => {
    const { client, prefix } = await setup('lateack');
    const queue = new OrderQueue({ client, prefix });
    await queue.push(orders(4));
    const slow = await queue.take('slow', 4, 100);
    await ageHeartbeat(client, queue, 'slow', 10_000);
    expect((await queue.recover({ staleMs: 5000 })).items).toBe(4);
    expect(await queue.ack('slow', slow)).toEqual({ acked: 0, missing: 4, depth: 4 });
    const again = await queue.take('other', 10, 100);
    expect(again).toEqual(slow); // processed again; the primary key makes that a no-op
    expect((await queue.ack('other', again.length)).depth).toBe(0);
  });

  it('recover re-checks the heartbeat atomically: a worker that beat since is left alone', async () => {
    const { client, prefix } = await setup('recheck');
    const queue = new OrderQueue({ client, prefix });
    await queue.push(orders(2));
    await queue.take('w', 2, 100);
    await ageHeartbeat(client, queue, 'w', 10_000);
    const recover = new RedisScript('orders-recover');
    await queue.heartbeat('w'); // beats between a caller's look and the script
    expect(await recover.run(client, [queue.keys.workers, queue.keys.processing('w'), queue.keys.queue], ['w', '5000'])).toEqual([0, 'alive']);
    expect(await queue.recover({ staleMs: 5000 })).toEqual({ items: 0, workers: 0, byWorker: {} });
  });

  it('keepAlive beats during a long batch so recover leaves the worker alone', async () => {
    const { client, prefix } = await setup('keepalive');
    const queue = new OrderQueue({ client, prefix });
    await queue.push(orders(2));
    await queue.take('long', 2, 100);
    const stop = queue.keepAlive('long', 50);
    cleanups.push(stop);
    await ageHeartbeat(client, queue, 'long', 10_000);
    await sleep(150);
    expect((await queue.workers())[0]!.heartbeatAgeMs).toBeLessThan(1000);
    expect(await queue.recover({ staleMs: 5000 })).toEqual({ items: 0, workers: 0, byWorker: {} });
    stop();
    await ageHeartbeat(client, queue, 'long', 10_000);
    await sleep(150);
    expect((await queue.recover({ staleMs: 5000 })).items).toBe(2);
  });

  it('recover finds processing lists without a heartbeat (scanOrphans), release returns a worker’s own orders', async () => {
    const { client, prefix } = await setup('orphan');
    const queue = new OrderQueue({ client, prefix });
    await queue.push(orders(6));
    await queue.take('orphan', 2, 100);
    await send(client, ['ZREM', queue.keys.workers, 'orphan']);
    expect(await queue.recover({ staleMs: 60_000, scanOrphans: false })).toEqual({ items: 0, workers: 0, byWorker: {} });
    expect(await queue.workers()).toEqual([{ worker: 'orphan', processing: 2, heartbeatAgeMs: null }]);
    expect(await queue.recover({ staleMs: 60_000 })).toEqual({ items: 2, workers: 1, byWorker: { orphan: 2 } });

    const mine = await queue.take('me', 3, 100);
    expect(mine).toEqual(orders(3));
    expect(await queue.release('me')).toBe(3);
    expect(await queue.release('me')).toBe(0);
    expect(await queue.take('me', 10, 0)).toEqual(orders(6));
    expect(await queue.depth()).toBe(6);
  });

  it('resyncDepth recomputes the counter from the queue and every processing list', async () => {
    const { client, prefix } = await setup('resync');
    const queue = new OrderQueue({ client, prefix });
    await queue.push(orders(10));
    await queue.take('a', 3, 100);
    await queue.take('b', 2, 100);
    await send(client, ['ZREM', queue.keys.workers, 'b']); // found by SCAN only
    await send(client, ['SET', queue.keys.depth, '999']); // drifted
    expect(await queue.resyncDepth()).toEqual({ before: 999, after: 10 });
    await send(client, ['LPUSH', queue.keys.queue, 'pushed-behind-our-back']);
    expect(await queue.resyncDepth()).toEqual({ before: 10, after: 11 });
  });

  it('rejects bad arguments naming them', async () => {
    const { client, prefix } = await setup('args');
    const queue = new OrderQueue({ client, prefix });
    await expect(queue.take('w', 0, 100)).rejects.toThrow(/take max/);
    await expect(queue.take('w', 1, -1)).rejects.toThrow(/take blockMs/);
    await expect(queue.take('', 1, 0)).rejects.toThrow(/worker name/);
    await expect(queue.ack('w', -1)).rejects.toThrow(/ack count/);
    await expect(queue.recover({ staleMs: 0 })).rejects.toThrow(/staleMs/);
  });
});

describe('DedupWindow', () => {
  it('keeps the first of in-batch duplicates, drops ids marked seen, and never marks on a check', async () => {
    const { client, prefix } = await setup('dedup');
    const dedup = new DedupWindow({ client, prefix });
    expect(await dedup.filterUnseen([])).toEqual([]);
    expect(await dedup.filterUnseen(['a', 'b', 'a', 'c', 'b'])).toEqual([true, true, false, true, false]);
    expect(await dedup.filterUnseen(['a', 'b', 'a', 'c', 'b'])).toEqual([true, true, false, true, false]); // nothing marked
    expect(await dedup.size()).toBe(0);
    expect(await dedup.markSeen(['a', 'b', 'a'])).toBe(2);
    expect(await dedup.markSeen(['b'])).toBe(0);
    expect(await dedup.filterUnseen(['a', 'x', 'b', 'y', 'x'])).toEqual([false, true, false, true, false]);
    expect(await dedup.size()).toBe(2);
    const ttl = Number(await send(client, ['TTL', dedup.liveBucketKeys().at(-1)!]));
    expect(ttl).toBeGreaterThan(3600);
    expect(ttl).toBeLessThanOrEqual(3600 + 2 * 300); // the EXPIRE backstop: window + 2 buckets
  });

  it('checks a whole batch in one round trip (one script call), thousands of ids at a time', async () => {
    const { client, prefix } = await setup('dedupbig');
    const dedup = new DedupWindow({ client, prefix });
    const ids = Array.from({ length: 5000 }, (_, i) => `order-${i}`);
    await dedup.markSeen(ids.filter((_, i) => i % 2 === 0));
    await dedup.filterUnseen(['warm-up']); // loads the script (EVALSHA falls back to EVAL once)
    const spy = vi.spyOn(client, 'sendCommand');
    const keep = await dedup.filterUnseen(ids);
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();
    expect(keep).toEqual(ids.map((_, i) => i % 2 === 1));
  });

  it('forgets ids after the window: buckets leave the live range and are swept (UNLINK)', async () => {
    const { client, prefix } = await setup('dedupexp');
    let now = 1_700_000_000_000;
    const dedup = new DedupWindow({ client, prefix, windowSeconds: 60, bucketSeconds: 10, now: () => now });
    await dedup.markSeen(['a']);
    now += 55_000;
    await dedup.markSeen(['b']);
    expect(await dedup.filterUnseen(['a', 'b'])).toEqual([false, false]);
    now += 20_000; // 75 s after 'a' (> window + bucket), 20 s after 'b'
    expect(await dedup.filterUnseen(['a', 'b'])).toEqual([true, false]);
    expect(await dedup.size()).toBe(1);

    // A short window: the bucket keys vanish (swept; the TTL is a backstop).
    const short = new DedupWindow({ client, prefix: `${prefix}:short`, windowSeconds: 1, bucketSeconds: 1 });
    await short.markSeen(['z']);
    expect(await short.filterUnseen(['z'])).toEqual([false]);
    const key = short.liveBucketKeys().at(-1)!;
    expect(Number(await send(client, ['TTL', key]))).toBeLessThanOrEqual(3);
    await sleep(2300);
    await short.sweep();
    expect(await send(client, ['EXISTS', key])).toBe(0);
    expect(await short.filterUnseen(['z'])).toEqual([true]);
  });

  it('rejects bad options naming them', () => {
    const client = {} as RedisConnection;
    expect(() => new DedupWindow({ client, windowSeconds: 0 })).toThrow(/windowSeconds/);
    expect(() => new DedupWindow({ client, windowSeconds: 60, bucketSeconds: 61 })).toThrow(/bucketSeconds/);
    expect(() => new DedupWindow({ client, windowSeconds: 100_000, bucketSeconds: 1 })).toThrow(/bucketSeconds must be at least/);
  });
});

function referenceData(priceFactor: number, products = 50): ReferenceData {
  return {
    products: Array.from({ length: products }, (_, i) => ({
      product_id: `P${i}`,
      sku: `SKU-${i}`,
      name: `Product ${i}`,
      category: i % 2 ? 'toys' : 'books',
      unit_price: (i + 1) * priceFactor,
    })),
    currencies: [
      { code: 'USD', rate_to_usd: 1 },
      { code: 'EUR', rate_to_usd: 1.1 * priceFactor },
    ],
    zipCodes: [
      { zip_code: '10001', city: 'New York', region: 'NY', shipping_zone: `zone-${priceFactor}` },
      { zip_code: '94105', city: 'San Francisco', region: 'CA', shipping_zone: `zone-${priceFactor}` },
    ],
  };
}

describe('LookupCache', () => {
  it('lookup before any publish fails with TRIB_ERR_ORDERS_CACHE_EMPTY', async () => {
    const { client, prefix } = await setup('cacheempty');
    const cache = new LookupCache({ client, prefix });
    expect(await codeOf(cache.lookup(['P1'], ['USD'], ['10001']))).toMatch(/^TRIB_ERR_ORDERS_CACHE_EMPTY: .*not initialised/);
    expect(await cache.info()).toEqual({ version: null, publishedAt: null, sizes: null, ttlMs: null, expired: false });
  });

  it('publishes a version and looks up a batch in one round trip; unknown keys are absent', async () => {
    const { client, prefix } = await setup('cache');
    const cache = new LookupCache({ client, prefix, ttlMs: 3_600_000 });
    const published = await cache.publish(referenceData(1));
    expect(published).toMatchObject({ version: 1, current: 1, replaced: 0, swapped: true, sizes: { products: 50, currencies: 2, zipCodes: 2 } });
    await cache.lookup([], [], []); // loads the script
    const spy = vi.spyOn(client, 'sendCommand');
    const r = await cache.lookup(['P0', 'P7', 'P0', 'nope'], ['EUR', 'XXX'], ['94105']);
    expect(spy).toHaveBeenCalledTimes(1);
    spy.mockRestore();
    expect(r.version).toBe(1);
    expect([...r.products.keys()]).toEqual(['P0', 'P7']);
    expect(r.products.get('P7')).toEqual({ product_id: 'P7', sku: 'SKU-7', name: 'Product 7', category: 'toys', unit_price: 8 });
    expect(r.currencies).toEqual(new Map([['EUR', { code: 'EUR', rate_to_usd: 1.1 }]]));
    expect(r.zipCodes.get('94105')?.city).toBe('San Francisco');
    const info = await cache.info();
    expect(info).toMatchObject({ version: 1, sizes: { products: 50, currencies: 2, zipCodes: 2 }, expired: false });
    expect(info.ttlMs).toBeGreaterThan(3_500_000);
    expect(Number(await send(client, ['PTTL', cache.keys.cache(1, 'products')]))).toBeGreaterThan(3_500_000);
    expect(Number(await send(client, ['PTTL', cache.keys.cache(1, 'zips')]))).toBeGreaterThan(3_500_000);
  });

  it('a new version replaces the old atomically; the old one is left a short TTL', async () => {
    const { client, prefix } = await setup('cacheswap');
    const cache = new LookupCache({ client, prefix, retiredTtlMs: 5000 });
    await cache.publish(referenceData(1));
    expect(await cache.publish(referenceData(2))).toMatchObject({ version: 2, current: 2, replaced: 1, swapped: true });
    expect((await cache.lookup(['P0'], [], [])).products.get('P0')?.unit_price).toBe(2);
    for (const table of ['products', 'currencies', 'zips'] as const) {
      const ttl = Number(await send(client, ['PTTL', cache.keys.cache(1, table)]));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(5000);
    }
    expect(Number(await send(client, ['PTTL', cache.keys.cache(2, 'products')]))).toBeGreaterThan(80_000_000);
  });

  it('an older version never replaces a newer one; an incomplete version is never swapped in', async () => {
    const { client, prefix } = await setup('cacheorder');
    const cache = new LookupCache({ client, prefix, retiredTtlMs: 5000 });
    await send(client, ['INCR', cache.keys.cacheSeq]); // version 1: a slow publisher still writing
    await cache.publish(referenceData(1)); // version 2 current
    const swap = new RedisScript('orders-cache-swap');
    // Every key the script touches is in KEYS: the version's own keys (retired when refused).
    const keysOf = (v: number) => [...CACHE_TABLES.map((t) => cache.keys.cache(v, t)), cache.keys.cacheMeta(v)];
    const run = (v: number, current = 2) =>
      swap.run(client, [cache.keys.cacheVersion, cache.keys.cacheMeta(v), ...keysOf(v)], [String(v), '5000', String(current), String(v)]);
    expect(await run(1)).toEqual([-1, 0]); // no meta yet: incomplete
    await send(client, ['HSET', cache.keys.cacheMeta(1), 'version', '1']);
    expect(await run(1, 1)).toEqual([-3, 2]); // read before version 2 was current: refused, nothing done
    expect(Number(await send(client, ['PTTL', cache.keys.cacheMeta(1)]))).toBe(-1);
    expect(await run(1)).toEqual([0, 2]); // the slow publisher finishes: refused, retired
    expect(Number(await send(client, ['PTTL', cache.keys.cacheMeta(1)]))).toBeLessThanOrEqual(5000);
    expect(await run(2)).toEqual([1, 2]); // swapping the current again is a no-op
    expect((await cache.info()).version).toBe(2);
  });

  it('a refresh during many concurrent lookups: every result is complete and from one version', async () => {
    const { client, prefix } = await setup('cacherace');
    // Small chunks and shallow pipelines: a publish spans many round trips, so half-written versions exist for a while.
    const publisher = new LookupCache({ client, prefix, chunkSize: 200, pipelineDepth: 2 });
    const size = 5000;
    await publisher.publish(referenceData(1, size));
    const ids = Array.from({ length: 300 }, (_, i) => `P${(i * 17) % size}`);
    const readers = await Promise.all([connect(), connect(), connect()]);
    let stop = false;
    const seen = new Set<number>();
    let lookups = 0;
    const read = async (reader: RedisConnection) => {
      const cache = new LookupCache({ client: reader, prefix });
      while (!stop) {
        const r = await cache.lookup(ids, ['USD', 'EUR'], ['10001', '94105']);
        lookups++;
        expect(r.products.size).toBe(new Set(ids).size);
        expect(r.currencies.size).toBe(2);
        expect(r.zipCodes.size).toBe(2);
        const factor = r.version % 2 === 1 ? 1 : 2;
        for (const [id, p] of r.products) expect(p.unit_price).toBe((Number(id.slice(1)) + 1) * factor);
        expect(r.currencies.get('EUR')!.rate_to_usd).toBeCloseTo(1.1 * factor);
        expect(r.zipCodes.get('10001')!.shipping_zone).toBe(`zone-${factor}`);
        seen.add(r.version);
      }
    };
    const reading = Promise.all(readers.map(read));
    try {
      for (let v = 2; v <= 7; v++) await publisher.publish(referenceData(v % 2 === 1 ? 1 : 2, size));
      await sleep(50);
    } finally {
      stop = true;
    }
    await reading;
    expect(lookups).toBeGreaterThan(20);
    expect(seen.size).toBeGreaterThan(1); // the readers really saw versions change under them
    expect((await publisher.info()).version).toBe(7);
  });

  it('an expired version fails lookups with TRIB_ERR_ORDERS_CACHE_EXPIRED', async () => {
    const { client, prefix } = await setup('cacheexp');
    const cache = new LookupCache({ client, prefix, ttlMs: 1000 });
    await cache.publish(referenceData(1));
    await sleep(1300);
    expect(await codeOf(cache.lookup(['P1'], [], []))).toMatch(/^TRIB_ERR_ORDERS_CACHE_EXPIRED: .* version 1 has expired/);
    expect(await cache.info()).toEqual({ version: 1, publishedAt: null, sizes: null, ttlMs: null, expired: true });
    await cache.publish(referenceData(2));
    expect((await cache.lookup(['P1'], [], [])).products.get('P1')?.unit_price).toBe(4);
  });

  it('invalid reference data is rejected with TRIB_ERR_ORDERS_CACHE_INVALID before anything is written', async () => {
    const { client, prefix } = await setup('cachebad');
    const cache = new LookupCache({ client, prefix });
    const data = referenceData(1);
    data.products[3] = { ...data.products[3]!, unit_price: Number.NaN };
    expect(await codeOf(cache.publish(data))).toMatch(/^TRIB_ERR_ORDERS_CACHE_INVALID: .*products\[3\] \(P3\)\.unit_price/);
    const noRate = referenceData(1);
    noRate.currencies[0] = { code: 'USD', rate_to_usd: 0 };
    expect(await codeOf(cache.publish(noRate))).toMatch(/^TRIB_ERR_ORDERS_CACHE_INVALID: .*currencies\[0\]/);
    expect(await send(client, ['EXISTS', cache.keys.cacheSeq])).toBe(0);
    expect(() => new LookupCache({ client, ttlMs: 10 })).toThrow(/ttlMs/);
  });
});

describe('OrderSignals and ViewRefresher', () => {
  it('delivers promoted signals to subscribers on their own connection; unsubscribe stops them', async () => {
    const { client, prefix } = await setup('signals');
    const signals = new OrderSignals({ client, prefix });
    const received: PromotedSignal[] = [];
    const unsubscribe = await signals.subscribe((s) => {
      received.push(s);
    });
    expect(await signals.publishPromoted({ batchId: 'b-1', promoted: 10, rejected: 2, worker: 'w1', at: 123 })).toBe(1);
    await waitUntil(() => received.length === 1);
    expect(received[0]).toEqual({ type: 'promoted', batchId: 'b-1', promoted: 10, duplicates: 0, rejected: 2, worker: 'w1', at: 123 });
    // The publishing connection is still usable for normal commands.
    expect(await send(client, ['PING'])).toBe('PONG');
    await unsubscribe();
    await unsubscribe();
    expect(await signals.publishPromoted({ batchId: 'b-2', promoted: 1 })).toBe(0);
  });

  it('after the subscriber connection drops, it resubscribes by itself and calls onReconnect (signals may have been missed)', async () => {
    const { client, prefix } = await setup('signalreconnect');
    const signals = new OrderSignals({ client, prefix });
    const received: string[] = [];
    let reconnects = 0;
    const name = `${prefix}-sub`;
    const unsubscribe = await signals.subscribe((s) => void received.push(s.batchId), { name, onReconnect: () => reconnects++ });
    cleanups.push(unsubscribe);
    const list = String(await send(client, ['CLIENT', 'LIST', 'TYPE', 'pubsub']));
    const id = /id=(\d+) .*name=(\S+)/.exec(list.split('\n').find((l) => l.includes(`name=${name} `)) ?? '')?.[1];
    expect(id).toBeDefined();
    expect(await send(client, ['CLIENT', 'KILL', 'ID', id!])).toBe(1);
    await waitUntil(() => reconnects === 1);
    for (let i = 0; received.length === 0; i++) {
      await signals.publishPromoted({ batchId: `after-${i}`, promoted: 1 });
      await sleep(20);
      if (i > 200) throw new Error('no signal after the reconnect');
    }
    expect(received[0]).toMatch(/^after-/);
  });

  it('a malformed message or a failing handler goes to onError (TRIB_ERR_ORDERS_SIGNAL_INVALID); later signals still arrive', async () => {
    const { client, prefix } = await setup('signalbad');
    const signals = new OrderSignals({ client, prefix });
    const errors: Error[] = [];
    const received: string[] = [];
    const unsubscribe = await signals.subscribe(
      async (s) => {
        if (s.batchId === 'boom') throw new Error('handler failed');
        received.push(s.batchId);
      },
      { onError: (e) => errors.push(e) },
    );
    cleanups.push(unsubscribe);
    await send(client, ['PUBLISH', signals.keys.signals, 'not json']);
    await send(client, ['PUBLISH', signals.keys.signals, JSON.stringify({ type: 'other' })]);
    await signals.publishPromoted({ batchId: 'boom', promoted: 1 });
    await signals.publishPromoted({ batchId: 'ok', promoted: 1 });
    await waitUntil(() => received.length === 1 && errors.length === 3);
    expect(received).toEqual(['ok']);
    expect(errors.map((e) => (e as { code?: string }).code ?? e.message)).toEqual([
      'TRIB_ERR_ORDERS_SIGNAL_INVALID',
      'TRIB_ERR_ORDERS_SIGNAL_INVALID',
      'handler failed',
    ]);
  });

  it('ViewRefresher.listen: a burst of signals during a slow refresh becomes one more refresh, never a poll', async () => {
    const { client, prefix } = await setup('refresher');
    const signals = new OrderSignals({ client, prefix });
    let refreshes = 0;
    const refresher = new ViewRefresher({
      refresh: async () => {
        refreshes++;
        await sleep(200);
        return refreshes;
      },
    });
    const outcomes: number[] = [];
    refresher.on('refreshed', (o) => outcomes.push(o.requests));
    const stop = await refresher.listen(signals);
    cleanups.push(stop);
    await sleep(300);
    expect(refreshes).toBe(0); // nothing happens without a signal
    for (let i = 0; i < 10; i++) await signals.publishPromoted({ batchId: `b-${i}`, promoted: 1 });
    await waitUntil(() => outcomes.length === 2 && !refresher.isRunning);
    await sleep(100);
    expect(refreshes).toBe(2);
    expect(outcomes).toEqual([1, 9]);
    expect(refresher.stats()).toMatchObject({ requests: 10, refreshes: 2, coalesced: 8, failures: 0 });
    await refresher.close();
  });
});

describe('RevenueWindow', () => {
  it('sums orders and revenue over the last N ms, skips old and bad entries, counts a re-added order once', async () => {
    const { client, prefix } = await setup('revenue');
    const now = 1_700_000_000_000;
    const window = new RevenueWindow({ client, prefix, windowMs: 60_000, now: () => now });
    expect(
      await window.add([
        { orderId: 'a', timestampMs: now - 50_000, totalUsd: 10.005 },
        { orderId: 'b', timestampMs: now - 20_000, totalUsd: 5.5 },
        { orderId: 'c', timestampMs: now - 1000, totalUsd: 1.25 },
        { orderId: 'old', timestampMs: now - 61_000, totalUsd: 100 },
        { orderId: 'bad', timestampMs: Number.NaN, totalUsd: 1 },
      ]),
    ).toEqual({ added: 3, skipped: 2, trimmed: 0 });
    expect(await window.add([{ orderId: 'c', timestampMs: now - 1000, totalUsd: 1.25 }])).toEqual({ added: 0, skipped: 0, trimmed: 0 });
    expect(await window.summary()).toEqual({ orders: 3, revenueUsd: 16.76, fromMs: now - 60_000, scanned: 3, exact: true });
    expect(await window.summary(30_000)).toMatchObject({ orders: 2, revenueUsd: 6.75, exact: true });
    expect(await window.summary(120_000)).toMatchObject({ orders: 3, fromMs: now - 60_000 }); // at most the window
    expect(Number(await send(client, ['PTTL', window.keys.window]))).toBeLessThanOrEqual(60_000);
    expect(await window.add([])).toEqual({ added: 0, skipped: 0, trimmed: 0 });
  });

  it('each add trims what left the window', async () => {
    const { client, prefix } = await setup('revtrim');
    let now = 1_700_000_000_000;
    const window = new RevenueWindow({ client, prefix, windowMs: 10_000, now: () => now });
    await window.add(Array.from({ length: 5 }, (_, i) => ({ orderId: `o${i}`, timestampMs: now - i * 1000, totalUsd: 1 })));
    now += 8_500; // o2..o4 (ts <= now - 10.5 s .. ) fall out
    expect(await window.add([{ orderId: 'new', timestampMs: now, totalUsd: 2 }])).toEqual({ added: 1, skipped: 0, trimmed: 3 });
    expect(await window.size()).toBe(3);
    expect(await window.summary()).toMatchObject({ orders: 3, revenueUsd: 4 });
  });

  it('bounds the members a summary reads: past maxScan it extrapolates and says so', async () => {
    const { client, prefix } = await setup('revscan');
    const now = Date.now();
    const window = new RevenueWindow({ client, prefix, maxScan: 10 });
    await window.add(Array.from({ length: 100 }, (_, i) => ({ orderId: `o${i}`, timestampMs: now - i, totalUsd: 1 })));
    expect(await window.summary()).toMatchObject({ orders: 100, revenueUsd: 100, scanned: 10, exact: false });
  });
});

describe('Backpressure', () => {
  it('waits while depth >= maxDepth and resumes when acks bring it down', async () => {
    const { client, prefix } = await setup('bp');
    const queue = new OrderQueue({ client, prefix });
    const bp = new Backpressure(queue, { pollMs: 20 });
    expect(await bp.waitForRoom(5)).toBe(0);
    expect(bp.isEngaged).toBe(false);
    await queue.push(orders(8));
    let done = false;
    const waiting = bp.waitForRoom(5).then((ms) => ((done = true), ms));
    await sleep(150);
    expect(done).toBe(false);
    expect(bp.isEngaged).toBe(true);
    const worker = new OrderQueue({ client: await connect(), prefix });
    await worker.ack('w', await worker.take('w', 4, 100)); // depth 4 < 5
    const waited = await waiting;
    expect(waited).toBeGreaterThanOrEqual(140);
    expect(bp.isEngaged).toBe(false);
    expect(bp.stats()).toMatchObject({ engaged: false, engagements: 1, lastDepth: 4 });
  });

  it('pushWithBackpressure pushes only once there is room and returns how long it waited', async () => {
    const { client, prefix } = await setup('bppush');
    const queue = new OrderQueue({ client, prefix });
    expect(await pushWithBackpressure(queue, orders(3), 3)).toBe(0);
    const pushing = pushWithBackpressure(queue, orders(2, 3), 3, { pollMs: 20 });
    await sleep(100);
    expect(await queue.length()).toBe(3); // held back
    await queue.ack('w', await queue.take('w', 1, 100));
    expect(await pushing).toBeGreaterThanOrEqual(90);
    expect(await queue.depth()).toBe(4);
  });

  it('an abort or a timeout ends the wait with a coded error and nothing pushed', async () => {
    const { client, prefix } = await setup('bpabort');
    const queue = new OrderQueue({ client, prefix });
    const bp = new Backpressure(queue, { pollMs: 20 });
    await queue.push(orders(5));
    const controller = new AbortController();
    const waiting = codeOf(bp.push(orders(1, 100), 5, { signal: controller.signal }));
    await sleep(60);
    controller.abort();
    expect(await waiting).toMatch(/^TRIB_ERR_ORDERS_BACKPRESSURE_ABORTED: .*depth 5, limit 5/);
    expect(await codeOf(bp.waitForRoom(5, { signal: controller.signal }))).toMatch(/^TRIB_ERR_ORDERS_BACKPRESSURE_ABORTED/);
    expect(await codeOf(bp.waitForRoom(5, { timeoutMs: 100 }))).toMatch(/^TRIB_ERR_WAIT_TIMEOUT: timed out after 100 ms/);
    expect(await queue.depth()).toBe(5);
    expect(bp.isEngaged).toBe(false);
  });
});

describe('redisOrderStats', () => {
  it('reports queue, processing lists, depth, dedup window, cache and revenue window', async () => {
    const { client, prefix } = await setup('stats');
    const queue = new OrderQueue({ client, prefix });
    await queue.push(orders(10));
    await queue.take('w1', 3, 100);
    await new DedupWindow({ client, prefix }).markSeen(['a', 'b']);
    await new LookupCache({ client, prefix }).publish(referenceData(1));
    await new RevenueWindow({ client, prefix }).add([{ orderId: 'a', timestampMs: Date.now(), totalUsd: 12.5 }]);
    const stats = await redisOrderStats(client, prefix);
    expect(stats.prefix).toBe(prefix);
    expect(stats.queue).toMatchObject({ length: 7, depth: 10, processing: 3 });
    expect(stats.queue.workers).toHaveLength(1);
    expect(stats.queue.workers[0]).toMatchObject({ worker: 'w1', processing: 3 });
    expect(stats.queue.workers[0]!.heartbeatAgeMs).toBeLessThan(5000);
    expect(stats.dedup).toEqual({ size: 2, windowSeconds: 3600, bucketSeconds: 300, buckets: 13 });
    expect(stats.cache).toMatchObject({ version: 1, sizes: { products: 50, currencies: 2, zipCodes: 2 }, expired: false });
    expect(stats.revenue).toMatchObject({ orders: 1, revenueUsd: 12.5, exact: true, windowMs: 900_000 });
  });
});

async function waitUntil(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await sleep(10);
  }
}
