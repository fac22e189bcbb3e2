import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createClient } from '@redis/client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/postgres/migrate.js';
import { send, destroyQuietly } from '../../src/redis/client.js';
import { assertBuilt, CLI, freePort, killChildren, REPO, startEngine } from '../helpers/child.js';
import { countRows, createTestEnv, waitFor, type TestEnv } from '../helpers/env.js';

const run = promisify(execFile);

async function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd: REPO, env: { ...env, NO_COLOR: '1' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let env: TestEnv;
beforeAll(async () => {
  assertBuilt();
  env = await createTestEnv('cli');
  await migrate(env.pool, env.config.pgSchema);
});
afterAll(async () => env.cleanup());
afterEach(async () => killChildren());

describe('tributary CLI', () => {
  it('produce <count> appends sample events of the five types', async () => {
    const out = await cli(['produce', '1200', '--batch', '250'], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/produced 1200 events to .* in [\d.]+ s \(\d+ events\/s\)/);
    expect(Number(await send(env.redis, ['XLEN', env.config.streamKey]))).toBe(1200);
    const entries = (await send(env.redis, ['XRANGE', env.config.streamKey, '-', '+', 'COUNT', '200'])) as [string, string[]][];
    const types = new Set(entries.map(([, f]) => f[f.indexOf('event_type') + 1]));
    expect([...types].sort()).toEqual(['order_placed', 'order_shipped', 'payment_processed', 'product_viewed', 'user_created']);
  });

  it('produce --rate paces the events', async () => {
    const started = Date.now();
    const out = await cli(['produce', '600', '--rate', '1000', '--batch', '100', '--stream-key', `${env.name}:paced`], env.childEnv);
    const secs = (Date.now() - started) / 1000;
    expect(out.code).toBe(0);
    // 600 events at 1000/s take at least 0.5 s of pacing (the last batch is not waited for).
    expect(secs).toBeGreaterThan(0.5);
    await env.redis.del(`${env.name}:paced`);
  });

  it.each([
    [['produce', 'many'], /TRIB_ERR_CONFIG_INVALID: invalid setting count: must be a positive integer \(got "many"\)/],
    [['produce', '10', '--rate', '0'], /TRIB_ERR_CONFIG_INVALID: invalid setting --rate/],
    [['start', '--num-workers', 'lots'], /TRIB_ERR_CONFIG_INVALID: invalid setting NUM_WORKERS \(--num-workers\): .*"lots"/],
  ])('%j fails with a coded error and exit code 2', async (args, message) => {
    const out = await cli(args, env.childEnv);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(message);
  });

  it.each([
    [['benchmarks', '10', '1'], /TRIB_ERR_CLI_USAGE: unknown command 'benchmarks' \(Did you mean benchmark\?\) \(see `tributary --help`\)/],
    [['orders', 'proces'], /TRIB_ERR_CLI_USAGE: unknown command 'proces' \(Did you mean process\?\) \(see `tributary orders --help`\)/],
    [['orders', 'process', '--iteration', '10'], /TRIB_ERR_CLI_USAGE: unknown option '--iteration' \(Did you mean --iterations\?\) \(see `tributary orders process --help`\)/],
    [['produce'], /TRIB_ERR_CLI_USAGE: missing required argument 'count' \(see `tributary produce --help`\)/],
  ])('usage error %j: exit 2, one coded line with the suggestion and where to look', async (args, message) => {
    const out = await cli(args, env.childEnv);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(message);
    expect(out.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('`benchmark` is the original command name for `bench`; --help and --version exit 0', async () => {
    const help = await cli(['benchmark', '--help'], env.childEnv);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: tributary bench|benchmark');
    expect((await cli(['--version'], env.childEnv)).code).toBe(0);
  });

  it('`./run.sh` with no argument starts (or finds) the services and says which, as the original did', async () => {
    // run.sh rebuilds when src is newer than dist: never in the middle of a suite that uses dist.
    const stale = execFileSync('find', ['src', 'package.json', 'tsconfig.json', '-newer', CLI, '-print', '-quit'], { cwd: REPO, encoding: 'utf8' }).trim();
    if (stale) throw new Error(`dist is older than ${stale}: run \`npm run build\` (or ./run.sh test) first`);
    const out = await run('bash', ['run.sh'], { cwd: REPO, env: { ...env.childEnv, NO_COLOR: '1' } });
    expect(out.stdout).toMatch(/^redis: +redis:\/\/\S+/m);
    expect(out.stdout).toMatch(/^postgres: +postgres:\/\/\S+/m);
    expect(out.stderr).toContain('run.sh: services are up. Next: ./run.sh start');
  });

  it('a bad environment variable names itself', async () => {
    const out = await cli(['start'], { ...env.childEnv, BATCH_TIMEOUT_MS: '-1' });
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/BATCH_TIMEOUT_MS \(--batch-timeout-ms\)/);
  });

  it('migrate is idempotent', async () => {
    const out = await cli(['migrate'], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/up to date/);
  });

  it('monitor --once --json is the one-shot snapshot (stats is its plain predecessor, now gone)', async () => {
    const out = await cli(['monitor', '--once', '--json'], env.childEnv);
    expect(out.code).toBe(0);
    const s = JSON.parse(out.stdout);
    expect(s.stream.key).toBe(env.config.streamKey);
    expect(typeof s.postgres.events).toBe('number');
    expect((await cli(['stats'], env.childEnv)).code).not.toBe(0);
  });
});

describe('rediss:// (TLS)', () => {
  let dir: string;
  let redis: ChildProcess | undefined;
  let url: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'trib-tls-'));
    const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=tributary-test-ca']);
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf']);
    const port = await freePort();
    redis = spawn('redis-server', [
      '--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--tls-cert-file', 'server.crt', '--tls-key-file', 'server.key',
      '--tls-ca-cert-file', 'ca.crt', '--tls-auth-clients', 'no', '--save', '', '--appendonly', 'no', '--dir', dir,
    ], { cwd: dir, stdio: 'ignore' });
    url = `rediss://localhost:${port}`;
    await waitFor(async () => {
      const c = createClient({ url, socket: { tls: true, ca: [readCa(dir)], reconnectStrategy: false } });
      c.on('error', () => {});
      try {
        await c.connect();
        return (await c.ping()) === 'PONG';
      } catch {
        return false;
      } finally {
        destroyQuietly(c);
      }
    }, 10_000, 'TLS redis-server');
  });

  afterAll(() => {
    if (redis?.pid) process.kill(redis.pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('the engine and the producer work over rediss:// and refuse an untrusted server', async () => {
    const tlsEnv = { REDIS_URL: url, NODE_EXTRA_CA_CERTS: join(dir, 'ca.crt') };
    const produced = await cli(['produce', '500'], { ...env.childEnv, ...tlsEnv });
    expect(produced.code).toBe(0);
    const engine = await startEngine(env, tlsEnv, 'tls-engine');
    await waitFor(async () => (await countRows(env)).rows >= 500, 20_000, '500 rows over TLS');
    engine.kill('SIGTERM');
    expect((await engine.exited).code).toBe(0);
    const tls = createClient({ url, socket: { tls: true, ca: [readCa(dir)] } });
    await tls.connect();
    const pending = (await tls.sendCommand(['XPENDING', env.config.streamKey, env.config.group])) as unknown[];
    const length = await tls.sendCommand(['XLEN', env.config.streamKey]);
    tls.destroy();
    expect(Number(pending[0])).toBe(0);
    expect(Number(length)).toBe(500);

    // Without the CA the certificate is not trusted: the command fails instead of talking in clear.
    const untrusted = await cliWithTimeout(['produce', '1'], { ...env.childEnv, REDIS_URL: url }, 4000);
    expect(untrusted.code).not.toBe(0);
  });
});

function readCa(dir: string): string {
  return execFileSync('cat', [join(dir, 'ca.crt')], { encoding: 'utf8' });
}

/** Runs the CLI and kills it after `ms` (a client retrying an untrusted server forever counts as failing). */
async function cliWithTimeout(args: string[], e: NodeJS.ProcessEnv, ms: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO, env: e, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}
