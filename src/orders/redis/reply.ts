/** Small helpers shared by the orders Redis components: raw-reply coercion and key scans. */
import type { RawReply } from '../../redis/commands.js';
import { send, type RedisConnection } from '../../redis/client.js';

/** An integer reply (or its text form, or nil → 0) as a number. */
export function toNumber(raw: RawReply | undefined): number {
  if (raw === null || raw === undefined) return 0;
  if (typeof raw === 'number') return raw;
  if (typeof raw === 'string') {
    const n = Number(raw);
    if (Number.isFinite(n)) return n;
  }
  throw new TypeError(`expected a number in the Redis reply, got ${JSON.stringify(raw)}`);
}

/** An array reply (nil → []) as an array. */
export function toArray(raw: RawReply | undefined): RawReply[] {
  if (raw === null || raw === undefined) return [];
  if (Array.isArray(raw)) return raw;
  throw new TypeError(`expected an array in the Redis reply, got ${JSON.stringify(raw)}`);
}

/** An array reply of bulk strings as strings. */
export function toStrings(raw: RawReply | undefined): string[] {
  return toArray(raw).map((item) => String(item));
}

/** Every key matching a SCAN MATCH pattern (deduplicated: SCAN may return a key twice). */
export async function scanKeys(client: RedisConnection, pattern: string, count = 1000): Promise<string[]> {
  const found = new Set<string>();
  let cursor = '0';
  do {
    const reply = toArray(await send(client, ['SCAN', cursor, 'MATCH', pattern, 'COUNT', String(count)]));
    cursor = String(reply[0]);
    for (const key of toStrings(reply[1])) found.add(key);
  } while (cursor !== '0');
  return [...found];
}

/** Throws a RangeError naming `name` unless `value` is an integer within [min, max]. */
export function checkInteger(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new RangeError(`${name} must be an integer ${range}, got ${String(value)}`);
  }
  return value;
}

/** Throws a RangeError naming `name` unless `value` is a finite number within [min, max]. */
export function checkNumber(name: string, value: number, min: number, max = Number.MAX_VALUE): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    const range = max === Number.MAX_VALUE ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new RangeError(`${name} must be a number ${range}, got ${String(value)}`);
  }
  return value;
}

/** The Redis server's clock in ms (TIME), the one clock all workers' heartbeats use. */
export async function redisNowMs(client: RedisConnection): Promise<number> {
  const [seconds, micros] = toStrings(await send(client, ['TIME']));
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

/** Splits `items` into arrays of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
