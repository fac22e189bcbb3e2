/**
 * Partitioned streams on a real Redis Cluster (3 masters, test/helpers/redis-cluster.ts):
 * PARTITIONS=8, so the partitions' slots spread over the masters, read by several engine
 * processes under leases. Events are routed by key (partitionOf) and carry a per-key
 * sequence; every test checks that each event is written once and, for every key, that the
 * rows' write order (ingested_at, then stream ID) follows the sequence.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { resolveConfig } from '../../src/config/index.js';
import { migrate } from '../../src/postgres/migrate.js';
import { createPgPool, quoteIdent, type PgPool } from '../../src/postgres/pool.js';
import { Engine, type PartitionLeaseEvent, type PartitionReadEvent } from '../../src/pipelines/events.js';
import { createRedisConnection, destroyQuietly, send, type RedisConnection } from '../../src/redis/client.js';
import { registerRedisCluster } from '../../src/redis/cluster.js';
import { compareStreamIds } from '../../src/redis/commands.js';
import { partitionStreamKey } from '../../src/redis/partitions.js';
import { assertBuilt, EngineProcess, killChildren } from '../helpers/child.js';
import { keyedEvents, orderAudit, partitionKeys, pendingAll, produceRouted } from '../helpers/partitions.js';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-cluster.js';

const N = 8;
let cluster: RedisClusterHandle;
let redis: RedisConnection;
let pool: PgPool;
const databaseUrl = resolveConfig({ envFile: false }).databaseUrl;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  assertBuilt();
  cluster = await startRedisCluster();
  registerRedisCluster(cluster.url);
  redis = createRedisConnection(cluster.url, { failFast: false });
  await redis.connect();
  pool = createPgPool(databaseUrl, { max: 4 });
});

afterEach(async () => {
  await killChildren();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

afterAll(async () => {
  destroyQuietly(redis);
  await pool?.end();
  await cluster?.stop();
});

async function setup(label: string): Promise<{ name: string; streamKey: string }> {
  const name = `t_pcluster_${label}_${randomBytes(4).toString('hex')}`;
  const streamKey = `${name}:events`;
  await migrate(pool, name);
  cleanups.push(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(name)} CASCADE`);
    await redis.del(partitionKeys(streamKey, 'tributary', N));
  });
  return { name, streamKey };
}

async function rows(schema: string): Promise<number> {
  const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(schema)}.events`);
  return Number(r.rows[0]!.n);
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await sleep(100);
  }
}

describe('partitioned streams on a 3-master Redis Cluster', () => {
  it('the partitions spread over the masters', async () => {
    const masters = new Set<number>();
    for (let i = 0; i < N; i++) masters.add(await cluster.masterOf(partitionStreamKey('events', i, N)));
    expect(masters.size).toBe(3);
  });

  it('exactly once: 3 engine processes, 8 partitions, 60,000 events, one process SIGKILLed and later restarted → 60,000 rows, in order per key, nothing pending', async () => {
    const { name, streamKey } = await setup('kill');
    const env = (): NodeJS.ProcessEnv => {
      const e: NodeJS.ProcessEnv = {
        ...process.env,
        REDIS_URL: cluster.url,
        DATABASE_URL: databaseUrl,
        STREAM_KEY: streamKey,
        GROUP: 'tributary',
        PG_SCHEMA: name,
        PARTITIONS: String(N),
        PARTITION_LEASE_MS: '1500',
        BATCH_SIZE: '1000',
        XREAD_COUNT: '1000',
        BATCH_TIMEOUT_MS: '200',
        XREAD_BLOCK_MS: '500',
        NO_COLOR: '1',
      };
      // No CONSUMER_NAME: each process names itself (host, PID, random); peers need only the same pipeline settings.
      delete e.CONSUMER_NAME;
      delete e.DLQ_STREAM;
      delete e.REDIS_CLUSTER_NODES;
      return e;
    };
    const start = async (label: string) => {
      const p = new EngineProcess(env(), label);
      await p.waitForLog('engine started', 30_000);
      return p;
    };
    const [a, b, c] = await Promise.all([start(`${name}-a`), start(`${name}-b`), start(`${name}-c`)]);
    // Three members, each named by itself.
    await waitFor(async () => Number(await send(redis, ['ZCARD', `{${streamKey}}:members:tributary`])) === 3, 5000, () => 'three members');
    const events = keyedEvents(name, 60_000, 600);
    const producing = produceRouted(redis, streamKey, N, events, 2000);
    producing.catch(() => {});
    await waitFor(async () => (await rows(name)) >= 15_000, 30_000, () => `15,000 rows (b: ${b.output.slice(-2000)})`);
    // b holds partitions (each process took about a third) and is killed holding them.
    expect(b.output).toMatch(/lease acquired/);
    const killedAt = await rows(name);
    expect((await b.killHard()).signal).toBe('SIGKILL');
    await producing;
    // Its partitions go to a and c once its leases expire; later b comes back (as a new process) and takes its share again.
    await waitFor(async () => (await rows(name)) >= Math.min(killedAt + 15_000, 55_000), 30_000, () => 'progress after the kill');
    const b2 = await start(`${name}-b2`);
    // c frozen past its leases (a stall, not a death): the others take its partitions over;
    // woken, it is fenced out — it reads and acknowledges nothing more under the old leases.
    await waitFor(async () => /lease acquired/.test(b2.output), 10_000, () => `b2 to take partitions: ${b2.output}`);
    c.kill('SIGSTOP');
    await sleep(3500);
    c.kill('SIGCONT');
    await c.waitForLog(/lease lost/, 10_000);
    await waitFor(
      async () => (await rows(name)) >= 60_000 && (await pendingAll(redis, streamKey, 'tributary', N)) === 0,
      40_000,
      () => `60,000 rows and nothing pending (a: ${a.output.slice(-1500)}\nc: ${c.output.slice(-1500)})`,
    );
    const audit = await orderAudit(pool, name);
    expect(audit).toMatchObject({ rows: 60_000, distinct: 60_000, keys: 600, outOfOrder: [] });
    const dead = await pool.query(`SELECT count(*)::int AS n FROM ${quoteIdent(name)}.dead_letter_queue`);
    expect(dead.rows[0].n).toBe(0);
    // The survivors took b's partitions over after its death; the restarted process got some back.
    expect(`${a.output}${c.output}`).toMatch(/lease acquired/);
    console.info(`partitions-cluster: killed b at ${killedAt} rows; leases a ${(a.output.match(/lease acquired/g) ?? []).length}, c ${(c.output.match(/lease acquired/g) ?? []).length}, b2 ${(b2.output.match(/lease acquired/g) ?? []).length}`);
  });

  it('rebalance: processes join and leave mid-stream; no partition is read by two processes at once (the fencing tokens show it); every event once, in order per key', async () => {
    const { name, streamKey } = await setup('rebalance');
    const config = (consumer: string) =>
      resolveConfig({
        envFile: false,
        overrides: {
          redisUrl: cluster.url,
          streamKey,
          group: 'tributary',
          pgSchema: name,
          consumerName: consumer,
          partitions: N,
          partitionLeaseMs: 1500,
          batchSize: 300,
          xreadCount: 300,
          batchTimeoutMs: 100,
          xreadBlockMs: 200,
        },
      });
    const reads: Array<PartitionReadEvent & { engine: string }> = [];
    const leases: Array<PartitionLeaseEvent & { engine: string }> = [];
    const engines = new Map<string, Engine>();
    const join = async (label: string) => {
      const engine = new Engine(config(`${name}-${label}`), { migrate: false, retry: { baseMs: 20, maxMs: 200 } });
      cleanups.push(() => engine.close({ force: true }));
      engine.on('partitionRead', (e) => reads.push({ ...e, engine: label }));
      engine.on('lease', (e) => leases.push({ ...e, engine: label }));
      await engine.start();
      engines.set(label, engine);
      return engine;
    };
    const events = keyedEvents(name, 30_000, 300);
    const a = await join('a');
    // About 4,000 events/s for ~7.5 s, while processes join and leave.
    const producing = (async () => {
      for (let i = 0; i < events.length; i += 500) {
        await produceRouted(redis, streamKey, N, events.slice(i, i + 500), 500);
        await sleep(120);
      }
    })();
    producing.catch(() => {});
    await sleep(1200);
    const b = await join('b');
    await sleep(1500);
    const c = await join('c');
    await sleep(2000);
    await b.close(); // leaves gracefully: its leases are released once what it holds is acknowledged
    await producing;
    await waitFor(
      async () => (await rows(name)) >= 30_000 && (await pendingAll(redis, streamKey, 'tributary', N)) === 0,
      30_000,
      () => `30,000 rows and nothing pending (${JSON.stringify(leases.slice(-20))})`,
    );
    const audit = await orderAudit(pool, name);
    expect(audit).toMatchObject({ rows: 30_000, distinct: 30_000, outOfOrder: [] });

    // Partitions changed hands: joining took partitions from a, b's leaving gave them to a and c.
    const acquired = leases.filter((l) => l.event === 'acquired');
    expect(acquired.length).toBeGreaterThan(N);
    expect(new Set(acquired.map((l) => l.engine))).toEqual(new Set(['a', 'b', 'c']));
    expect(leases.filter((l) => l.engine === 'b' && l.event === 'released').length).toBeGreaterThan(0);
    // Each fencing token of a partition belongs to one process.
    const holder = new Map<string, string>();
    for (const r of [...acquired, ...reads]) {
      const k = `${r.partition}/${r.token}`;
      expect(holder.get(k) ?? r.engine, `token ${k}`).toBe(r.engine);
      holder.set(k, r.engine);
    }
    // Per partition, the new entries each process read never interleave with another's: in
    // stream order the tokens only go up, and no entry was read new twice.
    let handovers = 0;
    for (let p = 0; p < N; p++) {
      const fresh = reads.filter((r) => r.partition === p && !r.recovered).sort((x, y) => compareStreamIds(x.first, y.first));
      for (let i = 1; i < fresh.length; i++) {
        const [prev, next] = [fresh[i - 1]!, fresh[i]!];
        expect(next.token, `partition ${p}: ${JSON.stringify(prev)} then ${JSON.stringify(next)}`).toBeGreaterThanOrEqual(prev.token);
        expect(compareStreamIds(next.first, prev.last), `partition ${p}: entries read new twice`).toBeGreaterThan(0);
        if (next.token !== prev.token) handovers++;
      }
    }
    expect(handovers).toBeGreaterThan(0);
    // In the end the two left share the partitions, 4 each, by their leases.
    await waitFor(
      async () => a.ownedPartitions().length === 4 && c.ownedPartitions().length === 4,
      10_000,
      () => `a fair share (a ${JSON.stringify(a.ownedPartitions())}, c ${JSON.stringify(c.ownedPartitions())})`,
    );
    const owned = [...a.ownedPartitions(), ...c.ownedPartitions()].map((o) => o.partition).sort((x, y) => x - y);
    expect(owned).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const e of [a, c]) {
      for (const o of e.ownedPartitions()) {
        const lease = await send(redis, ['GET', `{${partitionStreamKey(streamKey, o.partition, N)}}:lease:tributary`]);
        expect(String(lease)).toBe(`${o.token}/${e.config.consumerName}`);
      }
    }
    expect(engines.size).toBe(3);
  });
});
