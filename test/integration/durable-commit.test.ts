/**
 * Issue 11, item 11: an acknowledgement never precedes a durable commit. A role (or
 * database, or server) configured with synchronous_commit = off would let every
 * pipeline's COMMIT return before the WAL is flushed; the pools Tributary makes set
 * synchronous_commit = on for their sessions, whatever the server says.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/index.js';
import { parsePipelineFile } from '../../src/pipeline-file/spec.js';
import { Engine } from '../../src/pipelines/events.js';
import { OrdersPipeline } from '../../src/pipelines/orders.js';
import { TablePipeline } from '../../src/pipelines/table.js';
import { createPgPool, quoteIdent, type PgPool } from '../../src/postgres/pool.js';

const role = `trib_async_${randomBytes(4).toString('hex')}`;
const base = resolveConfig({ envFile: false });
let admin: PgPool;
let url: string;

beforeAll(async () => {
  admin = createPgPool(base.databaseUrl, { max: 1 });
  await admin.query(`CREATE ROLE ${quoteIdent(role)} LOGIN`);
  await admin.query(`ALTER ROLE ${quoteIdent(role)} SET synchronous_commit = off`);
  const u = new URL(base.databaseUrl);
  u.username = role;
  u.password = '';
  url = u.toString();
});

afterAll(async () => {
  await admin.query(`DROP ROLE IF EXISTS ${quoteIdent(role)}`).catch(() => {});
  await admin.end();
});

async function setting(pool: PgPool): Promise<string> {
  const r = await pool.query<{ synchronous_commit: string }>('SHOW synchronous_commit');
  return r.rows[0]!.synchronous_commit;
}

describe('synchronous_commit = on for every pipeline (issue 11, item 11)', () => {
  it('the role really turns it off for a plain session (the premise)', async () => {
    const pg = await import('pg');
    const client = new pg.default.Client({ connectionString: url });
    await client.connect();
    try {
      expect((await client.query('SHOW synchronous_commit')).rows[0].synchronous_commit).toBe('off');
    } finally {
      await client.end();
    }
  });

  it('createPgPool sessions commit synchronously on a role set to off, and keep the URL options', async () => {
    const pool = createPgPool(url, { max: 1 });
    try {
      expect(await setting(pool)).toBe('on');
    } finally {
      await pool.end();
    }
    // The URL's own startup options still reach the session.
    const withOptions = createPgPool(`${url}${url.includes('?') ? '&' : '?'}options=-c%20search_path%3Dtrib_x`, { max: 1 });
    try {
      expect((await withOptions.query('SHOW search_path')).rows[0].search_path).toBe('trib_x');
      expect(await setting(withOptions)).toBe('on');
    } finally {
      await withOptions.end();
    }
  });

  it("the events engine's, a pipeline file's and the orders pipeline's pools", async () => {
    const config = resolveConfig({ envFile: false, overrides: { databaseUrl: url, streamKey: `${role}:events`, group: 'g' } });
    const engine = new Engine(config, { migrate: false });
    const spec = parsePipelineFile(`
name: shape
source: { stream: ${role}:s }
sink:
  table: public.${role}
  key: [k]
  columns:
    k: { from: payload.k, type: text }
`);
    const table = new TablePipeline(spec, { redisUrl: config.redisUrl, databaseUrl: url, consumer: role });
    const orders = new OrdersPipeline({ redisUrl: config.redisUrl, databaseUrl: url, workers: 1 });
    const pools = [engine, table, orders].map((p) => (p as unknown as { pool: PgPool }).pool);
    try {
      for (const pool of pools) expect(await setting(pool)).toBe('on');
    } finally {
      for (const pool of pools) await pool.end().catch(() => {});
    }
  });
});

describe('a pool whose backends are terminated again and again', () => {
  it('never lets a client error escape as an uncaught exception (the window between connecting and the SET included)', async () => {
    const app = `trib_storm_${randomBytes(3).toString('hex')}`;
    const pool = createPgPool(base.databaseUrl, { max: 4, applicationName: app });
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    let stop = false;
    let kills = 0;
    const killer = (async () => {
      while (!stop) {
        const r = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [app]);
        kills += r.rowCount ?? 0;
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    let ok = 0;
    let failed = 0;
    try {
      const until = Date.now() + 1500;
      while (Date.now() < until) {
        const results = await Promise.allSettled([1, 2, 3, 4].map(() => pool.query('SELECT 1')));
        for (const r of results) r.status === 'fulfilled' ? ok++ : failed++;
      }
    } finally {
      stop = true;
      await killer;
      await pool.end().catch(() => {});
      process.off('uncaughtException', onUncaught);
    }
    expect(kills, 'the storm reached the pool').toBeGreaterThan(10);
    expect(ok + failed).toBeGreaterThan(0);
    expect(uncaught).toEqual([]);
  });
});
