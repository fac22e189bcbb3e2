/**
 * Which stream pipelines a Redis holds: every stream with a consumer group (SCAN TYPE
 * stream, then XINFO GROUPS per stream), partition keys (`<stream>:p<i>`, see
 * redis/partitions.ts) grouped under their logical stream. Used by the dashboard's
 * overview; never prints.
 *
 * Cost: one SCAN pass over the keyspace (COUNT 1000 per call, at most `maxScanned`
 * keys looked at) and one pipelined XINFO GROUPS per stream found. On a Redis Cluster
 * SCAN sees one node only, so there only the `include`d streams are looked at.
 */
import { send, type RedisConnection } from '../redis/client.js';
import { redisErrorIs } from '../redis/commands.js';
import { isClusterConnection } from '../redis/cluster.js';
import { partitionOfKey } from '../redis/partitions.js';
import { readGroups } from '../redis/xinfo.js';

export interface DiscoveredPipeline {
  /** The logical stream (a partitioned stream's name without `:p<i>`). */
  stream: string;
  /** The stream keys read: the stream itself, or its partitions in partition order. */
  keys: string[];
  /** Whether `keys` are partitions of `stream`. */
  partitioned: boolean;
  /** The consumer groups of any of its keys, sorted. */
  groups: string[];
}

export interface DiscoverOptions {
  /** Streams always listed (the configured STREAM_KEY), even before they or their group exist. */
  include?: readonly string[];
  /** Partition counts known from the configuration (stream → PARTITIONS), for streams not seen yet. */
  partitions?: ReadonlyMap<string, number>;
  /** At most this many pipelines (default 50; the included ones first). */
  limit?: number;
  /** Keys looked at by SCAN before it stops (default 100,000). */
  maxScanned?: number;
}

const PARTITION_SUFFIX = /^(.+):p(0|[1-9][0-9]*)$/;

/** Groups stream keys into logical streams: `s:p0`, `s:p1` under `s` when `s` itself is not one of them. Pure. */
export function groupStreamKeys(keys: readonly string[]): Array<{ stream: string; keys: string[]; partitioned: boolean }> {
  const set = new Set(keys);
  const parts = new Map<string, Array<{ key: string; i: number }>>();
  const single: string[] = [];
  for (const key of keys) {
    const m = PARTITION_SUFFIX.exec(key);
    if (m && !set.has(m[1]!)) {
      const list = parts.get(m[1]!) ?? [];
      list.push({ key, i: Number(m[2]) });
      parts.set(m[1]!, list);
    } else single.push(key);
  }
  const out = single.map((key) => ({ stream: key, keys: [key], partitioned: false }));
  for (const [stream, list] of parts) {
    list.sort((a, b) => a.i - b.i);
    const keysOf = list.map((p) => p.key);
    // Confirm with the naming contract: every key is partition i of `stream` with n > i.
    const n = list.at(-1)!.i + 1;
    if (keysOf.every((k) => partitionOfKey(stream, k, n) !== undefined)) out.push({ stream, keys: keysOf, partitioned: true });
    else for (const k of keysOf) out.push({ stream: k, keys: [k], partitioned: false });
  }
  return out.sort((a, b) => a.stream.localeCompare(b.stream));
}

/** The stream keys of the keyspace (SCAN TYPE stream). */
async function scanStreams(redis: RedisConnection, maxScanned: number): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  let scanned = 0;
  do {
    const reply = (await send(redis, ['SCAN', cursor, 'COUNT', '1000', 'TYPE', 'stream'])) as [unknown, unknown[]];
    cursor = String(reply[0]);
    for (const k of reply[1] ?? []) found.push(String(k));
    scanned += 1000;
  } while (cursor !== '0' && scanned < maxScanned);
  return found;
}

/** The stream pipelines found: streams with at least one consumer group, and the included ones. */
export async function discoverPipelines(redis: RedisConnection, options: DiscoverOptions = {}): Promise<DiscoveredPipeline[]> {
  const include = options.include ?? [];
  const limit = options.limit ?? 50;
  const keys = new Set(isClusterConnection(redis) ? [] : await scanStreams(redis, options.maxScanned ?? 100_000));
  for (const stream of include) {
    const n = options.partitions?.get(stream) ?? 1;
    if (n > 1) for (let i = 0; i < n; i++) keys.add(`${stream}:p${i}`);
    else keys.add(stream);
  }
  const groupsOf = new Map<string, string[]>();
  await Promise.all(
    [...keys].map(async (key) => {
      const groups = await readGroups(redis, key).catch((err: unknown) => (redisErrorIs(err, 'ERR') ? [] : Promise.reject(err)));
      groupsOf.set(key, groups.map((g) => g.name));
    }),
  );
  const pipelines = groupStreamKeys([...keys])
    .map((p) => ({ ...p, groups: [...new Set(p.keys.flatMap((k) => groupsOf.get(k) ?? []))].sort() }))
    .filter((p) => p.groups.length > 0 || include.includes(p.stream));
  pipelines.sort((a, b) => Number(include.includes(b.stream)) - Number(include.includes(a.stream)) || a.stream.localeCompare(b.stream));
  return pipelines.slice(0, limit);
}

/** Whether a key exists (a dead-letter stream named after its stream, an orders prefix's keys). */
export async function keysExist(redis: RedisConnection, keys: readonly string[]): Promise<boolean[]> {
  return Promise.all(keys.map(async (k) => Number(await send(redis, ['EXISTS', k])) === 1));
}
