import { createServer, connect, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/pipelines/events.js';
import { startOpsServer } from '../../src/http/server.js';
import { createPipelineMetrics } from '../../src/observability/metrics.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { Producer } from '../../src/producer/producer.js';
import { sampleEvent } from '../../src/producer/sample.js';
import { send } from '../../src/redis/client.js';
import { statsKey } from '../../src/redis/keys.js';
import { countRows, testEnvs, pendingCount, waitFor, type TestEnv } from '../helpers/env.js';

const fast = { numWorkers: 2, batchTimeoutMs: 200, xreadBlockMs: 200, claimIdleMs: 3000, claimIntervalMs: 500 };
const envs = testEnvs(fast);

const setup = (label: string, overrides: Record<string, unknown> = {}) => envs.setup(label, overrides);

async function produce(env: TestEnv, n: number): Promise<void> {
  const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
  for (let done = 0; done < n; done += 500) {
    await producer.produceBatch(Array.from({ length: Math.min(500, n - done) }, () => sampleEvent()));
  }
  await producer.close();
}

/** A TCP proxy to Postgres that the test can cut (server unreachable) and restore. */
async function pgProxy(target: URL): Promise<{ url: string; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve) => {
      server = createServer((client) => {
        const upstream = connect(Number(target.port || 5432), target.hostname);
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      sockets.clear();
      if (!server) return resolve();
      server.close(() => resolve());
      server = undefined;
    });
  await listen();
  const url = new URL(target.toString());
  url.port = String(port);
  url.hostname = '127.0.0.1';
  return { url: url.toString(), cut: stop, restore: listen, close: stop };
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.split(' ').at(-1));
  }
  return undefined;
}

describe('metrics, health and readiness', () => {
  it('/metrics counts what the engine did; /healthz is up; /readyz follows Postgres', async () => {
    const env = await setup('ops_http');
    const proxy = await pgProxy(new URL(env.config.databaseUrl));
    envs.defer(() => proxy.close());
    const engine = new Engine({ ...env.config, databaseUrl: proxy.url }, { retry: { baseMs: 20, maxMs: 200 } });
    envs.defer(() => engine.close({ force: true }));
    const ops = await startOpsServer(engine, createPipelineMetrics(engine), 0, '127.0.0.1');
    envs.defer(() => ops.close());

    expect((await get(ops.port, '/readyz')).status).toBe(503); // not started yet
    await engine.start();
    await produce(env, 1500);
    await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 'x', 'payload', '{broken']);
    await waitFor(async () => (await countRows(env)).rows === 1500 && (await pendingCount(env)) === 0, 20_000, 'drain');

    const labels = { pipeline: 'events', stream: env.config.streamKey, group: env.config.group };
    const metrics = (await get(ops.port, '/metrics')).body;
    expect(metricValue(metrics, 'tributary_entries_read_total', labels)).toBe(1501);
    expect(metricValue(metrics, 'tributary_entries_written_total', labels)).toBe(1500);
    expect(metricValue(metrics, 'tributary_entries_duplicate_total', labels)).toBe(0);
    expect(metricValue(metrics, 'tributary_entries_dead_lettered_total', { ...labels, code: 'TRIB_ERR_ENTRY_BAD_PAYLOAD' })).toBe(1);
    expect(metricValue(metrics, 'tributary_batch_size_sum', labels)).toBe(1501);
    expect(metricValue(metrics, 'tributary_end_to_end_latency_seconds_count', labels)).toBe(1500);
    expect(metricValue(metrics, 'tributary_batch_write_duration_seconds_count', labels)).toBeGreaterThan(0);
    expect(metricValue(metrics, 'tributary_stream_length', labels)).toBe(1501);
    expect(metricValue(metrics, 'tributary_group_pending', labels)).toBe(0);
    expect(metricValue(metrics, 'tributary_group_lag', labels)).toBe(0);
    expect(metricValue(metrics, 'tributary_in_flight', labels)).toBe(0);
    expect(metricValue(metrics, 'tributary_gauges_up', labels)).toBe(1);
    expect(metrics).toMatch(/# TYPE tributary_entries_reclaimed_total counter/);

    expect(await get(ops.port, '/healthz')).toEqual({ status: 200, body: '{"status":"ok"}\n' });
    // /readyz serves one probe for up to a second (the 503 from before start, at first).
    await waitFor(async () => (await get(ops.port, '/readyz')).status === 200, 3_000, 'ready');
    const ready = await get(ops.port, '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toMatchObject({ ready: true, redis: { ok: true }, postgres: { ok: true }, group: { ok: true } });

    // Postgres becomes unreachable for the engine: not ready, and the reason says so.
    await proxy.cut();
    // /readyz serves one probe for up to a second: the next one sees the cut.
    await waitFor(async () => (await get(ops.port, '/readyz')).status === 503, 3_000, 'not ready');
    const down = await get(ops.port, '/readyz');
    expect(down.status).toBe(503);
    expect(JSON.parse(down.body)).toMatchObject({ ready: false, postgres: { ok: false }, redis: { ok: true } });
    expect((await get(ops.port, '/healthz')).status).toBe(200); // alive all the same

    // Events produced during the outage wait; the retries are counted; back up: ready, all written.
    await produce(env, 200);
    await waitFor(async () => metricValue((await get(ops.port, '/metrics')).body, 'tributary_retries_total', { ...labels, server: 'postgres' })! > 0, 10_000, 'retries');
    await proxy.restore();
    await waitFor(async () => (await get(ops.port, '/readyz')).status === 200, 15_000, 'ready again');
    await waitFor(async () => (await countRows(env)).rows === 1700 && (await pendingCount(env)) === 0, 20_000, 'catch-up');
    expect((await get(ops.port, '/nope')).status).toBe(404);
  });
});

describe('continuous retention', () => {
  it('the engine trims to TRIM_MAXLEN but never past a group that has not received the entries', async () => {
    const env = await setup('engine_trim');
    // A second group that reads nothing: everything must stay for it.
    await send(env.redis, ['XGROUP', 'CREATE', env.config.streamKey, 'laggard', '0', 'MKSTREAM']);
    const engine = new Engine({ ...env.config, trimMaxLen: 100, trimIntervalMs: 100 }, { retry: { baseMs: 20, maxMs: 200 } });
    const trims: number[] = [];
    engine.on('trimmed', (t) => trims.push(t.deleted));
    envs.defer(() => engine.close({ force: true }));
    await engine.start();
    await produce(env, 2000);
    await waitFor(async () => (await countRows(env)).rows === 2000, 20_000, 'drain');
    await new Promise((r) => setTimeout(r, 500)); // several trim intervals
    expect(Number(await send(env.redis, ['XLEN', env.config.streamKey]))).toBe(2000);
    expect(trims).toEqual([]);

    // The laggard goes away: now the stream is trimmed to about 100 entries (whole nodes).
    await send(env.redis, ['XGROUP', 'DESTROY', env.config.streamKey, 'laggard']);
    await waitFor(async () => Number(await send(env.redis, ['XLEN', env.config.streamKey])) < 500, 10_000, 'trimmed');
    await engine.close();
    expect(trims.reduce((a, b) => a + b, 0)).toBeGreaterThan(1500);
    expect(Number(await send(env.redis, ['XLEN', env.config.streamKey]))).toBeGreaterThanOrEqual(100);
    expect(await countRows(env)).toEqual({ rows: 2000, distinct: 2000 });
    expect(await pendingCount(env)).toBe(0);
  });
});

describe('fan-out and published stats', () => {
  it('two groups on one stream each receive every event, into their own tables', async () => {
    const env = await setup('fanout');
    const main = new Engine(env.config, { retry: { baseMs: 20, maxMs: 200 } });
    const analytics = new Engine(
      { ...env.config, group: 'analytics', eventsTable: 'analytics_events', consumerName: `${env.name}-analytics` },
      { retry: { baseMs: 20, maxMs: 200 } },
    );
    envs.defer(() => main.close({ force: true }));
    envs.defer(() => analytics.close({ force: true }));
    await Promise.all([main.start(), analytics.start()]);
    await produce(env, 2000);
    const s = quoteIdent(env.config.pgSchema);
    const count = async (table: string) => Number((await env.pool.query(`SELECT count(DISTINCT event_id) AS n FROM ${s}.${table}`)).rows[0].n);
    await waitFor(async () => (await count('events')) === 2000 && (await count('analytics_events')) === 2000, 20_000, 'both groups');
    await Promise.all([main.close(), analytics.close()]);
    expect(await count('events')).toBe(2000);
    expect(await count('analytics_events')).toBe(2000);
    expect(main.stats().written).toBe(2000);
    expect(analytics.stats().written).toBe(2000);
    // The table was created like events: same primary key, so the group is idempotent too.
    const pk = await env.pool.query(
      `SELECT count(*) AS n FROM pg_indexes WHERE schemaname = $1 AND tablename = 'analytics_events' AND indexdef LIKE '%UNIQUE%(event_id)%'`,
      [env.config.pgSchema],
    );
    expect(Number(pk.rows[0].n)).toBe(1);
    for (const group of [env.config.group, 'analytics']) {
      const pending = (await send(env.redis, ['XPENDING', env.config.streamKey, group])) as unknown[];
      expect(Number(pending[0])).toBe(0);
    }
    await env.redis.del([statsKey(env.config.streamKey, env.config.group), statsKey(env.config.streamKey, 'analytics')]);
  });

  it('the engine publishes batch counts and flush reasons for the monitor', async () => {
    const env = await setup('published');
    const key = statsKey(env.config.streamKey, env.config.group);
    envs.defer(async () => void (await env.redis.del(key)));
    const engine = new Engine({ ...env.config, batchSize: 100, xreadCount: 100 });
    envs.defer(() => engine.close({ force: true }));
    await produce(env, 1050);
    await engine.start();
    await waitFor(async () => (await countRows(env)).rows === 1050, 20_000, 'drain');
    await engine.close();
    const hash = (await env.redis.hGetAll(key)) as Record<string, string>;
    expect(Number(hash.rows)).toBe(1050);
    expect(Number(hash.batches)).toBe(engine.stats().batches);
    expect(Number(hash['flush:size'])).toBeGreaterThanOrEqual(10);
    const reasons = Object.entries(hash).filter(([k]) => k.startsWith('flush:')).reduce((sum, [, v]) => sum + Number(v), 0);
    expect(reasons).toBe(Number(hash.batches));
  });
});
