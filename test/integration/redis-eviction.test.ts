/**
 * `start` and `up` warn when Redis's maxmemory-policy can evict stream or queue keys
 * (issue 11, item 6): an allkeys-* policy deletes any key at maxmemory, unread entries
 * included. On a private redis-server (its policy set on it alone); `up` keeps its state
 * in a TRIBUTARY_HOME of the test's own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createRedisConnection, destroyQuietly, send } from '../../src/redis/client.js';
import { EngineProcess, freePort, RedisServerProcess } from '../helpers/child.js';
import { testEnvs } from '../helpers/env.js';

const envs = testEnvs();
const WARNING = /Redis maxmemory-policy is allkeys-lru: at maxmemory \(104857600 bytes\) Redis may evict any key, including streams and queues/;

async function privateRedis(policy: string) {
  const dir = mkdtempSync(join(tmpdir(), 'trib-evict-'));
  const server = await RedisServerProcess.start(await freePort(), dir);
  envs.defer(() => {
    server.killNow();
    rmSync(dir, { recursive: true, force: true });
  });
  const admin = createRedisConnection(server.url, { failFast: false });
  await admin.connect();
  await send(admin, ['CONFIG', 'SET', 'maxmemory', '100mb']);
  await send(admin, ['CONFIG', 'SET', 'maxmemory-policy', policy]);
  destroyQuietly(admin);
  return server;
}

describe('maxmemory-policy that can evict streams', () => {
  it('tributary start warns about allkeys-lru once started', async () => {
    const env = await envs.setup('evict_start');
    const server = await privateRedis('allkeys-lru');
    const engine = new EngineProcess({ ...env.childEnv, REDIS_URL: server.url, LOG_LEVEL: 'info' }, 'evict-start');
    envs.defer(async () => {
      engine.kill('SIGKILL');
      await engine.exited;
    });
    await engine.waitForLog(WARNING, 15_000);
    engine.kill('SIGTERM');
    expect((await engine.exited).code).toBe(0);
  });

  it('tributary up warns about allkeys-lru, and says nothing for noeviction', async () => {
    const env = await envs.setup('evict_up', {}, { migrate: false });
    const home = mkdtempSync(join(tmpdir(), 'trib-evict-home-'));
    envs.defer(() => rmSync(home, { recursive: true, force: true }));
    const up = async (url: string) => {
      const p = new EngineProcess({ ...env.childEnv, TRIBUTARY_HOME: home }, 'evict-up', ['up', '--redis-url', url, '--database-url', env.config.databaseUrl]);
      const exit = await p.exited;
      expect(exit.code, p.output).toBe(0);
      return p.output;
    };
    const lru = await privateRedis('allkeys-lru');
    expect(await up(lru.url)).toMatch(WARNING);
    const safe = await privateRedis('noeviction');
    expect(await up(safe.url)).not.toMatch(/maxmemory-policy/);
  });
});
