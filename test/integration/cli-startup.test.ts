/**
 * The first hour (issue 10): a wrong setting fails fast, an outage at start is waited
 * out, every command takes the same server flags, and processes behave as services
 * expect. Each test drives the built CLI (`node dist/cli/main.js`, or `./run.sh`) as a
 * user does and checks the exit code, the time it took and the lines a user reads.
 *
 * Passwords are put in the URLs on purpose: no output may contain them.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/index.js';
import { Engine } from '../../src/pipelines/events.js';
import { quoteIdent, withDefaultUser } from '../../src/postgres/pool.js';
import { assertBuilt, CLI, EngineProcess, freePort, killChildren, REPO, startEngine } from '../helpers/child.js';
import { codeOf, createTestEnv, testEnvs, waitFor } from '../helpers/env.js';

const envs = testEnvs();
afterEach(async () => killChildren());

/** Runs the CLI to its exit (SIGKILL after `hardLimitMs`): exit code, output, and how long it took. */
function cli(args: string[], env: NodeJS.ProcessEnv, hardLimitMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  assertBuilt();
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO, env: { ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), hardLimitMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** The URL with another database / user / password (the test's own servers otherwise). */
function withParts(url: string, parts: { database?: string; user?: string; password?: string; port?: number }): string {
  const u = new URL(withDefaultUser(url));
  if (parts.database !== undefined) u.pathname = `/${parts.database}`;
  if (parts.user !== undefined) u.username = parts.user;
  if (parts.password !== undefined) u.password = parts.password;
  if (parts.port !== undefined) u.port = String(parts.port);
  return u.toString();
}

function expectCodedExit(r: { code: number | null; stderr: string; stdout: string; ms: number }, code: string, withinMs: number): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.ms, r.stderr).toBeLessThan(withinMs);
  expect(r.stderr).toContain(`tributary: ${code}: `);
  expect(r.stderr + r.stdout).not.toContain('s3cret');
  expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
}

/** A temporary TRIBUTARY_HOME: `up` and `demo` record their servers there, not in the repository's. */
function tempHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'tributary-startup-'));
  envs.defer(() => rmSync(home, { recursive: true, force: true }));
  return home;
}

describe('a wrong setting is a coded error within seconds, never waited for', () => {
  it('start: a database that does not exist, a role that does not exist, Redis credentials refused → exit 2 with the code and a hint', async () => {
    const env = await envs.setup('wrong_setting', {}, { migrate: false });
    const pgUrl = env.config.databaseUrl;
    const [noDatabase, noRole, redisRefused] = await Promise.all([
      cli(['start', '--database-url', withParts(pgUrl, { database: `${env.name}_missing`, password: 's3cret' })], env.childEnv),
      cli(['start', '--database-url', withParts(pgUrl, { user: `${env.name}_nobody`, password: 's3cret' })], env.childEnv),
      // A user Redis does not know (the server's own default user has no password).
      cli(['start', '--redis-url', `redis://${env.name}:s3cret@${new URL(env.config.redisUrl).host}`], env.childEnv),
    ]);
    expectCodedExit(noDatabase, 'TRIB_ERR_POSTGRES_DATABASE_MISSING', 10_000);
    expect(noDatabase.stderr).toContain(`database "${env.name}_missing" does not exist on postgres://`);
    expect(noDatabase.stderr).toContain(':***@');
    expect(noDatabase.stderr).toContain('`tributary up` creates it');
    expect(noDatabase.stderr).not.toContain('retrying'); // no "unavailable; retrying" line first

    expectCodedExit(noRole, 'TRIB_ERR_POSTGRES_AUTH', 10_000);
    expect(noRole.stderr).toContain(`role "${env.name}_nobody" does not exist [SQLSTATE 28000]`);
    expect(noRole.stderr).toContain('check the user and password in DATABASE_URL');

    expectCodedExit(redisRefused, 'TRIB_ERR_REDIS_AUTH', 10_000);
    expect(redisRefused.stderr).toContain(`Redis at redis://${env.name}:***@`);
    expect(redisRefused.stderr).toContain('WRONGPASS');
    expect(redisRefused.stderr).not.toContain('retrying');
  });

  it('start: every refusal Redis gives a login (NOAUTH, WRONGPASS, a password for a server without one) → exit 2, TRIB_ERR_REDIS_AUTH', async () => {
    const env = await envs.setup('redis_refusals', {}, { migrate: false });
    const port = await freePort();
    // A private redis-server that requires a password (the shared one has none).
    const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', 'right-pw'], { stdio: 'ignore' });
    envs.defer(() => server.kill('SIGKILL'));
    const pong = () => {
      try {
        return execFileSync('redis-cli', ['-p', String(port), '-a', 'right-pw', '--no-auth-warning', 'PING'], { encoding: 'utf8' }).trim() === 'PONG';
      } catch {
        return false; // not listening yet
      }
    };
    await waitFor(async () => pong(), 5000, 'the private redis-server');
    const runs = await Promise.all([
      cli(['start', '--redis-url', `redis://127.0.0.1:${port}`], env.childEnv),
      cli(['start', '--redis-url', `redis://:s3cret@127.0.0.1:${port}`], env.childEnv),
      cli(['start', '--redis-url', `redis://:s3cret@${new URL(env.config.redisUrl).host}`], env.childEnv),
    ]);
    const [noAuth, wrongPassword, noPasswordConfigured] = runs;
    for (const r of runs) expectCodedExit(r, 'TRIB_ERR_REDIS_AUTH', 10_000);
    expect(noAuth.stderr).toContain('NOAUTH');
    expect(wrongPassword.stderr).toContain('WRONGPASS');
    expect(wrongPassword.stderr).toContain(`redis://:***@127.0.0.1:${port}`);
    expect(noPasswordConfigured.stderr).toContain('without any password configured');
  });

  it('demo and orders process: a role that does not exist → exit 2 within seconds', async () => {
    const env = await envs.setup('wrong_role_demo', {}, { migrate: false });
    const url = withParts(env.config.databaseUrl, { user: `${env.name}_nobody`, password: 's3cret' });
    const home = tempHome();
    const [demo, orders] = await Promise.all([
      cli(['demo', '--count', '10', '--database-url', url], { ...env.childEnv, TRIBUTARY_HOME: home }),
      cli(['orders', 'process', '--database-url', url, '--orders-prefix', env.name, '--orders-schema', env.name], env.childEnv),
    ]);
    expectCodedExit(demo, 'TRIB_ERR_POSTGRES_AUTH', 10_000);
    expect(demo.stderr).toContain('[SQLSTATE 28000]');
    expectCodedExit(orders, 'TRIB_ERR_POSTGRES_AUTH', 10_000);
  });

  it('the library: Engine.start() rejects with the coded error instead of retrying forever', async () => {
    const env = await envs.setup('wrong_setting_lib', {}, { migrate: false });
    const config = resolveConfig({ envFile: false, overrides: { ...env.config, databaseUrl: withParts(env.config.databaseUrl, { database: `${env.name}_missing` }) } });
    const engine = new Engine(config);
    envs.defer(() => engine.close({ force: true }));
    const downs: string[] = [];
    engine.on('serverDown', ({ server }) => downs.push(server));
    const started = Date.now();
    expect(await codeOf(engine.start())).toMatch(/^TRIB_ERR_POSTGRES_DATABASE_MISSING: database "t_wrong_setting_lib_\w+_missing" does not exist/);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(downs).toEqual([]); // a wrong setting is not reported as an outage
  });
});

describe('the same refusals from every other way in', () => {
  it('one-shot commands, orders process (both modes) and up: refused credentials are TRIB_ERR_*_AUTH, a bad URL flag TRIB_ERR_CONFIG_INVALID', async () => {
    const env = await envs.setup('refusals_elsewhere', {}, { migrate: false });
    const badRedis = `redis://${env.name}:s3cret@${new URL(env.config.redisUrl).host}`;
    const badPostgres = withParts(env.config.databaseUrl, { user: `${env.name}_nobody`, password: 's3cret' });
    const orders = ['--orders-prefix', env.name, '--orders-schema', env.name];
    const home = tempHome();
    const upEnv = { ...env.childEnv, REDIS_URL: '', DATABASE_URL: '', TRIBUTARY_HOME: home };
    const [produce, dlq, untilEmptyRedis, untilEmptyPostgres, ordersRedis, upRedis, upBadFlag] = await Promise.all([
      cli(['produce', '10', '--redis-url', badRedis], env.childEnv),
      cli(['dlq', 'list', '--redis-url', badRedis], env.childEnv),
      cli(['orders', 'process', '--until-empty', '--redis-url', badRedis, ...orders], env.childEnv),
      cli(['orders', 'process', '--until-empty', '--database-url', badPostgres, ...orders], env.childEnv),
      cli(['orders', 'process', '--redis-url', badRedis, ...orders], env.childEnv),
      cli(['up', '--redis-url', badRedis, '--database-url', env.config.databaseUrl], upEnv),
      cli(['up', '--database-url', 'http://127.0.0.1/x'], upEnv),
    ]);
    for (const r of [produce, dlq, untilEmptyRedis, ordersRedis, upRedis]) expectCodedExit(r, 'TRIB_ERR_REDIS_AUTH', 10_000);
    expectCodedExit(untilEmptyPostgres, 'TRIB_ERR_POSTGRES_AUTH', 10_000);
    expectCodedExit(upBadFlag, 'TRIB_ERR_CONFIG_INVALID', 10_000);
    expect(upBadFlag.stderr).toContain('DATABASE_URL (--database-url)');
  });

  it('migrate: a connection lost mid-migration is a coded error too (exit 2, no stack trace)', async () => {
    const env = await envs.setup('migrate_lost', {}, { migrate: false });
    const app = `tributary:migrate-lost-${env.name}`.slice(0, 63);
    // Hold the schema's migration lock, so the CLI's migration waits; then end its connection.
    const holder = await env.pool.connect();
    envs.defer(() => holder.release());
    await holder.query('SELECT pg_advisory_lock(hashtext($1))', [`tributary:migrate:${env.config.pgSchema}`]);
    const url = new URL(withDefaultUser(env.config.databaseUrl));
    url.searchParams.set('application_name', app);
    const run = cli(['migrate', '--database-url', url.toString()], env.childEnv);
    const waiting = async () =>
      (await env.pool.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%' AND datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND application_name = $1`, [app])).rows;
    await waitFor(async () => (await waiting()).length > 0, 10_000, 'migrate waiting on the lock');
    for (const { pid } of await waiting()) await env.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    const r = await run;
    expectCodedExit(r, 'TRIB_ERR_POSTGRES_UNAVAILABLE', 15_000);
    expect(r.stderr).toContain('lost the connection to postgres://');
  });
});

describe('an outage at start is waited out by long-running commands', () => {
  it('start and orders process say every 10 s that they still wait for Postgres or Redis (URL without password), and stop cleanly on SIGTERM', async () => {
    const env = await envs.setup('outage_at_start', {}, { migrate: false });
    const port = await freePort();
    const url = withParts(env.config.databaseUrl, { port, password: 's3cret' });
    const shown = withParts(env.config.databaseUrl, { port, password: '***' });
    const childEnv = { ...env.childEnv, DATABASE_URL: url, NO_COLOR: '1' };
    const deadRedis = `redis://admin:s3cret@127.0.0.1:${await freePort()}`;
    const start = new EngineProcess(childEnv, 'start', ['start']);
    const orders = new EngineProcess(childEnv, 'orders', ['orders', 'process', '--orders-prefix', env.name, '--orders-schema', env.name]);
    const noRedis = new EngineProcess({ ...env.childEnv, REDIS_URL: deadRedis, NO_COLOR: '1' }, 'no-redis', ['start']);
    const redisShown = deadRedis.replace('s3cret', '***');
    const says = async (p: EngineProcess, server: string, url: string) => {
      await p.waitForLog(`${server} at ${url} does not answer`, 10_000);
      await p.waitForLog(`still waiting for ${server} at ${url}, 10 s`, 14_000);
      expect(p.alive).toBe(true);
    };
    await Promise.all([says(start, 'postgres', shown), says(orders, 'postgres', shown), says(noRedis, 'redis', redisShown)]);
    expect(noRedis.output).not.toContain('s3cret');
    // One signal stops each of them, whichever server it was waiting for (start waiting
    // for Redis hung after its first signal, on the maxmemory-policy check).
    for (const p of [start, orders, noRedis]) p.kill('SIGTERM');
    for (const p of [start, noRedis]) expect((await p.waitExit(5000))?.code, `${p.label}: ${p.output}`).toBe(0);
    // orders process installs its handlers once started: while waiting, the signal ends it the default way, at once.
    expect(await orders.waitExit(5000), orders.output).toBeDefined();
    for (const p of [start, orders]) expect(p.output).not.toContain('s3cret');
  });
});

describe('migrate', () => {
  it('an unreachable server or a missing database → coded error, exit 2, no stack trace', async () => {
    const env = await envs.setup('migrate_wrong', {}, { migrate: false });
    const port = await freePort();
    const [unreachable, missing] = await Promise.all([
      cli(['migrate', '--database-url', withParts(env.config.databaseUrl, { port, password: 's3cret' })], env.childEnv),
      cli(['migrate', '--database-url', withParts(env.config.databaseUrl, { database: `${env.name}_missing`, password: 's3cret' })], env.childEnv),
    ]);
    expectCodedExit(unreachable, 'TRIB_ERR_POSTGRES_UNAVAILABLE', 10_000);
    expect(unreachable.stderr).toContain(`127.0.0.1:${port}`);
    expect(unreachable.stderr).toContain('ECONNREFUSED');
    expectCodedExit(missing, 'TRIB_ERR_POSTGRES_DATABASE_MISSING', 10_000);
  });
});

describe('up and demo take the server flags like every command', () => {
  it('demo --database-url X sets up X (creating its database), runs there, and up --database-url / --redis-url use the given servers', async () => {
    const env = await envs.setup('demo_flags', {}, { migrate: false });
    const database = `${env.name}_db`;
    const admin = new pg.Client({ connectionString: withDefaultUser(env.config.databaseUrl) });
    await admin.connect();
    envs.defer(async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`).catch(() => {});
      await admin.end();
    });
    const url = withParts(env.config.databaseUrl, { database, password: 's3cret' });
    const home = tempHome();
    const flags = ['--database-url', url, '--redis-url', env.config.redisUrl];
    const demo = await cli(['demo', '--count', '50', ...flags], { ...env.childEnv, DATABASE_URL: '', TRIBUTARY_HOME: home });
    expect(demo.code, demo.stderr + demo.stdout).toBe(0);
    expect(demo.stdout).toContain(`postgres: created database ${database}`);
    expect(demo.stdout).toMatch(new RegExp(`postgres: using postgres://[^ ]*:\\*\\*\\*@[^ ]*/${database} \\(--database-url`));
    expect(demo.stdout).toContain('Events written:     50');
    expect(demo.stdout + demo.stderr).not.toContain('s3cret');
    const rows = new pg.Client({ connectionString: withDefaultUser(withParts(env.config.databaseUrl, { database })) });
    await rows.connect();
    try {
      const n = await rows.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(env.config.pgSchema)}.events`);
      expect(Number(n.rows[0]!.n)).toBe(50);
    } finally {
      await rows.end();
    }
    // The default database never saw this test's schema: set-up and engine both used X.
    const elsewhere = await env.pool.query(`SELECT 1 FROM information_schema.schemata WHERE schema_name = $1`, [env.config.pgSchema]);
    expect(elsewhere.rowCount).toBe(0);

    await admin.query(`DROP DATABASE ${quoteIdent(database)} WITH (FORCE)`);
    const up = await cli(['up', ...flags], { ...env.childEnv, REDIS_URL: '', DATABASE_URL: '', TRIBUTARY_HOME: home });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toContain(`postgres: created database ${database}`);
    expect(up.stdout).toContain('(--redis-url, Redis ');
    expect(up.stdout).not.toContain('s3cret');
    const state = JSON.parse(readFileSync(join(home, 'services.json'), 'utf8')) as { postgres: { url: string } };
    expect(state.postgres.url).toBe(url);
  });
});

describe('benches are one-shot commands like the others', () => {
  it('bench and bench drain with an unreachable Redis: coded error, exit 2, within 15 s (they hung without a line)', async () => {
    const env = await envs.setup('bench_unreachable', {}, { migrate: false });
    const dead = `redis://admin:s3cret@127.0.0.1:${await freePort()}`;
    const runs = await Promise.all([cli(['bench', '10', '1', '--redis-url', dead], env.childEnv), cli(['bench', 'drain', '--count', '1', '--redis-url', dead], env.childEnv)]);
    for (const r of runs) {
      expectCodedExit(r, 'TRIB_ERR_REDIS_UNAVAILABLE', 15_000);
      expect(r.stderr).toContain('redis://admin:***@127.0.0.1:');
    }
  });
});

describe('processes behave as services expect', () => {
  it('./run.sh start execs the CLI: SIGTERM to the PID run.sh started stops the engine gracefully, nothing left behind', async () => {
    // run.sh rebuilds when src is newer than dist: never in the middle of a suite that uses dist.
    const stale = execFileSync('find', ['src', 'package.json', 'tsconfig.json', '-newer', CLI, '-print', '-quit'], { cwd: REPO, encoding: 'utf8' }).trim();
    if (stale) throw new Error(`dist is older than ${stale}: run \`npm run build\` first`);
    const env = await createTestEnv('run_sh_exec');
    envs.defer(() => env.cleanup());
    const child = spawn('bash', ['run.sh', 'start'], { cwd: REPO, env: { ...env.childEnv, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    envs.defer(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    await waitFor(async () => out.includes('engine started'), 15_000, `engine started:\n${out}`);
    // The PID run.sh was started as is now the CLI itself, not a shell waiting for it.
    expect(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8')).toContain('dist/cli/main.js');
    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000))]);
    expect(code, out).toBe(0);
    expect(out).toContain('SIGTERM: stopping');
    expect(out).toContain('stopped: read');
    // No engine of this test's stream still running (re-parented to PID 1).
    const left = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes('dist/cli/main.js start') && l.includes(env.name));
    expect(left).toEqual([]);
  });

  it('a second Ctrl-C just after a clean stop (nothing in flight) keeps exit 0 and warns about nothing (start, orders process)', async () => {
    const env = await envs.setup('double_signal');
    const schema = `${env.name}_orders`;
    envs.defer(async () => {
      await env.pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
      const keys = await env.redis.keys(`${env.name}:orders:*`);
      if (keys.length > 0) await env.redis.del(keys);
    });
    const engine = await startEngine(env, {}, 'double');
    const orders = new EngineProcess({ ...env.childEnv, NO_COLOR: '1' }, 'double-orders', ['orders', 'process', '--orders-prefix', `${env.name}:orders`, '--orders-schema', schema]);
    await orders.waitForLog('orders pipeline started', 15_000);
    for (const p of [engine, orders]) {
      p.kill('SIGINT');
      // Keep signalling until it has exited: some land while it stops, some after it stopped.
      const pelt = setInterval(() => p.kill('SIGINT'), 15);
      try {
        const exit = await p.waitExit(8000);
        expect(exit, p.output).toBeDefined();
        expect(exit!.code, p.output).toBe(0);
        expect(exit!.signal).toBeNull();
      } finally {
        clearInterval(pelt);
      }
      expect(p.output).not.toContain('unacknowledged');
      expect(p.output).not.toContain('forcing exit');
    }
  });
});
