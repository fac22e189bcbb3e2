/**
 * Memory bounded in bytes, not only in entries (issue 11, item 4), on the shared Redis
 * and Postgres: reads sized by bytes (a backlog of 2 MB entries drains in batches within
 * BATCH_MAX_BYTES, one larger entry alone), the per-process in-flight byte cap
 * (MAX_IN_FLIGHT_BYTES) while writes are held, the hard per-entry limit
 * (MAX_ENTRY_BYTES: dead-lettered with TRIB_ERR_ENTRY_TOO_LARGE, batch-mates written), the
 * statement path's size budget (split, never a string V8 cannot hold), and a batch whose
 * write times out split instead of retried forever (a giant entry alone dead-lettered).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { BatchReport } from '../../src/core/runner.js';
import { createPipelineMetrics } from '../../src/observability/metrics.js';
import { Engine } from '../../src/pipelines/events.js';
import { ensureEventsTable, migrate } from '../../src/postgres/migrate.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { send } from '../../src/redis/client.js';
import { PostgresEventsSink } from '../../src/sinks/postgres-events.js';
import { eventRows } from '../helpers/child.js';
import { testEnvs, waitFor, type TestEnv } from '../helpers/env.js';

const MB = 1_000_000;
const envs = testEnvs({ numWorkers: 2, batchTimeoutMs: 100, xreadBlockMs: 200 });
const RETRY = { retry: { baseMs: 10, maxMs: 50 } };

let engine: Engine | undefined;
afterEach(async () => {
  await engine?.close({ force: true }).catch(() => {});
  engine = undefined;
});

/** A payload of about `bytes` bytes of JSON, tagged with `n`. */
function payload(n: number, bytes: number): string {
  return `{"n":${n},"pad":"${'x'.repeat(Math.max(0, bytes - 20))}"}`;
}

async function produce(env: TestEnv, sizes: number[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < sizes.length; i++) {
    ids.push(String(await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 'big', 'event_id', `e-${i}`, 'payload', payload(i, sizes[i]!)])));
  }
  return ids;
}

interface Watch {
  batches: BatchReport[];
  dead: Array<{ id: string; code: string }>;
  reclaimed: number;
  errors: Error[];
  peakHeldBytes: number;
}

function watch(e: Engine): Watch {
  const w: Watch = { batches: [], dead: [], reclaimed: 0, errors: [], peakHeldBytes: 0 };
  e.on('batch', (b) => w.batches.push(b));
  e.on('deadLetter', ({ id, code }) => w.dead.push({ id, code }));
  e.on('reclaimed', ({ count }) => (w.reclaimed += count));
  e.on('error', (err) => w.errors.push(err));
  const timer = setInterval(() => (w.peakHeldBytes = Math.max(w.peakHeldBytes, e.stats().inFlightBytes)), 2);
  envs.defer(() => clearInterval(timer));
  return w;
}

describe('memory bounded in bytes', () => {
  it('a backlog of 40 x 2 MB entries drains in batches within BATCH_MAX_BYTES, the bytes held bounded', async () => {
    const env = await envs.setup('large_backlog', { batchMaxBytes: 5 * MB });
    await produce(env, Array.from({ length: 40 }, () => 2 * MB));
    engine = new Engine(env.config, RETRY);
    const w = watch(engine);
    await engine.start();
    await waitFor(async () => (await eventRows(env)) === 40, 30_000, '40 rows');
    expect(w.errors).toEqual([]);
    expect(w.batches.reduce((n, b) => n + b.written, 0)).toBe(40);
    // Every batch within BATCH_MAX_BYTES: two 2 MB entries at most.
    for (const b of w.batches) expect(b.size === 1 || b.bytes <= 5 * MB, `batch of ${b.size} entries, ${b.bytes} bytes`).toBe(true);
    expect(Math.max(...w.batches.map((b) => b.size))).toBeLessThanOrEqual(2);
    // Each worker holds the batch it fills and the one being written (a read may bring one entry over): far from the 80 MB backlog.
    expect(w.peakHeldBytes).toBeGreaterThan(0);
    expect(w.peakHeldBytes).toBeLessThanOrEqual(2 * 2 * (5 * MB + 2.1 * MB));
  });

  it('an entry larger than BATCH_MAX_BYTES among small ones goes in a batch of its own', async () => {
    const env = await envs.setup('large_alone', { batchMaxBytes: 1 * MB, numWorkers: 1 });
    const sizes = [1000, 1000, 1000, 3 * MB, 1000, 1000];
    const ids = await produce(env, sizes);
    engine = new Engine(env.config, RETRY);
    const w = watch(engine);
    await engine.start();
    await waitFor(async () => (await eventRows(env)) === sizes.length, 20_000, 'every row');
    expect(w.errors).toEqual([]);
    const big = w.batches.find((b) => b.bytes > 1 * MB);
    expect(big?.size).toBe(1);
    expect(w.dead).toEqual([]);
    expect(ids.length).toBe(6);
  });

  it('MAX_ENTRY_BYTES: a larger entry is dead-lettered with TRIB_ERR_ENTRY_TOO_LARGE (its bytes in the dead-letter stream, a note in the table), its batch-mates written', async () => {
    const env = await envs.setup('entry_limit', { maxEntryBytes: 1 * MB, numWorkers: 1 });
    const sizes = [1000, 1000, 1.5 * MB, 1000, 1000];
    const ids = await produce(env, sizes);
    engine = new Engine(env.config, RETRY);
    const w = watch(engine);
    await engine.start();
    await waitFor(async () => w.dead.length === 1 && (await eventRows(env)) === 4, 20_000, 'four rows and one dead letter');
    expect(w.dead).toEqual([{ id: ids[2], code: 'TRIB_ERR_ENTRY_TOO_LARGE' }]);
    const s = quoteIdent(env.config.pgSchema);
    const rows = await env.pool.query<{ event_id: string }>(`SELECT event_id FROM ${s}.events ORDER BY event_id`);
    expect(rows.rows.map((r) => r.event_id)).toEqual(['e-0', 'e-1', 'e-3', 'e-4']);
    const dlq = await env.pool.query<{ stream_id: string; error_code: string; error: string; fields: Record<string, string> }>(
      `SELECT stream_id, error_code, error, fields FROM ${s}.dead_letter_queue`,
    );
    expect(dlq.rows).toHaveLength(1);
    expect(dlq.rows[0]).toMatchObject({ stream_id: ids[2], error_code: 'TRIB_ERR_ENTRY_TOO_LARGE' });
    expect(dlq.rows[0]!.error).toContain('MAX_ENTRY_BYTES');
    expect(JSON.stringify(dlq.rows[0]!.fields).length).toBeLessThan(1000);
    const dead = (await send(env.redis, ['XRANGE', env.config.dlqStream, '-', '+'])) as Array<[string, string[]]>;
    expect(dead).toHaveLength(1);
    const fields = dead[0]![1];
    expect(fields[fields.indexOf('payload') + 1]).toBe(payload(2, 1.5 * MB));
    expect(fields[fields.indexOf('dlq_error_code') + 1]).toBe('TRIB_ERR_ENTRY_TOO_LARGE');
    expect((await send(env.redis, ['XPENDING', env.config.streamKey, env.config.group])) as unknown[]).toContain(0);
  });

  it('MAX_IN_FLIGHT_BYTES holds while writes are blocked, workers keep what they hold alive, then everything is written once', async () => {
    const env = await envs.setup('inflight_bytes', {
      maxInFlightBytes: 6 * MB,
      batchMaxBytes: 2 * MB,
      numWorkers: 3,
      claimIdleMs: 3000,
      claimIntervalMs: 500,
    });
    await migrate(env.pool, env.config.pgSchema);
    await ensureEventsTable(env.pool, env.config.pgSchema, env.config.eventsTable);
    await produce(env, Array.from({ length: 30 }, () => 1 * MB));
    // Writes wait on a lock the test holds for longer than CLAIM_IDLE_MS.
    const locker = await env.pool.connect();
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${quoteIdent(env.config.pgSchema)}.events IN ACCESS EXCLUSIVE MODE`);
    let locked = true;
    envs.defer(async () => {
      if (locked) await locker.query('ROLLBACK').catch(() => {});
      locker.release();
    });
    engine = new Engine(env.config, RETRY);
    const w = watch(engine);
    await engine.start();
    await waitFor(async () => engine!.stats().inFlightBytes >= 5 * MB, 10_000, 'the reads to reach the cap');
    await new Promise((r) => setTimeout(r, 4000));
    // The cap is checked before each read, and each read is sized to a worker's share of the room left.
    expect(w.peakHeldBytes).toBeLessThanOrEqual(6 * MB + 3 * 1.1 * MB);
    expect(engine.stats().read).toBeLessThan(30);
    // What the engine holds, as /metrics serves it.
    const metrics = await createPipelineMetrics(engine).metrics();
    const held = Number(/^tributary_in_flight_bytes\{[^}]*\} (\d+)$/m.exec(metrics)?.[1]);
    expect(held).toBe(engine.stats().inFlightBytes);
    expect(held).toBeGreaterThanOrEqual(5 * MB);
    await locker.query('ROLLBACK');
    locked = false;
    await waitFor(async () => (await eventRows(env)) === 30, 20_000, '30 rows');
    expect(w.errors).toEqual([]);
    expect(w.dead).toEqual([]);
    expect(w.reclaimed).toBe(0);
    expect(w.batches.reduce((n, b) => n + b.duplicates, 0)).toBe(0);
  });

  it('a batch whose write times out is split, not retried forever; a giant entry that times out alone is dead-lettered with TRIB_ERR_ENTRY_WRITE_TIMEOUT', async () => {
    const env = await envs.setup('write_timeout', { writeTimeoutMs: 400, batchSize: 8, numWorkers: 1, batchMaxBytes: 100_000, batchTimeoutMs: 500 });
    await migrate(env.pool, env.config.pgSchema);
    await ensureEventsTable(env.pool, env.config.pgSchema, env.config.eventsTable);
    const s = quoteIdent(env.config.pgSchema);
    // Each row costs 120 ms to write: 8 rows (~1 s) exceed the 400 ms timeout, 2 rows do not;
    // a row over 150 kB never fits in it.
    await env.pool.query(`CREATE FUNCTION ${s}.slow() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF length(NEW.payload::text) > 150000 THEN PERFORM pg_sleep(5); END IF;
        PERFORM pg_sleep(0.12);
        RETURN NEW;
      END $$`);
    await env.pool.query(`CREATE TRIGGER slow BEFORE INSERT ON ${s}.events FOR EACH ROW EXECUTE FUNCTION ${s}.slow()`);
    const ids = await produce(env, [...Array.from({ length: 8 }, () => 100), 200_000]);
    engine = new Engine(env.config, RETRY);
    const w = watch(engine);
    await engine.start();
    await waitFor(async () => w.dead.length === 1 && (await eventRows(env)) === 8, 30_000, 'eight rows and one dead letter');
    expect(w.dead).toEqual([{ id: ids[8], code: 'TRIB_ERR_ENTRY_WRITE_TIMEOUT' }]);
    expect(w.errors).toEqual([]);
    const first = w.batches.find((b) => b.size === 8);
    expect(first?.written).toBe(8);
    expect(first?.statements).toBeGreaterThan(1);
  });
});

describe('recovered work', () => {
  it('entries a dead run left pending are taken back in batches within BATCH_MAX_BYTES, read as bytes, one over MAX_ENTRY_BYTES dead-lettered', async () => {
    const env = await envs.setup('large_resume', { batchMaxBytes: 5 * MB, maxEntryBytes: 3 * MB, numWorkers: 1 });
    const sizes = [2 * MB, 2 * MB, 2 * MB, 4 * MB, 2 * MB, 2 * MB, 1000, 1000];
    const ids = await produce(env, sizes);
    // An earlier run of the same consumer read them all and died holding them.
    await send(env.redis, ['XGROUP', 'CREATE', env.config.streamKey, env.config.group, '0']);
    await send(env.redis, ['XREADGROUP', 'GROUP', env.config.group, `${env.config.consumerName}-1`, 'COUNT', '100', 'STREAMS', env.config.streamKey, '>']);
    engine = new Engine(env.config, RETRY);
    const w = watch(engine);
    await engine.start();
    await waitFor(async () => w.dead.length === 1 && (await eventRows(env)) === 7, 20_000, 'seven rows and one dead letter');
    expect(w.errors).toEqual([]);
    expect(w.dead).toEqual([{ id: ids[3], code: 'TRIB_ERR_ENTRY_TOO_LARGE' }]);
    const pending = w.batches.filter((b) => b.reason === 'pending');
    expect(pending.reduce((n, b) => n + b.size, 0)).toBe(8);
    for (const b of pending) expect(b.size === 1 || b.bytes <= 5 * MB, `batch of ${b.size} entries, ${b.bytes} bytes`).toBe(true);
    const dead = (await send(env.redis, ['XRANGE', env.config.dlqStream, '-', '+'])) as Array<[string, string[]]>;
    expect(dead[0]![1][dead[0]![1].indexOf('payload') + 1]).toBe(payload(3, 4 * MB));
  });
});

describe('the statement path', () => {
  it('splits a batch whose JSON would exceed its budget, and rejects a row larger than the budget alone with TRIB_ERR_ENTRY_TOO_LARGE', async () => {
    const env = await envs.setup('statement_budget');
    await ensureEventsTable(env.pool, env.config.pgSchema, 'events');
    const sink = new PostgresEventsSink(env.pool, env.config.pgSchema, 'events', 10_000);
    const row = (i: number, bytes: number) => ({ eventId: `s-${i}`, eventType: 't', payload: payload(i, bytes), streamId: `${i}-0`, producedAt: null });
    const rows = [...Array.from({ length: 10 }, (_, i) => row(i, 2000)), row(10, 20_000), row(11, 100)];
    const result = await sink.write(rows);
    expect(result.inserted).toBe(11);
    expect(result.statements).toBeGreaterThan(3);
    expect(result.rejected).toHaveLength(1);
    expect(result.rejected[0]).toMatchObject({ row: { eventId: 's-10' }, code: 'TRIB_ERR_ENTRY_TOO_LARGE' });
    // Idempotent: written again, every row is a duplicate.
    const again = await sink.write(rows.filter((r) => r.eventId !== 's-10'));
    expect(again).toMatchObject({ inserted: 0, duplicates: 11 });
  });
});
