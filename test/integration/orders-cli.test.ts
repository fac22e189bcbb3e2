/**
 * `tributary orders <verb>` as a user runs it (node dist/cli/main.js, real servers, a
 * private prefix and schema): exit codes and output of every verb, bad input → a coded
 * error and exit 2, servers that do not answer → exit 2 within seconds.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stageBatch } from '../../src/orders/pg/staging.js';
import { send } from '../../src/redis/client.js';
import { assertBuilt, CLI, freePort, REPO } from '../helpers/child.js';
import { waitFor } from '../helpers/env.js';
import { stagingColumns } from '../helpers/orders-pg.js';
import { orderJson, ordersTestEnvs } from '../helpers/orders.js';

const run = promisify(execFile);

async function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t = Date.now();
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, 'orders', ...args], { cwd: REPO, env: { ...env, NO_COLOR: '1' }, timeout: 60_000 });
    return { code: 0, stdout, stderr, ms: Date.now() - t };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, ms: Date.now() - t };
  }
}

const envs = ordersTestEnvs();
const tmpDirs: string[] = [];
beforeAll(() => assertBuilt());
afterEach(() => {
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('tributary orders', () => {
  it('init-cache --all, generate, process --until-empty, stats, stats --json, promote: the demo path', async () => {
    const env = await envs.setup('cli_path', 'none');
    let out = await cli(['init-cache', '--all'], env.childEnv);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/applied 101_reference_tables, 102_staging_and_orders, 103_views/);
    expect(out.stdout).toMatch(/reference data: 48 products, 10 currencies, 300 zip codes written/);
    expect(out.stdout).toMatch(/lookup cache .*: version 1, 48 products, 10 currencies, 300 zip codes/);
    out = await cli(['init-cache', '--all'], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/is up to date/);
    expect(out.stdout).toMatch(/version 2 \(replaced 1\)/);

    out = await cli(['generate', '--count', '2000', '--duplicates', '0.05', '--seed', '1'], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/generated 2,000 orders onto t_ord_cli_path_\w+:queue in [\d.]+ s \([\d,]+ orders\/s\): \d+ duplicates, \d+ invalid \(/);
    expect(out.stdout).toMatch(/backpressure: never engaged \(MAX_QUEUE_DEPTH 100,000/);
    expect(await env.queue.length()).toBe(2000);

    out = await cli(['process', '--until-empty', '--workers', '2', '--batch-size', '500'], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stderr).toMatch(/orders pipeline started: 2 workers/);
    const summary = /processed 2,000 orders in \d+ batches .*: ([\d,]+) promoted, ([\d,]+) duplicates dropped, ([\d,]+) already in orders, ([\d,]+) rejected/.exec(out.stdout);
    expect(summary, out.stdout).not.toBeNull();
    const promoted = Number(summary![1]!.replace(/,/g, ''));
    expect(await env.count('orders')).toBe(promoted);
    expect(Number(summary![2]!.replace(/,/g, '')) + Number(summary![3]!.replace(/,/g, ''))).toBeGreaterThan(0);

    out = await cli(['stats'], env.childEnv);
    expect(out.code).toBe(0);
    for (const text of ['ORDERS PIPELINE', 'Waiting:            0', 'Dedup window:', 'Lookup cache: version 2', 'Revenue (last 15 min): $', 'Throughput:', `Orders:             ${promoted.toLocaleString('en-US')} rows`, 'sales_hourly:', 'product_performance_daily:']) {
      expect(out.stdout).toContain(text);
    }
    out = await cli(['stats', '--json'], env.childEnv);
    expect(out.code).toBe(0);
    const s = JSON.parse(out.stdout);
    expect(s).toMatchObject({ version: 1, prefix: env.name, schema: env.name, redis: { queue: { length: 0, depth: 0 } }, pipeline: { taken: 2000 }, postgres: { orders: promoted, staging: 0 } });
    expect(s.throughput.ordersPerSec).toBeGreaterThan(0);
    expect(s.redis.revenue.orders).toBe(promoted);

    // Rows left in staging (a worker died between COPY and promote): `orders promote` moves them.
    await stageBatch(env.pool, env.name, 'left-behind', stagingColumns([{ order_id: 'lb-1' }, { order_id: 'lb-2' }, { order_id: 'lb-3', zip_code: '00000' }]));
    out = await cli(['promote'], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/promoted 3 staged rows: 2 promoted, 0 already in orders, 1 rejected \(1 unknown_zip\)/);
    expect(out.stdout).toMatch(/views refreshed: sales_hourly \d+ rows \(\d+ ms\), product_performance_daily \d+ rows/);
    expect(await env.count('orders')).toBe(promoted + 2);
  });

  it('generate holds back while the queue is at MAX_QUEUE_DEPTH, says so, and finishes once workers drain it', async () => {
    const env = await envs.setup('cli_bp');
    const child = spawn(process.execPath, [CLI, 'orders', 'generate', '--count', '1500', '--batch', '250', '--invalid', '0'], {
      cwd: REPO,
      env: { ...env.childEnv, MAX_QUEUE_DEPTH: '500' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    envs.defer(() => child.exitCode === null && child.kill('SIGKILL'));
    await waitFor(async () => stderr.includes('backpressure: queue depth'), 15_000, 'the backpressure notice');
    expect(stderr).toMatch(/backpressure: queue depth 500 >= MAX_QUEUE_DEPTH 500; waiting for the workers/);
    expect(await env.queue.length()).toBe(500);
    const p = env.pipeline({ workers: 1, batchSize: 250 });
    await p.start();
    expect(await exited).toBe(0);
    await waitFor(async () => (await env.queue.depth()) === 0, 15_000, 'the queue to drain');
    await p.close();
    expect(stderr).toMatch(/backpressure: released after [\d.]+ s/);
    expect(stdout).toMatch(/backpressure: engaged \d+ times, waited [\d.]+ s \(MAX_QUEUE_DEPTH 500, highest depth \d+\)/);
    expect(await env.count('orders')).toBe(1500);
  });

  it('clear --dedup, --cache, and --all (refused while orders wait, unless --yes)', async () => {
    const env = await envs.setup('cli_clear');
    await env.queue.push([orderJson('c-1'), orderJson('c-2')]);
    await env.drain({ workers: 1 });
    await env.queue.push([orderJson('c-3')]);
    const keys = async (pattern: string) => ((await send(env.redis, ['KEYS', `${env.name}:${pattern}`])) as string[]).length;
    expect(await keys('dedup:*')).toBe(1);
    let out = await cli(['clear', '--dedup'], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/deleted 1 dedup buckets/);
    expect(await keys('dedup:*')).toBe(0);
    out = await cli(['clear', '--cache'], env.childEnv);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/deleted \d+ lookup-cache keys/);
    expect(await keys('cache:*')).toBe(0);
    out = await cli(['clear', '--all'], env.childEnv);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/TRIB_ERR_CONFIRMATION_REQUIRED: would delete every key under t_ord_cli_clear_\w+:, including 1 waiting and 0 in-processing orders/);
    expect(await env.queue.length()).toBe(1);
    out = await cli(['clear', '--all', '--yes'], env.childEnv);
    expect(out.code).toBe(0);
    expect(await keys('*')).toBe(0);
    out = await cli(['clear'], env.childEnv);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/TRIB_ERR_CONFIG_INVALID: .*--cache, --dedup or --all/);
  });

  it('benchmark --total N writes an orders result with every stage and the targets', async () => {
    const env = await envs.setup('cli_bench', 'none');
    const dir = mkdtempSync(join(tmpdir(), 'tributary-orders-bench-'));
    tmpDirs.push(dir);
    const out = await cli(['benchmark', '--total', '3000', '--pipeline-total', '1500', '--batch-size', '500', '--workers', '2'], { ...env.childEnv, BENCH_RESULTS_DIR: dir });
    expect(out.code, out.stderr).toBe(0);
    for (const stage of ['generate', 'ingest', 'take', 'parse', 'dedup', 'enrich', 'transform', 'stage', 'promote', 'commit', 'refresh']) expect(out.stdout).toMatch(new RegExp(`^${stage} +[\\d,]+ +[\\d.]+ +[\\d,]+`, 'm'));
    expect(out.stdout).toMatch(/ingestion +[\d,]+ +target 250,000/);
    expect(out.stdout).toMatch(/End to end \(OrdersPipeline, 2 workers × 500/);
    expect(out.stdout).toMatch(/staging left 0, queue depth left 0/);
    const files = readdirSync(dir).filter((f) => f.startsWith('orders-'));
    expect(files).toHaveLength(1);
    const result = JSON.parse(readFileSync(join(dir, files[0]!), 'utf8'));
    expect(result).toMatchObject({ bench: 'orders', version: 1, settings: { total: 3000, batchSize: 500, workers: 2 } });
    expect(result.figures.orders.total).toBe(3000);
    expect(result.figures.orders.inOrders + result.figures.orders.inRejected + result.figures.orders.duplicatesDropped + result.figures.orders.pgDuplicates).toBe(3000);
    expect(result.figures.pipeline.orders).toBe(1500);
    expect(existsSync(join(dir, files[0]!))).toBe(true);
    // Its workspace is gone.
    const tag = /workspace: redis prefix (\S+),/.exec(out.stderr)![1]!;
    expect(((await send(env.redis, ['KEYS', `${tag}:*`])) as string[]).length).toBe(0);
    expect((await env.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [tag])).rowCount).toBe(0);
  });

  it.each([
    [['generate', '--count', 'many'], /TRIB_ERR_CONFIG_INVALID: invalid setting --count: must be a positive integer \(got "many"\)/],
    [['generate', '--count', '10', '--duplicates', '1.5'], /TRIB_ERR_CONFIG_INVALID: invalid setting --duplicates: must be a number from 0 to 1/],
    [['process', '--workers', '0'], /TRIB_ERR_CONFIG_INVALID: invalid setting ORDERS_WORKERS \(--orders-workers\)/],
    [['process', '--orders-stale-ms', '100'], /TRIB_ERR_CONFIG_INVALID: invalid setting ORDERS_STALE_MS \(--orders-stale-ms\): must be at least 1000/],
    [['stats', '--watch', '0'], /TRIB_ERR_CONFIG_INVALID: invalid setting --watch/],
    [['stats', '--watch', '2147484'], /TRIB_ERR_CONFIG_INVALID: invalid setting --watch: must be a number of seconds from 0.1 to 2147483.647/],
    [['init-cache'], /TRIB_ERR_ORDERS_NO_REFERENCE_DATA: schema t_ord_cli_bad_\w+ has no orders reference data \(no tables\)/],
  ])('%j: a coded error and exit code 2', async (args, message) => {
    const env = await envs.setup('cli_bad', 'none');
    const out = await cli(args, env.childEnv);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(message);
  });

  it('servers that do not answer: exit 2 with the server named, within seconds', async () => {
    const env = await envs.setup('cli_down', 'none');
    const [redisPort, pgPort] = await Promise.all([freePort(), freePort()]);
    const noRedis = { ...env.childEnv, REDIS_URL: `redis://127.0.0.1:${redisPort}` };
    const noPostgres = { ...env.childEnv, DATABASE_URL: `postgres://127.0.0.1:${pgPort}/tributary` };
    const runs = await Promise.all([
      cli(['generate', '--count', '10'], noRedis),
      cli(['process', '--until-empty'], noRedis),
      cli(['stats'], noRedis),
      cli(['init-cache', '--all'], noPostgres),
      cli(['process', '--until-empty'], noPostgres),
      cli(['promote'], noPostgres),
    ]);
    for (const [i, r] of runs.entries()) {
      expect(r.code, `run ${i}: ${r.stderr}`).toBe(2);
      expect(r.ms, `run ${i}`).toBeLessThan(15_000);
      expect(r.stderr).toMatch(i < 3 ? new RegExp(`TRIB_ERR_REDIS_UNAVAILABLE: .*127\\.0\\.0\\.1:${redisPort}`) : new RegExp(`TRIB_ERR_POSTGRES_UNAVAILABLE: .*127\\.0\\.0\\.1:${pgPort}`));
    }
  });
});
