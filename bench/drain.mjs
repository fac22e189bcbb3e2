// Drain benchmark: pre-load N events into a fresh stream with the engine stopped, start
// `tributary start` (default settings unless overridden by env) as a child process, and time
// until all N rows are in Postgres. Writes bench/results/drain-<timestamp>.json.
//
//   node bench/drain.mjs [count]          (run `npm run build` first; ./run.sh up for servers)
import { spawn } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { resolveConfig, Producer, sampleEvent, createPgPool, createRedisConnection, migrate } from '../dist/index.js';

const count = Number(process.argv[2] ?? 100_000);
const tag = `bench_drain_${Date.now()}`;
const base = resolveConfig();
const config = resolveConfig({ overrides: { streamKey: `${tag}:events`, dlqStream: `${tag}:dead`, pgSchema: tag, consumerName: tag } });
const pool = createPgPool(config.databaseUrl, { max: 2 });
const redis = createRedisConnection(config.redisUrl, { failFast: false });
await redis.connect();
await migrate(pool, config.pgSchema);

const producer = new Producer({ redisUrl: config.redisUrl, streamKey: config.streamKey });
const loadStart = performance.now();
for (let done = 0; done < count; done += 1000) {
  await producer.produceBatch(Array.from({ length: Math.min(1000, count - done) }, () => sampleEvent()));
}
const loadSecs = (performance.now() - loadStart) / 1000;
await producer.close();

const env = { ...process.env, REDIS_URL: config.redisUrl, DATABASE_URL: config.databaseUrl, STREAM_KEY: config.streamKey, DLQ_STREAM: config.dlqStream, PG_SCHEMA: config.pgSchema, CONSUMER_NAME: tag };
const started = performance.now();
const startedAtMs = Date.now();
const child = spawn(process.execPath, ['dist/cli/main.js', 'start'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
let stderr = '';
child.stderr.on('data', (d) => (stderr += d));
let peakRssKb = 0;
let rows = 0;
while (rows < count) {
  await new Promise((r) => setTimeout(r, 250)); // slow polling: the count competes with the engine for Postgres
  rows = Number((await pool.query(`SELECT count(*) AS n FROM "${tag}".events`)).rows[0].n);
  try {
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    peakRssKb = Math.max(peakRssKb, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0));
  } catch {}
  if (child.exitCode !== null) throw new Error(`engine exited early:\n${stderr}`);
  if (performance.now() - started > 300_000) throw new Error('timed out');
}
// End = the last commit, by Postgres's clock (same machine), not when our slow poll noticed it.
const times = (await pool.query(`SELECT extract(epoch FROM max(ingested_at)) * 1000 AS last, extract(epoch FROM max(ingested_at) - min(ingested_at)) AS span FROM "${tag}".events`)).rows[0];
const wallSecs = (Number(times.last) - startedAtMs) / 1000;
const span = times.span;
child.kill('SIGTERM');
await new Promise((r) => child.on('exit', r));
const pending = Number((await redis.sendCommand(['XPENDING', config.streamKey, config.group]))[0]);

const versions = {
  node: process.version,
  redis: /redis_version:(\S+)/.exec(await redis.sendCommand(['INFO', 'server']))?.[1],
  postgres: (await pool.query('SHOW server_version')).rows[0].server_version,
};
const result = {
  bench: 'drain',
  at: new Date().toISOString(),
  machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), ...versions },
  settings: { count, numWorkers: base.numWorkers, batchSize: base.batchSize, batchTimeoutMs: base.batchTimeoutMs, xreadCount: base.xreadCount },
  figures: {
    rows,
    pendingAfter: pending,
    loadEventsPerSec: Math.round(count / loadSecs),
    // From spawning the engine (process start, connect, migrate included) to the last row visible.
    drainWallSecs: Number(wallSecs.toFixed(3)),
    drainEventsPerSec: Math.round(count / wallSecs),
    // First to last ingested_at: the steady-state write rate.
    ingestSpanSecs: Number(Number(span).toFixed(3)),
    ingestEventsPerSec: Math.round(count / Number(span)),
    enginePeakRssMiB: Math.round(peakRssKb / 1024),
  },
};
await redis.del([config.streamKey, config.dlqStream]);
await pool.query(`DROP SCHEMA "${tag}" CASCADE`);
await pool.end();
redis.destroy();
const file = `bench/results/drain-${result.at.replace(/[:.]/g, '-')}.json`;
writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
console.log(JSON.stringify(result.figures), `\nwritten to ${file}`);
