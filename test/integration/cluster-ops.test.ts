/**
 * On a real Redis Cluster with replicas (3 masters + 3 replicas, src/bench/cluster.ts):
 * a replica failover (CLUSTER FAILOVER) under a running engine and producer, and a
 * partitioned stream (PARTITIONS=8) produced by the library and the CLI and operated on
 * with monitor, pending, dlq and consumers, all through the CLI as an operator runs it.
 * (Resharding mid-stream, the orders demo and the operating commands on one stream key:
 * cluster.test.ts.)
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/index.js';
import { createPgPool, quoteIdent, type PgPool } from '../../src/postgres/pool.js';
import { startHttpServer } from '../../src/http/server.js';
import { Producer } from '../../src/producer/producer.js';
import { createRedisConnection, destroyQuietly, send, type RedisConnection } from '../../src/redis/client.js';
import { registerRedisCluster } from '../../src/redis/cluster.js';
import { partitionDeadLetterKey, partitionOf, partitionStreamKey } from '../../src/redis/partitions.js';
import { assertBuilt, CLI, REPO, runCli } from '../helpers/child.js';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster.js';

const cli = runCli;

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `tributary start` in the background, its stderr kept. */
function startEngine(env: NodeJS.ProcessEnv): { child: ChildProcessWithoutNullStreams; log: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, 'start'], { cwd: REPO, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  child.stdout.on('data', () => {});
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, log: () => err, exited };
}

const TOKEN = 'test-token-0123456789abcdef';
let cluster: RedisClusterHandle;
let redis: RedisConnection;
let pool: PgPool;
const databaseUrl = resolveConfig({ envFile: false }).databaseUrl;
const schemas: string[] = [];

beforeAll(async () => {
  assertBuilt();
  cluster = await startRedisCluster({ replicas: 1 });
  registerRedisCluster(cluster.url);
  redis = createRedisConnection(cluster.url, { failFast: false });
  await redis.connect();
  pool = createPgPool(databaseUrl, { max: 4 });
}, 60_000);

afterAll(async () => {
  destroyQuietly(redis);
  for (const s of schemas) await pool?.query(`DROP SCHEMA IF EXISTS ${quoteIdent(s)} CASCADE`).catch(() => {});
  await pool?.end();
  await cluster?.stop();
});

function setup(label: string): { name: string; streamKey: string; env: NodeJS.ProcessEnv } {
  const name = `t_clops_${label}_${randomBytes(4).toString('hex')}`;
  schemas.push(name);
  const streamKey = `${name}:events`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REDIS_URL: cluster.url,
    DATABASE_URL: databaseUrl,
    STREAM_KEY: streamKey,
    GROUP: 'tributary',
    PG_SCHEMA: name,
    CONSUMER_NAME: name,
    NO_COLOR: '1',
  };
  delete env.DLQ_STREAM;
  delete env.PARTITIONS;
  return { name, streamKey, env };
}

async function rows(schema: string): Promise<{ n: number; d: number; ids: Set<string> }> {
  const r = await pool.query<{ event_id: string }>(`SELECT event_id FROM ${quoteIdent(schema)}.events`).catch(() => null);
  const ids = new Set((r?.rows ?? []).map((x) => x.event_id));
  return { n: r?.rowCount ?? 0, d: ids.size, ids };
}

/** The CLUSTER NODES line fields of every node: id, port, flags, master id. */
async function nodes(port = cluster.nodes[0]!.port): Promise<Array<{ id: string; port: number; master: boolean; masterId: string }>> {
  return (await cluster.cli(['CLUSTER', 'NODES'], port))
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const f = l.trim().split(' ');
      return { id: f[0]!, port: Number(f[1]!.split('@')[0]!.split(':').at(-1)), master: f[2]!.includes('master'), masterId: f[3]! };
    });
}

describe('on a Redis Cluster with replicas (3 masters, 3 replicas)', () => {
  it('a replica failover (CLUSTER FAILOVER) mid-stream: every event Redis holds is written once, nothing pending, the engine recovers by itself', async () => {
    const { name, streamKey, env } = setup('failover');
    const engine = startEngine({ ...env, NUM_WORKERS: '2', BATCH_SIZE: '100' });
    const producer = new Producer({ redisUrl: cluster.url, streamKey });
    try {
      await waitFor(async () => engine.log().includes('engine started'), 15_000, () => `the engine to start: ${engine.log()}`);
      const total = 4000;
      let failedOver: { from: number; to: number } | undefined;
      let retried = 0;
      for (let i = 0; i < total; i += 100) {
        const batch = Array.from({ length: 100 }, (_, k) => ({ type: 'failover', payload: { n: i + k }, eventId: `${name}-${i + k}` }));
        // A batch in flight while the master hands over may fail (its connection closed):
        // sent again with the same event IDs, as a producer does.
        for (let attempt = 0; ; attempt++) {
          try {
            await producer.produceBatch(batch);
            break;
          } catch (err) {
            if (attempt >= 20) throw err;
            retried++;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        if (i === 2000) {
          // The stream's master hands over to its replica, which becomes the master.
          const from = await cluster.masterOf(streamKey);
          const all = await nodes();
          const masterId = all.find((n) => n.port === from)!.id;
          const replica = all.find((n) => !n.master && n.masterId === masterId)!;
          expect((await cluster.cli(['CLUSTER', 'FAILOVER'], replica.port)).trim()).toBe('OK');
          await waitFor(async () => (await cluster.masterOf(streamKey)) === replica.port, 15_000, () => 'the replica to take over');
          failedOver = { from, to: replica.port };
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(failedOver).toBeDefined();
      expect((await nodes(failedOver!.from)).find((n) => n.port === failedOver!.from)!.master).toBe(false);
      // What the stream holds after the failover is what Postgres gets, once each.
      await waitFor(async () => (await rows(name)).n >= total, 40_000, () => `${total} rows (retried batches: ${retried}; engine: ${engine.log().slice(-2000)})`);
      const held = (await send(redis, ['XRANGE', streamKey, '-', '+'])) as unknown as Array<[string, string[]]>;
      const heldIds = new Set(held.map(([, f]) => f[f.indexOf('event_id') + 1]!));
      const written = await rows(name);
      expect(written.n).toBe(written.d);
      expect([...heldIds].filter((id) => !written.ids.has(id))).toEqual([]);
      expect(heldIds.size).toBe(total);
      await waitFor(async () => Number(((await send(redis, ['XPENDING', streamKey, 'tributary'])) as unknown[])[0]) === 0, 15_000, () => 'nothing pending');
      // The engine carried on by itself: still running, and it drains a batch produced after.
      await producer.produceBatch(Array.from({ length: 50 }, (_, k) => ({ type: 'after', payload: {}, eventId: `${name}-after-${k}` })));
      await waitFor(async () => (await rows(name)).n >= total + 50, 15_000, () => 'the events produced after the failover');
      expect(engine.child.exitCode).toBeNull();
    } finally {
      await producer.close();
      engine.child.kill('SIGTERM');
    }
    expect(await engine.exited, engine.log().slice(-2000)).toBe(0);
  }, 60_000);

  it('the orders demo as run.sh orders-demo runs it (init-cache, generate with duplicates, process --until-empty, stats)', async () => {
    const name = `t_clops_orders_${randomBytes(4).toString('hex')}`;
    schemas.push(name);
    const env: NodeJS.ProcessEnv = { ...process.env, REDIS_URL: cluster.url, DATABASE_URL: databaseUrl, ORDERS_PREFIX: name, ORDERS_SCHEMA: name, NO_COLOR: '1' };
    let out = await cli(['orders', 'init-cache', '--all'], env);
    expect(out.code, out.stderr).toBe(0);
    out = await cli(['orders', 'generate', '--count', '1000', '--duplicates', '0.05', '--invalid', '0', '--seed', '11'], env);
    expect(out.code, out.stderr).toBe(0);
    out = await cli(['orders', 'process', '--until-empty'], env, 45_000);
    expect(out.code, out.stderr).toBe(0);
    out = await cli(['orders', 'stats', '--json'], env);
    expect(out.code, out.stderr).toBe(0);
    const stats = JSON.parse(out.stdout);
    expect(stats.redis.queue).toMatchObject({ length: 0, depth: 0 });
    const r = await pool.query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT order_id) AS d FROM ${quoteIdent(name)}.orders`);
    expect(Number(r.rows[0]!.n)).toBe(Number(r.rows[0]!.d));
    expect(stats.postgres.orders).toBe(Number(r.rows[0]!.n));
    expect(Number(r.rows[0]!.n)).toBeGreaterThan(900); // 1,000 generated, about 5% of them duplicates
    out = await cli(['orders', 'clear', '--all', '--yes'], env);
    expect(out.code, out.stderr).toBe(0);
  }, 60_000);

  it('PARTITIONS=8: producers (library, CLI, HTTP ingest) route over the masters; monitor, pending, dlq and consumers see every partition', async () => {
    const N = 8;
    const { name, streamKey, env } = setup('parts');
    const penv = { ...env, PARTITIONS: String(N) };
    const key = (i: number) => partitionStreamKey(streamKey, i, N);
    const masters = new Set<number>();
    for (let i = 0; i < N; i++) masters.add(await cluster.masterOf(key(i)));
    expect(masters.size).toBe(3);

    // The library producer by a payload field, and the CLI by event_id.
    const producer = new Producer({ redisUrl: cluster.url, streamKey, partitions: N, partitionKey: 'account' });
    try {
      const events = Array.from({ length: 1000 }, (_, i) => ({ type: 't', payload: { account: `a${i % 37}`, seq: i }, eventId: `${name}-${i}` }));
      const { ids, partitions } = await producer.produceBatchRouted(events);
      expect(ids).toHaveLength(1000);
      expect(partitions).toEqual(events.map((e) => partitionOf(e.payload.account, N)));
      for (let i = 0; i < 1000; i += 97) {
        const got = (await send(redis, ['XRANGE', key(partitions[i]!), ids[i]!, ids[i]!])) as unknown as Array<[string, string[]]>;
        expect(got[0]![1]).toContain(`${name}-${i}`);
      }
    } finally {
      await producer.close();
    }
    const produced = await cli(['produce', '1000'], penv);
    expect(produced.code, produced.stderr).toBe(0);
    // The HTTP ingest API: the 202 says each event's partition, and its entry is there.
    const server = await startHttpServer({
      port: 0,
      token: TOKEN,
      ingest: { redisUrl: cluster.url, streams: [{ stream: streamKey, groups: ['tributary'], partitions: N }], maxLag: 1_000_000, maxBodyBytes: 1 << 20, maxEvents: 1000 },
    });
    try {
      const body = Array.from({ length: 100 }, (_, i) => ({ event_type: 'http', payload: { i }, event_id: `${name}-http-${i}` }));
      const res = await fetch(`${server.url}/v1/streams/${encodeURIComponent(streamKey)}/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(202);
      const reply = (await res.json()) as { ids: string[]; partitions: number[] };
      expect(reply.partitions).toEqual(body.map((e) => partitionOf(e.event_id, N)));
      for (let i = 0; i < 100; i += 9) {
        const got = (await send(redis, ['XRANGE', key(reply.partitions[i]!), reply.ids[i]!, reply.ids[i]!])) as unknown as Array<[string, string[]]>;
        expect(got[0]![1]).toContain(`${name}-http-${i}`);
      }
    } finally {
      await server.close();
    }
    let held = 0;
    for (let i = 0; i < N; i++) held += Number(await send(redis, ['XLEN', key(i)]));
    expect(held).toBe(2100);
    await send(redis, ['XADD', key(3), '*', 'event_type', 'bad', 'payload', '{oops', 'event_id', `${name}-poison`]);

    const engine = startEngine({ ...penv, BATCH_SIZE: '200', PARTITION_LEASE_MS: '3000' });
    try {
      await waitFor(async () => (await rows(name)).n >= 2100, 40_000, () => `2100 rows (engine: ${engine.log().slice(-2000)})`);
      const dlq = partitionDeadLetterKey(streamKey, 'unused', 3, N);
      await waitFor(async () => Number(await send(redis, ['XLEN', dlq])) === 1, 15_000, () => 'the dead letter');

      const monitor = await cli(['monitor', '--once', '--json', '--sample', '0'], penv);
      expect(monitor.code, monitor.stderr).toBe(0);
      const m = JSON.parse(monitor.stdout);
      expect(m.partitions.rows.map((r: { key: string }) => r.key)).toEqual(Array.from({ length: N }, (_, i) => key(i)));
      expect(m.partitions.rows.every((r: { owner: string }) => r.owner === name)).toBe(true);
      expect(m.stream.length).toBe(2101);
      expect(m.deadLetters).toMatchObject({ streamLength: 1, rows: 1 });

      await waitFor(async () => JSON.parse((await cli(['pending', '--json'], penv)).stdout).total === 0, 15_000, () => 'nothing pending');
      const pending = JSON.parse((await cli(['pending', '--json'], penv)).stdout);
      expect(pending.partitions).toHaveLength(N);

      const list = await cli(['dlq', 'list', '--json'], penv);
      expect(list.code, list.stderr).toBe(0);
      expect(JSON.parse(list.stdout)).toMatchObject({ total: 1, rows: [{ partition: 3, streamKey: key(3), errorCode: 'TRIB_ERR_ENTRY_BAD_PAYLOAD' }] });
      expect(JSON.parse((await cli(['dlq', 'list', '--json', '--partition', '2'], penv)).stdout).total).toBe(0);

      const consumers = await cli(['consumers', '--json'], penv);
      expect(consumers.code, consumers.stderr).toBe(0);
      const cs = JSON.parse(consumers.stdout) as Array<{ name: string; partition: number }>;
      expect(new Set(cs.map((c) => c.partition))).toEqual(new Set(Array.from({ length: N }, (_, i) => i)));
      expect(cs.every((c) => c.name === `${name}-p${c.partition}`)).toBe(true);
    } finally {
      engine.child.kill('SIGTERM');
    }
    expect(await engine.exited, engine.log().slice(-2000)).toBe(0);
    expect(engine.log()).not.toMatch(/CROSSSLOT|"level":50/);
  }, 60_000);
});
