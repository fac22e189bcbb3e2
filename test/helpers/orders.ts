/**
 * Per-test corners of the real servers for the orders pipeline: a Redis prefix and a
 * Postgres schema of their own (migrated, seeded and cached on request), and clean-up of
 * both, plus the pipelines and connections a test opens.
 */
import { randomBytes } from 'node:crypto';
import { afterEach } from 'vitest';
import { resolveConfig } from '../../src/config/index.js';
import { analyzeReferenceTables } from '../../src/orders/pg/analyze.js';
import { migrateOrders } from '../../src/orders/pg/migrate.js';
import { OrdersPipeline, type OrdersPipelineOptions } from '../../src/pipelines/orders.js';
import { escapeGlob, LookupCache, OrderQueue } from '../../src/orders/redis/index.js';
import { REFERENCE_DATA, seedReferenceData } from '../../src/orders/seed.js';
import { createPgPool, quoteIdent, type PgPool } from '../../src/postgres/pool.js';
import { createRedisConnection, destroyQuietly, type RedisConnection } from '../../src/redis/client.js';

export interface OrdersTestEnv {
  /** Used as both the Redis prefix and the Postgres schema. */
  name: string;
  redisUrl: string;
  databaseUrl: string;
  redis: RedisConnection;
  pool: PgPool;
  queue: OrderQueue;
  /** Environment for a `tributary orders ...` child on this prefix and schema. */
  childEnv: NodeJS.ProcessEnv;
  /** Pipeline options on this prefix and schema, quick to stop (overrides merged). */
  pipelineOptions(overrides?: Partial<OrdersPipelineOptions>): OrdersPipelineOptions;
  /** A pipeline on this env, closed (forced if need be) after the test. */
  pipeline(overrides?: Partial<OrdersPipelineOptions>): OrdersPipeline;
  /** Runs a pipeline until the queue is empty; returns it (closed). */
  drain(overrides?: Partial<OrdersPipelineOptions>): Promise<OrdersPipeline>;
  count(table: 'orders' | 'orders_rejected' | 'orders_staging'): Promise<number>;
}

const servers = resolveConfig({ envFile: false });

export function ordersTestEnvs() {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    defer(fn: () => Promise<unknown> | unknown): void {
      cleanups.push(fn);
    },
    /** `prepare`: 'none', 'migrate' (tables), 'seed' (and reference data), 'cache' (and the lookup cache published; default). */
    async setup(label: string, prepare: 'none' | 'migrate' | 'seed' | 'cache' = 'cache'): Promise<OrdersTestEnv> {
      const name = `t_ord_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
      const redis = createRedisConnection(servers.redisUrl, { failFast: false });
      await redis.connect();
      const pool = createPgPool(servers.databaseUrl, { max: 4 });
      cleanups.push(async () => {
        const keys = await redis.keys(`${escapeGlob(name)}:*`).catch(() => [] as string[]);
        if (keys.length > 0) await redis.del(keys).catch(() => 0);
        destroyQuietly(redis);
        await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(name)} CASCADE`).catch(() => {});
        await pool.end();
      });
      if (prepare !== 'none') await migrateOrders(pool, name);
      if (prepare === 'seed' || prepare === 'cache') {
        await seedReferenceData(pool, name);
        await analyzeReferenceTables(pool, name);
      }
      if (prepare === 'cache') await new LookupCache({ client: redis, prefix: name }).publish(REFERENCE_DATA);
      const options = (overrides: Partial<OrdersPipelineOptions> = {}): OrdersPipelineOptions => ({
        redisUrl: servers.redisUrl,
        databaseUrl: servers.databaseUrl,
        schema: name,
        prefix: name,
        workers: 2,
        batchSize: 500,
        blockMs: 100,
        staleMs: 2000,
        recoverIntervalMs: 200,
        viewRefreshMinIntervalMs: 0,
        workerPrefix: `${name}-${randomBytes(2).toString('hex')}`,
        ...overrides,
      });
      const env: OrdersTestEnv = {
        name,
        redisUrl: servers.redisUrl,
        databaseUrl: servers.databaseUrl,
        redis,
        pool,
        queue: new OrderQueue({ client: redis, prefix: name }),
        childEnv: {
          ...process.env,
          REDIS_URL: servers.redisUrl,
          DATABASE_URL: servers.databaseUrl,
          ORDERS_PREFIX: name,
          ORDERS_SCHEMA: name,
          NO_COLOR: '1',
        },
        pipelineOptions: options,
        pipeline(overrides) {
          const p = new OrdersPipeline(options(overrides));
          cleanups.push(() => p.close({ force: true }));
          return p;
        },
        async drain(overrides) {
          const p = env.pipeline({ untilEmpty: true, ...overrides });
          const errors: Error[] = [];
          p.on('error', (err) => errors.push(err));
          await p.start();
          await p.done;
          await p.close();
          if (errors.length > 0) throw errors[0];
          return p;
        },
        async count(table) {
          const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(name)}.${table}`);
          return Number(r.rows[0]!.n);
        },
      };
      return env;
    },
  };
}

/** A valid order's JSON text; fields override the sample values (product P001, USD, zip 10001, quantity 1, now). */
export function orderJson(orderId: string, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({
    order_id: orderId,
    customer_id: 'cust-1',
    product_id: 'P001',
    quantity: 1,
    currency: 'USD',
    zip_code: '10001',
    order_timestamp: new Date().toISOString(),
    ...fields,
  });
}
