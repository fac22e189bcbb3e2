/**
 * Graceful stop (DESIGN.md): SIGINT/SIGTERM stops reading, finishes and acknowledges
 * in-flight batches, and closes; a second signal forces. Real Redis and Postgres; the
 * engine runs as `node dist/cli/main.js start` children (run `npm run build` first).
 */
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { Producer } from '../../src/producer/producer.js';
import {
  EngineProcess,
  eventRows,
  killChildren,
  pendingSummary,
  produceInBackground,
  startEngine,
  expectExactlyOnce,
} from '../helpers/child.js';
import { createTestEnv, waitFor, type TestEnv } from '../helpers/env.js';

const CHILD_SETTINGS = { BATCH_SIZE: '500', BATCH_TIMEOUT_MS: '500', CLAIM_IDLE_MS: '4000', CLAIM_INTERVAL_MS: '1000' };

interface StopStats {
  read: number;
  written: number;
  duplicates: number;
  deadLetters: number;
}

/** The "stopped: read R, written W, duplicates D, dead letters L" line `tributary start` logs on exit. */
function stopStats(engine: EngineProcess): StopStats {
  const m = /stopped: read (\d+), written (\d+), duplicates (\d+), dead letters (\d+)/.exec(engine.output);
  if (!m) throw new Error(`no "stopped:" line in the engine output:\n${engine.output}`);
  return { read: Number(m[1]), written: Number(m[2]), duplicates: Number(m[3]), deadLetters: Number(m[4]) };
}

/** Produces `count` events with known IDs as fast as possible and waits for them. */
async function backlog(env: TestEnv, count: number, prefix: string): Promise<string[]> {
  const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
  try {
    const p = produceInBackground(producer, count, { prefix, batch: 500 });
    await p.finished;
    return p.ids;
  } finally {
    await producer.close();
  }
}

/** SIGTERM and expect a clean exit (code 0) within `withinMs`. */
async function stopGracefully(engine: EngineProcess, withinMs = 5000): Promise<number> {
  const sentAt = Date.now();
  engine.kill('SIGTERM');
  const exit = await engine.waitExit(withinMs);
  expect(exit, `engine ${engine.label} still running ${withinMs} ms after SIGTERM:\n${engine.output}`).toBeDefined();
  expect(exit!.code, engine.output).toBe(0);
  expect(engine.output).not.toMatch(/unexpected:/);
  return exit!.at - sentAt;
}

describe('graceful stop of `tributary start`', () => {
  afterEach(async () => {
    await killChildren();
  });

  it('SIGTERM mid-flow finishes and acknowledges in-flight batches, exits 0; a restart writes the rest exactly once', async () => {
    const TOTAL = 30_000;
    const env = await createTestEnv('graceful');
    try {
      const ids = await backlog(env, TOTAL, env.name);
      const first = await startEngine(env, CHILD_SETTINGS, 'first');
      // Stop as soon as the first batches are committed: the backlog is still being read.
      await waitFor(async () => (await eventRows(env)) > 0, 15_000, 'first rows');
      const stopMs = await stopGracefully(first, 5000);
      const s1 = stopStats(first);
      const rows1 = await eventRows(env);
      console.info(`graceful: stopped in ${stopMs} ms; ${JSON.stringify(s1)}, rows ${rows1}`);

      // It stopped mid-flow, and everything it read is written and acknowledged.
      expect(rows1).toBeLessThan(TOTAL);
      expect(s1.read).toBeGreaterThan(0);
      expect(s1.written).toBe(s1.read);
      expect(s1.duplicates).toBe(0);
      expect(s1.deadLetters).toBe(0);
      expect(rows1).toBe(s1.written);
      const after = await pendingSummary(env);
      expect(after.total, `pending after a graceful stop: ${JSON.stringify([...after.byConsumer])}`).toBe(0);

      // A restart reads only what was never read: nothing redelivered, nothing rewritten.
      const second = await startEngine(env, CHILD_SETTINGS, 'second');
      await waitFor(async () => (await eventRows(env)) >= TOTAL && (await pendingSummary(env)).total === 0, 30_000, 'all rows');
      await stopGracefully(second, 5000);
      const s2 = stopStats(second);
      expect(s2.read).toBe(TOTAL - s1.read);
      expect(s2.duplicates).toBe(0);
      await expectExactlyOnce(env, ids);
    } finally {
      await env.cleanup();
    }
  }, 60_000);

  /**
   * Ways to make Postgres refuse the engine's writes while every other server stays up.
   * `block` runs once the engine has written something; `blocked` says the engine is stuck;
   * `unblock` puts things back.
   */
  interface WriteBlock {
    name: string;
    block(env: TestEnv): Promise<void>;
    blocked(env: TestEnv, engine: EngineProcess): Promise<boolean>;
    unblock(env: TestEnv): Promise<void>;
  }

  const engineBackends = async (env: TestEnv, where: string): Promise<number> => {
    const r = await env.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE $1 AND ${where}`,
      [`tributary:${env.config.consumerName}%`],
    );
    return Number(r.rows[0]!.n);
  };

  /** The events table locked by an open transaction: every INSERT waits on the lock (a write that hangs). */
  const lockedTable = (): WriteBlock => {
    let locker: pg.PoolClient | undefined;
    return {
      name: 'table locked (the write hangs)',
      async block(env) {
        const client = await env.pool.connect();
        locker = client;
        await client.query('BEGIN');
        await client.query(`LOCK TABLE ${quoteIdent(env.config.pgSchema)}.events IN ACCESS EXCLUSIVE MODE`);
      },
      blocked: async (env) => (await engineBackends(env, `wait_event_type = 'Lock'`)) > 0,
      async unblock() {
        const c = locker;
        locker = undefined;
        if (!c) return;
        await c.query('ROLLBACK').catch(() => {});
        c.release();
      },
    };
  };

  /**
   * Every write to the events table fails (a trigger raises; not a missing table, which the
   * engine now recreates) and the engine retries with backoff.
   */
  const missingTable = (): WriteBlock => {
    let blocked = false;
    return {
      name: 'writes refused (the write fails and is retried)',
      async block(env) {
        const s = quoteIdent(env.config.pgSchema);
        await env.pool.query(
          `CREATE FUNCTION ${s}.refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'writes refused by the test'; END $$; ` +
            `CREATE TRIGGER refuse_writes BEFORE INSERT ON ${s}.events FOR EACH STATEMENT EXECUTE FUNCTION ${s}.refuse_writes()`,
        );
        blocked = true;
      },
      blocked: async (_env, engine) => engine.output.includes('postgres unavailable'),
      async unblock(env) {
        if (!blocked) return;
        blocked = false;
        await env.pool.query(`DROP TRIGGER refuse_writes ON ${quoteIdent(env.config.pgSchema)}.events`);
      },
    };
  };

  it.each([
    { label: 'lock', make: lockedTable, second: 'SIGINT' as const },
    { label: 'retry', make: missingTable, second: 'SIGTERM' as const },
  ])('a second signal during a stop that cannot finish forces a prompt non-zero exit; nothing is lost ($label)', async ({ label, make, second }) => {
    const TOTAL = 30_000;
    const MORE = 5_000;
    const env = await createTestEnv(`graceful_force_${label}`);
    const writes = make();
    try {
      const ids = await backlog(env, TOTAL, env.name);
      const engine = await startEngine(env, CHILD_SETTINGS, `force-${label}`);
      await waitFor(async () => (await eventRows(env)) > 0, 15_000, 'first rows');

      // Postgres stops accepting the engine's writes (the servers stay up for everyone else).
      await writes.block(env);
      // More work arrives, so the engine surely has batches to write, whatever it had finished.
      const more = await backlog(env, MORE, `${env.name}-more`);
      await waitFor(() => writes.blocked(env, engine), 15_000, `the engine blocked: ${writes.name}`);

      engine.kill('SIGTERM');
      await engine.waitForLog('stopping', 5000);
      // The stop cannot finish: its in-flight batches cannot be written.
      expect(await engine.waitExit(2500), `engine exited although its writes could not commit:\n${engine.output}`).toBeUndefined();
      const held = (await pendingSummary(env)).total;
      expect(held).toBeGreaterThan(0);

      const forcedAt = Date.now();
      engine.kill(second);
      const exit = await engine.waitExit(3000);
      expect(exit, `engine still running 3 s after the second signal:\n${engine.output}`).toBeDefined();
      console.info(`graceful_force (${writes.name}): exit ${JSON.stringify(exit)} ${exit!.at - forcedAt} ms after the second signal; ${held} pending`);
      expect(engine.output).toMatch(/forcing exit/);
      // Forced: what it held stays pending for the next run; nothing was acknowledged unwritten.
      const left = (await pendingSummary(env)).total;
      expect(left).toBeGreaterThan(0);
      // A forced stop is not a clean stop: the exit status must say so (the CLI means 130).
      // Soft, so the recovery below is still checked when it fails.
      expect.soft({ code: exit!.code, signal: exit!.signal }, engine.output).toEqual({ code: 130, signal: null });

      await writes.unblock(env);
      const again = await startEngine(env, CHILD_SETTINGS, `after-force-${label}`);
      await waitFor(
        async () => (await eventRows(env)) >= TOTAL + MORE && (await pendingSummary(env)).total === 0,
        30_000,
        'all rows after the forced stop',
      );
      await sleep(1000);
      await stopGracefully(again, 5000);
      expect(stopStats(again).deadLetters).toBe(0);
      await expectExactlyOnce(env, [...ids, ...more]);
    } finally {
      await writes.unblock(env).catch(() => {});
      await env.cleanup();
    }
  }, 60_000);

  it('SIGTERM while the engine is still starting (waiting on its migrations) is a clean stop: exit 0, no error', async () => {
    const TOTAL = 1_000;
    const env = await createTestEnv('graceful_starting');
    // Hold the engine in `migrate`: it takes this session advisory lock before touching the schema.
    const holder = await env.pool.connect();
    let held = true;
    const release = async () => {
      if (!held) return;
      held = false;
      await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [`tributary:migrate:${env.config.pgSchema}`]).catch(() => {});
      holder.release();
    };
    try {
      const ids = await backlog(env, TOTAL, env.name);
      await holder.query('SELECT pg_advisory_lock(hashtext($1))', [`tributary:migrate:${env.config.pgSchema}`]);
      const engine = new EngineProcess({ ...env.childEnv, ...CHILD_SETTINGS, NO_COLOR: '1' }, 'starting');
      await engine.waitForLog('engine: stream', 15_000);
      await waitFor(
        async () => {
          const r = await env.pool.query<{ n: string }>(
            `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE $1 AND wait_event = 'advisory'`,
            [`tributary:${env.config.consumerName}%`],
          );
          return Number(r.rows[0]!.n) > 0;
        },
        15_000,
        'the engine waiting on the migration lock',
      );
      engine.kill('SIGTERM');
      await engine.waitForLog('stopping', 5000);
      await release();
      const exit = await engine.waitExit(10_000);
      expect(exit, `engine still running after SIGTERM during start:\n${engine.output}`).toBeDefined();
      // A stop asked for before anything was read has nothing to finish: it is a success, not an error.
      // Soft, so the recovery below is still checked when it fails.
      expect.soft({ code: exit!.code, output: engine.output }).toEqual({ code: 0, output: expect.not.stringMatching(/TRIB_ERR|unexpected/) });
      expect((await pendingSummary(env)).total).toBe(0);

      const again = await startEngine(env, CHILD_SETTINGS, 'after-start-stop');
      await waitFor(async () => (await eventRows(env)) >= TOTAL && (await pendingSummary(env)).total === 0, 20_000, 'all rows');
      await stopGracefully(again, 5000);
      await expectExactlyOnce(env, ids);
    } finally {
      await release();
      await env.cleanup();
    }
  }, 60_000);
});
