/**
 * Side by side with the Python engine Tributary replaces: its own drain benchmark
 * (`bench_drain.sh N` in the directory given: it resets its tables, pre-loads N events
 * with its own producer, starts its engine and polls Postgres until all N rows are in),
 * then ours on the same number of events of the same shape (event_type, payload,
 * timestamp; no event_id: `redis-cli --pipe`, external.ts), one after the other on the
 * same machine, alternating when asked for several rounds. Both rates run from starting
 * the engine process to the last row in Postgres.
 *
 * Needs the original's Python modules (Debian: python3-redis, python3-asyncpg) and a
 * `pyseed` database on the same server (created here when missing).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import type { TributaryConfig } from '../config/schema.js';
import { redactSecrets } from '../config/index.js';
import { TributaryError } from '../errors.js';
import { quoteIdent, withDefaultUser } from '../postgres/pool.js';
import { runDrain, type DrainRun } from './drain.js';

export interface CompareOptions {
  config: TributaryConfig;
  /** The Python original's directory (holds bench_drain.sh). */
  originalDir: string;
  count: number;
  rounds: number;
  timeoutMs: number;
  /** The Python interpreter (default /usr/bin/python3, or PYTHON). */
  python?: string;
  onProgress?: (message: string) => void;
}

export interface OriginalRun {
  eventsPerSec: number;
  drainSecs: number;
}

export interface CompareFigures {
  count: number;
  original: OriginalRun[];
  ours: Array<{ drainEventsPerSec: number; drainWallSecs: number; steadyEventsPerSec: number; engineCpuSecs: number | null; postgresCpuSecs: number | null }>;
  /** Medians of each side's rounds. */
  originalEventsPerSec: number;
  oursEventsPerSec: number;
  /** oursEventsPerSec / originalEventsPerSec. */
  ratio: number;
}

/** The last line of bench_drain.sh: `drain_events_per_s=<float> n=<int> drain_s=<float>`. Pure. */
export function parseOriginalDrain(output: string): OriginalRun | undefined {
  const m = /drain_events_per_s=([\d.]+)\s+n=(\d+)\s+drain_s=([\d.]+)/.exec(output);
  return m ? { eventsPerSec: Number(m[1]), drainSecs: Number(m[3]) } : undefined;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (d: Buffer) => (output = (output + d.toString()).slice(-8000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, output });
    });
  });
}

/** The database URL of `databaseUrl`'s server with another database name. */
function onDatabase(databaseUrl: string, database: string): string {
  const url = new URL(withDefaultUser(databaseUrl));
  url.pathname = `/${database}`;
  return url.toString();
}

async function ensureDatabase(databaseUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: withDefaultUser(databaseUrl) });
  client.on('error', () => {});
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${quoteIdent(database)}`);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Runs the original's bench_drain.sh once. */
async function originalDrain(options: CompareOptions, python: string): Promise<OriginalRun> {
  const script = join(options.originalDir, 'bench_drain.sh');
  const env = {
    ...process.env,
    PYTHON: python,
    REDIS_URL: options.config.redisUrl,
    DATABASE_URL: onDatabase(options.config.databaseUrl, 'pyseed'),
  };
  const { code, output } = await run('bash', [script, String(options.count), String(Math.ceil(options.timeoutMs / 1000))], env, options.timeoutMs + 60_000);
  const parsed = parseOriginalDrain(output);
  if (code !== 0 || parsed === undefined) {
    const last = redactSecrets(output.trim().split('\n').slice(-3).join(' | '));
    throw new TributaryError('TRIB_ERR_BENCH_TOOL', [script, `exit ${code}: ${last.slice(0, 400)}`]);
  }
  return parsed;
}

export async function compareOriginal(options: CompareOptions): Promise<CompareFigures> {
  const progress = options.onProgress ?? (() => {});
  const dir = resolve(options.originalDir);
  if (!existsSync(join(dir, 'bench_drain.sh'))) {
    throw new TributaryError('TRIB_ERR_BENCH_TOOL', [join(dir, 'bench_drain.sh'), 'not found: pass the Python original\'s directory (the one holding bench_drain.sh)']);
  }
  const python = options.python ?? process.env.PYTHON ?? '/usr/bin/python3';
  const check = await run(python, ['-c', 'import redis, asyncpg'], process.env, 30_000).catch((err: Error) => ({ code: -1, output: err.message }));
  if (check.code !== 0) {
    throw new TributaryError('TRIB_ERR_BENCH_TOOL', [python, 'cannot import redis and asyncpg (Debian: apt-get install python3-redis python3-asyncpg)']);
  }
  await ensureDatabase(options.config.databaseUrl, 'pyseed');

  const original: OriginalRun[] = [];
  const ours: DrainRun[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    progress(`round ${round}/${options.rounds}: the Python original drains ${options.count} events`);
    const o = await originalDrain({ ...options, originalDir: dir }, python);
    original.push(o);
    progress(`  ${o.eventsPerSec.toFixed(0)} events/s (${o.drainSecs.toFixed(2)} s)`);
    progress(`round ${round}/${options.rounds}: Tributary drains ${options.count} events of the same shape`);
    const t = await runDrain({ config: options.config, count: options.count, timeoutMs: options.timeoutMs, external: 'none' });
    ours.push(t);
    progress(`  ${t.figures.drainEventsPerSec} events/s (${t.figures.drainWallSecs.toFixed(2)} s)`);
  }
  const originalEventsPerSec = Math.round(median(original.map((o) => o.eventsPerSec)));
  const oursEventsPerSec = Math.round(median(ours.map((o) => o.figures.drainEventsPerSec)));
  return {
    count: options.count,
    original,
    ours: ours.map((r) => ({
      drainEventsPerSec: r.figures.drainEventsPerSec,
      drainWallSecs: r.figures.drainWallSecs,
      steadyEventsPerSec: r.figures.ingestEventsPerSec,
      engineCpuSecs: r.figures.cpu?.engineSecs ?? null,
      postgresCpuSecs: r.figures.cpu?.postgresSecs ?? null,
    })),
    originalEventsPerSec,
    oursEventsPerSec,
    ratio: Number((oursEventsPerSec / originalEventsPerSec).toFixed(2)),
  };
}
