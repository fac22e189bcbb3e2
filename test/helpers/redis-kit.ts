import { afterEach } from 'vitest';
import { resolveConfig } from '../../src/config/index.js';
import { createRedisConnection, destroyQuietly, type RedisConnection } from '../../src/redis/client.js';

/**
 * What a test file talking to the configured Redis needs: its URL, cleanups run (last
 * first) after each test, and connections that are closed by them. Call at the top of
 * the file (it registers the afterEach).
 */
export function redisKit(): { redisUrl: string; cleanups: Array<() => Promise<unknown> | unknown>; admin: () => Promise<RedisConnection> } {
  const redisUrl = resolveConfig({ envFile: false }).redisUrl;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  const admin = async () => {
    const c = createRedisConnection(redisUrl, { failFast: false });
    await c.connect();
    cleanups.push(() => destroyQuietly(c));
    return c;
  };
  return { redisUrl, cleanups, admin };
}
