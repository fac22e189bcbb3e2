/**
 * `tributary clean` (the original's `./run.sh clean`) as a user runs it: without --yes it
 * says what it would delete, deletes nothing and exits 2; with --yes the stream, its dead
 * letters and the events table's rows are gone. Private keys and schema per test.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/postgres/migrate.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { send } from '../../src/redis/client.js';
import { assertBuilt, CLI, REPO } from '../helpers/child.js';
import { countRows, createTestEnv, type TestEnv } from '../helpers/env.js';

const run = promisify(execFile);

async function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t = Date.now();
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd: REPO, env: { ...env, NO_COLOR: '1' }, timeout: 20_000 });
    return { code: 0, stdout, stderr, ms: Date.now() - t };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, ms: Date.now() - t };
  }
}

let env: TestEnv;
beforeAll(async () => {
  assertBuilt();
  env = await createTestEnv('clean');
  await migrate(env.pool, env.config.pgSchema);
});
afterAll(async () => env.cleanup());

describe('tributary clean', () => {
  it('refuses without --yes (exit 2, says what would go), deletes stream, dead letters and rows with --yes', async () => {
    const c = env.config;
    const s = quoteIdent(c.pgSchema);
    // 30 entries in the stream with a group, 2 dead letters (stream and table), 3 rows in events.
    for (let i = 0; i < 30; i++) await send(env.redis, ['XADD', c.streamKey, '*', 'event_type', 't', 'payload', '{}']);
    await send(env.redis, ['XGROUP', 'CREATE', c.streamKey, c.group, '0']);
    await send(env.redis, ['HSET', `tributary:stats:${c.streamKey}:${c.group}`, 'batches', '1']);
    for (let i = 0; i < 2; i++) await send(env.redis, ['XADD', c.dlqStream, '*', 'dlq_error', 'x']);
    await env.pool.query(`INSERT INTO ${s}.events (event_id, event_type, payload, stream_id) SELECT 'e' || g, 't', '{}', g || '-0' FROM generate_series(1, 3) g`);
    await env.pool.query(
      `INSERT INTO ${s}.dead_letter_queue (stream_key, group_name, stream_id, fields, error_code, error, deliveries)
       VALUES ($1, 'tributary', '1-0', '{}', 'TRIB_ERR_ENTRY_INVALID', 'x', 1), ($1, 'tributary', '2-0', '{}', 'TRIB_ERR_ENTRY_INVALID', 'x', 1),
              ('other-stream', 'tributary', '3-0', '{}', 'TRIB_ERR_ENTRY_INVALID', 'x', 1)`,
      [c.streamKey],
    );

    const refused = await cli(['clean'], env.childEnv);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('TRIB_ERR_CONFIRMATION_REQUIRED: would delete');
    expect(refused.stderr).toContain(`the stream ${c.streamKey} (30 entries, group ${c.group})`);
    expect(refused.stderr).toContain(`the dead-letter stream ${c.dlqStream} (2 entries)`);
    expect(refused.stderr).toContain(`every row of ${c.pgSchema}.events (3 rows)`);
    expect(refused.stderr).toContain(`the 2 rows of ${c.pgSchema}.dead_letter_queue from stream ${c.streamKey}`);
    expect(refused.stderr).toContain('run again with --yes to confirm');
    expect(refused.ms).toBeLessThan(10_000);
    // Nothing was changed.
    expect(Number(await send(env.redis, ['XLEN', c.streamKey]))).toBe(30);
    expect((await countRows(env)).rows).toBe(3);

    const done = await cli(['clean', '--yes'], env.childEnv);
    expect(done.code).toBe(0);
    expect(done.stdout).toMatch(new RegExp(`^deleted the stream ${c.streamKey} \\(30 entries, group ${c.group}\\)`));
    expect(Number(await send(env.redis, ['EXISTS', c.streamKey, c.dlqStream, `tributary:stats:${c.streamKey}:${c.group}`]))).toBe(0);
    expect((await countRows(env)).rows).toBe(0);
    const dead = await env.pool.query<{ stream_key: string }>(`SELECT stream_key FROM ${s}.dead_letter_queue`);
    // Another stream's dead letters stay.
    expect(dead.rows.map((r) => r.stream_key)).toEqual(['other-stream']);

    // Again: nothing left, nothing to confirm.
    const again = await cli(['clean'], env.childEnv);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^nothing to clean/);
  });

  it('`./run.sh clean` is the same command (run.sh passes the verb on)', async (ctx) => {
    // run.sh rebuilds when src is newer than dist: never in the middle of a suite that uses dist.
    const stale = execFileSync('find', ['src', 'package.json', 'tsconfig.json', '-newer', CLI, '-print', '-quit'], { cwd: REPO, encoding: 'utf8' }).trim();
    if (stale) ctx.skip(`dist is older than ${stale}: run \`npm run build\` first`);
    await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 't', 'payload', '{}']);
    let out: { code: number; stderr: string };
    try {
      await run('bash', ['run.sh', 'clean'], { cwd: REPO, env: { ...env.childEnv, NO_COLOR: '1' }, timeout: 20_000 });
      out = { code: 0, stderr: '' };
    } catch (err) {
      out = err as { code: number; stderr: string };
    }
    expect(out.code).toBe(2);
    expect(out.stderr).toContain(`TRIB_ERR_CONFIRMATION_REQUIRED: would delete the stream ${env.config.streamKey} (1 entry)`);
    expect(Number(await send(env.redis, ['XLEN', env.config.streamKey]))).toBe(1);
    await env.redis.del(env.config.streamKey);
  });

  it('honours --redis-url/--database-url like every command: an unreachable server is a coded error within seconds', async () => {
    const [out, pg] = await Promise.all([
      cli(['clean', '--yes', '--redis-url', 'redis://127.0.0.1:1'], env.childEnv),
      cli(['clean', '--yes', '--database-url', 'postgres://127.0.0.1:1/tributary'], env.childEnv),
    ]);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/TRIB_ERR_REDIS_UNAVAILABLE: .*redis:\/\/127\.0\.0\.1:1/);
    expect(pg.code).toBe(2);
    expect(pg.stderr).toMatch(/TRIB_ERR_POSTGRES_UNAVAILABLE: .*127\.0\.0\.1:1/);
    // The 5 s connect timeout, plus a CLI starting on a loaded 2-core machine (as cli.test.ts allows).
    expect(Math.max(out.ms, pg.ms)).toBeLessThan(15_000);
  });

  it('a schema without tables: the stream still goes, the tables are named as missing', async () => {
    const c = env.config;
    const stream = `${env.name}:bare`;
    await send(env.redis, ['XADD', stream, '*', 'event_type', 't', 'payload', '{}']);
    const out = await cli(['clean', '--yes', '--stream-key', stream, '--pg-schema', `${env.name}_none`], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`no rows of ${env.name}_none.events (no such table)`);
    expect(Number(await send(env.redis, ['EXISTS', stream]))).toBe(0);
    expect(c.streamKey).not.toBe(stream);
  });
});
