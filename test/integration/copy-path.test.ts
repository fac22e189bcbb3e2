import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/pipelines/events.js';
import type { BatchReport } from '../../src/core/runner.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { send } from '../../src/redis/client.js';
import { countRows, pendingCount, testEnvs, waitFor, type TestEnv } from '../helpers/env.js';

// Fresh entries (XREADGROUP >) are written by one binary COPY of the bytes Redis sent;
// a batch Postgres refuses drops to the statement path. These pin both halves.
const envs = testEnvs({ numWorkers: 1, batchSize: 500, batchTimeoutMs: 200, xreadBlockMs: 200, claimIdleMs: 3000 });

function runEngine(env: TestEnv) {
  const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 200 } });
  const batches: BatchReport[] = [];
  const errors: Error[] = [];
  engine.on('batch', (b) => batches.push(b));
  engine.on('error', (e) => errors.push(e));
  envs.defer(() => engine.close({ force: true }));
  return { engine, batches, errors };
}

async function xadd(env: TestEnv, fields: Array<string | Buffer>): Promise<string> {
  return String(await env.redis.sendCommand(['XADD', env.config.streamKey, '*', ...fields]));
}

async function drained(env: TestEnv, rows: number): Promise<void> {
  await waitFor(async () => (await pendingCount(env)) === 0 && (await countRows(env)).rows === rows, 10_000, `${rows} rows, none pending`);
}

describe('the COPY write path', () => {
  it('stores exactly what was sent: whitespace, unicode, long ids, null and far-future produced_at', async () => {
    const env = await envs.setup('copy_exact');
    const longId = '界'.repeat(512); // 512 characters, 1,536 bytes: allowed
    const cases = [
      { event_id: 'ws', event_type: 'tabs\tand\nnewlines', payload: '{"a":\t1,\n "b": "x\\\\y\\ttab", "c": [1, 2.5e3, null]}', produced_at: '1795366905571' },
      { event_id: 'uni', event_type: 'üñíçødé_😀', payload: '{"name":"Zoë 😀 名前","quote":"\\"q\\""}', produced_at: '1795366905571.25' },
      { event_id: longId, event_type: 't', payload: '"just a string"', produced_at: '0' },
      { event_id: 'no-time', event_type: 't', payload: '[]' },
      { event_id: 'far', event_type: 't', payload: '123.456', produced_at: '99999999999999' },
    ];
    for (const c of cases) await xadd(env, Object.entries(c).flat());
    await xadd(env, ['event_type', 't', 'payload', '{"default":"key"}']);
    const { engine, batches, errors } = runEngine(env);
    await engine.start();
    await drained(env, cases.length + 1);
    await engine.close();

    const s = quoteIdent(env.config.pgSchema);
    const r = await env.pool.query<{ event_id: string; event_type: string; payload: unknown; ms: string | null }>(
      `SELECT event_id, event_type, payload, (extract(epoch FROM produced_at) * 1000)::text AS ms FROM ${s}.events`,
    );
    const byId = new Map(r.rows.map((row) => [row.event_id, row]));
    for (const c of cases) {
      const row = byId.get(c.event_id)!;
      expect(row.event_type).toBe(c.event_type);
      expect(row.payload).toEqual(JSON.parse(c.payload));
      if (c.produced_at === undefined) expect(row.ms).toBeNull();
      else expect(Number(row.ms)).toBe(Number(c.produced_at)); // numeric, exact to the microsecond
    }
    const defaulted = r.rows.find((row) => !byId.has(row.event_id) || row.event_id.startsWith(`${env.config.streamKey}/`));
    expect(defaulted?.event_id.startsWith(`${env.config.streamKey}/`)).toBe(true);
    // One batch, one statement: the COPY took it whole.
    expect(batches.reduce((n, b) => n + b.statements, 0)).toBe(1);
    expect(batches.reduce((n, b) => n + b.written, 0)).toBe(cases.length + 1);
    expect(errors).toEqual([]);
  });

  it('a fresh entry whose event_id is already stored: COPY refused, the batch goes through ON CONFLICT, no second row', async () => {
    const env = await envs.setup('copy_dup');
    const s = quoteIdent(env.config.pgSchema);
    await env.pool.query(
      `INSERT INTO ${s}.events (event_id, event_type, payload, stream_id) VALUES ('dup-1', 'before', '{"v":0}', '0-1')`,
    );
    await xadd(env, ['event_type', 't', 'payload', '{"v":1}', 'event_id', 'new-1']);
    await xadd(env, ['event_type', 't', 'payload', '{"v":2}', 'event_id', 'dup-1']);
    await xadd(env, ['event_type', 't', 'payload', '{"v":3}', 'event_id', 'new-2']);
    const { engine, batches, errors } = runEngine(env);
    await engine.start();
    await drained(env, 3);
    await engine.close();

    const rows = await env.pool.query<{ event_id: string; payload: { v: number } }>(`SELECT event_id, payload FROM ${s}.events ORDER BY event_id`);
    expect(rows.rows).toEqual([
      { event_id: 'dup-1', payload: { v: 0 } }, // the stored row is kept, not overwritten
      { event_id: 'new-1', payload: { v: 1 } },
      { event_id: 'new-2', payload: { v: 3 } },
    ]);
    expect(batches.reduce((n, b) => n + b.duplicates, 0)).toBe(1);
    expect(batches.reduce((n, b) => n + b.written, 0)).toBe(2);
    // The refused COPY, then the statement.
    expect(batches.reduce((n, b) => n + b.statements, 0)).toBe(2);
    const dlq = await env.pool.query(`SELECT 1 FROM ${s}.dead_letter_queue`);
    expect(dlq.rowCount).toBe(0);
    expect(errors).toEqual([]);
  });

  it('bad JSON and a row Postgres refuses in one fresh batch: both dead-lettered with their own codes, batch-mates written', async () => {
    const env = await envs.setup('copy_bad');
    await xadd(env, ['event_type', 't', 'payload', '{"ok":1}', 'event_id', 'good-1']);
    await xadd(env, ['event_type', 't', 'payload', '{"unterminated":', 'event_id', 'bad-json']);
    // Valid JSON, but jsonb cannot hold \u0000: only Postgres refuses it.
    await xadd(env, ['event_type', 't', 'payload', '{"nul":"\\u0000"}', 'event_id', 'nul']);
    await xadd(env, ['event_type', 't', 'payload', '{"ok":2}', 'event_id', 'good-2']);
    const { engine, errors } = runEngine(env);
    await engine.start();
    await drained(env, 2);
    await waitFor(async () => (await env.redis.xLen(env.config.dlqStream)) === 2, 5000, 'two dead letters in the DLQ stream');
    await engine.close();

    const s = quoteIdent(env.config.pgSchema);
    const dlq = await env.pool.query<{ event_id: string; error_code: string }>(`SELECT event_id, error_code FROM ${s}.dead_letter_queue ORDER BY event_id`);
    expect(dlq.rows).toEqual([
      { event_id: 'bad-json', error_code: 'TRIB_ERR_ENTRY_BAD_PAYLOAD' },
      { event_id: 'nul', error_code: 'TRIB_ERR_ENTRY_REJECTED' },
    ]);
    const rows = await env.pool.query<{ event_id: string }>(`SELECT event_id FROM ${s}.events ORDER BY event_id`);
    expect(rows.rows.map((r) => r.event_id)).toEqual(['good-1', 'good-2']);
    expect(errors).toEqual([]);
  });

  it('bytes that are not UTF-8 are stored as text decoding would show them (U+FFFD), as before the COPY path', async () => {
    const env = await envs.setup('copy_utf8');
    const payload = Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    await xadd(env, ['event_type', 't', 'payload', payload, 'event_id', 'latin']);
    await xadd(env, ['event_type', 't', 'payload', '{"fine":true}', 'event_id', 'fine']);
    const { engine, errors } = runEngine(env);
    await engine.start();
    await drained(env, 2);
    await engine.close();
    const s = quoteIdent(env.config.pgSchema);
    const r = await env.pool.query<{ payload: { name: string } }>(`SELECT payload FROM ${s}.events WHERE event_id = 'latin'`);
    expect(r.rows[0]!.payload.name).toBe('\uFFFD\uFFFD');
    expect(errors).toEqual([]);
  });

  it('entries read again after a restart skip COPY: their rows are likely stored already', async () => {
    const env = await envs.setup('copy_redelivered');
    await send(env.redis, ['XGROUP', 'CREATE', env.config.streamKey, env.config.group, '0', 'MKSTREAM']);
    await xadd(env, ['event_type', 't', 'payload', '{"n":1}', 'event_id', 'once']);
    // Read by a consumer that "dies" before acknowledging: the engine finds it pending at start.
    await send(env.redis, ['XREADGROUP', 'GROUP', env.config.group, `${env.config.consumerName}-1`, 'COUNT', '10', 'STREAMS', env.config.streamKey, '>']);
    const s = quoteIdent(env.config.pgSchema);
    await env.pool.query(`INSERT INTO ${s}.events (event_id, event_type, payload, stream_id) VALUES ('once', 't', '{"n":1}', '0-1')`);
    const { engine, batches, errors } = runEngine(env);
    await engine.start();
    await drained(env, 1);
    await engine.close();
    expect(batches.map((b) => [b.reason, b.statements, b.duplicates])).toEqual([['pending', 1, 1]]);
    expect(errors).toEqual([]);
  });
});
