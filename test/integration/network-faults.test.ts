/**
 * Issue 11, item 7: network faults between the pipelines and their servers, through a
 * TCP proxy (test/helpers/tcp-proxy.ts) that adds latency, resets connections and
 * black-holes traffic (every byte dropped, nothing closed).
 *
 * A black-holed Postgres must not stall a pipeline until the kernel gives up on the
 * socket: with PG_QUERY_TIMEOUT_MS short here (2 s), the pipeline reports Postgres
 * down, reports not ready, and once traffic passes again resumes by itself with every
 * event (order) written once and nothing pending. Without the query timeout the
 * connections used during the black hole wait for ever (their bytes were dropped).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Engine, type EngineEvents } from '../../src/pipelines/events.js';
import { Producer } from '../../src/producer/producer.js';
import { sampleEvent } from '../../src/producer/sample.js';
import { expectExactlyOnce } from '../helpers/child.js';
import { countRows, testEnvs, waitFor, type TestEnv } from '../helpers/env.js';
import { orderJson, ordersTestEnvs } from '../helpers/orders.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { blockingMs } from '../../src/redis/watchdog.js';

const envs = testEnvs();
const orderEnvs = ordersTestEnvs();
const proxies: TcpProxy[] = [];
afterEach(async () => {
  for (const p of proxies.splice(0)) await p.close();
});

async function proxyTo(url: string): Promise<TcpProxy> {
  const u = new URL(url);
  const p = await TcpProxy.start({ host: u.hostname, port: Number(u.port || (u.protocol.startsWith('redis') ? 6379 : 5432)) });
  proxies.push(p);
  return p;
}

let produced = 0;

/** Produces n events; returns their event IDs. */
async function produce(env: TestEnv, n: number): Promise<string[]> {
  const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
  const ids = Array.from({ length: n }, () => `${env.name}-${String(produced++).padStart(6, '0')}`);
  try {
    await producer.produceBatch(ids.map((eventId) => ({ ...sampleEvent(), eventId })));
    return ids;
  } finally {
    await producer.close();
  }
}

function watch(engine: Engine): { [K in keyof EngineEvents]?: EngineEvents[K][] } {
  const events: { [K in keyof EngineEvents]?: EngineEvents[K][] } = {};
  for (const name of ['serverDown', 'serverUp'] as const) {
    engine.on(name, (arg: EngineEvents[typeof name]) => {
      ((events[name] ??= []) as unknown[]).push(arg);
    });
  }
  return events;
}

const rowsAre = (env: TestEnv, n: number) => async () => (await countRows(env)).rows === n;

describe('events engine through a faulty network', () => {
  it('Postgres: latency, resets, and a black hole; not ready while it lasts, then every event once', async () => {
    const env = await envs.setup('net_pg', { writeTimeoutMs: 1000, pgQueryTimeoutMs: 2000, batchTimeoutMs: 50 });
    const proxy = await proxyTo(env.config.databaseUrl);
    const engine = new Engine({ ...env.config, databaseUrl: proxy.urlFor(env.config.databaseUrl) }, { retry: { baseMs: 50, maxMs: 500 } });
    envs.defer(() => engine.close({ force: true }));
    const events = watch(engine);
    await engine.start();
    const ids = await produce(env, 300);
    await waitFor(rowsAre(env, 300), 10_000, 'the first 300 rows');

    proxy.latency(150);
    ids.push(...(await produce(env, 200)));
    await waitFor(rowsAre(env, 500), 15_000, 'rows written through latency');
    proxy.pass();

    // Resets while idle and while writing.
    proxy.reset();
    ids.push(...(await produce(env, 200)));
    proxy.reset();
    await waitFor(rowsAre(env, 700), 15_000, 'rows written after resets');

    // A black hole: the pipeline reports Postgres down and not ready, holds its entries.
    events.serverDown = [];
    proxy.blackhole();
    ids.push(...(await produce(env, 200)));
    await waitFor(async () => (events.serverDown ?? []).some((e) => e.server === 'postgres'), 10_000, 'postgres reported down');
    const probe = await engine.probe();
    expect(probe.ready).toBe(false);
    expect(probe.postgres.ok).toBe(false);
    expect((await countRows(env)).rows).toBe(700);

    // Traffic passes again: it resumes by itself.
    proxy.pass();
    await waitFor(rowsAre(env, 900), 20_000, 'every row once the black hole ended');
    await waitFor(async () => (events.serverUp ?? []).some((e) => e.server === 'postgres'), 10_000, 'postgres reported back');
    await waitFor(async () => (await engine.probe()).ready, 10_000, 'ready again');
    await engine.close();
    await expectExactlyOnce(env, ids);
  }, 90_000);

  it('Redis: latency and resets; every event once', async () => {
    const env = await envs.setup('net_redis', { batchTimeoutMs: 50, xreadBlockMs: 200 });
    const proxy = await proxyTo(env.config.redisUrl);
    const engine = new Engine({ ...env.config, redisUrl: proxy.urlFor(env.config.redisUrl) }, { retry: { baseMs: 50, maxMs: 500 } });
    envs.defer(() => engine.close({ force: true }));
    await engine.start();
    const ids = await produce(env, 300);
    await waitFor(rowsAre(env, 300), 10_000, 'the first 300 rows');
    proxy.latency(100);
    ids.push(...(await produce(env, 200)));
    await waitFor(rowsAre(env, 500), 15_000, 'rows read through latency');
    proxy.pass();
    const before = proxy.accepted;
    for (let i = 0; i < 3; i++) {
      ids.push(...(await produce(env, 100)));
      proxy.reset();
      await new Promise((r) => setTimeout(r, 300));
    }
    // Entries a reset read lost (delivered, never received) are claimed back at once, not after CLAIM_IDLE_MS.
    await waitFor(rowsAre(env, 800), 20_000, 'rows read after resets');
    expect(proxy.accepted, 'reconnections').toBeGreaterThan(before);
    await waitFor(async () => (await engine.probe()).ready, 10_000, 'ready again');
    await engine.close();
    await expectExactlyOnce(env, ids);
  }, 60_000);

  it('Redis black-holed: reported down and not ready, then every event once', async () => {
    const env = await envs.setup('net_redis_hole', { batchTimeoutMs: 50, xreadBlockMs: 200, redisCommandTimeoutMs: 1000 });
    const proxy = await proxyTo(env.config.redisUrl);
    const engine = new Engine({ ...env.config, redisUrl: proxy.urlFor(env.config.redisUrl) }, { retry: { baseMs: 50, maxMs: 500 } });
    envs.defer(() => engine.close({ force: true }));
    const events = watch(engine);
    await engine.start();
    const ids = await produce(env, 200);
    await waitFor(rowsAre(env, 200), 10_000, 'the first 200 rows');
    proxy.blackhole();
    ids.push(...(await produce(env, 200)));
    await waitFor(async () => (events.serverDown ?? []).some((e) => e.server === 'redis'), 10_000, 'redis reported down');
    expect((await engine.probe()).ready).toBe(false);
    proxy.pass();
    await waitFor(rowsAre(env, 400), 40_000, 'every row once the black hole ended');
    await waitFor(async () => (await engine.probe()).ready, 10_000, 'ready again');
    await engine.close();
    await expectExactlyOnce(env, ids);
  }, 60_000);
});

describe('the Redis command watchdog', () => {
  it('gives blocking reads their block time on top of the limit', () => {
    expect(blockingMs(['BLMOVE', 'q', 'p', 'RIGHT', 'LEFT', '0.500'])).toBe(500);
    expect(blockingMs(['BLMOVE', 'q', 'p', 'RIGHT', 'LEFT', '0'])).toBe(Infinity);
    expect(blockingMs(['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '10', 'BLOCK', '5000', 'STREAMS', 's', '>'])).toBe(5000);
    expect(blockingMs(['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '10', 'STREAMS', 's', '>'])).toBe(0);
    expect(blockingMs(['EVALSHA', 'x', '0'])).toBe(0);
  });
});

describe('orders pipeline through a faulty network', () => {
  it('Redis: latency and resets mid-take; every order promoted once', async () => {
    const env = await orderEnvs.setup('net_orders_reset');
    const proxy = await proxyTo(env.redisUrl);
    const pipeline = env.pipeline({ workers: 2, batchSize: 200, redisUrl: proxy.urlFor(env.redisUrl), retryMaxMs: 500 });
    await pipeline.start();
    proxy.latency(50);
    await env.queue.push(Array.from({ length: 500 }, (_, i) => orderJson(`l-${i}`)));
    await waitFor(async () => (await env.queue.depth()) === 0, 15_000, 'orders taken through latency');
    proxy.pass();
    for (let round = 0; round < 3; round++) {
      await env.queue.push(Array.from({ length: 400 }, (_, i) => orderJson(`r${round}-${i}`)));
      await new Promise((r) => setTimeout(r, 30));
      proxy.reset();
    }
    await waitFor(async () => (await env.queue.depth()) === 0, 20_000, 'every order after the resets');
    await pipeline.close();
    expect(await env.count('orders')).toBe(1700);
    expect(await env.count('orders_staging')).toBe(0);
    for (const w of await env.queue.workers()) expect(w.processing).toBe(0);
  }, 60_000);

  it('Redis black-holed: reported down, then every order promoted once', async () => {
    const env = await orderEnvs.setup('net_orders_redis');
    const proxy = await proxyTo(env.redisUrl);
    const pipeline = env.pipeline({ workers: 2, redisUrl: proxy.urlFor(env.redisUrl), redisCommandTimeoutMs: 1000, retryMaxMs: 500, staleMs: 20_000 });
    const downs: string[] = [];
    pipeline.on('serverDown', (e) => downs.push(e.server));
    await pipeline.start();
    await env.queue.push(Array.from({ length: 300 }, (_, i) => orderJson(`a-${i}`)));
    await waitFor(async () => (await env.queue.depth()) === 0, 15_000, 'the first 300 orders');
    proxy.blackhole();
    await env.queue.push(Array.from({ length: 300 }, (_, i) => orderJson(`b-${i}`)));
    await waitFor(async () => downs.includes('redis'), 10_000, 'redis reported down');
    expect((await pipeline.probe()).ready).toBe(false);
    proxy.pass();
    await waitFor(async () => (await env.queue.depth()) === 0, 40_000, 'every order once the black hole ended');
    await pipeline.close();
    expect(await env.count('orders')).toBe(600);
    expect(await env.count('orders_staging')).toBe(0);
    for (const w of await env.queue.workers()) expect(w.processing).toBe(0);
  }, 60_000);

  it('Postgres black-holed: reported down, then every order promoted once', async () => {
    const env = await orderEnvs.setup('net_orders');
    const proxy = await proxyTo(env.databaseUrl);
    const pipeline = env.pipeline({ workers: 2, databaseUrl: proxy.urlFor(env.databaseUrl), queryTimeoutMs: 2000, retryMaxMs: 500 });
    const downs: string[] = [];
    pipeline.on('serverDown', (e) => downs.push(e.server));
    await pipeline.start();
    await env.queue.push(Array.from({ length: 300 }, (_, i) => orderJson(`a-${i}`)));
    await waitFor(async () => (await env.queue.depth()) === 0, 15_000, 'the first 300 orders');

    proxy.blackhole();
    await env.queue.push(Array.from({ length: 300 }, (_, i) => orderJson(`b-${i}`)));
    await waitFor(async () => downs.includes('postgres'), 10_000, 'postgres reported down');
    expect((await pipeline.probe()).ready).toBe(false);
    expect(await env.count('orders')).toBe(300);
    proxy.pass();
    await waitFor(async () => (await env.queue.depth()) === 0, 40_000, 'every order once the black hole ended');
    await pipeline.close();
    expect(await env.count('orders')).toBe(600);
    expect(await env.count('orders_staging')).toBe(0);
    for (const w of await env.queue.workers()) expect(w.processing).toBe(0);
  }, 60_000);
});
