/**
 * Redis restarts (issue 11, item 8). With AOF on, a restart mid-stream loses nothing and
 * doubles nothing: test/integration/outage.test.ts ('Redis server restarted mid-stream',
 * a private `redis-server --appendonly yes`). Without persistence the restarted Redis is
 * empty: the group is gone with the stream. The engine creates the group again, says so
 * (groupRecreated), writes what is produced after the restart, and does not spin on the
 * lost group (no retry loop on its acknowledgements or keep-alives).
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { Engine } from '../../src/pipelines/events.js';
import { Producer } from '../../src/producer/producer.js';
import { createRedisConnection, destroyQuietly, send } from '../../src/redis/client.js';
import { RedisStreamSource } from '../../src/sources/redis-stream.js';
import { eventRows, freePort, RedisServerProcess } from '../helpers/child.js';
import { testEnvs, waitFor } from '../helpers/env.js';

const envs = testEnvs({ batchSize: 50, batchTimeoutMs: 50, numWorkers: 2, claimIdleMs: 3000, claimIntervalMs: 500 });

let engine: Engine | undefined;
afterEach(async () => {
  await engine?.close({ force: true }).catch(() => {});
  engine = undefined;
});

async function produce(url: string, key: string, prefix: string, count: number): Promise<void> {
  const producer = new Producer({ redisUrl: url, streamKey: key });
  try {
    await producer.produceBatch(Array.from({ length: count }, (_, i) => ({ type: 'restart', payload: { i }, eventId: `${prefix}-${i}` })));
  } finally {
    await producer.close();
  }
}

describe('Redis restarted without persistence', () => {
  it('the engine recreates its group, says so once, writes what comes after, and does not spin', async () => {
    const env = await envs.setup('redis_restart_empty');
    const dir = mkdtempSync(join(tmpdir(), 'trib-restart-'));
    const server = await RedisServerProcess.start(await freePort(), dir);
    envs.defer(() => {
      server.killNow();
      rmSync(dir, { recursive: true, force: true });
    });
    const key = env.config.streamKey;
    const e = new Engine({ ...env.config, redisUrl: server.url }, { retry: { baseMs: 20, maxMs: 200 } });
    engine = e;
    const recreated: Array<{ key: string; group: string; startId: string }> = [];
    const errors: Error[] = [];
    e.on('groupRecreated', (info) => recreated.push(info));
    e.on('error', (err) => errors.push(err));
    await e.start();
    await produce(server.url, key, 'before', 100);
    await waitFor(async () => (await eventRows(env)) === 100, 10_000, 'the first 100 rows');

    // Restarted empty: its AOF removed while it is down.
    await server.stop();
    for (const f of readdirSync(dir)) rmSync(join(dir, f), { recursive: true, force: true });
    await server.restart();
    const admin = createRedisConnection(server.url, { failFast: false });
    await admin.connect();
    envs.defer(() => destroyQuietly(admin));
    // Empty: the 100 entries are gone (the engine may already have made the key again,
    // empty, as it recreated its group with MKSTREAM).
    expect(await send(admin, ['XLEN', key])).toBe(0);

    await produce(server.url, key, 'after', 100);
    await waitFor(async () => (await eventRows(env)) === 200, 15_000, 'the 100 events produced after the restart written');
    expect(recreated).toEqual([{ key, group: env.config.group, startId: '0' }]);
    // Its group is back and holds nothing.
    await waitFor(async () => Number(((await send(admin, ['XPENDING', key, env.config.group])) as unknown[])[0]) === 0, 5_000, 'nothing pending');
    // Not spinning: no retries while idle after the restart.
    const retries = e.stats().retries;
    await sleep(1000);
    expect(e.stats().retries).toBe(retries);
    expect(errors).toEqual([]);
    expect(e.running).toBe(true);
    expect((await e.probe()).ready).toBe(true);
  });

  it('acknowledging or keeping alive entries of a group that is gone resolves (nothing is left to do) instead of failing for ever', async () => {
    const redisUrl = (await envs.setup('redis_restart_nogroup', {}, { migrate: false })).config.redisUrl;
    const source = new RedisStreamSource({ redisUrl, key: `t_nogroup_${process.pid}_${Date.now()}`, group: 'gone' });
    envs.defer(() => source.close());
    // Connected, no group and no stream (as after a restart without persistence).
    const conn = createRedisConnection(redisUrl, { failFast: false });
    await conn.connect();
    envs.defer(() => destroyQuietly(conn));
    const held = { id: '1-0', body: { id: '1-0', fields: {} }, deliveries: 1, bytes: 0 };
    const commands = (source as unknown as { commands: { connect(): Promise<unknown>; isOpen: boolean } }).commands;
    if (!commands.isOpen) await commands.connect();
    expect(await source.ackIds(['1-0'])).toBe(0);
    await expect(source.ack('c', [held])).resolves.toBeUndefined();
    await expect(source.keepAlive('c', [held])).resolves.toBeUndefined();
    // Anything else is still an error: a key of another type.
    await send(conn, ['SET', source.key, 'x']);
    envs.defer(() => send(conn, ['DEL', source.key]));
    await expect(source.ackIds(['1-0'])).rejects.toThrow(/WRONGTYPE/);
  });
});
