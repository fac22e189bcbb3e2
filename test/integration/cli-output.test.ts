/**
 * Output a person reads (issue 10): one line per log event on a terminal, singular for
 * one, a throughput over the time the run actually took, defaults in --help, one spelling
 * of the trim flags, a plain message for a bad number, and a demo that ends with what to
 * run next. Driven through the built CLI, on private keys and schemas.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { send } from '../../src/redis/client.js';
import { assertBuilt, CLI, EngineProcess, REPO } from '../helpers/child.js';
import { createTestEnv, type TestEnv } from '../helpers/env.js';
import { ordersTestEnvs } from '../helpers/orders.js';

const run = promisify(execFile);

async function cli(args: string[], env: NodeJS.ProcessEnv, timeout = 30_000): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t = Date.now();
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd: REPO, env: { ...env, NO_COLOR: '1' }, timeout });
    return { code: 0, stdout, stderr, ms: Date.now() - t };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, ms: Date.now() - t };
  }
}

/** Runs the CLI on a pseudo-terminal (script(1)): what a person sees, stdout and stderr together. */
async function onTerminal(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 20_000): Promise<{ code: number | null; screen: string }> {
  const child = spawn('script', ['-qfec', [process.execPath, CLI, ...args].join(' '), '/dev/null'], { cwd: REPO, env: { ...env, NO_COLOR: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  child.stdout!.on('data', (d: Buffer) => (screen += d.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, screen: screen.replace(/\r/g, '') };
}

const flat = (text: string) => text.replace(/\s+/g, ' ');

let env: TestEnv;
const orders = ordersTestEnvs();
beforeAll(async () => {
  assertBuilt();
  env = await createTestEnv('output');
});
afterAll(async () => env.cleanup());

describe('output a person reads', () => {
  it('on a terminal, a log event is one line: its fields are not printed again below it', async () => {
    const o = await orders.setup('pretty');
    const out = await onTerminal(['orders', 'process', '--until-empty', '--workers', '1'], o.childEnv);
    expect(out.code).toBe(0);
    const lines = out.screen.split('\n').filter((l) => l.trim() !== '');
    expect(lines.some((l) => /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO.*: orders pipeline started: 1 worker \(/.test(l))).toBe(true);
    // pino-pretty's default: an indented `key: value` line per field after each event.
    expect(lines.filter((l) => /^\s+\w+: /.test(l))).toEqual([]);
    expect(lines.filter((l) => !/^\[\d\d:\d\d:\d\d\.\d{3}\] /.test(l) && !/^processed /.test(l))).toEqual([]);
  });

  it('`monitor` on a terminal quits on q (its key handling is shared with `orders stats --watch`)', async () => {
    const child = spawn('script', ['-qfec', `stty rows 50 cols 120; exec ${process.execPath} ${CLI} monitor 0.5`, '/dev/null'], { cwd: REPO, env: { ...env.childEnv, NO_COLOR: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    child.stdout!.on('data', (d: Buffer) => (screen += d.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    try {
      const deadline = Date.now() + 10_000;
      while (!screen.includes('q or Ctrl-C quits') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(screen).toContain('STREAMING PIPELINE DASHBOARD');
      const t = Date.now();
      child.stdin!.write('q');
      expect(await Promise.race([exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 3000))])).toBe(0);
      expect(Date.now() - t).toBeLessThan(3000);
      // The terminal is given back: cursor shown, alternate screen left.
      expect(screen).toContain('\x1b[?25h\x1b[?1049l');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('`orders stats` right after a short run reports the rate over the run, not over the last minute', async () => {
    const o = await orders.setup('window');
    expect((await cli(['orders', 'generate', '--count', '2000', '--invalid', '0'], o.childEnv)).code).toBe(0);
    expect((await cli(['orders', 'process', '--until-empty'], o.childEnv)).code).toBe(0);
    const stats = await cli(['orders', 'stats'], o.childEnv);
    expect(stats.code).toBe(0);
    const m = /Throughput: +([\d,]+) orders\/s \(last ([\d.]+) s\)/.exec(stats.stdout);
    expect(m, stats.stdout).not.toBeNull();
    // The run and this command took a few seconds, not a minute; the rate is 2,000 over them.
    const window = Number(m![2]);
    expect(window).toBeGreaterThanOrEqual(1);
    expect(window).toBeLessThan(10);
    expect(Number(m![1]!.replace(/,/g, ''))).toBeGreaterThan(2000 / 10);
    const json = JSON.parse((await cli(['orders', 'stats', '--json'], o.childEnv)).stdout) as { throughput: { windowSecs: number } };
    expect(json.throughput.windowSecs).toBeLessThan(10);
  });

  it('--help shows the defaults of the settings', async () => {
    const help = flat((await cli(['start', '--help'], env.childEnv)).stdout);
    expect(help).toContain('[NUM_WORKERS] (default: 2)');
    expect(help).toContain('[BATCH_SIZE] (default: 5000)');
    expect(help).toContain('[STREAM_KEY] (default: "events")');
    const orderHelp = flat((await cli(['orders', 'process', '--help'], env.childEnv)).stdout);
    expect(orderHelp).toContain('[ORDERS_WORKERS] (default: 4)');
  });

  it('`start` and `trim` spell the trim flags the same (--trim-max-len); the old --maxlen still works, unlisted', async () => {
    const start = flat((await cli(['start', '--help'], env.childEnv)).stdout);
    const trimHelp = flat((await cli(['trim', '--help'], env.childEnv)).stdout);
    for (const help of [start, trimHelp]) {
      expect(help).toContain('--trim-max-len <value>');
      expect(help).toContain('--trim-max-age <value>');
    }
    expect(trimHelp).toContain('--trim-max-len <value> keep about the newest N entries [TRIM_MAXLEN]');
    expect(trimHelp).not.toMatch(/--maxlen|--max-age/);
    const stream = `${env.name}:trim`;
    for (let i = 0; i < 20; i++) await send(env.redis, ['XADD', stream, '*', 'event_type', 't', 'payload', '{}']);
    const flags = ['--stream-key', stream, '--dry-run', '--force', '--exact'];
    const now = await cli(['trim', '--trim-max-len', '5', ...flags], env.childEnv);
    const old = await cli(['trim', '--maxlen', '5', ...flags], env.childEnv);
    expect(now.code).toBe(0);
    expect(now.stdout).toContain('dry run: would trim entries below');
    expect(now.stdout).toContain('(15 entries)');
    expect(old.stdout.replace(/\d+-\d+/g, 'ID')).toBe(now.stdout.replace(/\d+-\d+/g, 'ID'));
    const bad = await cli(['trim', '--trim-max-len', '-1', '--stream-key', stream], env.childEnv);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('TRIB_ERR_CONFIG_INVALID: invalid setting --trim-max-len: must be a non-negative integer (got "-1")');
    await env.redis.del(stream);
  });

  it.each([
    ['--num-workers', '1.5', 'NUM_WORKERS (--num-workers): must be a whole number from 1 to 1,000 (got "1.5")'],
    ['--num-workers', 'lots', 'NUM_WORKERS (--num-workers): must be a whole number from 1 to 1,000 (got "lots")'],
    ['--batch-size', '0', 'BATCH_SIZE (--batch-size): must be a whole number from 1 to 1,000,000 (got "0")'],
    ['--metrics-port', '70000', 'METRICS_PORT (--metrics-port): must be a whole number from 0 to 65,535 (got "70000")'],
  ])('`start %s %s`: exit 2, a message a person reads', async (flag, value, message) => {
    const out = await cli(['start', flag, value], env.childEnv);
    expect(out.code).toBe(2);
    expect(out.stderr.trim()).toBe(`tributary: TRIB_ERR_CONFIG_INVALID: invalid setting ${message}`);
  });

  it('`start --num-workers 1` says `1 worker`', async () => {
    const engine = new EngineProcess({ ...env.childEnv, NO_COLOR: '1' }, 'one-worker', ['start', '--num-workers', '1']);
    try {
      await engine.waitForLog('engine started', 20_000);
      expect(engine.output).toContain('engine started: 1 worker reading');
      expect(engine.output).toMatch(/engine: stream \S+, group \S+, 1 worker as /);
      engine.kill('SIGTERM');
      expect((await engine.exited).code).toBe(0);
    } finally {
      if (engine.alive) engine.kill('SIGKILL');
    }
  });

  it('the demo says `1 worker` and ends with the three commands to run next', async () => {
    const out = await cli(['demo', '--count', '50', '--num-workers', '1'], env.childEnv, 60_000);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^engine started: 1 worker, batch 5000 \/ 2000 ms$/m);
    const last = out.stdout.trimEnd().split('\n').slice(-4);
    expect(last[0]).toBe('Next:');
    expect(last.slice(1).map((l) => l.trim().split(/\s{3,}/)[0])).toEqual(['./run.sh start', './run.sh produce 1000', './run.sh monitor']);
  });
});
