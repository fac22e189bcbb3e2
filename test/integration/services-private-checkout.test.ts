/**
 * Fresh machines (issue 11, item 13): a clone in a directory other users cannot enter
 * (root's home is 0700). As root, the project-local PostgreSQL runs as `postgres`, which
 * could neither execute the binaries under node_modules nor reach the data directory
 * under .tributary: `tributary up` (and so `./run.sh test`) failed. Now the data
 * directory (and, when needed, a copy of the binaries) goes under /var/lib/tributary.
 * Runs only as root (where the server changes user). Everything it starts is stopped by
 * PID; what it creates is removed.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { servicesDown, servicesUp } from '../../src/services/index.js';
import { localPostgresDataDir, reachableByOthers, reachablePostgresBinaries } from '../../src/services/postgres-local.js';
import { isRoot, run } from '../../src/services/process.js';
import { readServicesState } from '../../src/config/index.js';
import { freePort } from '../helpers/child.js';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const [u, g] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

describe.runIf(isRoot())('project-local PostgreSQL from a checkout other users cannot enter', () => {
  it('binaries under a 0700 directory are copied where the postgres user can execute them (symlinks kept)', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'trib-0700-bin-')); // 0700, like /root
    const shared = mkdtempSync(join(tmpdir(), 'trib-shared-'));
    cleanups.push(() => rmSync(parent, { recursive: true, force: true }));
    cleanups.push(() => rmSync(shared, { recursive: true, force: true }));
    const bin = join(parent, 'node_modules', 'pkg', 'native', 'bin');
    mkdirSync(bin, { recursive: true });
    for (const name of ['initdb', 'pg_ctl', 'postgres']) writeFileSync(join(bin, name), '#!/bin/sh\necho ok\n', { mode: 0o755 });
    mkdirSync(join(bin, '..', 'lib'));
    writeFileSync(join(bin, '..', 'lib', 'libpq.so.5.18'), 'x', { mode: 0o644 });
    symlinkSync('libpq.so.5.18', join(bin, '..', 'lib', 'libpq.so.5'));
    const given = { initdb: join(bin, 'initdb'), pgCtl: join(bin, 'pg_ctl'), postgres: join(bin, 'postgres') };
    expect(reachableByOthers(given.initdb)).toBe(false);
    const as = await postgresIds();
    expect((await run('test', ['-x', given.initdb], as)).code).not.toBe(0); // the failure as it was

    const copied = reachablePostgresBinaries(given, shared);
    expect(copied.initdb.startsWith(`${shared}/embedded-postgres-`)).toBe(true);
    expect((await run('test', ['-x', copied.initdb], as)).code).toBe(0);
    expect((await run(copied.pgCtl, [], as)).stdout.trim()).toBe('ok');
    expect(readFileSync(join(dirname(copied.initdb), '..', 'lib', 'libpq.so.5'), 'utf8')).toBe('x');
    // Once: a second call reuses the copy.
    expect(reachablePostgresBinaries(given, shared)).toEqual(copied);
    // Reachable binaries are used where they are.
    const open = { ...given, initdb: join(shared, 'x') };
    chmodSync(shared, 0o755);
    expect(reachablePostgresBinaries(open, shared)).toBe(open);
  });

  it('tributary up starts it with TRIBUTARY_HOME under a 0700 directory: the data directory goes under /var/lib/tributary, and it answers', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'trib-0700-home-')); // 0700, like /root
    const home = join(parent, 'checkout', '.tributary');
    const env = { TRIBUTARY_HOME: home };
    const dataDir = localPostgresDataDir(env);
    expect(dataDir.startsWith('/var/lib/tributary/')).toBe(true);
    cleanups.push(() => rmSync(parent, { recursive: true, force: true }));
    cleanups.push(() => rmSync(dirname(dataDir), { recursive: true, force: true }));
    cleanups.push(async () => {
      await servicesDown({ env }).catch(() => {});
      const state = readServicesState(env);
      for (const pid of [state.redis?.pid, state.postgres?.pid]) {
        if (pid) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // stopped
          }
        }
      }
      const pidFile = join(dataDir, 'postmaster.pid');
      const pid = existsSync(pidFile) ? Number.parseInt(readFileSync(pidFile, 'utf8'), 10) : NaN;
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // stopped
        }
      }
    });
    const defaults = { redisUrl: `redis://127.0.0.1:${await freePort()}`, databaseUrl: `postgres://127.0.0.1:${await freePort()}/tributary` };
    const result = await servicesUp({ env, defaults, onProgress: () => {} });
    expect(result.postgres.managed).toBe(true);
    expect(existsSync(join(dataDir, 'PG_VERSION'))).toBe(true);
    const client = new pg.Client({ connectionString: result.postgres.url });
    await client.connect();
    try {
      expect((await client.query('SELECT current_database() AS db')).rows[0].db).toBe('tributary');
    } finally {
      await client.end();
    }
  }, 120_000);
});
