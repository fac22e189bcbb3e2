/**
 * The original orders CLI's commands, typed as its users type them (issue 10): each works
 * as the same command, or says which one to type. Driven through the built CLI on a
 * private prefix and schema.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, CLI, REPO } from '../helpers/child.js';
import { waitFor } from '../helpers/env.js';
import { ordersTestEnvs } from '../helpers/orders.js';

const run = promisify(execFile);

async function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t = Date.now();
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd: REPO, env: { ...env, NO_COLOR: '1' }, timeout: 30_000 });
    return { code: 0, stdout, stderr, ms: Date.now() - t };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, ms: Date.now() - t };
  }
}

const envs = ordersTestEnvs();
beforeAll(() => assertBuilt());

describe('the original orders commands', () => {
  it('`init-cache --all` at the top level: exit 2, and the command to type instead', async () => {
    const env = await envs.setup('top_init', 'none');
    const out = await cli(['init-cache', '--all'], env.childEnv);
    expect(out.code).toBe(2);
    expect(out.stderr.trim()).toBe(
      "tributary: TRIB_ERR_CLI_USAGE: unknown command 'init-cache' (Did you mean `tributary orders init-cache --all`?) (see `tributary --help`)",
    );
  });

  it('`process --workers 1 --iterations 10` processes 10 batches, then exits', async () => {
    const env = await envs.setup('iterations');
    const gen = await cli(['orders', 'generate', '--count', '3000', '--seed', '3', '--invalid', '0'], env.childEnv);
    expect(gen.code).toBe(0);
    // A batch is flushed by size or after ORDERS_BLOCK_MS: a long period keeps a loaded machine
    // (reads start small and grow) from flushing a batch by time before its 100 orders are in.
    const out = await cli(['orders', 'process', '--workers', '1', '--iterations', '10', '--batch-size', '100', '--orders-block-ms', '10000'], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^processed 1,000 orders in 10 batches in [\d.]+ s/m);
    expect(out.stderr).toMatch(/orders pipeline started: 1 worker \(\S+\), batch 100, at most 10 batches each,/);
    expect(out.ms).toBeLessThan(15_000);
    expect(await env.queue.length()).toBe(2000);
    expect(await env.count('orders')).toBe(1000);

    // Fewer orders than the iterations would take: it stops at the empty queue.
    const rest = await cli(['orders', 'process', '--workers', '2', '--iterations', '1000', '--batch-size', '500'], env.childEnv);
    expect(rest.code).toBe(0);
    expect(rest.stdout).toMatch(/^processed 2,000 orders in \d+ batches/m);
    expect(await env.queue.length()).toBe(0);

    const bad = await cli(['orders', 'process', '--iterations', '0'], env.childEnv);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('TRIB_ERR_CONFIG_INVALID: invalid setting --iterations: must be a positive integer (got "0")');
  });

  it('`generate --burst` without --count pushes the original demo\'s 10,000 orders; --burst with --rate is refused', async () => {
    const env = await envs.setup('burst', 'none');
    const out = await cli(['orders', 'generate', '--burst'], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^generated 10,000 orders onto \S+ in [\d.]+ s/m);
    expect(await env.queue.length()).toBe(10_000);
    const bad = await cli(['orders', 'generate', '--burst', '--rate', '100'], env.childEnv);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('TRIB_ERR_CONFIG_INVALID: invalid setting --rate: cannot be combined with --burst');
  });

  it('`generate --count 2000 --rate 1000` takes 2 s, paced like `produce --rate`', async () => {
    const env = await envs.setup('rate', 'none');
    const out = await cli(['orders', 'generate', '--count', '2000', '--rate', '1000'], env.childEnv);
    expect(out.code).toBe(0);
    const secs = Number(/ in ([\d.]+) s/.exec(out.stdout)![1]);
    expect(secs).toBeGreaterThanOrEqual(1.99);
    expect(secs).toBeLessThan(2.3);
    expect(await env.queue.length()).toBe(2000);
  });

  it('`stats --watch` in a terminal quits on q, as `monitor` does', async () => {
    const env = await envs.setup('watch', 'migrate');
    // A real terminal: script(1) runs the CLI on a pseudo-terminal, our pipe is its keyboard.
    const child = spawn('script', ['-qfec', `${process.execPath} ${CLI} orders stats --watch 0.5`, '/dev/null'], {
      cwd: REPO,
      env: { ...env.childEnv, NO_COLOR: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    child.stdout!.on('data', (d: Buffer) => (screen += d.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(async () => (screen.match(/q or Ctrl-C quits/g) ?? []).length >= 2, 10_000, 'two refreshes');
      const t = Date.now();
      child.stdin!.write('q');
      const code = await Promise.race([exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 3000))]);
      expect(code).toBe(0);
      expect(Date.now() - t).toBeLessThan(3000);
      expect(screen).toContain(`ORDERS PIPELINE`);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
