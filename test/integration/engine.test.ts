import { describe, expect, it } from 'vitest';
import { Engine, type EngineEvents } from '../../src/pipelines/events.js';
import { parseEntry } from '../../src/core/entry.js';
import { loadMigrations, migrate } from '../../src/postgres/migrate.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { Producer } from '../../src/producer/producer.js';
import { sampleEvent } from '../../src/producer/sample.js';
import { send } from '../../src/redis/client.js';
import { PostgresEventsSink } from '../../src/sinks/postgres-events.js';
import { countRows, createTestEnv, testEnvs, pendingCount, waitFor, type TestEnv } from '../helpers/env.js';

const fast = { numWorkers: 3, batchTimeoutMs: 200, xreadBlockMs: 200, claimIdleMs: 3000, claimIntervalMs: 200 };

const envs = testEnvs(fast);

const setup = (label: string, overrides: Record<string, unknown> = {}) => envs.setup(label, overrides);

function startEngine(env: TestEnv, overrides: Record<string, unknown> = {}) {
  const engine = new Engine({ ...env.config, ...overrides }, { retry: { baseMs: 20, maxMs: 300 } });
  const events: { [K in keyof EngineEvents]?: EngineEvents[K][] } = {};
  for (const name of ['batch', 'deadLetter', 'reclaimed', 'deleted', 'serverDown', 'serverUp', 'error'] as const) {
    engine.on(name, (arg: EngineEvents[typeof name]) => {
      ((events[name] ??= []) as unknown[]).push(arg);
    });
  }
  envs.defer(() => engine.close({ force: true }));
  return { engine, events };
}

async function produce(env: TestEnv, n: number): Promise<string[]> {
  const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
  const ids: string[] = [];
  try {
    for (let done = 0; done < n; done += 500) {
      const batch = Array.from({ length: Math.min(500, n - done) }, () => sampleEvent());
      ids.push(...(await producer.produceBatch(batch.map((e) => ({ type: e.type, payload: e.payload })))));
    }
  } finally {
    await producer.close();
  }
  return ids;
}

async function readAs(env: TestEnv, consumer: string, count: number): Promise<string[]> {
  await send(env.redis, ['XGROUP', 'CREATE', env.config.streamKey, env.config.group, '0', 'MKSTREAM']).catch(() => {});
  const reply = (await send(env.redis, [
    'XREADGROUP', 'GROUP', env.config.group, consumer, 'COUNT', String(count), 'STREAMS', env.config.streamKey, '>',
  ])) as [string, [string, string[]][]][];
  return reply[0]![1].map((e) => e[0]);
}

async function deliveriesOf(env: TestEnv): Promise<Map<string, number>> {
  const rows = (await send(env.redis, ['XPENDING', env.config.streamKey, env.config.group, '-', '+', '100000'])) as [string, string, number, number][];
  return new Map(rows.map((r) => [r[0], Number(r[3])]));
}

describe('engine: stream to Postgres', () => {
  it('writes 10,000 events exactly once: none pending, none dead', async () => {
    const env = await setup('ten_k');
    const { engine, events } = startEngine(env);
    await engine.start();
    const ids = await produce(env, 10_000);
    await waitFor(async () => (await countRows(env)).rows >= 10_000, 30_000, '10,000 rows');
    await waitFor(async () => (await pendingCount(env)) === 0, 10_000, 'no pending');
    await engine.close();

    expect(await countRows(env)).toEqual({ rows: 10_000, distinct: 10_000 });
    const streamIds = await env.pool.query(`SELECT count(*)::int AS n FROM ${quoteIdent(env.config.pgSchema)}.events WHERE stream_id = ANY($1)`, [ids]);
    expect(streamIds.rows[0].n).toBe(10_000);
    expect(await pendingCount(env)).toBe(0);
    expect(await countRows(env, 'dead_letter_queue')).toEqual({ rows: 0, distinct: 0 });
    expect(Number(await send(env.redis, ['XLEN', env.config.dlqStream]))).toBe(0);
    const stats = engine.stats();
    expect(stats.written).toBe(10_000);
    expect(stats.read).toBe(10_000);
    expect(stats.inFlight).toBe(0);
    expect(events.error ?? []).toEqual([]);
    // Batches are flushed for a reason the policy names.
    for (const b of events.batch ?? []) expect(['size', 'bytes', 'time', 'caught_up', 'capacity', 'shutdown', 'pending', 'reclaim']).toContain(b.reason);
  });

  it('a redelivered entry that was already written adds no row', async () => {
    const env = await setup('redelivery');
    await produce(env, 300);
    // A consumer read them and committed, then "crashed" before XACK.
    const read = await readAs(env, 'crashed-consumer', 300);
    const entries = (await send(env.redis, ['XRANGE', env.config.streamKey, '-', '+'])) as [string, string[]][];
    const rows = entries.map(([id, f]) => {
      const fields: Record<string, string> = {};
      for (let i = 0; i < f.length; i += 2) fields[f[i]!] = f[i + 1]!;
      const parsed = parseEntry({ id, fields }, env.config.streamKey);
      if (!parsed.ok) throw new Error('bad sample');
      return parsed.row;
    });
    await new PostgresEventsSink(env.pool, env.config.pgSchema).write(rows);
    expect(read.length).toBe(300);
    expect(await pendingCount(env)).toBe(300);

    // The engine reclaims them after CLAIM_IDLE_MS and processes them again.
    const { engine, events } = startEngine(env);
    await engine.start();
    await waitFor(async () => (await pendingCount(env)) === 0, 20_000, 'reclaim of the crashed consumer');
    await engine.close();
    expect(await countRows(env)).toEqual({ rows: 300, distinct: 300 });
    expect(engine.stats().duplicates).toBe(300);
    expect(engine.stats().written).toBe(0);
    expect((events.reclaimed ?? []).reduce((s, r) => s + r.count, 0)).toBe(300);
  });

  it('dead-letters poison entries of each kind and writes their batch-mates', async () => {
    const env = await setup('poison', { numWorkers: 1, batchSize: 100, xreadCount: 100 });
    const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
    const good = (i: number) => ({ event_type: 'order_placed', payload: JSON.stringify({ i }), event_id: `good-${i}` });
    const poison: Array<[Record<string, string>, string]> = [
      [{ payload: '{"a":1}', event_id: 'p-no-type' }, 'TRIB_ERR_ENTRY_MISSING_FIELD'],
      [{ event_type: 'x', event_id: 'p-no-payload' }, 'TRIB_ERR_ENTRY_MISSING_FIELD'],
      [{ event_type: 'x', payload: '{oops', event_id: 'p-bad-json' }, 'TRIB_ERR_ENTRY_BAD_PAYLOAD'],
      [{ event_type: 'x', payload: '{}', produced_at: 'soon', event_id: 'p-bad-time' }, 'TRIB_ERR_ENTRY_BAD_FIELD'],
      // Valid JSON that jsonb refuses: found by Postgres, isolated by splitting the batch.
      [{ event_type: 'x', payload: '{"a":"\\u0000"}', event_id: 'p-jsonb-nul' }, 'TRIB_ERR_ENTRY_REJECTED'],
      // A real NUL byte in a text column: also refused by Postgres.
      [{ event_type: 'x\u0000y', payload: '{}', event_id: 'p-text-nul' }, 'TRIB_ERR_ENTRY_REJECTED'],
    ];
    let n = 0;
    for (const [fields] of poison) {
      for (let k = 0; k < 7; k++) await producer.addRaw(good(n++));
      await producer.addRaw(fields);
    }
    for (let k = 0; k < 7; k++) await producer.addRaw(good(n++));
    await producer.close();

    const { engine, events } = startEngine(env);
    await engine.start();
    await waitFor(async () => (await countRows(env, 'dead_letter_queue')).rows >= poison.length && (await pendingCount(env)) === 0, 20_000, 'dead letters');
    await engine.close();

    expect(await countRows(env)).toEqual({ rows: n, distinct: n });
    const s = quoteIdent(env.config.pgSchema);
    const dlq = await env.pool.query<{ event_id: string; error_code: string; error: string; fields: Record<string, string>; deliveries: number }>(
      `SELECT event_id, error_code, error, fields, deliveries FROM ${s}.dead_letter_queue ORDER BY id`,
    );
    expect(dlq.rows.map((r) => [r.event_id, r.error_code]).sort()).toEqual(
      poison.map(([f, code]) => [f.event_id, code]).sort(),
    );
    const nul = dlq.rows.find((r) => r.event_id === 'p-jsonb-nul')!;
    expect(nul.error).toMatch(/22P05|unicode|\\u0000/i);
    expect(nul.fields.payload).toBe('{"a":"\\u0000"}');
    expect(dlq.rows.find((r) => r.event_id === 'p-text-nul')!.fields.event_type).toBe('x\\u0000y');
    // The dead-letter stream holds the entries as received, with the reason.
    const stream = (await send(env.redis, ['XRANGE', env.config.dlqStream, '-', '+'])) as [string, string[]][];
    expect(stream.length).toBe(poison.length);
    const first = stream.map(([, f]) => Object.fromEntries(f.flatMap((_, i) => (i % 2 ? [] : [[f[i], f[i + 1]]])))).find((f) => f.event_id === 'p-text-nul')!;
    expect(first.event_type).toBe('x\u0000y');
    expect(first.dlq_error_code).toBe('TRIB_ERR_ENTRY_REJECTED');
    expect(first.dlq_source_stream).toBe(env.config.streamKey);
    expect(events.deadLetter?.length).toBe(poison.length);
    // Splitting sent more statements than batches, and only for the batches with a refused row.
    expect((events.batch ?? []).some((b) => b.statements > 1)).toBe(true);
  });

  it('dead-letters an entry reclaimed with more than MAX_DELIVERIES deliveries', async () => {
    const env = await setup('max_deliveries', { maxDeliveries: 3 });
    const ids = await produce(env, 10);
    await readAs(env, 'flaky', 10);
    // Three more claims by other (failing) consumers: 4 deliveries for the first five entries.
    for (let i = 0; i < 3; i++) await send(env.redis, ['XCLAIM', env.config.streamKey, env.config.group, `flaky-${i}`, '0', ...ids.slice(0, 5)]);
    const { engine } = startEngine(env);
    await engine.start();
    await waitFor(async () => (await pendingCount(env)) === 0, 20_000, 'reclaim');
    await engine.close();
    const s = quoteIdent(env.config.pgSchema);
    const dlq = await env.pool.query<{ stream_id: string; error_code: string; deliveries: number }>(
      `SELECT stream_id, error_code, deliveries FROM ${s}.dead_letter_queue ORDER BY stream_id`,
    );
    expect(dlq.rows.map((r) => r.stream_id).sort()).toEqual(ids.slice(0, 5).sort());
    for (const r of dlq.rows) {
      expect(r.error_code).toBe('TRIB_ERR_ENTRY_MAX_DELIVERIES');
      expect(r.deliveries).toBe(5); // 1 read + 3 claims + the engine's own reclaim
    }
    expect((await countRows(env)).rows).toBe(5);
  });

  it("counts a restart that finds its own pending entries once, and never the retries of a held batch", async () => {
    const env = await setup('own_pending', { maxDeliveries: 2 });
    await produce(env, 50);
    const consumer = `${env.config.consumerName}-1`;
    await readAs(env, consumer, 50); // delivery 1; then this "process" dies holding them
    expect([...(await deliveriesOf(env)).values()].every((d) => d === 1)).toBe(true);

    // Make the engine's writes fail (a trigger raises; a missing table would be recreated): it must hold the entries, not re-read them.
    const s = quoteIdent(env.config.pgSchema);
    await env.pool.query(
      `CREATE FUNCTION ${s}.refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'writes refused by the test'; END $$; ` +
        `CREATE TRIGGER refuse_writes BEFORE INSERT ON ${s}.events FOR EACH STATEMENT EXECUTE FUNCTION ${s}.refuse_writes()`,
    );
    // The engine restarts under the same name, with a reclaim idle time too long to interfere.
    const { engine, events } = startEngine(env, { numWorkers: 1, claimIdleMs: 600_000, xreadBlockMs: 100 });
    await engine.start();
    await waitFor(async () => (events.serverDown ?? []).some((d) => d.server === 'postgres'), 10_000, 'write failure');
    await new Promise((r) => setTimeout(r, 500)); // many retries meanwhile
    // The restart counted once (2 = MAX_DELIVERIES, still allowed) for what the worker took
    // back (one entry first: it cannot know their size yet, they may be as large as
    // MAX_ENTRY_BYTES); the retries of that held batch counted nothing.
    const held = [...(await deliveriesOf(env)).values()];
    expect(held[0]).toBe(2);
    expect(held.every((d) => d === 1 || d === 2)).toBe(true);
    await env.pool.query(`DROP TRIGGER refuse_writes ON ${s}.events`);
    await waitFor(async () => (await pendingCount(env)) === 0, 10_000, 'own pending drained');
    await engine.close();
    expect((events.serverUp ?? []).some((u) => u.server === 'postgres')).toBe(true);
    expect(await countRows(env)).toEqual({ rows: 50, distinct: 50 });
    expect((await countRows(env, 'dead_letter_queue')).rows).toBe(0);
  });

  it('dead-letters an entry that keeps crashing the process (found pending at each restart) after MAX_DELIVERIES', async () => {
    const env = await setup('crash_loop', { maxDeliveries: 3 });
    const ids = await produce(env, 10);
    const consumer = `${env.config.consumerName}-1`;
    await readAs(env, consumer, 10);
    // Three earlier runs died holding the first four (each restart counted one delivery).
    for (let i = 0; i < 2; i++) await send(env.redis, ['XCLAIM', env.config.streamKey, env.config.group, consumer, '0', ...ids.slice(0, 4)]);
    const { engine } = startEngine(env, { numWorkers: 1, claimIdleMs: 600_000 });
    await engine.start();
    await waitFor(async () => (await pendingCount(env)) === 0, 10_000, 'drain');
    await engine.close();
    const s = quoteIdent(env.config.pgSchema);
    const dlq = await env.pool.query<{ stream_id: string; error_code: string; deliveries: number }>(
      `SELECT stream_id, error_code, deliveries FROM ${s}.dead_letter_queue`,
    );
    expect(dlq.rows.map((r) => r.stream_id).sort()).toEqual(ids.slice(0, 4).sort());
    expect(dlq.rows.every((r) => r.error_code === 'TRIB_ERR_ENTRY_MAX_DELIVERIES' && r.deliveries === 4)).toBe(true);
    expect((await countRows(env)).rows).toBe(6);
  });

  it('clears pending entries whose stream entry was deleted (trimmed) before it was processed', async () => {
    const env = await setup('trimmed');
    const ids = await produce(env, 20);
    const consumer = `${env.config.consumerName}-1`;
    await readAs(env, consumer, 20);
    await send(env.redis, ['XDEL', env.config.streamKey, ...ids.slice(0, 5)]);
    const { engine, events } = startEngine(env, { numWorkers: 1, claimIdleMs: 600_000 });
    await engine.start();
    await waitFor(async () => (await pendingCount(env)) === 0, 10_000, 'pending cleared');
    await engine.close();
    expect((await countRows(env)).rows).toBe(15);
    expect((events.deleted ?? []).flatMap((d) => d.ids).sort()).toEqual(ids.slice(0, 5).sort());
  });

  it('keeps in-flight entries under MAX_IN_FLIGHT whatever the backlog', async () => {
    const env = await setup('bounded', { numWorkers: 4, batchSize: 200, xreadCount: 100, maxInFlight: 300 });
    await produce(env, 8000);
    const { engine } = startEngine(env);
    let peak = 0;
    engine.on('batch', () => (peak = Math.max(peak, engine.stats().inFlight)));
    const sampler = setInterval(() => (peak = Math.max(peak, engine.stats().inFlight)), 1);
    await engine.start();
    await waitFor(async () => (await countRows(env)).rows >= 8000, 30_000, 'drain');
    clearInterval(sampler);
    await engine.close();
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(300);
    expect(await countRows(env)).toEqual({ rows: 8000, distinct: 8000 });
  });

  it('close() is idempotent and leaves nothing pending', async () => {
    const env = await setup('close_twice');
    const { engine } = startEngine(env);
    await engine.start();
    await produce(env, 1000);
    const a = engine.close();
    const b = engine.close();
    expect(a).toBe(b);
    await a;
    await expect(engine.start()).rejects.toMatchObject({ code: 'TRIB_ERR_ENGINE_CLOSED' });
    const rows = (await countRows(env)).rows;
    expect(await pendingCount(env)).toBe(0);
    expect(rows).toBe(engine.stats().read);
  });
});

describe('engine: lifecycle edges', () => {
  it('recreates the group when the stream is deleted under it, and keeps consuming', async () => {
    const env = await setup('stream_deleted', { numWorkers: 2 });
    const { engine } = startEngine(env);
    await engine.start();
    await produce(env, 100);
    await waitFor(async () => (await countRows(env)).rows === 100, 10_000, 'first 100');
    await env.redis.del(env.config.streamKey);
    await produce(env, 100);
    await waitFor(async () => (await countRows(env)).rows === 200, 15_000, 'events after the stream was recreated');
    await engine.close();
    expect(await pendingCount(env)).toBe(0);
  });

  it('close() during a start() that waits for an unreachable Redis returns promptly and starts nothing', async () => {
    const env = await setup('close_while_starting');
    const engine = new Engine({ ...env.config, redisUrl: 'redis://127.0.0.1:1' }, { retry: { baseMs: 20, maxMs: 100 } });
    const downs: string[] = [];
    engine.on('serverDown', ({ server }) => downs.push(server));
    const starting = engine.start().catch((err) => err);
    await waitFor(async () => downs.includes('redis'), 5000, 'redis reported down');
    const started = Date.now();
    await engine.close();
    expect(Date.now() - started).toBeLessThan(3000);
    const outcome = await starting;
    expect(outcome === undefined || outcome.code === 'TRIB_ERR_ENGINE_CLOSED').toBe(true);
    expect(engine.running).toBe(false);
    expect(engine.stats().read).toBe(0);
  });
});

describe('migrations', () => {
  it('are safe to run concurrently and record each version once', async () => {
    const env = await createTestEnv('migrate');
    envs.defer(() => env.cleanup());
    const results = await Promise.all(Array.from({ length: 5 }, () => migrate(env.pool, env.config.pgSchema)));
    const all = loadMigrations().map((m) => m.name);
    expect(all.slice(0, 2)).toEqual(['001_events', '002_dead_letter_queue']);
    expect(results.flatMap((r) => r.applied).sort()).toEqual(all);
    const s = quoteIdent(env.config.pgSchema);
    const versions = await env.pool.query(`SELECT version FROM ${s}.tributary_migrations ORDER BY version`);
    expect(versions.rows.map((r) => r.version)).toEqual(loadMigrations().map((m) => m.version));
  });
});
