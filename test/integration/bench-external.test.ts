/**
 * The benches' outside producer (redis-cli --pipe in a process of its own) and the
 * side-by-side with the Python original, with tiny counts into a temporary results
 * directory. They check the tooling; they time nothing.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadExternal } from '../../src/bench/external.js';
import type { BenchResult } from '../../src/bench/result.js';
import { registerBench } from '../../src/cli/commands/bench.js';
import { resolveConfig } from '../../src/config/index.js';
import { createRedisConnection, type RedisConnection } from '../../src/redis/client.js';
import { runCommand } from '../fixtures/cli.js';
import { assertBuilt } from '../helpers/child.js';

let dir: string;
let redis: RedisConnection;
const config = resolveConfig({ envFile: false });

beforeAll(async () => {
  assertBuilt();
  dir = mkdtempSync(join(tmpdir(), 'tributary-bench-ext-'));
  redis = createRedisConnection(config.redisUrl, { failFast: false });
  await redis.connect();
});

afterAll(async () => {
  redis.destroy();
  rmSync(dir, { recursive: true, force: true });
});

const bench = (...args: string[]) => runCommand(registerBench, ['bench', ...args, '--results-dir', dir]);
function results(kind: string): BenchResult[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${kind}-`) && f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as BenchResult);
}

describe('benchmarks with an outside producer', () => {
  it('drain --producer external: every event of each id shape written once', async () => {
    for (const shape of ['uuidv4', 'none']) {
      const out = await bench('drain', '--count', '1500', '--producer', 'external', '--id-shape', shape);
      expect(out).toContain(`Producer: redis-cli --pipe (outside process), event_id ${shape}`);
      expect(out).toContain('Rows Written: 1500');
      expect(out).toContain('Pending After: 0');
    }
    const r = results('drain');
    expect(r.map((x) => x.settings)).toEqual([
      expect.objectContaining({ count: 1500, producer: 'external', idShape: 'uuidv4' }),
      expect.objectContaining({ count: 1500, producer: 'external', idShape: 'none' }),
    ]);
  });

  it('bench 2000 1 --with-engine --producer external: latency of every event and the batches behind the tail', async () => {
    const out = await bench('2000', '1', '--with-engine', '--producer', 'external', '--id-shape', 'sequential');
    expect(out).toMatch(/Latency p99: [\d.]+ ms/);
    expect(out).toMatch(/GC pauses: \d+/);
    const [r] = results('rate');
    if (r?.bench !== 'rate') throw new Error('no rate result');
    expect(r.settings).toMatchObject({ producer: 'external', idShape: 'sequential' });
    const e = r.figures.engine!;
    expect(e.written).toBe(2000);
    expect(e.latencyMs.samples).toBe(2000);
    expect(e.tail!.batches).toBeGreaterThan(0);
    // Second by second, every event is in a batch; the checkpoint counters were read.
    expect(e.tail!.timeline.reduce((n, s) => n + s[2], 0)).toBe(2000);
    expect(e.tail!.checkpoints).not.toBeNull();
  });

  it('refuses bad producer options, a missing redis-cli and a missing or failing original, with codes', async () => {
    await expect(bench('drain', '--producer', 'python')).rejects.toMatchObject({ code: 'TRIB_ERR_CONFIG_INVALID' });
    await expect(bench('drain', '--producer', 'external', '--id-shape', 'ulid')).rejects.toMatchObject({ code: 'TRIB_ERR_CONFIG_INVALID' });
    await expect(bench('drain', '--id-shape', 'uuidv4')).rejects.toThrow(/needs --producer external/);

    const path = process.env.PATH;
    process.env.PATH = join(dir, 'nothing-here');
    try {
      await expect(loadExternal(config.redisUrl, `bench_ext_missing_${process.pid}`, 10, 'uuidv7')).rejects.toMatchObject({ code: 'TRIB_ERR_BENCH_TOOL', message: expect.stringMatching(/redis-cli.*not installed/) });
    } finally {
      process.env.PATH = path;
    }
    expect(await redis.exists(`bench_ext_missing_${process.pid}`)).toBe(0);

    await expect(bench('compare-original', join(dir, 'nowhere'), '--count', '10')).rejects.toMatchObject({ code: 'TRIB_ERR_BENCH_TOOL', message: expect.stringMatching(/bench_drain\.sh/) });
    const script = join(dir, 'bench_drain.sh');
    writeFileSync(script, '#!/usr/bin/env bash\necho "timeout at 3/10 on redis://bench:s3cret@127.0.0.1:1" >&2\nexit 1\n');
    chmodSync(script, 0o755);
    // Without the original's Python modules (a fresh machine) that is the error; with them, the script's failure.
    const modules = spawnSync('/usr/bin/python3', ['-c', 'import redis, asyncpg']).status === 0;
    await expect(bench('compare-original', dir, '--count', '10')).rejects.toMatchObject({
      code: 'TRIB_ERR_BENCH_TOOL',
      message: modules ? expect.stringMatching(/exit 1: timeout at 3\/10/) : expect.stringMatching(/apt-get install python3-redis python3-asyncpg/),
    });
    // The script's last words are quoted with any URL's password masked.
    await expect(bench('compare-original', dir, '--count', '10')).rejects.toSatisfy((err: Error) => !err.message.includes('s3cret'));
  });
});
