import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine, type EngineEvents } from '../../src/pipelines/events.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { Producer } from '../../src/producer/producer.js';
import { send } from '../../src/redis/client.js';
import { freePort, RedisServerProcess } from '../helpers/child.js';
import { countRows, createTestEnv, testEnvs, pendingCount, waitFor, type TestEnv } from '../helpers/env.js';

const fast = { numWorkers: 2, batchTimeoutMs: 200, xreadBlockMs: 200, claimIdleMs: 3000, claimIntervalMs: 200 };
const envs = testEnvs(fast);

const setup = (label: string, overrides: Record<string, unknown> = {}) => envs.setup(label, overrides);

function engineFor(env: TestEnv, overrides: Record<string, unknown> = {}) {
  const engine = new Engine({ ...env.config, ...overrides } as typeof env.config, { retry: { baseMs: 20, maxMs: 200 } });
  const errors: Error[] = [];
  const downs: EngineEvents['serverDown'][] = [];
  engine.on('error', (e) => errors.push(e));
  engine.on('serverDown', (d) => downs.push(d));
  envs.defer(() => engine.close({ force: true }));
  return { engine, errors, downs };
}

async function add(env: TestEnv, fields: Record<string, string>, key = env.config.streamKey): Promise<string> {
  return String(await send(env.redis, ['XADD', key, '*', ...Object.entries(fields).flat()]));
}

describe('engine edge cases found in review', () => {
  it('stores a JSON null payload as jsonb null, and dead-letters a non-JSON payload starting with an emoji', async () => {
    const env = await setup('null_emoji', { numWorkers: 1 });
    await add(env, { event_type: 't', payload: 'null', event_id: 'null-payload' });
    await add(env, { event_type: 't', payload: '😀 hi', event_id: 'emoji' }); // V8's parse error names a lone surrogate
    await add(env, { event_type: 't', payload: '{}', produced_at: '😀'.repeat(30), event_id: 'emoji-time' });
    await add(env, { event_type: 't', payload: '{"ok":true}', event_id: 'after' });
    const { engine, errors } = engineFor(env);
    await engine.start();
    await waitFor(async () => (await pendingCount(env)) === 0 && (await countRows(env)).rows === 2, 10_000, 'all handled');
    await engine.close();
    const s = quoteIdent(env.config.pgSchema);
    const nul = await env.pool.query(`SELECT jsonb_typeof(payload) AS t FROM ${s}.events WHERE event_id = 'null-payload'`);
    expect(nul.rows[0].t).toBe('null');
    const dlq = await env.pool.query<{ event_id: string; error_code: string }>(`SELECT event_id, error_code FROM ${s}.dead_letter_queue ORDER BY event_id`);
    expect(dlq.rows).toEqual([
      { event_id: 'emoji', error_code: 'TRIB_ERR_ENTRY_BAD_PAYLOAD' },
      { event_id: 'emoji-time', error_code: 'TRIB_ERR_ENTRY_BAD_FIELD' },
    ]);
    expect(errors).toEqual([]);
  });

  it('keys entries without event_id by stream, so two streams sharing a table do not collide', async () => {
    const env = await setup('two_streams');
    const otherKey = `${env.name}:other`;
    envs.defer(async () => void (await env.redis.del(otherKey)));
    // The same entry ID on both streams, no event_id.
    await add(env, { event_type: 't', payload: '{"from":"a"}' }, env.config.streamKey).then(() => {});
    const [id] = (await send(env.redis, ['XRANGE', env.config.streamKey, '-', '+'])) as [string, string[]][];
    await send(env.redis, ['XADD', otherKey, id![0], 'event_type', 't', 'payload', '{"from":"b"}']);
    const a = engineFor(env);
    const b = engineFor(env, { streamKey: otherKey, consumerName: `${env.name}-b` });
    await Promise.all([a.engine.start(), b.engine.start()]);
    await waitFor(async () => (await countRows(env)).rows === 2, 10_000, 'both rows');
    await Promise.all([a.engine.close(), b.engine.close()]);
    const s = quoteIdent(env.config.pgSchema);
    const rows = await env.pool.query(`SELECT event_id, payload->>'from' AS f FROM ${s}.events ORDER BY f`);
    expect(rows.rows).toEqual([
      { event_id: `${env.config.streamKey}/${id![0]}`, f: 'a' },
      { event_id: `${otherKey}/${id![0]}`, f: 'b' },
    ]);
  });

  it('a dead letter whose XADD fails stays pending (never acknowledged and lost), then lands once', async () => {
    const env = await setup('dlq_wrongtype', { numWorkers: 1 });
    await send(env.redis, ['SET', env.config.dlqStream, 'not a stream']);
    await add(env, { event_type: 't', payload: '{bad', event_id: 'poison' });
    const { engine, downs } = engineFor(env);
    await engine.start();
    await waitFor(async () => downs.some((d) => d.server === 'redis'), 10_000, 'the XADD failing');
    expect(await pendingCount(env)).toBe(1);
    await env.redis.del(env.config.dlqStream);
    await waitFor(async () => (await pendingCount(env)) === 0, 10_000, 'dead-lettered');
    await engine.close();
    expect(Number(await send(env.redis, ['XLEN', env.config.dlqStream]))).toBe(1);
    expect((await countRows(env, 'dead_letter_queue')).rows).toBe(1);
  });

  it('a graceful stop during a Redis outage with nothing in flight returns promptly', async () => {
    const env = await setup('stop_in_outage');
    const dir = mkdtempSync(join(tmpdir(), 'trib-redis-'));
    const redis = await RedisServerProcess.start(await freePort(), dir);
    envs.defer(async () => {
      redis.killNow();
      rmSync(dir, { recursive: true, force: true });
    });
    const { engine, downs } = engineFor(env, { redisUrl: redis.url });
    await engine.start();
    const producer = new Producer({ redisUrl: redis.url, streamKey: env.config.streamKey });
    await producer.produce('t', { n: 1 });
    await producer.close();
    await waitFor(async () => (await countRows(env)).rows === 1, 10_000, 'one row');
    await redis.stop();
    await waitFor(async () => downs.some((d) => d.server === 'redis'), 10_000, 'redis down');
    const started = Date.now();
    await engine.close();
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('a migration whose connection is killed is retried, not fatal', async () => {
    const env = await createTestEnv('migrate_killed', fast);
    envs.defer(() => env.cleanup());
    const lock = `tributary:migrate:${env.config.pgSchema}`;
    const holder = await env.pool.connect();
    await holder.query('SELECT pg_advisory_lock(hashtext($1))', [lock]);
    const { engine, errors, downs } = engineFor(env);
    const starting = engine.start();
    const waiting = async () =>
      (
        await env.pool.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'advisory'`,
          [`tributary:${env.config.consumerName}`],
        )
      ).rows;
    await waitFor(async () => (await waiting()).length > 0, 10_000, 'the engine waiting on the migration lock');
    for (const { pid } of await waiting()) await env.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    await waitFor(async () => downs.some((d) => d.server === 'postgres'), 10_000, 'postgres reported down');
    await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [lock]);
    holder.release();
    await starting;
    expect(engine.running).toBe(true);
    await add(env, { event_type: 't', payload: '{}', event_id: 'after-migration' });
    await waitFor(async () => (await countRows(env)).rows === 1, 10_000, 'a row');
    await engine.close();
    expect(errors).toEqual([]);
  });
});

describe('held work is kept alive from the moment it is read', () => {
  it('a batch waiting behind a stuck write is not reclaimed by the process itself, nor dead-lettered while it is also written (MAX_DELIVERIES 1)', async () => {
    const env = await setup('held_alive', { numWorkers: 1, batchSize: 100, xreadCount: 100, batchTimeoutMs: 500, claimIdleMs: 3000, claimIntervalMs: 200, maxDeliveries: 1 });
    for (let i = 0; i < 250; i++) await add(env, { event_type: 't', payload: JSON.stringify({ i }), event_id: `held-${i}` });
    // The first batch's write blocks on a lock; the worker reads the second batch behind it.
    const locker = await env.pool.connect();
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${quoteIdent(env.config.pgSchema)}.events IN ACCESS EXCLUSIVE MODE`);
    const { engine, errors } = engineFor(env);
    const reclaimed: number[] = [];
    const dead: string[] = [];
    engine.on('reclaimed', (r) => reclaimed.push(r.count));
    engine.on('deadLetter', (d) => dead.push(d.id));
    try {
      await engine.start();
      await waitFor(async () => (await pendingCount(env)) >= 200, 10_000, 'two batches held: one in the write, one behind it');
      // Well past CLAIM_IDLE_MS, with the reclaim loop running every 200 ms.
      await new Promise((r) => setTimeout(r, 2.5 * 3000));
      const held = (await send(env.redis, ['XPENDING', env.config.streamKey, env.config.group, '-', '+', '1000'])) as [string, string, number, number][];
      expect(held.length).toBeGreaterThanOrEqual(200);
      expect(held.every(([, consumer]) => consumer === `${env.config.consumerName}-1`), 'all still on the worker').toBe(true);
      expect(Math.max(...held.map(([, , idle]) => Number(idle))), 'kept alive: idle below CLAIM_IDLE_MS').toBeLessThan(3000);
      expect(held.every(([, , , deliveries]) => Number(deliveries) === 1), 'no delivery counted').toBe(true);
      expect(reclaimed).toEqual([]);
    } finally {
      await locker.query('COMMIT');
      locker.release();
    }
    await waitFor(async () => (await countRows(env)).rows === 250 && (await pendingCount(env)) === 0, 20_000, 'all written once the lock is gone');
    expect(dead).toEqual([]);
    expect(reclaimed).toEqual([]);
    expect(errors).toEqual([]);
    expect(Number(await send(env.redis, ['XLEN', env.config.dlqStream]))).toBe(0);
  }, 40_000);
});
