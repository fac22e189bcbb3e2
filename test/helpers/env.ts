import { randomBytes } from 'node:crypto';
import { afterEach } from 'vitest';
import { migrate } from '../../src/postgres/migrate.js';
import { isTributaryError } from '../../src/errors.js';
import { resolveConfig } from '../../src/config/index.js';
import type { TributaryConfig } from '../../src/config/schema.js';
import { createPgPool, quoteIdent, type PgPool } from '../../src/postgres/pool.js';
import { createRedisConnection, destroyQuietly, type RedisConnection } from '../../src/redis/client.js';

/**
 * A private corner of the real servers for one test: its own stream key, DLQ stream,
 * group and Postgres schema. Servers come from REDIS_URL / DATABASE_URL, else what
 * `tributary up` chose, else the defaults.
 */
export interface TestEnv {
  name: string;
  config: TributaryConfig;
  redis: RedisConnection;
  pool: PgPool;
  /** Environment variables that point a child `tributary` process at this test's keys and schema. */
  childEnv: NodeJS.ProcessEnv;
  cleanup(): Promise<void>;
}

export async function createTestEnv(label: string, overrides: Partial<Record<keyof TributaryConfig, unknown>> = {}): Promise<TestEnv> {
  const name = `t_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const config = resolveConfig({
    envFile: false,
    overrides: {
      streamKey: `${name}:events`,
      dlqStream: `${name}:dead`,
      group: 'tributary',
      pgSchema: name,
      consumerName: name,
      ...overrides,
    },
  });
  const redis = createRedisConnection(config.redisUrl, { failFast: false });
  await redis.connect();
  const pool = createPgPool(config.databaseUrl, { max: 4 });
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    REDIS_URL: config.redisUrl,
    DATABASE_URL: config.databaseUrl,
    STREAM_KEY: config.streamKey,
    DLQ_STREAM: config.dlqStream,
    GROUP: config.group,
    PG_SCHEMA: config.pgSchema,
    CONSUMER_NAME: config.consumerName,
  };
  return {
    name,
    config,
    redis,
    pool,
    childEnv,
    async cleanup() {
      // The stream, its dead letters, and the batch counters engines published for its groups.
      const stats = await redis.keys(`tributary:stats:${config.streamKey}:*`).catch(() => [] as string[]);
      await redis.del([config.streamKey, config.dlqStream, ...stats]).catch(() => {});
      destroyQuietly(redis);
      await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(config.pgSchema)} CASCADE`).catch(() => {});
      await pool.end();
    },
  };
}

export async function countRows(env: TestEnv, table = 'events'): Promise<{ rows: number; distinct: number }> {
  const s = quoteIdent(env.config.pgSchema);
  const col = table === 'events' ? 'event_id' : 'stream_id';
  const r = await env.pool.query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT ${col}) AS d FROM ${s}.${table}`);
  return { rows: Number(r.rows[0]!.n), distinct: Number(r.rows[0]!.d) };
}

export async function pendingCount(env: TestEnv): Promise<number> {
  const reply = (await env.redis.sendCommand(['XPENDING', env.config.streamKey, env.config.group])) as unknown[];
  return Number(reply[0] ?? 0);
}

/** Polls `check` until it returns true, or fails after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Per-test environments with automatic clean-up: `setup(label)` creates a migrated
 * TestEnv with the file's default settings; `defer(fn)` runs fn after the test (in
 * reverse order, engines before the env they use).
 */
export function testEnvs(defaults: Partial<Record<keyof TributaryConfig, unknown>> = {}) {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    defer(fn: () => Promise<unknown> | unknown): void {
      cleanups.push(fn);
    },
    async setup(label: string, overrides: Partial<Record<keyof TributaryConfig, unknown>> = {}, options: { migrate?: boolean } = {}): Promise<TestEnv> {
      const env = await createTestEnv(label, { ...defaults, ...overrides });
      cleanups.push(() => env.cleanup());
      if (options.migrate !== false) await migrate(env.pool, env.config.pgSchema);
      return env;
    },
  };
}

/** "CODE: message" of the coded error a promise rejects with, or "resolved". */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isTributaryError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'resolved';
}
