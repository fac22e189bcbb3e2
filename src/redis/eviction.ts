/**
 * Redis eviction (issue 11, item 6): with a maxmemory-policy of `allkeys-*`, Redis at
 * maxmemory deletes any key to make room — a stream with entries no group has read,
 * the orders queue — and the work in them is lost without an error. `volatile-*`
 * policies evict only keys with a TTL (Tributary's streams and queues have none) and
 * `noeviction` refuses writes instead (TRIB_ERR_REDIS_OOM). `start` and `up` warn.
 */
import { createRedisConnection, destroyQuietly, send, type RedisConnection } from './client.js';

/** The warning for a policy that can evict stream or queue keys, else undefined. Pure. */
export function evictionWarning(policy: string, maxmemoryBytes: number): string | undefined {
  if (!policy.startsWith('allkeys-')) return undefined;
  const limit = maxmemoryBytes > 0 ? `at maxmemory (${maxmemoryBytes} bytes)` : 'once maxmemory is set';
  return (
    `Redis maxmemory-policy is ${policy}: ${limit} Redis may evict any key, including streams and queues whose entries no group has read yet (lost without an error); ` +
    'use noeviction (writes are refused instead, TRIB_ERR_REDIS_OOM) or a volatile-* policy'
  );
}

/** Reads maxmemory and maxmemory-policy (INFO memory: works where CONFIG is disabled). */
export async function redisEvictionWarning(conn: RedisConnection): Promise<string | undefined> {
  const info = String(await send(conn, ['INFO', 'memory']));
  const field = (name: string) => /^(.*)$/m.exec(info.split(`\n${name}:`)[1] ?? '')?.[1]?.trim();
  const policy = field('maxmemory_policy');
  if (!policy) return undefined;
  return evictionWarning(policy, Number(field('maxmemory') ?? 0));
}

/**
 * The same, on a connection of its own to `url`; undefined when Redis cannot be asked
 * within `timeoutMs` (node-redis would otherwise retry its first connection for ever,
 * and a command stopping during an outage waited on it).
 */
export async function checkRedisEviction(url: string, timeoutMs = 2000): Promise<string | undefined> {
  const conn = createRedisConnection(url, { connectTimeoutMs: timeoutMs });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      conn.connect().then(() => redisEvictionWarning(conn)),
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs))),
    ]);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    destroyQuietly(conn);
  }
}
