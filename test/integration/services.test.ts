/**
 * `tributary up` / `down` against real servers. The system Redis (6379) and Postgres
 * (5432) are used read-only except for one uniquely named database, dropped after; the
 * project-local servers are started once, in a temporary TRIBUTARY_HOME, and stopped by
 * PID in afterAll whatever happens.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createClient } from '@redis/client';
import { destroyQuietly, type RedisConnection } from '../../src/redis/client.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readServicesState } from '../../src/config/index.js';
import { assertBuilt, CLI, freePort, REPO } from '../helpers/child.js';
import { isTributaryError } from '../../src/errors.js';
import { ensureDatabase, servicesDown, servicesUp, type ServicesUpResult } from '../../src/services/index.js';
import { withDefaultUser } from '../../src/postgres/pool.js';

const SYSTEM_REDIS = 'redis://127.0.0.1:6379';
const SYSTEM_POSTGRES = 'postgres://127.0.0.1:5432/postgres';


function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

async function withPg<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: withDefaultUser(url) });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function withRedis<T>(url: string, fn: (client: RedisConnection) => Promise<T>): Promise<T> {
  const client = createClient({ url, socket: { reconnectStrategy: false } });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    destroyQuietly(client);
  }
}

/** The system servers' identities, to show `up`/`down` left them alone. */
async function systemServers(): Promise<{ redisPid: string; postgresStart: string }> {
  const info = await withRedis(SYSTEM_REDIS, (c) => c.info('server'));
  const postgresStart = await withPg(SYSTEM_POSTGRES, async (c) =>
    String((await c.query('SELECT pg_postmaster_start_time()::text AS t')).rows[0].t),
  );
  return { redisPid: /process_id:(\d+)/.exec(info)?.[1] ?? '', postgresStart };
}

describe('servicesUp with the default servers reachable', () => {
  const home = mkdtempSync(join(tmpdir(), 'tributary-svc-default-'));
  const database = `tributary_svc_${process.pid}_${Date.now()}`;

  afterAll(async () => {
    try {
      await withPg(SYSTEM_POSTGRES, (c) => c.query(`DROP DATABASE IF EXISTS "${database}"`));
    } finally {
      await servicesDown({ env: { TRIBUTARY_HOME: home } }); // in case it wrongly started one
      rmSync(home, { recursive: true, force: true });
    }
  }, 60_000);

  it('uses them, starts nothing and creates the database', async () => {
    const progress: string[] = [];
    const databaseUrl = `postgres://127.0.0.1:5432/${database}`;
    const result = await servicesUp({
      env: { TRIBUTARY_HOME: home },
      defaults: { redisUrl: SYSTEM_REDIS, databaseUrl },
      onProgress: (m) => progress.push(m),
    });

    expect(result.redis).toMatchObject({ url: SYSTEM_REDIS, managed: false, source: 'default' });
    expect(result.postgres).toMatchObject({ url: databaseUrl, managed: false, source: 'default' });
    expect(result.redis.pid).toBeUndefined();
    expect(progress).toContain(`redis: using ${SYSTEM_REDIS} (default, Redis ${result.redis.version})`);
    expect(progress.some((m) => m.startsWith(`postgres: created database ${database}`))).toBe(true);

    const exists = await withPg(SYSTEM_POSTGRES, async (c) =>
      (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount,
    );
    expect(exists).toBe(1);
    expect(existsSync(join(home, 'redis'))).toBe(false);
    expect(existsSync(join(home, 'postgres'))).toBe(false);
    expect(readServicesState({ TRIBUTARY_HOME: home })).toEqual({
      redis: { url: SYSTEM_REDIS, managed: false },
      postgres: { url: databaseUrl, managed: false },
    });

    // Already there: nothing to create. And `down` has nothing of ours to stop.
    expect(await ensureDatabase(databaseUrl)).toBe(false);
    const before = await systemServers();
    expect(await servicesDown({ env: { TRIBUTARY_HOME: home } })).toEqual({ stopped: [] });
    expect(await systemServers()).toEqual(before);
  }, 30_000);
});

describe('servicesUp with the defaults unreachable', () => {
  const home = mkdtempSync(join(tmpdir(), 'tributary-svc-local-'));
  const env = { TRIBUTARY_HOME: home };
  const pids = new Set<number>();
  const progress: string[] = [];
  let defaults: { redisUrl: string; databaseUrl: string };
  let first: ServicesUpResult;
  let system: { redisPid: string; postgresStart: string };

  beforeAll(async () => {
    system = await systemServers();
    defaults = {
      redisUrl: `redis://127.0.0.1:${await freePort()}`,
      databaseUrl: `postgres://127.0.0.1:${await freePort()}/tributary`,
    };
    try {
      first = await servicesUp({ env, defaults, onProgress: (m) => progress.push(m) });
    } finally {
      // Whatever got started, remember its PID so afterAll can stop it.
      rememberPids();
    }
  }, 180_000);

  /** The PIDs of whatever got started: from the state file and from the pidfiles. */
  function rememberPids(): void {
    const state = readServicesState(env);
    for (const pid of [state.redis?.pid, state.postgres?.pid]) if (pid) pids.add(pid);
    for (const file of [join(home, 'redis', 'redis.pid'), join(home, 'postgres', 'postmaster.pid')]) {
      const pid = existsSync(file) ? Number.parseInt(readFileSync(file, 'utf8'), 10) : NaN;
      if (pid > 0) pids.add(pid);
    }
  }

  afterAll(async () => {
    rememberPids();
    try {
      await servicesDown({ env });
    } finally {
      for (const pid of pids) {
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      }
      rmSync(home, { recursive: true, force: true });
    }
  }, 60_000);

  it('starts a project-local Redis with AOF on', async () => {
    expect(first.redis).toMatchObject({ managed: true, source: 'local', dataDir: join(home, 'redis') });
    expect(first.redis.url).toBe(`redis://127.0.0.1:${first.redis.port}`);
    expect(first.redis.port).not.toBe(6379);
    expect(alive(first.redis.pid!)).toBe(true);
    const [appendonly, pid] = await withRedis(first.redis.url, async (c) => [
      await c.configGet('appendonly'),
      /process_id:(\d+)/.exec(await c.info('server'))?.[1],
    ]);
    expect(appendonly).toEqual({ appendonly: 'yes' });
    expect(Number(pid)).toBe(first.redis.pid);
    expect(existsSync(join(home, 'redis', 'redis.pid'))).toBe(true);
    expect(progress.some((m) => m.startsWith('redis: started project-local Redis'))).toBe(true);
  });

  it('starts a project-local PostgreSQL 18 with the tributary database', async () => {
    expect(first.postgres).toMatchObject({ managed: true, source: 'local', dataDir: join(home, 'postgres') });
    expect(first.postgres.port).not.toBe(5432);
    expect(new URL(first.postgres.url).pathname).toBe('/tributary');
    expect(alive(first.postgres.pid!)).toBe(true);
    const version = await withPg(first.postgres.url, async (c) =>
      String((await c.query('SHOW server_version')).rows[0].server_version),
    );
    expect(version).toMatch(/^18\./);
    expect(first.postgres.version).toBe(version);
    expect(
      progress.some((m) => m.startsWith(`postgres: started project-local PostgreSQL ${version} on 127.0.0.1:${first.postgres.port}`)),
    ).toBe(true);
    // The password stays out of progress messages.
    const password = decodeURIComponent(new URL(first.postgres.url).password);
    expect(password.length).toBeGreaterThan(0);
    expect(progress.join('\n')).not.toContain(password);
  });

  it('records the servers in the state file', () => {
    expect(readServicesState(env)).toEqual({
      redis: { url: first.redis.url, managed: true, pid: first.redis.pid, dataDir: first.redis.dataDir, port: first.redis.port },
      postgres: {
        url: first.postgres.url,
        managed: true,
        pid: first.postgres.pid,
        dataDir: first.postgres.dataDir,
        port: first.postgres.port,
      },
    });
  });

  it('reuses them on a second up', async () => {
    const again: string[] = [];
    const second = await servicesUp({ env, defaults, onProgress: (m) => again.push(m) });
    expect(second).toEqual(first);
    expect(again.some((m) => m.startsWith('redis: reusing project-local Redis'))).toBe(true);
    expect(again.some((m) => m.startsWith('postgres: reusing project-local PostgreSQL'))).toBe(true);
  }, 60_000);

  it('a wrong password (28P01, this server checks passwords) is a coded error at once: start and migrate exit 2, up refuses it; no password printed', async () => {
    assertBuilt();
    const wrong = new URL(first.postgres.url);
    wrong.password = 's3cret-wrong';
    const key = `t_svc_wrongpw_${process.pid}`;
    const cliEnv = { ...process.env, NO_COLOR: '1', DATABASE_URL: wrong.toString(), REDIS_URL: SYSTEM_REDIS, STREAM_KEY: key, PG_SCHEMA: key };
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string; ms: number }>((resolve) => {
        const started = Date.now();
        execFile(process.execPath, [CLI, ...args], { cwd: REPO, env: cliEnv, timeout: 20_000 }, (err, _stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr, ms: Date.now() - started }),
        );
      });
    try {
      const [start, migrate] = await Promise.all([run(['start']), run(['migrate'])]);
      for (const r of [start, migrate]) {
        expect(r.code, r.stderr).toBe(2);
        expect(r.ms).toBeLessThan(10_000);
        expect(r.stderr).toContain('TRIB_ERR_POSTGRES_AUTH: Postgres at postgres://');
        expect(r.stderr).toContain('[SQLSTATE 28P01]');
        expect(r.stderr).toContain(':***@127.0.0.1:');
        expect(r.stderr).not.toContain('s3cret');
        expect(r.stderr).not.toContain(decodeURIComponent(new URL(first.postgres.url).password));
      }
      const other = mkdtempSync(join(tmpdir(), 'tributary-svc-wrongpw-'));
      try {
        const err = await servicesUp({ env: { TRIBUTARY_HOME: other, REDIS_URL: SYSTEM_REDIS, DATABASE_URL: wrong.toString() } }).catch((e: unknown) => e);
        expect(isTributaryError(err, 'TRIB_ERR_POSTGRES_AUTH'), String(err)).toBe(true);
        expect((err as Error).message).not.toContain('s3cret');
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
    } finally {
      await withRedis(SYSTEM_REDIS, (c) => c.del(key));
    }
  }, 30_000);

  it('down stops both by PID and leaves the system servers alone', async () => {
    const messages: string[] = [];
    const result = await servicesDown({ env, onProgress: (m) => messages.push(m) });
    expect(result.stopped.sort()).toEqual(['postgres', 'redis']);
    expect(alive(first.redis.pid!)).toBe(false);
    expect(alive(first.postgres.pid!)).toBe(false);
    expect(readServicesState(env)).toEqual({});
    expect(await systemServers()).toEqual(system);
    // Nothing left to stop.
    expect(await servicesDown({ env })).toEqual({ stopped: [] });
  }, 60_000);
});

describe('servicesUp with a given URL that does not answer', () => {
  const home = mkdtempSync(join(tmpdir(), 'tributary-svc-given-'));
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it('fails fast with a clear error for REDIS_URL and starts nothing', async () => {
    const redisUrl = `redis://127.0.0.1:${await freePort()}`;
    const env = { TRIBUTARY_HOME: home, REDIS_URL: redisUrl, DATABASE_URL: `postgres://127.0.0.1:${await freePort()}/x` };
    const started = Date.now();
    const err = await servicesUp({ env }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(isTributaryError(err, 'TRIB_ERR_REDIS_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toContain(`REDIS_URL is ${redisUrl} but it does not answer`);
    expect(existsSync(join(home, 'redis'))).toBe(false);
    expect(existsSync(join(home, 'postgres'))).toBe(false);
    expect(readServicesState({ TRIBUTARY_HOME: home })).toEqual({});
  }, 30_000);

  it('fails with a clear error for DATABASE_URL and starts nothing', async () => {
    const databaseUrl = `postgres://user:secret@127.0.0.1:${await freePort()}/tributary`;
    const env = { TRIBUTARY_HOME: home, REDIS_URL: SYSTEM_REDIS, DATABASE_URL: databaseUrl };
    const err = await servicesUp({ env }).catch((e: unknown) => e);
    expect(isTributaryError(err, 'TRIB_ERR_POSTGRES_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toContain('DATABASE_URL is postgres://user:***@127.0.0.1:');
    expect((err as Error).message).not.toContain('secret');
    expect(existsSync(join(home, 'postgres'))).toBe(false);
    // The Redis given was reachable: it is recorded, as given, and nothing was started for it.
    expect(readServicesState({ TRIBUTARY_HOME: home })).toEqual({ redis: { url: SYSTEM_REDIS, managed: false } });
  }, 30_000);
});
