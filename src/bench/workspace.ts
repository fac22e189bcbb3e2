import { randomBytes } from 'node:crypto';
import { configSchema, SETTINGS, type ConfigKey, type TributaryConfig } from '../config/schema.js';
import { migrate } from '../postgres/migrate.js';
import { createPgPool, quoteIdent, type PgPool } from '../postgres/pool.js';
import { createRedisConnection, destroyQuietly, type RedisConnection } from '../redis/client.js';
import { statsKey } from '../redis/keys.js';
import { isClusterUrl } from '../redis/cluster.js';
import { partitionDeadLetterKey, partitionFenceKey, partitionLeaseKey, partitionMembersKey, partitionStreamKey } from '../redis/partitions.js';
import type { BenchKind } from './result.js';

/**
 * A bench's private corner of the servers: its own stream keys and Postgres schema
 * (`bench_<kind>_<ms>_<hex>`), migrated, and dropped again by `cleanup()`.
 */
export interface BenchWorkspace {
  tag: string;
  /** The bench's configuration: the given settings on the bench's own stream, schema and consumer name. */
  config: TributaryConfig;
  redis: RedisConnection;
  pool: PgPool;
  /** Another Redis key to delete at clean-up. */
  track(key: string): string;
  cleanup(): Promise<void>;
}

export function benchTag(kind: BenchKind, now = Date.now()): string {
  return `bench_${kind}_${now}_${randomBytes(2).toString('hex')}`;
}

/** `base` moved onto the tag's stream, dead-letter stream, schema and consumer name, plus overrides; validated. */
export function benchConfig(base: TributaryConfig, tag: string, overrides: Partial<TributaryConfig> = {}): TributaryConfig {
  return configSchema.parse({
    ...base,
    streamKey: `${tag}:events`,
    // On a Redis Cluster the dead-letter stream shares the stream's slot (clusterDeadLetterStream).
    dlqStream: isClusterUrl(base.redisUrl) ? `{${tag}:events}:dead` : `${tag}:dead`,
    pgSchema: tag,
    eventsTable: 'events',
    consumerName: tag,
    metricsPort: undefined,
    ...overrides,
  });
}

/**
 * The environment for a `tributary start` child running exactly `config`: every
 * setting as its variable; unset optional settings removed from the inherited env.
 */
export function configEnv(config: TributaryConfig, inherited: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...inherited };
  for (const key of Object.keys(SETTINGS) as ConfigKey[]) {
    const value = config[key];
    if (value === undefined) delete env[SETTINGS[key].env];
    else env[SETTINGS[key].env] = String(value);
  }
  return env;
}

export async function openWorkspace(kind: BenchKind, base: TributaryConfig, overrides: Partial<TributaryConfig> = {}): Promise<BenchWorkspace> {
  const tag = benchTag(kind);
  const config = benchConfig(base, tag, overrides);
  const redis = createRedisConnection(config.redisUrl, { name: `tributary:${tag}`, failFast: false });
  await redis.connect();
  const pool = createPgPool(config.databaseUrl, { max: 4, applicationName: tag });
  const keys = new Set([config.streamKey, config.dlqStream, statsKey(config.streamKey, config.group)]);
  // A partitioned stream: every partition's keys (stream, dead letters, lease, fence) and the members.
  if (config.partitions > 1) {
    for (let i = 0; i < config.partitions; i++) {
      keys.add(partitionStreamKey(config.streamKey, i, config.partitions));
      keys.add(partitionDeadLetterKey(config.streamKey, config.dlqStream, i, config.partitions));
      keys.add(partitionLeaseKey(config.streamKey, config.group, i, config.partitions));
      keys.add(partitionFenceKey(config.streamKey, config.group, i, config.partitions));
    }
    keys.add(partitionMembersKey(config.streamKey, config.group));
  }
  const workspace: BenchWorkspace = {
    tag,
    config,
    redis,
    pool,
    track(key) {
      keys.add(key);
      return key;
    },
    async cleanup() {
      try {
        await redis.del([...keys]).catch(() => {});
        await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(config.pgSchema)} CASCADE`).catch(() => {});
      } finally {
        destroyQuietly(redis);
        await pool.end().catch(() => {});
      }
    },
  };
  try {
    await migrate(pool, config.pgSchema);
  } catch (err) {
    await workspace.cleanup();
    throw err;
  }
  return workspace;
}
