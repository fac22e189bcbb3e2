import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { registerDlq } from '../../src/cli/commands/dlq.js';
import { DeadLetterWriter } from '../../src/sinks/dead-letters.js';
import { Engine } from '../../src/pipelines/events.js';
import { isTributaryError, type ErrorCode } from '../../src/errors.js';
import {
  getDeadLetter,
  listDeadLetters,
  planPurge,
  purgeDeadLetters,
  retryDeadLetters,
  type DeadLetterOps,
  type RetryOutcome,
} from '../../src/ops/dead-letters.js';
import { migrate } from '../../src/postgres/migrate.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { send } from '../../src/redis/client.js';
import { createTestEnv, pendingCount, waitFor, type TestEnv, codeOf } from '../helpers/env.js';

const fast = { numWorkers: 2, batchTimeoutMs: 200, xreadBlockMs: 200, claimIdleMs: 3000, claimIntervalMs: 200 };

let cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function setup(label: string): Promise<{ env: TestEnv; ops: DeadLetterOps; s: string }> {
  const env = await createTestEnv(label, fast);
  cleanups.push(() => env.cleanup());
  await migrate(env.pool, env.config.pgSchema);
  await send(env.redis, ['XGROUP', 'CREATE', env.config.streamKey, env.config.group, '0', 'MKSTREAM']);
  return { env, ops: { redis: env.redis, pool: env.pool, config: env.config }, s: quoteIdent(env.config.pgSchema) };
}

/** Adds an entry, delivers it to a consumer, and dead-letters it the way the engine does (row, then ack + dead-letter stream). */
async function deadLetter(env: TestEnv, fields: Record<string, string>, code: ErrorCode = 'TRIB_ERR_ENTRY_MAX_DELIVERIES'): Promise<string> {
  const id = String(await send(env.redis, ['XADD', env.config.streamKey, '*', ...Object.entries(fields).flat()]));
  await send(env.redis, ['XREADGROUP', 'GROUP', env.config.group, 'doomed', 'COUNT', '1', 'STREAMS', env.config.streamKey, '>']);
  const writer = new DeadLetterWriter(env.pool, env.redis, env.config, env.config.pgSchema);
  const letter = { entry: { id, fields }, code, error: `failed ${id}: ${'x'.repeat(100)}`, deliveries: 6 };
  await writer.record([letter]);
  expect(await writer.moveInRedis([letter])).toBe(1);
  return id;
}

async function rowIdOf(env: TestEnv, streamId: string): Promise<number> {
  const r = await env.pool.query<{ id: string }>(`SELECT id FROM ${quoteIdent(env.config.pgSchema)}.dead_letter_queue WHERE stream_id = $1`, [streamId]);
  return Number(r.rows[0]!.id);
}

const xlen = async (env: TestEnv, key: string) => Number(await send(env.redis, ['XLEN', key]));

async function entryFields(env: TestEnv, id: string): Promise<string[]> {
  const reply = (await send(env.redis, ['XRANGE', env.config.streamKey, id, id])) as [string, string[]][];
  return reply[0]![1];
}


const statuses = (outcomes: RetryOutcome[]) => outcomes.map((o) => o.status);

describe('dlq list and show', () => {
  it('lists newest first with a total, filters by type and time, shows one row in full', async () => {
    const { env, ops, s } = await setup('dlq_list');
    const a = await deadLetter(env, { event_type: 'order_placed', payload: '{"n":1}', event_id: 'e-1' });
    const b = await deadLetter(env, { event_type: 'user_created', payload: '{"n":2}' });
    const c = await deadLetter(env, { event_type: 'order_placed', payload: '{oops', event_id: 'e-3' }, 'TRIB_ERR_ENTRY_BAD_PAYLOAD');
    await env.pool.query(`UPDATE ${s}.dead_letter_queue SET failed_at = now() - interval '2 hours' WHERE stream_id = $1`, [a]);
    // A row of another pipeline in the same schema is out of scope.
    await env.pool.query(
      `INSERT INTO ${s}.dead_letter_queue (stream_key, group_name, stream_id, event_id, event_type, fields, error_code, error, deliveries)
       VALUES ('other-stream', 'other-group', '1-0', 'x', 'order_placed', '{}', 'TRIB_ERR_ENTRY_REJECTED', 'no', 1)`,
    );

    const all = await listDeadLetters(ops);
    expect(all.total).toBe(3);
    expect(all.rows.map((r) => r.streamId)).toEqual([c, b, a]);
    expect(all.rows[0]).toMatchObject({ eventId: 'e-3', eventType: 'order_placed', errorCode: 'TRIB_ERR_ENTRY_BAD_PAYLOAD', deliveries: 6, retryState: 'not_retried' });
    expect(all.rows[1]!.eventId).toBe(`${env.config.streamKey}/${b}`); // no event_id: recorded under the engine's key for it

    const limited = await listDeadLetters(ops, { limit: 1 });
    expect(limited).toMatchObject({ total: 3, rows: [{ streamId: c }] });
    expect((await listDeadLetters(ops, { type: 'order_placed' })).rows.map((r) => r.streamId)).toEqual([c, a]);
    expect((await listDeadLetters(ops, { since: new Date(Date.now() - 3_600_000) })).total).toBe(2);

    const shown = await getDeadLetter(ops, await rowIdOf(env, c));
    expect(shown.fields).toEqual({ event_type: 'order_placed', payload: '{oops', event_id: 'e-3' });
    expect(shown.error).toContain('x'.repeat(100));
    expect(shown.streamEntry?.fields).toEqual({ event_type: 'order_placed', payload: '{oops', event_id: 'e-3' });

    const other = await env.pool.query<{ id: string }>(`SELECT id FROM ${s}.dead_letter_queue WHERE stream_key = 'other-stream'`);
    expect(await codeOf(getDeadLetter(ops, Number(other.rows[0]!.id)))).toMatch(/^TRIB_ERR_DLQ_NOT_FOUND: dead letter \d+ not found/);
    expect(await codeOf(getDeadLetter(ops, 999_999))).toMatch(/^TRIB_ERR_DLQ_NOT_FOUND/);
  });
});

describe('dlq retry', () => {
  it('re-adds the original entry byte for byte, once, however often it is asked', async () => {
    const { env, ops, s } = await setup('dlq_retry_once');
    // Repeated field names and order are part of "byte for byte".
    const fields = { event_type: 'order_placed', payload: '{"total": 42.50, "note":"ünïcode"}', event_id: 'keep-me', extra: 'a b' };
    const streamId = await deadLetter(env, fields);
    const id = await rowIdOf(env, streamId);
    const before = await xlen(env, env.config.streamKey);
    expect(await xlen(env, env.config.dlqStream)).toBe(1);

    const first = await retryDeadLetters(ops, { ids: [id] });
    expect(first).toEqual([{ id, status: 'retried', newStreamId: expect.any(String), source: 'stream', recovered: false }]);
    const newId = (first[0] as { newStreamId: string }).newStreamId;
    expect(await entryFields(env, newId)).toEqual(['event_type', 'order_placed', 'payload', '{"total": 42.50, "note":"ünïcode"}', 'event_id', 'keep-me', 'extra', 'a b']);
    expect(await xlen(env, env.config.streamKey)).toBe(before + 1);
    expect(await xlen(env, env.config.dlqStream)).toBe(0); // the dead-letter stream holds what is still dead

    const row = await env.pool.query(`SELECT retried_at, retried_as FROM ${s}.dead_letter_queue WHERE id = $1`, [id]);
    expect(row.rows[0].retried_as).toBe(newId);
    expect(row.rows[0].retried_at).toBeInstanceOf(Date);
    expect((await getDeadLetter(ops, id)).retryState).toBe('retried');

    expect(await retryDeadLetters(ops, { ids: [id] })).toEqual([{ id, status: 'already_retried', retriedAs: newId }]);
    expect(await retryDeadLetters(ops, { all: true })).toEqual([]);
    expect(await xlen(env, env.config.streamKey)).toBe(before + 1);
    expect(await retryDeadLetters(ops, { ids: [424242] })).toEqual([{ id: 424242, status: 'not_found' }]);
  });

  it('concurrent retries of the same rows add exactly one entry per row', async () => {
    const { env, ops, s } = await setup('dlq_retry_concurrent');
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) ids.push(await rowIdOf(env, await deadLetter(env, { event_type: 't', payload: `{"i":${i}}`, event_id: `c-${i}` })));
    const before = await xlen(env, env.config.streamKey);

    // Two retries of one row at once.
    const [x, y] = await Promise.all([retryDeadLetters(ops, { ids: [ids[0]!] }), retryDeadLetters(ops, { ids: [ids[0]!] })]);
    expect([...statuses(x!), ...statuses(y!)].filter((st) => st === 'retried')).toHaveLength(1);
    expect(await xlen(env, env.config.streamKey)).toBe(before + 1);

    // Four at once over all the rows, by ID and --all, in opposite orders.
    const results = await Promise.all([
      retryDeadLetters(ops, { ids }),
      retryDeadLetters(ops, { ids: [...ids].reverse() }),
      retryDeadLetters(ops, { all: true }),
      retryDeadLetters(ops, { all: true, type: 't' }),
    ]);
    const retried = results.flat().filter((o) => o.status === 'retried');
    expect(retried).toHaveLength(11);
    expect(new Set(retried.map((o) => o.id)).size).toBe(11);
    expect(await xlen(env, env.config.streamKey)).toBe(before + 12);
    expect(await xlen(env, env.config.dlqStream)).toBe(0);

    const rows = await env.pool.query<{ retried_as: string }>(`SELECT retried_as FROM ${s}.dead_letter_queue`);
    expect(rows.rows.every((r) => r.retried_as !== null)).toBe(true);
    const entries = (await send(env.redis, ['XRANGE', env.config.streamKey, '-', '+'])) as [string, string[]][];
    const eventIds = entries.map(([, f]) => f[f.indexOf('event_id') + 1]);
    // Each event twice in the stream: the original (dead-lettered, acknowledged) and exactly one retry.
    for (let i = 0; i < 12; i++) expect(eventIds.filter((e) => e === `c-${i}`)).toHaveLength(2);
    expect(new Set(rows.rows.map((r) => r.retried_as)).size).toBe(12);
  });

  it('after a retry the engine writes the event once; event_id is kept, so an event already written adds no row', async () => {
    const { env, ops, s } = await setup('dlq_retry_engine');
    // No event_id: it was recorded under the engine's key for it (<stream>/<entry ID>) and must keep it.
    const plain = await deadLetter(env, { event_type: 'order_placed', payload: '{"order":"o-1"}' });
    // Written already (e.g. a late success of the original): the retry must add no row.
    const written = await deadLetter(env, { event_type: 'user_created', payload: '{"u":1}', event_id: 'already-there' });
    await env.pool.query(
      `INSERT INTO ${s}.events (event_id, event_type, payload, stream_id) VALUES ('already-there', 'user_created', '{"u":1}', $1)`,
      [written],
    );

    const outcomes = await retryDeadLetters(ops, { all: true });
    expect(statuses(outcomes)).toEqual(['retried', 'retried']);
    const plainNew = (outcomes[0] as { newStreamId: string }).newStreamId; // in row order: `plain` first
    const plainKey = `${env.config.streamKey}/${plain}`;
    expect(await entryFields(env, plainNew)).toEqual(['event_type', 'order_placed', 'payload', '{"order":"o-1"}', 'event_id', plainKey]);

    const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 300 } });
    cleanups.push(() => engine.close({ force: true }));
    await engine.start();
    await waitFor(async () => engine.stats().written + engine.stats().duplicates >= 2 && (await pendingCount(env)) === 0, 20_000, 'the retried events');
    // A second retry meanwhile adds nothing.
    expect(statuses(await retryDeadLetters(ops, { all: true }))).toEqual([]);
    await new Promise((r) => setTimeout(r, 500));
    await engine.close();

    const events = await env.pool.query<{ event_id: string; stream_id: string; n: string }>(
      `SELECT event_id, min(stream_id) AS stream_id, count(*) AS n FROM ${s}.events GROUP BY event_id ORDER BY event_id`,
    );
    expect(events.rows.map((r) => [r.event_id, Number(r.n)]).sort()).toEqual([[plainKey, 1], ['already-there', 1]].sort());
    expect(events.rows.find((r) => r.event_id === plainKey)!.stream_id).toBe(plainNew);
    expect(engine.stats()).toMatchObject({ written: 1, duplicates: 1, deadLettered: 0 });
    expect(await pendingCount(env)).toBe(0);
    expect(await xlen(env, env.config.dlqStream)).toBe(0);
  });

  it('an entry that fails again is dead-lettered again as a new row: the retried row points at it', async () => {
    const { env, ops, s } = await setup('dlq_retry_again');
    await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 'x', 'payload', '{broken', 'event_id', 'poison-1']);
    const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 300 } });
    cleanups.push(() => engine.close({ force: true }));
    await engine.start();
    await waitFor(async () => (await listDeadLetters(ops)).total === 1, 20_000, 'the first dead letter');
    const [first] = (await listDeadLetters(ops)).rows;
    expect(first!.errorCode).toBe('TRIB_ERR_ENTRY_BAD_PAYLOAD');

    const [outcome] = await retryDeadLetters(ops, { ids: [first!.id] });
    expect(outcome).toMatchObject({ status: 'retried', source: 'stream' });
    await waitFor(async () => (await listDeadLetters(ops)).total === 2 && (await pendingCount(env)) === 0, 20_000, 'the second dead letter');
    await engine.close();

    const rows = await env.pool.query(`SELECT stream_id, event_id, retried_as FROM ${s}.dead_letter_queue ORDER BY id`);
    expect(rows.rows[0]).toMatchObject({ event_id: 'poison-1', retried_as: (outcome as { newStreamId: string }).newStreamId });
    expect(rows.rows[1]).toMatchObject({ event_id: 'poison-1', stream_id: (outcome as { newStreamId: string }).newStreamId, retried_as: null });
    // The dead-letter stream holds the one dead letter not yet retried.
    const dlq = (await send(env.redis, ['XRANGE', env.config.dlqStream, '-', '+'])) as [string, string[]][];
    expect(dlq).toHaveLength(1);
    expect(dlq[0]![1][dlq[0]![1].indexOf('dlq_source_id') + 1]).toBe(rows.rows[1].stream_id);
    expect(Number((await env.pool.query(`SELECT count(*) AS n FROM ${s}.events`)).rows[0].n)).toBe(0);
  });

  it('a retry interrupted before its XADD is completed later, once; one interrupted after it is never repeated', async () => {
    const { env, ops, s } = await setup('dlq_retry_crash');
    const before = await xlen(env, env.config.streamKey);
    const a = await rowIdOf(env, await deadLetter(env, { event_type: 't', payload: '{}', event_id: 'crash-before-xadd' }));
    const b = await rowIdOf(env, await deadLetter(env, { event_type: 't', payload: '{}', event_id: 'crash-after-xadd' }));

    // a: claimed, then the process died before the XADD (the dead-letter stream entry is still there).
    await env.pool.query(`UPDATE ${s}.dead_letter_queue SET retried_at = now() WHERE id = $1`, [a]);
    // A fresh claim is someone else's retry in progress: leave it alone.
    expect(await retryDeadLetters(ops, { ids: [a] })).toEqual([{ id: a, status: 'in_progress' }]);
    await env.pool.query(`UPDATE ${s}.dead_letter_queue SET retried_at = now() - interval '5 minutes' WHERE id = $1`, [a]);

    // b: claimed, XADD + XDEL done, then the process died before recording retried_as.
    await env.pool.query(`UPDATE ${s}.dead_letter_queue SET retried_at = now() - interval '5 minutes' WHERE id = $1`, [b]);
    const bEntry = ((await send(env.redis, ['XRANGE', env.config.dlqStream, '-', '+'])) as [string, string[]][]).find(([, f]) => f.includes('crash-after-xadd'))!;
    await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 't', 'payload', '{}', 'event_id', 'crash-after-xadd']);
    await send(env.redis, ['XDEL', env.config.dlqStream, bEntry[0]]);
    expect(await xlen(env, env.config.streamKey)).toBe(before + 3);

    const [ra, rb] = await Promise.all([retryDeadLetters(ops, { ids: [a, b] }), retryDeadLetters(ops, { all: true })]);
    const all = [...ra!, ...rb!];
    expect(all.filter((o) => o.id === a && o.status === 'retried')).toEqual([{ id: a, status: 'retried', newStreamId: expect.any(String), source: 'stream', recovered: true }]);
    expect(all.filter((o) => o.id === b).map((o) => o.status)).toEqual(['in_doubt', 'in_doubt']);
    expect(await xlen(env, env.config.streamKey)).toBe(before + 4);
    expect((await getDeadLetter(ops, a)).retryState).toBe('retried');
    expect((await getDeadLetter(ops, b)).retryState).toBe('in_doubt');
    expect((await listDeadLetters(ops)).rows.find((r) => r.id === b)!.retryState).toBe('in_doubt');

    // Asked again: nothing more.
    await retryDeadLetters(ops, { ids: [a, b] });
    expect(await xlen(env, env.config.streamKey)).toBe(before + 4);
  });

  it('falls back to the row when the dead-letter stream lost the entry, and gives the claim back when Redis refuses', async () => {
    const { env, ops, s } = await setup('dlq_retry_table');
    const streamId = await deadLetter(env, { event_type: 't', payload: '{"k":"v"}' });
    const id = await rowIdOf(env, streamId);
    await env.redis.del(env.config.dlqStream);

    // The stream key holds something else: XADD fails, nothing was added, the row is free again.
    await env.redis.rename(env.config.streamKey, `${env.config.streamKey}:moved`);
    cleanups.push(async () => void (await env.redis.del(`${env.config.streamKey}:moved`)));
    await env.redis.set(env.config.streamKey, 'not a stream');
    await expect(retryDeadLetters(ops, { ids: [id] })).rejects.toThrow(/WRONGTYPE/);
    expect((await getDeadLetter(ops, id)).retryState).toBe('not_retried');
    await env.redis.del(env.config.streamKey);

    const [outcome] = await retryDeadLetters(ops, { ids: [id] });
    expect(outcome).toMatchObject({ status: 'retried', source: 'table' });
    const fields = await entryFields(env, (outcome as { newStreamId: string }).newStreamId);
    // jsonb keeps the values, not the field order: that is why the stream entry is preferred.
    const asObject = Object.fromEntries(Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]]));
    expect(asObject).toEqual({ event_type: 't', payload: '{"k":"v"}', event_id: `${env.config.streamKey}/${streamId}` });
    expect(await retryDeadLetters(ops, { ids: [id] })).toMatchObject([{ status: 'already_retried' }]);
    expect(await xlen(env, env.config.streamKey)).toBe(1);
    const row = await env.pool.query(`SELECT retried_as FROM ${s}.dead_letter_queue WHERE id = $1`, [id]);
    expect(row.rows[0].retried_as).toBe((outcome as { newStreamId: string }).newStreamId);
  });
});

describe('dlq purge', () => {
  it('refuses without confirmation and deletes nothing; with it, deletes rows and their stream entries, older first', async () => {
    const { env, ops, s } = await setup('dlq_purge');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await deadLetter(env, { event_type: 't', payload: '{}', event_id: `p-${i}` }));
    await env.pool.query(`UPDATE ${s}.dead_letter_queue SET failed_at = now() - interval '3 days' WHERE stream_id = ANY($1)`, [ids.slice(0, 3)]);
    // One old row already retried: no stream entry left for it.
    await retryDeadLetters(ops, { ids: [await rowIdOf(env, ids[0]!)] });
    await env.pool.query(
      `INSERT INTO ${s}.dead_letter_queue (stream_key, group_name, stream_id, event_id, fields, error_code, error, deliveries, failed_at)
       VALUES ('other-stream', 'other-group', '1-0', 'x', '{}', 'TRIB_ERR_ENTRY_REJECTED', 'no', 1, now() - interval '9 days')`,
    );
    const dlqBefore = await xlen(env, env.config.dlqStream);
    expect(dlqBefore).toBe(4);

    const weekAgo = new Date(Date.now() - 86_400_000);
    expect(await planPurge(ops, { before: weekAgo })).toEqual({ rows: 3, streamEntries: 2, before: weekAgo });
    const refused = await codeOf(purgeDeadLetters(ops, { before: weekAgo }));
    expect(refused).toMatch(/^TRIB_ERR_CONFIRMATION_REQUIRED: would delete 3 dead letters that failed before .* \(3 rows of .*dead_letter_queue and 2 entries of the dead-letter stream .*\).*run again with --yes/);
    expect(await codeOf(purgeDeadLetters(ops, { confirm: false }))).toMatch(/would delete 5 dead letters/);
    expect(Number((await env.pool.query(`SELECT count(*) AS n FROM ${s}.dead_letter_queue`)).rows[0].n)).toBe(6);
    expect(await xlen(env, env.config.dlqStream)).toBe(dlqBefore);

    expect(await purgeDeadLetters(ops, { before: weekAgo, confirm: true })).toEqual({ rows: 3, streamEntries: 2, before: weekAgo });
    expect((await listDeadLetters(ops)).rows.map((r) => r.eventId).sort()).toEqual(['p-3', 'p-4']);
    expect(await xlen(env, env.config.dlqStream)).toBe(2);

    expect(await purgeDeadLetters(ops, { confirm: true })).toEqual({ rows: 2, streamEntries: 2, before: null });
    expect(await xlen(env, env.config.dlqStream)).toBe(0);
    // Nothing left: no confirmation needed to do nothing. Other pipelines' rows are untouched.
    expect(await purgeDeadLetters(ops)).toEqual({ rows: 0, streamEntries: 0, before: null });
    expect(Number((await env.pool.query(`SELECT count(*) AS n FROM ${s}.dead_letter_queue`)).rows[0].n)).toBe(1);
  });
});

describe('tributary dlq (commander)', () => {
  async function run(env: TestEnv, args: string[]): Promise<{ out: string; error?: unknown }> {
    const program = new Command().exitOverride();
    registerDlq(program);
    const c = env.config;
    const flags = ['--redis-url', c.redisUrl, '--database-url', c.databaseUrl, '--stream-key', c.streamKey, '--dlq-stream', c.dlqStream, '--group', c.group, '--pg-schema', c.pgSchema];
    const chunks: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      chunks.push(String(chunk));
      return true;
    });
    try {
      await program.parseAsync([...args, ...flags], { from: 'user' });
      return { out: chunks.join('') };
    } catch (error) {
      return { out: chunks.join(''), error };
    } finally {
      spy.mockRestore();
    }
  }

  it('list, show, retry and purge print what they did; purge without --yes exits with a coded error', async () => {
    const { env } = await setup('dlq_cli');
    const a = await deadLetter(env, { event_type: 'order_placed', payload: '{"a":1}', event_id: 'cli-1' });
    await deadLetter(env, { event_type: 'user_created', payload: '{"b":2}', event_id: 'cli-2' });
    const id = await rowIdOf(env, a);

    const list = await run(env, ['dlq', 'list']);
    expect(list.error).toBeUndefined();
    expect(list.out).toMatch(/^ID\s+FAILED AT\s+STREAM ID\s+TYPE\s+CODE\s+DELIVERIES\s+RETRIED\s+ERROR/);
    expect(list.out).toContain('TRIB_ERR_ENTRY_MAX_DELIVERIES');
    expect(list.out).toContain('…'); // the long error is truncated
    expect(list.out).toMatch(/2 of 2 dead letters \(stream .*, group tributary\)/);
    const json = JSON.parse((await run(env, ['dlq', 'list', '--json', '--type', 'order_placed'])).out);
    expect(json.total).toBe(1);
    expect(json.rows[0].eventId).toBe('cli-1');
    const byCode = await run(env, ['dlq', 'list', '--code', 'TRIB_ERR_ENTRY_BAD_PAYLOAD']);
    expect(byCode.out).toMatch(/^0 of 0 dead letters \(stream .*, group tributary, code TRIB_ERR_ENTRY_BAD_PAYLOAD\)/);
    expect(JSON.parse((await run(env, ['dlq', 'list', '--json', '--code', 'TRIB_ERR_ENTRY_MAX_DELIVERIES'])).out).total).toBe(2);

    const show = await run(env, ['dlq', 'show', String(id)]);
    expect(show.out).toContain('event id:    cli-1');
    expect(show.out).toContain('"payload": "{\\"a\\":1}"');
    expect(JSON.parse((await run(env, ['dlq', 'show', String(id), '--json'])).out).fields.event_id).toBe('cli-1');
    const missing = await run(env, ['dlq', 'show', '99999']);
    expect(isTributaryError(missing.error, 'TRIB_ERR_DLQ_NOT_FOUND')).toBe(true);

    const noArgs = await run(env, ['dlq', 'retry']);
    expect(isTributaryError(noArgs.error, 'TRIB_ERR_CONFIG_INVALID')).toBe(true);
    const retry = await run(env, ['dlq', 'retry', String(id)]);
    expect(retry.out).toMatch(new RegExp(`#${id} retried as \\d+-\\d+ \\(fields from the dead-letter stream entry\\)`));
    expect((await run(env, ['dlq', 'retry', String(id)])).out).toMatch(/already retried as .*nothing added/);
    expect((await run(env, ['dlq', 'list'])).out).toMatch(/as \d+-\d+/);

    const refused = await run(env, ['dlq', 'purge']);
    expect(isTributaryError(refused.error, 'TRIB_ERR_CONFIRMATION_REQUIRED')).toBe(true);
    expect((refused.error as Error).message).toMatch(/would delete 2 dead letters/);
    expect((await listDeadLetters({ redis: env.redis, pool: env.pool, config: env.config })).total).toBe(2);
    expect((await run(env, ['dlq', 'purge', '--before', '1d', '--yes'])).out).toBe('nothing to purge\n');
    expect((await run(env, ['dlq', 'purge', '--yes'])).out).toMatch(/deleted 2 dead letters \(2 rows, 1 dead-letter stream entries\)/);
  });
});
