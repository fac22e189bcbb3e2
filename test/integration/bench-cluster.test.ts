/**
 * `tributary bench drain --partitions N` and `--cluster` with tiny counts, in-process, into
 * a temporary results directory (never bench/results/): the tooling works, the result
 * files have their figures, and nothing is left behind. They time nothing.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchReadmeSection } from '../../src/bench/report.js';
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

async function leftovers(): Promise<{ schemas: string[]; keys: string[] }> {
  const schemas = (await pool.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_drain\\_%'`)).rows.map((r) => r.nspname);
  const keys: string[] = [];
  for await (const batch of redis.scanIterator({ MATCH: '*bench_drain_*', COUNT: 1000 })) keys.push(...batch);
  return { schemas: schemas.sort(), keys: keys.sort() };
}

let before: { schemas: string[]; keys: string[] };

beforeAll(async () => {
  assertBuilt();
  dir = mkdtempSync(join(tmpdir(), 'tributary-bench-cluster-'));
  const config = resolveConfig({ envFile: false });
  redis = createRedisConnection(config.redisUrl, { failFast: false });
  await redis.connect();
  pool = createPgPool(config.databaseUrl, { max: 1 });
  before = await leftovers();
});

afterAll(async () => {
  redis.destroy();
  await pool.end();
  rmSync(dir, { recursive: true, force: true });
});

const bench = (...args: string[]) => runCommand(registerBench, ['bench', ...args, '--results-dir', dir]);

function result(kind: string): BenchResult {
  const files = readdirSync(dir).filter((f) => f.startsWith(`${kind}-`) && f.endsWith('.json'));
  expect(files).toHaveLength(1);
  return JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as BenchResult;
}

describe('tributary bench drain over partitions', () => {
  it('drain --partitions 3: produced over the partitions, every row written, partitions in the settings', async () => {
    const out = await bench('drain', '--count', '1500', '--partitions', '3');
    expect(out).toContain('Result: ');
    const r = result('drain');
    expect(r.settings).toMatchObject({ count: 1500, partitions: 3 });
    expect(r.figures).toMatchObject({ rows: 1500, pendingAfter: 0 });
  }, 60_000);

  it('drain --cluster --partitions 4: the single Redis, then a throwaway 3-master cluster; each server\'s CPU per event', async () => {
    const out = await bench('drain', '--cluster', '--count', '1500', '--partitions', '4');
    expect(out).toMatch(/Redis CPU per event: /);
    const r = result('cluster-drain');
    if (r.bench !== 'cluster-drain') throw new Error('not a cluster-drain result');
    expect(r.figures.partitions).toBe(4);
    expect(r.figures.runs.map((x) => [x.redis, x.masters, x.nodes.length, x.figures.rows, x.figures.pendingAfter])).toEqual([
      ['single', 1, 1, 1500, 0],
      ['cluster', 3, 3, 1500, 0],
    ]);
    for (const run of r.figures.runs) for (const n of run.nodes) expect(n.cpuSecs).toBeGreaterThanOrEqual(0);
    // The README table: a row per run.
    const section = benchReadmeSection([{ file: 'x.json', result: r }]);
    expect(section).toContain('**Drain on a Redis Cluster**');
    expect(section).toMatch(/\| 4 \| single \|/);
    expect(section).toMatch(/\| 4 \| cluster, 3 masters \|/);
  }, 60_000);

  it('left no bench schema or key behind on the single Redis', async () => {
    expect(await leftovers()).toEqual(before);
  });
});
