/**
 * Errors that are not outages (issue 11, item 5), on the shared Postgres: a permission
 * taken away, a read-only session (25006), a full disk (53100), a dropped or renamed
 * table. Each is named once with its code (not "postgres unavailable"), /readyz's probe
 * says not ready, the entries stay pending (nothing dead-lettered), and writing resumes
 * once it is fixed; a dropped events table is created again.
 *
 * The engine logs in as a role the test creates and owns its schema; the faults are made
 * on that role and table only (REVOKE, ALTER ROLE ... SET default_transaction_read_only,
 * a trigger raising SQLSTATE 53100), never on the server's configuration.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ServerName } from '../../src/core/contracts.js';
import { Engine } from '../../src/pipelines/events.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { Producer } from '../../src/producer/producer.js';
import { eventRows, pendingSummary } from '../helpers/child.js';
import { testEnvs, waitFor, type TestEnv } from '../helpers/env.js';

const envs = testEnvs({ batchSize: 100, batchTimeoutMs: 100, numWorkers: 2 });
const RETRY = { retry: { baseMs: 20, maxMs: 200 } };

interface Watch {
  down: Array<{ server: ServerName; code?: string; message: string }>;
  up: ServerName[];
  deadLetters: number;
  errors: Error[];
  recreated: string[];
}

let engine: Engine | undefined;
afterEach(async () => {
  await engine?.close({ force: true }).catch(() => {});
  engine = undefined;
});

/** A login role owning the test's schema, and an engine logged in as it. */
async function roleEngine(env: TestEnv, options: { migrate?: boolean } = {}): Promise<{ role: string; engine: Engine; w: Watch }> {
  const role = env.name;
  const r = quoteIdent(role);
  const db = decodeURIComponent(new URL(env.config.databaseUrl).pathname.slice(1));
  await env.pool.query(`CREATE ROLE ${r} LOGIN`);
  envs.defer(async () => {
    await env.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [role]).catch(() => {});
    await env.pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(env.config.pgSchema)} CASCADE`).catch(() => {});
    await env.pool.query(`DROP OWNED BY ${r}`).catch(() => {});
    await env.pool.query(`DROP ROLE IF EXISTS ${r}`).catch(() => {});
  });
  await env.pool.query(`GRANT CREATE ON DATABASE ${quoteIdent(db)} TO ${r}`);
  await env.pool.query(`CREATE SCHEMA ${quoteIdent(env.config.pgSchema)} AUTHORIZATION ${r}`);
  const url = new URL(env.config.databaseUrl);
  url.username = role;
  url.password = '';
  const e = new Engine({ ...env.config, databaseUrl: url.toString() }, { ...RETRY, migrate: options.migrate });
  engine = e;
  const w: Watch = { down: [], up: [], deadLetters: 0, errors: [], recreated: [] };
  e.on('serverDown', ({ server, error }) => w.down.push({ server, code: (error as { code?: string }).code, message: error.message }));
  e.on('serverUp', ({ server }) => w.up.push(server));
  e.on('deadLetter', () => w.deadLetters++);
  e.on('error', (err) => w.errors.push(err));
  e.on('tableRecreated', ({ table }) => w.recreated.push(table));
  return { role, engine: e, w };
}

async function produce(env: TestEnv, count: number, prefix: string): Promise<void> {
  const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
  try {
    await producer.produceBatch(Array.from({ length: count }, (_, i) => ({ type: 'fault_test', payload: { i }, eventId: `${prefix}-${i}` })));
  } finally {
    await producer.close();
  }
}

const downWith = (w: Watch, code: string) => async () => w.down.some((d) => d.server === 'postgres' && d.code === code);
const written = (env: TestEnv, n: number) => async () => (await eventRows(env)) === n && (await pendingSummary(env)).total === 0;

/** While the fault lasts: named once with its code, not ready, the entries pending, nothing dead-lettered. */
async function expectHeld(env: TestEnv, e: Engine, w: Watch, code: string, pending: number): Promise<void> {
  await waitFor(downWith(w, code), 10_000, `serverDown ${code}`);
  await waitFor(async () => (await pendingSummary(env)).total === pending, 5_000, `${pending} pending`);
  await new Promise((r) => setTimeout(r, 600)); // a few more failed attempts (backoff at most 200 ms)
  expect(w.down.filter((d) => d.code === code)).toHaveLength(1);
  expect(w.down.find((d) => d.code === code)!.message).not.toMatch(/unavailable/i);
  const probe = await e.probe();
  expect(probe.ready).toBe(false);
  expect(probe.postgres.ok).toBe(false);
  expect(probe.postgres.error).toContain(code);
  expect((await pendingSummary(env)).total).toBe(pending);
  expect(w.deadLetters).toBe(0);
  expect(w.errors).toEqual([]);
  expect(e.running).toBe(true);
}

async function expectResumed(env: TestEnv, e: Engine, w: Watch, total: number): Promise<void> {
  await waitFor(written(env, total), 10_000, `${total} rows and nothing pending`);
  await waitFor(async () => (await e.probe()).ready, 5_000, 'ready again');
  expect(w.up).toContain('postgres');
  expect(w.deadLetters).toBe(0);
}

describe('Postgres faults that are not outages: held, named, not ready, resumed when fixed', () => {
  it('a permission taken away (42501): TRIB_ERR_POSTGRES_PERMISSION once, not ready, entries pending; GRANT resumes', async () => {
    const env = await envs.setup('pgfault_perm', {}, { migrate: false });
    const { role, engine: e, w } = await roleEngine(env);
    await e.start();
    await produce(env, 20, 'a');
    await waitFor(written(env, 20), 10_000, 'first 20 rows');
    const table = `${quoteIdent(env.config.pgSchema)}.events`;
    await env.pool.query(`REVOKE INSERT ON ${table} FROM ${quoteIdent(role)}`);
    await produce(env, 30, 'b');
    await expectHeld(env, e, w, 'TRIB_ERR_POSTGRES_PERMISSION', 30);
    await env.pool.query(`GRANT INSERT ON ${table} TO ${quoteIdent(role)}`);
    await expectResumed(env, e, w, 50);
  });

  it('a read-only session (25006): after the reconnect the cause is named TRIB_ERR_POSTGRES_READ_ONLY; writable again resumes', async () => {
    const env = await envs.setup('pgfault_ro', {}, { migrate: false });
    const { role, engine: e, w } = await roleEngine(env);
    await e.start();
    await produce(env, 10, 'a');
    await waitFor(written(env, 10), 10_000, 'first 10 rows');
    const terminate = () => env.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [role]);
    await env.pool.query(`ALTER ROLE ${quoteIdent(role)} SET default_transaction_read_only = on`);
    await terminate(); // new sessions are read-only
    await produce(env, 25, 'b');
    await expectHeld(env, e, w, 'TRIB_ERR_POSTGRES_READ_ONLY', 25);
    await env.pool.query(`ALTER ROLE ${quoteIdent(role)} RESET default_transaction_read_only`);
    await terminate();
    await expectResumed(env, e, w, 35);
  });

  it('a full disk (53100, raised by a trigger on the test table): TRIB_ERR_POSTGRES_DISK_FULL; space back resumes', async () => {
    const env = await envs.setup('pgfault_disk', {}, { migrate: false });
    const { engine: e, w } = await roleEngine(env);
    await e.start();
    await produce(env, 10, 'a');
    await waitFor(written(env, 10), 10_000, 'first 10 rows');
    const s = quoteIdent(env.config.pgSchema);
    await env.pool.query(
      `CREATE FUNCTION ${s}.no_space() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100'; END $$`,
    );
    await env.pool.query(`CREATE TRIGGER no_space BEFORE INSERT ON ${s}.events FOR EACH ROW EXECUTE FUNCTION ${s}.no_space()`);
    await produce(env, 15, 'b');
    await expectHeld(env, e, w, 'TRIB_ERR_POSTGRES_DISK_FULL', 15);
    await env.pool.query(`DROP TRIGGER no_space ON ${s}.events`);
    await expectResumed(env, e, w, 25);
  });

  it('a renamed events table with migrations off (42P01): TRIB_ERR_POSTGRES_TABLE_MISSING, held, not recreated; renamed back resumes', async () => {
    const env = await envs.setup('pgfault_rename', {}, { migrate: false });
    const { engine: e, w } = await roleEngine(env, { migrate: false }); // its role: env.name
    const { migrate } = await import('../../src/postgres/migrate.js');
    await migrate(env.pool, env.config.pgSchema);
    const s = quoteIdent(env.config.pgSchema);
    await env.pool.query(`GRANT ALL ON ALL TABLES IN SCHEMA ${s} TO ${quoteIdent(env.name)}`);
    await env.pool.query(`GRANT ALL ON ALL SEQUENCES IN SCHEMA ${s} TO ${quoteIdent(env.name)}`);
    await e.start();
    await env.pool.query(`ALTER TABLE ${s}.events RENAME TO events_moved`);
    await produce(env, 12, 'a');
    await expectHeld(env, e, w, 'TRIB_ERR_POSTGRES_TABLE_MISSING', 12);
    expect(w.recreated).toEqual([]);
    expect((await env.pool.query(`SELECT to_regclass($1) AS t`, [`${s}.events`])).rows[0].t).toBeNull();
    await env.pool.query(`ALTER TABLE ${s}.events_moved RENAME TO events`);
    await expectResumed(env, e, w, 12);
  });

  it('a dropped events table (migrations on): named once, created again (tableRecreated), and every held entry written', async () => {
    const env = await envs.setup('pgfault_drop', {}, { migrate: false });
    const { engine: e, w } = await roleEngine(env);
    await e.start();
    await produce(env, 10, 'a');
    await waitFor(written(env, 10), 10_000, 'first 10 rows');
    const s = quoteIdent(env.config.pgSchema);
    await env.pool.query(`DROP TABLE ${s}.events`);
    await produce(env, 40, 'b');
    await waitFor(written(env, 40), 10_000, 'the 40 events produced after the drop, in the new table');
    expect(w.down.filter((d) => d.code === 'TRIB_ERR_POSTGRES_TABLE_MISSING')).toHaveLength(1);
    expect(w.recreated).toEqual(['events']);
    // Created as the migrations make it: event_id collated "C", the ingested_at index.
    const col = await env.pool.query(`SELECT collation_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'events' AND column_name = 'event_id'`, [env.config.pgSchema]);
    expect(col.rows[0].collation_name).toBe('C');
    const idx = await env.pool.query(`SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = $1 AND indexname = 'events_ingested_at_idx'`, [env.config.pgSchema]);
    expect(idx.rows[0].n).toBe(1);
    expect(w.deadLetters).toBe(0);
    expect((await e.probe()).ready).toBe(true);
  });
});
