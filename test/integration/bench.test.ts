/**
 * Each bench verb with tiny counts, in-process on a commander Program of its own, into
 * a temporary results directory (never bench/results/). These check the tooling works
 * and cleans up after itself; they time nothing.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BenchResult } from '../../src/bench/result.js';
import { registerBench } from '../../src/cli/commands/bench.js';
import { resolveConfig } from '../../src/config/index.js';
import { createPgPool, type PgPool } from '../../src/postgres/pool.js';
import { createRedisConnection, type RedisConnection } from '../../src/redis/client.js';
import { runCommand } from '../fixtures/cli.js';
import { assertBuilt } from '../helpers/child.js';

let dir: string;
let redis: RedisConnection;
let pool: PgPool;

/** bench_* schemas and Redis keys that exist now. */
async function benchLeftovers(): Promise<{ schemas: string[]; keys: string[] }> {
  const schemas = (await pool.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_%'`)).rows.map((r) => r.nspname);
  const keys: string[] = [];
  for await (const batch of redis.scanIterator({ MATCH: '*bench_*', COUNT: 1000 })) keys.push(...batch);
  return { schemas: schemas.sort(), keys: keys.sort() };
}

let before: { schemas: string[]; keys: string[] };

beforeAll(async () => {
  assertBuilt(); // drain spawns dist/cli/main.js start
  dir = mkdtempSync(join(tmpdir(), 'tributary-bench-'));
  const config = resolveConfig({ envFile: false });
  redis = createRedisConnection(config.redisUrl, { failFast: false });
  await redis.connect();
  pool = createPgPool(config.databaseUrl, { max: 1 });
  before = await benchLeftovers();
});

afterAll(async () => {
  redis.destroy();
  await pool.end();
  rmSync(dir, { recursive: true, force: true });
});

const bench = (...args: string[]) => runCommand(registerBench, ['bench', ...args, '--results-dir', dir]);

/** The one new result of `kind` written since the last call. */
const seen = new Set<string>();
function newResult(kind: string): BenchResult {
  const files = readdirSync(dir).filter((f) => f.startsWith(`${kind}-`) && f.endsWith('.json') && !seen.has(f));
  expect(files).toHaveLength(1);
  seen.add(files[0]!);
  return JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as BenchResult;
}

function expectMachine(r: BenchResult): void {
  expect(r.version).toBe(1);
  expect(r.machine.cores).toBeGreaterThan(0);
  expect(r.machine.node).toBe(process.version);
  expect(r.machine.redis).toMatch(/^\d+\.\d+/);
  expect(r.machine.postgres).toMatch(/^\d+/);
}

describe('tributary bench', () => {
  it('drain --count 2000: every row written, figures and peak RSS in the result', async () => {
    const out = await bench('drain', '--count', '2000');
    for (const label of ['DRAIN RESULTS', 'Rows Written: 2000', 'Drain Rate: ', 'Steady Write Rate: ', 'Engine Peak RSS: ', 'Pending After: 0']) expect(out).toContain(label);
    const r = newResult('drain');
    expect(r.bench).toBe('drain');
    expectMachine(r);
    if (r.bench !== 'drain') return;
    expect(r.settings).toMatchObject({ count: 2000, numWorkers: 2, batchSize: 5000 });
    expect(r.figures).toMatchObject({ rows: 2000, pendingAfter: 0, deadLetters: 0 });
    expect(r.figures.drainEventsPerSec).toBeGreaterThan(0);
    expect(r.figures.ingestSpanSecs).toBeLessThanOrEqual(r.figures.drainWallSecs);
    expect(r.figures.enginePeakRssMiB).toBeGreaterThan(20);
    expect(r.figures.cpu?.engineSecs).toBeGreaterThan(0);
  });

  it('bench 2000 1 --with-engine: the familiar report, latency percentiles and lag', async () => {
    const out = await bench('2000', '1', '--with-engine');
    for (const line of ['STREAMING BENCHMARK', 'Target Rate: 2000 events/sec', 'Duration: 1 seconds', 'Expected Total: 2000 events', 'Produced 1000 events...', 'Produced 2000 events...', 'Completed: 2000 total events produced', 'BENCHMARK RESULTS', 'Total Events: 2000']) {
      expect(out).toContain(line);
    }
    expect(out).toMatch(/Accuracy: \d+\.\d\d%/);
    expect(out).toMatch(/Latency p99: [\d.]+ ms/);
    expect(out).toMatch(/Max Lag Seen: \d+ events/);
    const r = newResult('rate');
    expectMachine(r);
    if (r.bench !== 'rate') return;
    expect(r.figures.totalEvents).toBe(2000);
    expect(r.figures.elapsedSecs).toBeGreaterThanOrEqual(0.9);
    const e = r.figures.engine!;
    expect(e.written).toBe(2000);
    expect(e.latencyMs.samples).toBe(2000);
    expect(e.latencyMs.p50!).toBeLessThanOrEqual(e.latencyMs.p95!);
    expect(e.latencyMs.p95!).toBeLessThanOrEqual(e.latencyMs.p99!);
    expect(e.latencyMs.p99!).toBeLessThanOrEqual(e.latencyMs.max!);
    expect(e.lagSamples.length).toBeGreaterThan(0);
  });

  it('ceiling --count 2000: COPY, Redis and produceBatch ceilings and the drain, in one run', async () => {
    const out = await bench('ceiling', '--count', '2000');
    for (const label of ['CEILING RESULTS', 'Postgres COPY: ', 'Redis XADD: ', 'Redis XREADGROUP+XACK: ', 'produceBatch: ', 'Drain / Ceiling: ']) expect(out).toContain(label);
    const r = newResult('ceiling');
    expectMachine(r);
    if (r.bench !== 'ceiling') return;
    const f = r.figures;
    for (const v of [f.postgresCopyEventsPerSec, f.sinkWriteEventsPerSec, f.redisXaddEventsPerSec, f.redisReadAckEventsPerSec, f.produce.eventsPerSec, f.drain.drainEventsPerSec]) {
      expect(v).toBeGreaterThan(0);
    }
    expect(f.drain.rows).toBe(2000);
    expect(f.ceilingEventsPerSec).toBe(Math.min(f.postgresCopyEventsPerSec, f.redisReadAckEventsPerSec));
    expect(f.drainFractionOfCeiling).toBeCloseTo(f.drain.drainEventsPerSec / f.ceilingEventsPerSec, 2);
  });

  it('produce --count 2000: produceBatch throughput', async () => {
    const out = await bench('produce', '--count', '2000', '--batch', '500');
    expect(out).toContain('PRODUCE RESULTS');
    const r = newResult('produce');
    if (r.bench !== 'produce') return;
    expect(r.figures).toMatchObject({ events: 2000, batch: 500, concurrency: 1 });
    expect(r.figures.eventsPerSec).toBeGreaterThan(0);
    // The producer's and Redis' CPU over the timed part: what bounds the rate on a shared machine.
    expect(r.figures.cpu?.producerSecs).toBeGreaterThan(0);
    expect(r.figures.cpu?.redisSecs).toBeGreaterThanOrEqual(0);
    expect(out).toMatch(/CPU: producer [\d.]+ s \([\d.]+ µs per event\), redis [\d.]+ s/);
  });

  it('sweep over a reduced grid: a point per setting value and an SVG chart per setting', async () => {
    const out = await bench('sweep', '--workers', '1,2', '--batch-sizes', '100,500', '--count', '1000');
    expect(out).toContain('SWEEP RESULTS');
    const r = newResult('sweep');
    expectMachine(r);
    if (r.bench !== 'sweep') return;
    expect(r.figures.points.map((p) => [p.setting, p.value, p.numWorkers, p.batchSize])).toEqual([
      ['numWorkers', 1, 1, 5000],
      ['numWorkers', 2, 2, 5000],
      ['batchSize', 100, 2, 100],
      ['batchSize', 500, 2, 500],
    ]);
    for (const p of r.figures.points) expect(p.figures.rows).toBe(1000);
    expect(r.files).toHaveLength(2);
    for (const f of r.files!) {
      expect(existsSync(join(dir, f))).toBe(true);
      const svg = readFileSync(join(dir, f), 'utf8');
      expect(svg).toMatch(/^<svg /);
      expect(svg).toContain(r.figures.points.find((p) => (f.includes('num-workers') ? p.setting === 'numWorkers' : p.setting === 'batchSize'))!.figures.drainEventsPerSec.toLocaleString('en-US'));
    }
  });

  it('bad arguments fail with a coded error naming them', async () => {
    await expect(bench('many', '1')).rejects.toMatchObject({ code: 'TRIB_ERR_CONFIG_INVALID' });
    await expect(bench('sweep', '--workers', '1,x')).rejects.toThrow(/--workers/);
  });

  it('left no bench schema or stream behind', async () => {
    // Other test files run benches at the same time (bench-external, bench-cluster), each
    // with its own workspace that it removes when done: a leftover is one that stays.
    const leftovers = async () => {
      const after = await benchLeftovers();
      return { schemas: after.schemas.filter((s) => !before.schemas.includes(s)), keys: after.keys.filter((k) => !before.keys.includes(k)) };
    };
    let left = await leftovers();
    for (let waited = 0; waited < 90_000 && left.schemas.length + left.keys.length > 0; waited += 1000) {
      await new Promise((r) => setTimeout(r, 1000));
      left = await leftovers();
    }
    expect(left).toEqual({ schemas: [], keys: [] });
  }, 120_000);
});
