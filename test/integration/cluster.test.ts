/**
 * Tributary on a real Redis Cluster (3 masters, from redis-server: test/helpers/redis-cluster.ts),
 * through the CLI as an operator would run it: REDIS_URL names one node, the CLI finds the
 * cluster by itself (INFO cluster).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/index.js';
import { createPgPool, quoteIdent, type PgPool } from '../../src/postgres/pool.js';
import { createRedisConnection, destroyQuietly, send, type RedisConnection } from '../../src/redis/client.js';
import { keySlot, registerRedisCluster } from '../../src/redis/cluster.js';
import { Producer } from '../../src/producer/producer.js';
import { Engine } from '../../src/pipelines/events.js';
import { TablePipeline } from '../../src/pipelines/table.js';
import { parsePipelineFile } from '../../src/pipeline-file/spec.js';
import { isTributaryError } from '../../src/errors.js';
import { assertBuilt, CLI, REPO, runCli } from '../helpers/child.js';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster.js';

const cli = runCli;

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let cluster: RedisClusterHandle;
let redis: RedisConnection;
let pool: PgPool;
const databaseUrl = resolveConfig({ envFile: false }).databaseUrl;
const schemas: string[] = [];

beforeAll(async () => {
  assertBuilt();
  cluster = await startRedisCluster();
  registerRedisCluster(cluster.url);
  redis = createRedisConnection(cluster.url, { failFast: false });
  await redis.connect();
  pool = createPgPool(databaseUrl, { max: 4 });
});

afterAll(async () => {
  destroyQuietly(redis);
  for (const s of schemas) await pool?.query(`DROP SCHEMA IF EXISTS ${quoteIdent(s)} CASCADE`).catch(() => {});
  await pool?.end();
  await cluster?.stop();
});

/**
 * Moves `key`'s hash slot to another master, as `redis-cli --cluster reshard` does for
 * each slot: IMPORTING / MIGRATING, MIGRATE of its keys, then SETSLOT NODE everywhere.
 */
async function migrateSlot(key: string): Promise<{ from: number; to: number }> {
  const slot = String(keySlot(key));
  const from = await cluster.masterOf(key);
  const to = cluster.nodes.find((n) => n.port !== from)!.port;
  const id = async (port: number) => (await cluster.cli(['CLUSTER', 'MYID'], port)).trim();
  const [fromId, toId] = [await id(from), await id(to)];
  await cluster.cli(['CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId], to);
  await cluster.cli(['CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId], from);
  for (;;) {
    const keys = (await cluster.cli(['CLUSTER', 'GETKEYSINSLOT', slot, '100'], from)).split('\n').filter((k) => k.trim() !== '');
    if (keys.length === 0) break;
    await cluster.cli(['MIGRATE', '127.0.0.1', String(to), '', '0', '5000', 'KEYS', ...keys], from);
  }
  for (const n of cluster.nodes) await cluster.cli(['CLUSTER', 'SETSLOT', slot, 'NODE', toId], n.port);
  return { from, to };
}

function testName(label: string): string {
  const name = `t_cluster_${label}_${randomBytes(4).toString('hex')}`;
  schemas.push(name);
  return name;
}

describe('on a 3-master Redis Cluster', () => {
  it('the engine drains produced events exactly once, dead-letters a poison entry beside its stream, and the operating commands work', async () => {
    const name = testName('events');
    const streamKey = `${name}:events`; // no hash tag: the stream keeps its name
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
    // The dead-letter stream shares the stream's slot ({<stream>}:dead), on whichever master.
    const dlq = `{${streamKey}}:dead`;
    expect(keySlot(dlq)).toBe(keySlot(streamKey));
    expect(await cluster.masterOf(dlq)).toBe(await cluster.masterOf(streamKey));

    const produced = await cli(['produce', '3000', '--stream-key', streamKey], env);
    expect(produced.code, produced.stderr).toBe(0);
    expect(Number(await send(redis, ['XLEN', streamKey]))).toBe(3000);
    await send(redis, ['XADD', streamKey, '*', 'event_type', 'order_placed', 'payload', '{oops', 'event_id', `${name}-poison`]);

    const engine = spawn(process.execPath, [CLI, 'start'], { cwd: REPO, env: { ...env, NUM_WORKERS: '2', BATCH_SIZE: '200' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let engineErr = '';
    engine.stderr.on('data', (c: Buffer) => (engineErr += c.toString()));
    const exited = new Promise<number | null>((resolve) => engine.once('exit', (code) => resolve(code)));
    try {
      const rows = async () => {
        const r = await pool.query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM ${quoteIdent(name)}.events`).catch(() => null);
        return r ? { n: Number(r.rows[0]!.n), d: Number(r.rows[0]!.d) } : { n: 0, d: 0 };
      };
      await waitFor(async () => (await rows()).n >= 3000 && Number(await send(redis, ['XLEN', dlq])) === 1, 30_000, `3000 rows and one dead letter (engine: ${engineErr})`);
      expect(await rows()).toEqual({ n: 3000, d: 3000 });
      const letter = (await send(redis, ['XRANGE', dlq, '-', '+'])) as unknown as [string, string[]][];
      expect(letter[0]![1]).toContain('TRIB_ERR_ENTRY_BAD_PAYLOAD');
      expect(letter[0]![1]).toContain('{oops');
      // Everything acknowledged, the poison entry included (moved with its ack).
      await waitFor(async () => Number(((await send(redis, ['XPENDING', streamKey, 'tributary'])) as unknown[])[0]) === 0, 10_000, 'nothing pending');
    } finally {
      engine.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
    expect(engineErr).not.toMatch(/CROSSSLOT|MOVED|ASK |"level":50/);

    const monitor = await cli(['monitor', '--once', '--json'], env);
    expect(monitor.code, monitor.stderr).toBe(0);
    const snapshot = JSON.parse(monitor.stdout);
    expect(JSON.stringify(snapshot)).toContain(dlq);
    expect(snapshot.deadLetters.streamLength).toBe(1);

    const pending = await cli(['pending'], env);
    expect(pending.code, pending.stderr).toBe(0);
    expect(pending.stdout).toMatch(/0 pending|no pending|nothing pending/i);

    const dlqList = await cli(['dlq', 'list'], env);
    expect(dlqList.code, dlqList.stderr).toBe(0);
    expect(dlqList.stdout).toContain('TRIB_ERR_ENTRY_BAD_PAYLOAD');

    const trim = await cli(['trim', '--maxlen', '10', '--exact'], env);
    expect(trim.code, trim.stderr).toBe(0);
    expect(Number(await send(redis, ['XLEN', streamKey]))).toBe(10);

    const clean = await cli(['clean', '--yes'], env);
    expect(clean.code, clean.stderr).toBe(0);
    expect(Number(await send(redis, ['EXISTS', streamKey, dlq]))).toBe(0);
  });

  it('the orders demo: init-cache, generate, process until empty: every valid order promoted, its keys under one hash tag', async () => {
    const name = testName('orders');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      REDIS_URL: cluster.url,
      DATABASE_URL: databaseUrl,
      ORDERS_PREFIX: name, // no tag given: the cluster gets {<prefix>}
      ORDERS_SCHEMA: name,
      NO_COLOR: '1',
    };
    let out = await cli(['orders', 'init-cache', '--all'], env);
    expect(out.code, out.stderr).toBe(0);
    out = await cli(['orders', 'generate', '--count', '2000', '--invalid', '0', '--duplicates', '0', '--seed', '7'], env);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain(`{${name}}:queue`);
    expect(Number(await send(redis, ['LLEN', `{${name}}:queue`]))).toBe(2000);
    out = await cli(['orders', 'process', '--until-empty', '--workers', '2'], env, 45_000);
    expect(out.code, out.stderr).toBe(0);
    const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(name)}.orders`);
    expect(Number(r.rows[0]!.n)).toBe(2000);
    expect(Number(await send(redis, ['GET', `{${name}}:depth`]))).toBe(0);
    out = await cli(['orders', 'stats', '--json'], env);
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ redis: { queue: { length: 0, depth: 0 } }, postgres: { orders: 2000 } });
    // Every key of the pipeline hashes to the tag's one slot.
    const keys = (await redis.keys(`{${name}}:*`)) as string[];
    expect(keys.length).toBeGreaterThan(5);
    out = await cli(['orders', 'clear', '--all', '--yes'], env);
    expect(out.code, out.stderr).toBe(0);
  });

  it('the stream\'s slot resharded to another master mid-stream: every event written once, the engine and the producer follow MOVED by themselves', async () => {
    const name = testName('reshard');
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
    const engine = spawn(process.execPath, [CLI, 'start'], { cwd: REPO, env: { ...env, NUM_WORKERS: '2', BATCH_SIZE: '100' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let engineErr = '';
    engine.stderr.on('data', (c: Buffer) => (engineErr += c.toString()));
    const exited = new Promise<number | null>((resolve) => engine.once('exit', (code) => resolve(code)));
    const producer = new Producer({ redisUrl: cluster.url, streamKey });
    const rows = async () => {
      const r = await pool.query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM ${quoteIdent(name)}.events`).catch(() => null);
      return r ? { n: Number(r.rows[0]!.n), d: Number(r.rows[0]!.d) } : { n: 0, d: 0 };
    };
    try {
      await waitFor(async () => engineErr.includes('engine started'), 15_000, `the engine to start: ${engineErr}`);
      const total = 4000;
      let moved: { from: number; to: number } | undefined;
      for (let i = 0; i < total; i += 100) {
        await producer.produceBatch(Array.from({ length: 100 }, (_, k) => ({ type: 'reshard', payload: { n: i + k }, eventId: `${name}-${i + k}` })));
        if (i === 2000) moved = await migrateSlot(streamKey); // while the engine reads and acknowledges
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(await cluster.masterOf(streamKey)).toBe(moved!.to);
      await waitFor(async () => (await rows()).n >= total, 30_000, `${total} rows (engine: ${engineErr.slice(-2000)})`);
      expect(await rows()).toEqual({ n: total, d: total });
      expect(Number(await send(redis, ['XLEN', streamKey]))).toBe(total);
      await waitFor(async () => Number(((await send(redis, ['XPENDING', streamKey, 'tributary'])) as unknown[])[0]) === 0, 15_000, 'nothing pending');
    } finally {
      await producer.close();
      engine.kill('SIGTERM');
    }
    expect(await exited, engineErr.slice(-2000)).toBe(0);
  });

  it('a library engine built for a single Redis but pointed at a cluster node fails its start with TRIB_ERR_CONFIG_INVALID (not MOVED for ever)', async () => {
    const name = testName('lib');
    const url = cluster.nodes[1]!.url; // a node this process has not been told is a cluster
    const config = resolveConfig({ envFile: false, overrides: { redisUrl: url, databaseUrl, streamKey: `{${name}}:events`, dlqStream: `{${name}}:dead`, pgSchema: name, consumerName: name } });
    const engine = new Engine(config);
    let err: unknown;
    try {
      await engine.start();
    } catch (e) {
      err = e;
    } finally {
      await engine.close({ force: true });
    }
    expect(isTributaryError(err, 'TRIB_ERR_CONFIG_INVALID'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/is a Redis Cluster node.*detectRedisCluster/);
  });

  it('a pipeline file: rows written, and an entry its table refuses dead-lettered beside its stream ({<stream>}:dead, not <name>:dead)', async () => {
    const name = testName('file');
    const stream = `${name}:pay`;
    const spec = parsePipelineFile(
      [
        `name: ${name}`,
        `source: { stream: ${stream} }`,
        'batch: { count: 50, period: 50ms }',
        'workers: 1',
        'sink:',
        `  table: ${name}.payments`,
        '  mode: insert',
        '  key: [id]',
        '  columns:',
        '    id:     { from: payload.id, type: text }',
        '    amount: { from: payload.amount, type: numeric, required: true }',
      ].join('\n'),
    );
    const p = new TablePipeline(spec, { redisUrl: cluster.url, databaseUrl, consumer: name, deadLetterSchema: name, blockMs: 100, retry: { baseMs: 10, maxMs: 100 } });
    try {
      await p.start();
      for (let i = 0; i < 100; i++) await send(redis, ['XADD', stream, '*', 'event_type', 'pay', 'payload', JSON.stringify({ id: `p${i}`, amount: i })]);
      await send(redis, ['XADD', stream, '*', 'event_type', 'pay', 'payload', JSON.stringify({ id: 'no-amount' })]);
      const dlq = `{${stream}}:dead`;
      const rows = async () => Number((await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(name)}.payments`).catch(() => ({ rows: [{ n: '0' }] }))).rows[0]!.n);
      await waitFor(async () => (await rows()) === 100 && Number(await send(redis, ['XLEN', dlq])) === 1, 20_000, '100 rows and one dead letter');
      expect(Number(await send(redis, ['EXISTS', `${name}:dead`]))).toBe(0);
    } finally {
      await p.close({ force: true });
    }
  });
});
