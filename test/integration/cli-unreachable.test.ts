/**
 * The operating commands against a server that is down: each exits 2 with a coded
 * error naming the (redacted) URL within seconds, instead of hanging; `tail` and
 * `replay` can be interrupted while they are still connecting. And `trim` refuses to
 * trim a stream whose configured group does not exist yet (unless --force).
 *
 * Every command runs as a child process (`node dist/cli/main.js`), concurrently.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { send } from '../../src/redis/client.js';
import { assertBuilt, CLI, freePort, REPO } from '../helpers/child.js';
import { createTestEnv, type TestEnv } from '../helpers/env.js';

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** ms from spawn to exit. */
  ms: number;
  /** ms from the signal (if one was sent) to exit. */
  afterSignalMs?: number;
}

/**
 * Runs the CLI with `env`; SIGKILLs it after `hardLimitMs` (the test then fails on the
 * exit). With `signalAfterMs`, sends `signal` that long after the spawn — or, with
 * `signalWhen`, once the output so far satisfies it.
 */
function cli(
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { hardLimitMs?: number; signalAfterMs?: number; signalWhen?: (stdout: string) => boolean; signal?: NodeJS.Signals } = {},
): Promise<Run> {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO, env: { ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let signalledAt: number | undefined;
  const signal = () => {
    if (signalledAt !== undefined || child.exitCode !== null || child.signalCode !== null) return;
    signalledAt = Date.now();
    child.kill(options.signal ?? 'SIGTERM');
  };
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString('utf8');
    if (options.signalWhen?.(stdout)) signal();
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const timers = [setTimeout(() => child.kill('SIGKILL'), options.hardLimitMs ?? 20_000)];
  if (options.signalAfterMs !== undefined) timers.push(setTimeout(signal, options.signalAfterMs));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, sig) => {
      for (const t of timers) clearTimeout(t);
      const now = Date.now();
      // Let the pipes drain.
      setImmediate(() =>
        resolve({ code, signal: sig, stdout, stderr, ms: now - started, afterSignalMs: signalledAt === undefined ? undefined : now - signalledAt }),
      );
    });
  });
}

/** it.each rows: [title, args]. */
const rows = (list: string[][]): [string, string[]][] => list.map((args) => [args.join(' '), args]);

let env: TestEnv;
let deadRedis: NodeJS.ProcessEnv;
let deadPostgres: NodeJS.ProcessEnv;
/** A Redis that accepts connections and never answers (a hung server, a black hole). */
let silentRedis: NodeJS.ProcessEnv;
let silent: Server;
const silentSockets = new Set<Socket>();

beforeAll(async () => {
  assertBuilt();
  env = await createTestEnv('cli_unreachable');
  const port = await freePort();
  // Passwords in the URLs: the messages must name the servers without them.
  deadRedis = { ...env.childEnv, REDIS_URL: `redis://admin:s3cret-r@127.0.0.1:${port}` };
  deadPostgres = { ...env.childEnv, DATABASE_URL: `postgres://root:s3cret-p@127.0.0.1:${port}/tributary` };
  silent = createServer((socket) => {
    silentSockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => silentSockets.delete(socket));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentRedis = { ...env.childEnv, REDIS_URL: `redis://127.0.0.1:${(silent.address() as { port: number }).port}` };
});
afterAll(async () => {
  for (const s of silentSockets) s.destroy();
  await new Promise((resolve) => silent?.close(resolve));
  await env?.cleanup();
});

describe.concurrent('with Redis unreachable', () => {
  it.each(
    rows([['dlq', 'list'], ['pending'], ['consumers'], ['claim', '--idle', '1000'], ['trim', '--maxlen', '10', '--dry-run'], ['tail', '--count', '1'], ['replay', '--from', '0'], ['monitor', '--once']]),
  )('%s exits 2 with TRIB_ERR_REDIS_UNAVAILABLE at the refused connection, not after the timeout', async (_title, args) => {
      const r = await cli(args, deadRedis);
      expect(r.code, r.stderr).toBe(2);
      // Refused is final: no 5 s wait. The bound is loose for eight CLIs starting at once
      // on a 2-core machine busy with the rest of the suite; the message tells which path it took.
      expect(r.ms).toBeLessThan(15_000);
      expect(r.stderr).toContain('TRIB_ERR_REDIS_UNAVAILABLE');
      expect(r.stderr).toContain('ECONNREFUSED');
      expect(r.stderr).not.toContain('within 5 s');
      expect(r.stderr).toContain(`redis://admin:***@127.0.0.1:`);
      expect(r.stderr).not.toContain('s3cret');
      expect(r.stderr).not.toMatch(/^\s+at /m); // no stack
  });

  it('a Redis that accepts and never answers: exit 2 after the 5 s connect timeout, saying so', async () => {
    const r = await cli(['pending'], silentRedis);
    expect(r.code, r.stderr).toBe(2);
    expect(r.ms).toBeGreaterThanOrEqual(4900);
    expect(r.stderr).toMatch(/TRIB_ERR_REDIS_UNAVAILABLE: .*within 5 s/);
  });

  it.each(rows([['tail'], ['replay', '--from', '0']]))('%s stops at once on SIGTERM while connecting', async (_title, args) => {
    const r = await cli(args, silentRedis, { signalAfterMs: 1500 });
    expect(r.afterSignalMs, `exited before the signal: ${r.stderr}`).toBeDefined();
    expect(r.afterSignalMs!).toBeLessThan(1500);
    expect(r.signal).toBe('SIGTERM');
  });
});

describe.concurrent('with Postgres unreachable', () => {
  it.each(rows([['dlq', 'list'], ['replay', '--from', '0']]))('%s exits 2 with TRIB_ERR_POSTGRES_UNAVAILABLE', async (_title, args) => {
    const r = await cli(args, deadPostgres);
    expect(r.code, r.stderr).toBe(2);
    expect(r.ms).toBeLessThan(10_000);
    expect(r.stderr).toContain('TRIB_ERR_POSTGRES_UNAVAILABLE');
    expect(r.stderr).toContain('postgres://root:***@127.0.0.1:');
    expect(r.stderr).not.toContain('s3cret');
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});

describe.concurrent('with both servers up', () => {
  it('tail stops cleanly on SIGTERM once connected (exit 0)', async () => {
    const key = `${env.name}:tail`;
    const run = cli(['tail', '--stream-key', key], env.childEnv, { signalWhen: (out) => out.includes('ping'), hardLimitMs: 15_000 });
    try {
      // tail starts at `$`: add entries until one shows up, i.e. once it is reading.
      for (let i = 0; i < 100; i++) {
        await send(env.redis, ['XADD', key, '*', 'event_type', 'ping', 'payload', '{}']);
        const done = await Promise.race([run.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 100))]);
        if (done) break;
      }
      const r = await run;
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.afterSignalMs!).toBeLessThan(2000);
    } finally {
      await env.redis.del(key);
    }
  });

  it('trim refuses while the configured group does not exist (nothing removed); --force trims', async () => {
    const key = `${env.name}:nogroup`;
    const flags = ['--stream-key', key, '--group', 'tributary'];
    try {
      for (let i = 0; i < 50; i++) await send(env.redis, ['XADD', key, '*', 'event_type', 't', 'payload', '{}']);
      // Another group that has received everything does not make it safe for the configured one.
      await send(env.redis, ['XGROUP', 'CREATE', key, 'other', '$']);
      const xlen = async () => Number(await send(env.redis, ['XLEN', key]));

      const [refused, dry, nothing] = await Promise.all([
        cli(['trim', '--maxlen', '0', '--exact', ...flags], env.childEnv),
        cli(['trim', '--maxlen', '0', '--dry-run', ...flags], env.childEnv),
        cli(['trim', '--maxlen', '100', ...flags], env.childEnv),
      ]);
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toContain('TRIB_ERR_GROUP_NOT_FOUND');
      expect(refused.stderr).toContain(`consumer group tributary does not exist on stream ${key}`);
      expect(refused.stderr).toContain('would remove 50 entries');
      expect(refused.stderr).toContain('--force');
      expect(refused.stdout).toBe('');
      expect(dry.code, dry.stderr).toBe(2);
      expect(dry.stderr).toContain('TRIB_ERR_GROUP_NOT_FOUND');
      // Nothing to remove: no reason to refuse.
      expect(nothing.code, nothing.stderr).toBe(0);
      expect(nothing.stdout).toContain('nothing to trim');
      expect(await xlen()).toBe(50);

      const forced = await cli(['trim', '--maxlen', '0', '--exact', '--force', ...flags], env.childEnv);
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stdout).toContain('trimmed 50 entries');
      expect(await xlen()).toBe(0);
    } finally {
      await env.redis.del(key);
    }
  });
});
