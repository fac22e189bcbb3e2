/**
 * "A Postgres or Redis outage pauses the pipeline; it resumes by itself" (DESIGN.md),
 * with nothing lost and nothing duplicated. The engine runs in-process; Postgres
 * outages are real backend terminations on the system server (only this engine's
 * connections, found by application_name); Redis outages happen on a private
 * redis-server child (connections killed, then the server stopped and restarted).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@redis/client';
import { destroyQuietly } from '../../src/redis/client.js';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { Engine } from '../../src/pipelines/events.js';
import type { ServerName } from '../../src/core/contracts.js';
import { Producer } from '../../src/producer/producer.js';
import { eventRows, expectExactlyOnce, freePort, pendingSummary, produceInBackground, RedisServerProcess } from '../helpers/child.js';
import { createTestEnv, waitFor, type TestEnv } from '../helpers/env.js';

const SETTINGS = { batchSize: 500, batchTimeoutMs: 500, claimIdleMs: 4000, claimIntervalMs: 1000 };
const RETRY = { retry: { baseMs: 20, maxMs: 500 } };

interface Watch {
  health: Array<{ server: ServerName; up: boolean; at: number; detail: string }>;
  errors: Error[];
  deadLetters: number;
}

function watch(engine: Engine): Watch {
  const w: Watch = { health: [], errors: [], deadLetters: 0 };
  engine.on('serverDown', ({ server, error }) => w.health.push({ server, up: false, at: Date.now(), detail: error.message }));
  engine.on('serverUp', ({ server, downMs }) => w.health.push({ server, up: true, at: Date.now(), detail: `${downMs} ms` }));
  engine.on('error', (err) => w.errors.push(err));
  engine.on('deadLetter', () => w.deadLetters++);
  return w;
}

/** True once every produced event has a row and nothing is pending; false while a server is away. */
async function allDone(env: TestEnv, total: number): Promise<boolean> {
  try {
    return (await eventRows(env)) >= total && (await pendingSummary(env)).total === 0;
  } catch {
    return false;
  }
}

describe('outages: the pipeline pauses and resumes by itself', () => {
  let engine: Engine | undefined;
  afterEach(async () => {
    await engine?.close({ force: true }).catch(() => {});
    engine = undefined;
  });

  it('Postgres connections terminated repeatedly mid-stream: all 20,000 events written once', async () => {
    const TOTAL = 20_000;
    const env = await createTestEnv('outage_pg', SETTINGS);
    const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
    try {
      engine = new Engine(env.config, RETRY);
      const w = watch(engine);
      await engine.start();
      const produced = produceInBackground(producer, TOTAL, { prefix: env.name, batch: 250, rate: 4000 });

      const terminated: number[] = [];
      await sleep(400);
      for (let i = 0; i < 5; i++) {
        const r = await env.pool.query<{ ok: boolean }>(
          `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name LIKE $1 AND pid <> pg_backend_pid()`,
          [`tributary:${env.config.consumerName}%`],
        );
        terminated.push(r.rows.filter((row) => row.ok).length);
        await sleep(700);
      }
      console.info(`outage_pg: backends terminated per round ${JSON.stringify(terminated)}; ${produced.done} produced by then`);
      // Every round found engine connections to kill, mid-stream.
      expect(terminated.every((n) => n > 0)).toBe(true);

      await produced.finished;
      await waitFor(() => allDone(env, TOTAL), 30_000, `${TOTAL} rows and nothing pending`);

      const pg = w.health.filter((h) => h.server === 'postgres');
      console.info(`outage_pg: health ${JSON.stringify(pg.map((h) => `${h.up ? 'up' : 'down'}(${h.detail})`))}`);
      expect(pg.some((h) => !h.up)).toBe(true);
      expect(pg.some((h) => h.up)).toBe(true);
      expect(pg.at(-1)!.up, 'postgres reported back up at the end').toBe(true);
      expect(w.errors.map((e) => e.message)).toEqual([]);
      expect(w.deadLetters).toBe(0);

      await engine.close();
      engine = undefined;
      await expectExactlyOnce(env, produced.ids);
    } finally {
      await producer.close().catch(() => {});
      await env.cleanup();
    }
  }, 60_000);

  describe('Redis', () => {
    let server: RedisServerProcess | undefined;
    let dir: string | undefined;
    afterAll(async () => {
      await server?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('connections killed and the server restarted mid-stream: all events written once, none pending', async () => {
      const TOTAL = 20_000;
      dir = mkdtempSync(join(tmpdir(), 'tributary-outage-redis-'));
      server = await RedisServerProcess.start(await freePort(), dir);
      const env = await createTestEnv('outage_redis', { ...SETTINGS, redisUrl: server.url });
      const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
      const admin = createClient({ url: server.url });
      admin.on('error', () => {});
      try {
        engine = new Engine(env.config, RETRY);
        const w = watch(engine);
        await engine.start();
        await admin.connect();
        // Producer retries a failed batch with the same event IDs (at-least-once into the stream).
        const produced = produceInBackground(producer, TOTAL, { prefix: env.name, batch: 250, rate: 4000, retry: true });

        const killed: number[] = [];
        for (let i = 0; i < 3; i++) {
          await sleep(600);
          killed.push(Number(await admin.sendCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'])));
        }
        await sleep(300);
        const beforeStop = produced.done;
        await server.stop();
        const stoppedAt = Date.now();
        await sleep(2000);
        await server.restart();
        console.info(
          `outage_redis: clients killed per round ${JSON.stringify(killed)}; server down ${Date.now() - stoppedAt} ms ` +
            `with ${beforeStop}/${TOTAL} produced; producer retries so far ${produced.retries}`,
        );
        expect(killed.every((n) => n > 0)).toBe(true);
        expect(beforeStop).toBeLessThan(TOTAL);

        await produced.finished;
        await waitFor(() => allDone(env, TOTAL), 40_000, `${TOTAL} rows and nothing pending`);
        // Connections come back one by one (each on its own backoff): a command on one still
        // reconnecting may report Redis down after the others reported it up. It settles up.
        await waitFor(async () => w.health.filter((h) => h.server === 'redis').at(-1)?.up === true, 15_000, 'redis reported up again');

        const redis = w.health.filter((h) => h.server === 'redis');
        console.info(`outage_redis: health ${JSON.stringify(redis.map((h) => `${h.up ? 'up' : 'down'}(${h.detail})`))}`);
        expect(redis.some((h) => !h.up)).toBe(true);
        expect(redis.some((h) => h.up && h.at > stoppedAt)).toBe(true);
        expect(redis.at(-1)!.up, 'redis reported back up at the end').toBe(true);
        expect(w.errors.map((e) => e.message)).toEqual([]);
        expect(w.deadLetters).toBe(0);

        await engine.close();
        engine = undefined;
        // Acknowledged XADDs survived the restart (AOF, fsync always).
        expect(Number(await env.redis.sendCommand(['XLEN', env.config.streamKey]))).toBeGreaterThanOrEqual(TOTAL);
        await expectExactlyOnce(env, produced.ids);
      } finally {
        destroyQuietly(admin);
        await producer.close().catch(() => {});
        await env.cleanup();
      }
    }, 90_000);
  });
});
