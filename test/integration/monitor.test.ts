import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerMonitor } from '../../src/cli/commands/monitor.js';
import { sleep } from '../../src/core/backoff.js';
import { Engine } from '../../src/pipelines/events.js';
import { collectMonitorSnapshot, formatMonitor, type MonitorSnapshot } from '../../src/observability/monitor.js';
import { statsKey } from '../../src/redis/keys.js';
import { Producer } from '../../src/producer/producer.js';
import { sampleEvent } from '../../src/producer/sample.js';
import { send } from '../../src/redis/client.js';
import { REPO } from '../helpers/child.js';
import { countRows, createTestEnv, waitFor, type TestEnv } from '../helpers/env.js';
import { configFlags, runCommand } from '../fixtures/cli.js';

const RUNNER = resolve(REPO, 'dist/cli/main.js');
const BUILT = resolve(REPO, 'dist/cli/commands/monitor.js');

let env: TestEnv;
let engine: Engine;
let producer: Producer;

async function produce(n: number): Promise<string[]> {
  return producer.produceBatch(Array.from({ length: n }, () => sampleEvent()));
}

/** `rows` of the hash where the engine publishes its batch counters (about once a second). */
const publishedRows = async () => Number(await send(env.redis, ['HGET', statsKey(env.config.streamKey, env.config.group), 'rows']));

const dlqRows = async () =>
  Number((await env.pool.query<{ n: string }>(`SELECT count(*) AS n FROM "${env.config.pgSchema}".dead_letter_queue`)).rows[0]!.n);

beforeAll(async () => {
  env = await createTestEnv('monitor', { numWorkers: 2, batchSize: 50, batchTimeoutMs: 100 });
  engine = new Engine(env.config);
  await engine.start();
  producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
  await produce(200);
  await waitFor(async () => (await countRows(env)).rows === 200, 30_000, '200 rows');
  await waitFor(async () => (await publishedRows()) >= 200, 10_000, 'the engine to publish its batch counters');
});

afterAll(async () => {
  await engine?.close();
  await producer?.close();
  await env.redis.del([statsKey(env.config.streamKey, env.config.group), statsKey(env.config.streamKey, 'audit')]);
  await env.cleanup();
});

describe('collectMonitorSnapshot', () => {
  let first: MonitorSnapshot;
  let second: MonitorSnapshot;

  it('reports the stream, the groups, Postgres and latency with stable field names', async () => {
    first = await collectMonitorSnapshot(env.redis, env.pool, env.config);
    expect(Object.keys(first).sort()).toEqual(
      ['batches', 'deadLetters', 'eventsByType', 'eventsByTypeEstimated', 'groups', 'intervalMs', 'latencyMs', 'postgres', 'rates', 'stream', 'takenAt', 'version', 'warnings'].sort(),
    );
    expect(first.version).toBe(1);
    expect(first.intervalMs).toBeNull();
    expect(first.stream).toMatchObject({ key: env.config.streamKey, exists: true, length: 200, entriesAdded: 200, group: 'tributary', pending: 0, lag: 0 });
    expect(first.groups).toHaveLength(1);
    expect(first.groups[0]).toMatchObject({ name: 'tributary', configured: true, pending: 0, lag: 0, lagSource: 'redis' });
    expect(first.groups[0]!.consumerCount).toBeGreaterThanOrEqual(2);
    expect(first.groups[0]!.consumers.map((c) => c.name)).toEqual(expect.arrayContaining([`${env.config.consumerName}-1`, `${env.config.consumerName}-2`]));
    expect(first.deadLetters).toEqual({ stream: env.config.dlqStream, streamLength: 0, rows: 0, growing: false });
    expect(first.postgres).toMatchObject({ table: `${env.config.pgSchema}.events`, tableExists: true, events: 200, eventsEstimated: false, eventsLastMinute: 200 });
    expect(first.postgres.tableBytes).toBeGreaterThan(0);
    expect(first.postgres.tableSize).toMatch(/\d+ (bytes|kB|MB)/);
    expect(first.eventsByType.reduce((n, t) => n + t.count, 0)).toBe(200);
    expect(first.eventsByTypeEstimated).toBe(false);
    expect(first.latencyMs.samples).toBe(200);
    expect(first.latencyMs.p50).toBeGreaterThanOrEqual(0);
    expect(first.latencyMs.p99).toBeGreaterThanOrEqual(first.latencyMs.p50!);
    expect(first.rates).toEqual({ producedPerSec: null, writtenPerSec: null, history: { produced: [], written: [] } });
    // Published by the engine itself.
    const b = first.batches;
    expect(b).toMatchObject({ published: true, key: `tributary:stats:${env.config.streamKey}:tributary`, interval: null });
    expect(b.rows).toBe(200);
    expect(b.avgSize).toBe(Math.round((b.rows / b.batches) * 10) / 10);
    expect(Object.values(b.flushReasons).reduce((n, x) => n + x, 0)).toBe(b.batches);
    expect(first.warnings).toEqual([]);
  });

  it('computes rates, other groups, idle consumers, dead letters growing and the published batch counters', async () => {
    const key = env.config.streamKey;
    // A second group that has read 5 entries and acknowledged none.
    await send(env.redis, ['XGROUP', 'CREATE', key, 'audit', '0']);
    await send(env.redis, ['XREADGROUP', 'GROUP', 'audit', 'stuck', 'COUNT', '5', 'STREAMS', key, '>']);
    await produce(100);
    await producer.addRaw({ event_type: 'broken' }); // no payload: dead-lettered by the engine
    await waitFor(async () => (await countRows(env)).rows === 300 && (await dlqRows()) === 1, 30_000, '300 rows and 1 dead letter');
    await waitFor(async () => (await publishedRows()) >= 300, 10_000, 'the engine to publish the new batches');
    await sleep(20);

    second = await collectMonitorSnapshot(env.redis, env.pool, env.config, first, { lagWarning: 50, idleWarningMs: 0 });
    expect(second.intervalMs).toBeGreaterThan(0);
    expect(second.stream).toMatchObject({ length: 301, entriesAdded: 301, pending: 0, lag: 0 });
    expect(second.rates.producedPerSec).toBeGreaterThan(0);
    expect(second.rates.writtenPerSec).toBeGreaterThan(0);
    expect(second.rates.history.produced).toEqual([second.rates.producedPerSec]);
    expect(second.rates.history.written).toEqual([second.rates.writtenPerSec]);

    const audit = second.groups.find((g) => g.name === 'audit')!;
    expect(audit).toMatchObject({ configured: false, pending: 5, consumerCount: 1, lag: 296 });
    expect(audit.consumers).toEqual([{ name: 'stuck', pending: 5, idleMs: expect.any(Number) }]);

    expect(second.deadLetters).toEqual({ stream: env.config.dlqStream, streamLength: 1, rows: 1, growing: true });
    expect(second.postgres.events).toBe(300);
    expect(second.batches.published).toBe(true);
    expect(second.batches.interval!.rows).toBe(second.batches.rows - first.batches.rows);
    expect(second.batches.interval!.rows).toBeGreaterThanOrEqual(100);
    expect(second.batches.interval!.batches).toBe(second.batches.batches - first.batches.batches);

    const kinds = second.warnings.map((w) => `${w.kind}:${w.group ?? ''}:${w.consumer ?? ''}`).sort();
    expect(kinds).toEqual(['consumer_idle:audit:stuck', 'dead_letters_growing::', 'lag:audit:'].sort());
  });

  it('reads the batch counters of the configured group exactly, and their change since the previous snapshot', async () => {
    // The group `audit` runs no engine: its hash holds exactly what is written here.
    const config = { ...env.config, group: 'audit' };
    const hash = statsKey(env.config.streamKey, 'audit');
    await send(env.redis, ['HSET', hash, 'batches', '4', 'rows', '200', 'flush:size', '1', 'flush:caught_up', '3']);
    const a = await collectMonitorSnapshot(env.redis, env.pool, config, second);
    expect(a.batches).toEqual({ published: true, key: hash, batches: 4, rows: 200, avgSize: 50, flushReasons: { size: 1, caught_up: 3 }, interval: null });
    expect(a.stream).toMatchObject({ group: 'audit', pending: 5, lag: 296 });
    expect(a.groups.find((g) => g.configured)!.name).toBe('audit');
    await send(env.redis, ['HINCRBY', hash, 'batches', '2']);
    await send(env.redis, ['HINCRBY', hash, 'rows', '60']);
    await send(env.redis, ['HINCRBY', hash, 'flush:time', '2']);
    const b = await collectMonitorSnapshot(env.redis, env.pool, config, a);
    expect(b.batches.interval).toEqual({ batches: 2, rows: 60, avgSize: 30, flushReasons: { time: 2 } });
    expect(b.batches.flushReasons).toEqual({ size: 1, caught_up: 3, time: 2 });
    expect(b.rates.history.produced).toHaveLength(3);
    expect(b.deadLetters.growing).toBe(false);
  });

  it('reads a stream, group and table that do not exist as empty, with a warning for the table', async () => {
    const config = { ...env.config, streamKey: `${env.name}:nothing`, pgSchema: `${env.name}_none`, group: 'nobody' };
    const s = await collectMonitorSnapshot(env.redis, env.pool, config);
    expect(s.stream).toMatchObject({ exists: false, length: 0, entriesAdded: null, pending: 0, lag: null });
    expect(s.groups).toEqual([]);
    expect(s.postgres).toMatchObject({ tableExists: false, events: 0 });
    expect(s.warnings.map((w) => w.kind)).toEqual(['table_missing']);
  });
});

describe('tributary monitor (commander program)', () => {
  it('--json prints one JSON object with the snapshot fields', async () => {
    const out = await runCommand(registerMonitor, ['monitor', '--json', ...configFlags(env)]);
    const s = JSON.parse(out) as MonitorSnapshot;
    expect(s.version).toBe(1);
    expect(s.stream.length).toBe(301);
    expect(s.postgres.events).toBe(300);
    expect(s.deadLetters.rows).toBe(1);
    expect(s.groups.map((g) => g.name).sort()).toEqual(['audit', 'tributary']);
    expect(s.warnings.map((w) => w.kind)).toEqual([]); // default thresholds: lag 296 < 10,000; idle < 60 s
  });

  it('--once prints the dashboard as plain text', async () => {
    const out = await runCommand(registerMonitor, ['monitor', '--once', '--lag-warning', '10', ...configFlags(env)]);
    expect(out).not.toContain('\x1b');
    for (const line of ['STREAMING PIPELINE DASHBOARD', 'Stream Length: 301', 'Pending Messages: 0', 'DLQ Length: 1', 'Total Events: 300', 'DLQ Count: 1', 'Events by Type:']) {
      expect(out).toContain(line);
    }
    expect(out).toMatch(/audit\s+296\s+5\s+1/);
    expect(out).toContain('! group audit: lag 296 is above 10');
    expect(out).toMatch(/Total: \d+ batches, \d+ rows, avg [\d.]+ per batch/);
    expect(out).toMatch(/Flush reasons: \w+ \d+/);
  });

  it('--once measures rates over a short sample; --sample 0 takes a single snapshot', async () => {
    const sampled = JSON.parse(await runCommand(registerMonitor, ['monitor', '--once', '--json', '--sample', '0.3', ...configFlags(env)]));
    expect(sampled.intervalMs).toBeGreaterThanOrEqual(250);
    expect(typeof sampled.rates.producedPerSec).toBe('number');
    expect(typeof sampled.rates.writtenPerSec).toBe('number');
    const single = JSON.parse(await runCommand(registerMonitor, ['monitor', '--once', '--json', '--sample', '0', ...configFlags(env)]));
    expect(single.intervalMs).toBeNull();
    expect(single.rates.producedPerSec).toBeNull();
  });

  it('rejects a bad interval with a coded error', async () => {
    await expect(runCommand(registerMonitor, ['monitor', 'soon', ...configFlags(env)])).rejects.toMatchObject({
      code: 'TRIB_ERR_CONFIG_INVALID',
      message: expect.stringContaining('interval-seconds'),
    });
  });
});

describe('tributary monitor (a process)', () => {
  beforeAll(() => {
    if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` before these tests`);
  });

  it('--once on a pipe prints plain text, no escape codes', () => {
    const out = execFileSync(process.execPath, [RUNNER, 'monitor', '--once', ...configFlags(env)], { cwd: REPO, encoding: 'utf8', env: { ...process.env, NO_COLOR: '' } });
    expect(out).toContain('STREAMING PIPELINE DASHBOARD');
    expect(out).toContain('Total Events: 300');
    expect(out).not.toContain('\x1b');
  });

  it('with an interval and --json prints one JSON line per refresh until SIGTERM', async () => {
    const child = spawn(process.execPath, [RUNNER, 'monitor', '0.2', '--json', ...configFlags(env)], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitFor(async () => out.split('\n').filter(Boolean).length >= 3, 15_000, 'three JSON lines');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as MonitorSnapshot);
    expect(lines[0]!.intervalMs).toBeNull();
    expect(lines[1]!.intervalMs).toBeGreaterThan(0);
    expect(lines[2]!.rates.history.produced.length).toBe(2);
  });
});

const hasTmux = (() => {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasTmux)('tributary monitor live view (in tmux)', () => {
  const session = `trib-monitor-${randomBytes(4).toString('hex')}`;
  const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });
  const screen = () => tmux('capture-pane', '-p', '-t', session);
  const flags = (format: string) => tmux('display-message', '-p', '-t', session, format).trim();
  const waitScreen = (test: (text: string) => boolean, what: string, timeoutMs = 15_000) =>
    waitFor(async () => test(screen()), timeoutMs, `${what}; screen:\n${screen()}`);

  beforeAll(() => {
    if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` before these tests`);
    tmux('-u', 'new-session', '-d', '-s', session, '-x', '120', '-y', '50', '-c', REPO);
  });
  afterAll(() => {
    try {
      tmux('kill-session', '-t', session);
    } catch {
      // already gone
    }
  });

  // The markers are completed by the shell (`$?`, `$R`), so the typed command line never matches them.
  const command = (marker: string) =>
    `clear; R=restored; S=$(stty -g); env -u NO_COLOR ${process.execPath} ${RUNNER} monitor 1 ${configFlags(env).join(' ')}; ` +
    `echo "${marker} EXIT=$?"; [ "$(stty -g)" = "$S" ] && echo "${marker} TTY_$R"`;

  it.each([
    ['q', 'q'],
    ['Ctrl-C', 'C-c'],
  ])('redraws in place, updates, and %s quits restoring the terminal', async (_name, key) => {
    const marker = `DONE-${randomBytes(3).toString('hex')}`;
    tmux('send-keys', '-t', session, command(marker), 'Enter');
    await waitScreen((t) => t.includes('STREAMING PIPELINE DASHBOARD') && t.includes('q or Ctrl-C quits'), 'the dashboard');
    expect(flags('#{alternate_on}')).toBe('1'); // drawn on the alternate screen
    expect(flags('#{cursor_flag}')).toBe('0'); // cursor hidden
    const before = screen();
    expect(before.match(/STREAMING PIPELINE DASHBOARD/g)).toHaveLength(1); // redrawn in place, not appended
    const length = Number(/Stream Length: (\d+)/.exec(before)![1]);

    await produce(7);
    await waitScreen((t) => t.includes(`Stream Length: ${length + 7}`), 'the new stream length');
    await waitScreen((t) => /Produced: \d+\.\d\/s\s+[▁▂▃▄▅▆▇█]{2,}/.test(t), 'a rate with a sparkline');
    expect(screen().match(/STREAMING PIPELINE DASHBOARD/g)).toHaveLength(1);

    tmux('send-keys', '-t', session, key);
    await waitScreen((t) => t.includes(`${marker} EXIT=0`) && t.includes(`${marker} TTY_restored`), 'exit 0 and the terminal restored', 10_000);
    expect(flags('#{alternate_on}')).toBe('0');
    expect(flags('#{cursor_flag}')).toBe('1');
    expect(screen()).not.toContain('STREAMING PIPELINE DASHBOARD'); // the alternate screen is gone
  });
});

describe('a large events table', () => {
  it('is estimated (pg_class.reltuples, a TABLESAMPLE of the types), marked ~, and its write rate still measured', async () => {
    const length = Number(await send(env.redis, ['XLEN', env.config.streamKey]));
    await waitFor(async () => (await countRows(env)).rows === length - 1, 30_000, 'every event written'); // one is poison
    await env.pool.query(`ANALYZE "${env.config.pgSchema}".events`);
    const large = { estimateAboveRows: 10 }; // "large" from 10 rows on, so this small table takes the estimating path
    const a = await collectMonitorSnapshot(env.redis, env.pool, env.config, undefined, large);
    expect(a.postgres).toMatchObject({ eventsEstimated: true, events: length - 1 });
    expect(a.eventsByTypeEstimated).toBe(true);
    // The sample is 100,000 rows' worth, so here the whole table: the scaled counts are exact.
    expect(a.eventsByType.reduce((n, t) => n + t.count, 0)).toBe(length - 1);

    await produce(20);
    await waitFor(async () => (await countRows(env)).rows === length + 19, 30_000, '20 more rows');
    const b = await collectMonitorSnapshot(env.redis, env.pool, env.config, a, large);
    expect(b.rates.writtenPerSec).toBeGreaterThan(0); // rows ingested since the previous snapshot's database time
    expect(b.rates.producedPerSec).toBeGreaterThan(0);
    const text = formatMonitor(b, { color: false });
    expect(text).toContain(`Total Events: ~${b.postgres.events}`);
    expect(text).toContain('Events by Type: (estimated from a sample)');
  });
});
