/**
 * Pipeline files against the real servers: each mode's write path, type conversion
 * failures dead-lettered alone, table creation, mismatch and evolve, rows Postgres
 * refuses, upsert order safety across two processes, kill -9 in the middle of an upsert
 * stream, and every shipped example file run through the CLI.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePipelineFile, type PipelineSpec } from '../../src/pipeline-file/spec.js';
import { TablePipeline } from '../../src/pipelines/table.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { assertBuilt, CLI, EngineProcess, killChildren, REPO } from '../helpers/child.js';
import { codeOf, testEnvs, waitFor, type TestEnv } from '../helpers/env.js';

const envs = testEnvs();
afterEach(killChildren);

interface Ev {
  type?: string;
  payload: unknown;
  id?: string;
  at?: number;
}

async function add(env: TestEnv, stream: string, events: readonly Ev[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < events.length; i += 500) {
    const multi = env.redis.multi();
    for (const e of events.slice(i, i + 500)) {
      const fields: Record<string, string> = { event_type: e.type ?? 'thing', payload: typeof e.payload === 'string' ? e.payload : JSON.stringify(e.payload) };
      if (e.id !== undefined) fields.event_id = e.id;
      if (e.at !== undefined) fields.produced_at = String(e.at);
      multi.xAdd(stream, '*', fields);
    }
    ids.push(...((await multi.exec()) as unknown as string[]));
  }
  return ids;
}

/** A spec from YAML, its stream, schema and dead letters private to the test. */
function specFor(env: TestEnv, yaml: string): PipelineSpec {
  return parsePipelineFile(yaml.replaceAll('STREAM', env.config.streamKey).replaceAll('SCHEMA', env.config.pgSchema).replaceAll('DEAD', env.config.dlqStream));
}

async function runPipeline(env: TestEnv, spec: PipelineSpec, consumer = env.name): Promise<TablePipeline> {
  const p = new TablePipeline(spec, {
    redisUrl: env.config.redisUrl,
    databaseUrl: env.config.databaseUrl,
    consumer,
    deadLetterSchema: env.config.pgSchema,
    blockMs: 100,
    retry: { baseMs: 10, maxMs: 100 },
  });
  envs.defer(() => p.close({ force: true }));
  await p.start();
  return p;
}

/** Waits until the group has read the whole stream and holds nothing pending. */
async function drained(env: TestEnv, stream: string, group: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () => {
      const groups = (await env.redis.sendCommand(['XINFO', 'GROUPS', stream])) as unknown[][];
      const g = groups.map((x) => Object.fromEntries(x.flatMap((v, i) => (i % 2 === 0 ? [[String(v), x[i + 1]]] : [])))).find((x) => x.name === group);
      return g !== undefined && Number(g.lag) === 0 && Number(g.pending) === 0;
    },
    timeoutMs,
    `${group} to drain ${stream}`,
  );
}

async function rows<T = Record<string, unknown>>(env: TestEnv, sql: string): Promise<T[]> {
  return (await env.pool.query(sql.replaceAll('SCHEMA', quoteIdent(env.config.pgSchema)))).rows as T[];
}

async function deadLetters(env: TestEnv): Promise<Array<{ stream_id: string; error_code: string; error: string }>> {
  return rows(env, 'SELECT stream_id, error_code, error FROM SCHEMA.dead_letter_queue ORDER BY stream_id');
}

const PAYMENTS = `
name: pay
source: { stream: STREAM }
batch: { count: 50, period: 50ms }
workers: 2
filter: { event_type: [captured] }
dead_letters: { stream: DEAD }
sink:
  table: SCHEMA.payments
  mode: insert
  key: [id]
  columns:
    id:     { from: payload.id, type: uuid }
    amount: { from: payload.amount, type: numeric, required: true }
    at:     { from: payload.at, type: timestamptz }
    live:   { from: payload.live, type: boolean }
    tags:   { from: payload.tags, type: "text[]" }
    doc:    { from: payload, type: jsonb }
    seq:    { from: payload.seq, type: bigint }
    day:    { from: payload.day, type: date }
`;

const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

describe('pipeline files: write paths', () => {
  it('insert: creates the table, converts every type, skips existing keys, dead-letters bad values alone, acknowledges filtered events', async () => {
    const env = await envs.setup('tbl_insert');
    const spec = specFor(env, PAYMENTS);
    const good = Array.from({ length: 120 }, (_, i) => ({
      type: 'captured',
      payload: { id: uuid(i), amount: `${i}.50`, at: 1_700_000_000_000 + i, live: i % 2 === 0, tags: ['a', `t${i}`], seq: i, day: '2026-12-04', note: 'tab\there' },
    }));
    await add(env, env.config.streamKey, good);
    const p = await runPipeline(env, spec);
    expect(p.writePath).toBe('table');
    await drained(env, env.config.streamKey, 'pay');
    // A second round: a key already stored (resent), a bad amount, a missing amount, another type, and new rows.
    const ids = await add(env, env.config.streamKey, [
      { type: 'captured', payload: { id: uuid(3), amount: '999' } },
      { type: 'captured', payload: { id: uuid(500), amount: 'lots' } },
      { type: 'captured', payload: { id: uuid(501) } },
      { type: 'refunded', payload: { id: uuid(502), amount: 1 } },
      { type: 'captured', payload: { id: uuid(503), amount: 1e21, at: '2026-12-04T10:00:00+01:00', day: null } },
    ]);
    await drained(env, env.config.streamKey, 'pay');
    const all = await rows<{ id: string; amount: string; at: Date; live: boolean; tags: string[]; doc: { note: string }; seq: string; day: string }>(
      env,
      `SELECT id, amount::text, at, live, tags, doc, seq, day::text FROM SCHEMA.payments ORDER BY seq NULLS LAST`,
    );
    expect(all).toHaveLength(121);
    expect(all[7]).toMatchObject({ id: uuid(7), amount: '7.50', live: false, tags: ['a', 't7'], seq: '7', day: '2026-12-04' });
    expect(all[7]!.at.getTime()).toBe(1_700_000_000_007);
    expect(all[7]!.doc.note).toBe('tab\there');
    expect((await rows(env, `SELECT amount::text FROM SCHEMA.payments WHERE id = '${uuid(3)}'`))[0]).toEqual({ amount: '3.50' });
    const late = all[120]!;
    expect(late).toMatchObject({ id: uuid(503), amount: '1000000000000000000000', day: null });
    expect(late.at.toISOString()).toBe('2026-12-04T09:00:00.000Z');
    const dead = await deadLetters(env);
    expect(dead.map((d) => [d.stream_id, d.error_code])).toEqual([
      [ids[1], 'TRIB_ERR_MAP_TYPE'],
      [ids[2], 'TRIB_ERR_MAP_REQUIRED'],
    ]);
    expect(dead[0]!.error).toBe(`entry ${ids[1]}: column amount (numeric) cannot take "lots": a string is not a number`);
    expect(Number(await env.redis.xLen(env.config.dlqStream))).toBe(2);
    const s = p.runner.stats();
    expect(s).toMatchObject({ written: 121, deadLettered: 2, skipped: 1 });
    const pk = await rows(env, `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = '${env.config.pgSchema}.payments'::regclass AND i.indisprimary`);
    expect(pk).toEqual([{ attname: 'id' }]);
  });

  it('upsert with a version: the highest version wins in any order, equal versions leave the row, a batch holding one key many times writes it once', async () => {
    const env = await envs.setup('tbl_upsert');
    const spec = specFor(
      env,
      `
name: latest
source: { stream: STREAM }
batch: { count: 7, period: 20ms }
workers: 3
dead_letters: { stream: DEAD }
sink:
  table: SCHEMA.latest
  mode: upsert
  key: [k]
  version: v
  columns:
    k: { from: payload.k, type: text }
    v: { from: payload.v, type: integer }
    who: { from: payload.who, type: text }
`,
    );
    const events: Ev[] = [];
    for (let k = 0; k < 20; k++) for (let v = 1; v <= 10; v++) events.push({ payload: { k: `k${k}`, v, who: `v${v}` } });
    events.sort(() => Math.random() - 0.5);
    await add(env, env.config.streamKey, events);
    await runPipeline(env, spec);
    await drained(env, env.config.streamKey, 'latest');
    const got = await rows<{ k: string; v: number; who: string }>(env, 'SELECT k, v, who FROM SCHEMA.latest ORDER BY k');
    expect(got).toHaveLength(20);
    for (const r of got) expect(r).toMatchObject({ v: 10, who: 'v10' });
    // Equal versions change nothing, older ones neither; in one batch or across batches.
    const later: Ev[] = [];
    for (let k = 0; k < 20; k++) later.push({ payload: { k: `k${k}`, v: 10, who: 'equal' } }, { payload: { k: `k${k}`, v: 3, who: 'older' } });
    await add(env, env.config.streamKey, later);
    await drained(env, env.config.streamKey, 'latest');
    expect(await rows(env, "SELECT count(*)::int AS n FROM SCHEMA.latest WHERE v = 10 AND who = 'v10'")).toEqual([{ n: 20 }]);
    // A version missing: dead-lettered (a version column is always required).
    await add(env, env.config.streamKey, [{ payload: { k: 'k1', who: 'no-version' } }]);
    await waitFor(async () => (await deadLetters(env)).length === 1, 10_000, 'the dead letter');
    expect((await deadLetters(env))[0]!.error_code).toBe('TRIB_ERR_MAP_REQUIRED');
  });

  it('upsert without a version: the last in the stream wins; append: every event a row', async () => {
    const env = await envs.setup('tbl_last');
    const upsert = specFor(
      env,
      `
name: last
source: { stream: STREAM }
batch: { count: 1000, period: 20ms }
workers: 1
dead_letters: { stream: DEAD }
sink: { table: SCHEMA.last, mode: upsert, key: [k], columns: { k: { from: payload.k, type: text }, n: { from: payload.n, type: integer } } }
`,
    );
    const append = specFor(
      env,
      `
name: log
source: { stream: STREAM }
batch: { count: 1000, period: 20ms }
workers: 1
dead_letters: { stream: DEAD }
sink: { table: SCHEMA.log, mode: append, columns: { k: { from: payload.k, type: text }, n: { from: payload.n, type: integer }, sid: { from: stream_id, type: text } } }
`,
    );
    await add(env, env.config.streamKey, Array.from({ length: 30 }, (_, n) => ({ payload: { k: `k${n % 3}`, n } })));
    await runPipeline(env, upsert, `${env.name}-a`);
    await runPipeline(env, append, `${env.name}-b`);
    await drained(env, env.config.streamKey, 'last');
    await drained(env, env.config.streamKey, 'log');
    expect(await rows(env, 'SELECT k, n FROM SCHEMA.last ORDER BY k')).toEqual([
      { k: 'k0', n: 27 },
      { k: 'k1', n: 28 },
      { k: 'k2', n: 29 },
    ]);
    expect(await rows(env, 'SELECT count(*)::int AS n, count(DISTINCT sid)::int AS d FROM SCHEMA.log')).toEqual([{ n: 30, d: 30 }]);
  });

  it('a row Postgres refuses (a CHECK of the existing table) is dead-lettered alone; its batch-mates are written', async () => {
    const env = await envs.setup('tbl_refused');
    await env.pool.query(`CREATE TABLE ${quoteIdent(env.config.pgSchema)}.checked (k text PRIMARY KEY, n integer CHECK (n >= 0), extra text DEFAULT 'x')`);
    const spec = specFor(
      env,
      `
name: checked
source: { stream: STREAM }
batch: { count: 100, period: 20ms }
workers: 1
dead_letters: { stream: DEAD }
sink: { table: SCHEMA.checked, key: [k], columns: { k: { from: payload.k, type: text }, n: { from: payload.n, type: integer } } }
`,
    );
    const ids = await add(env, env.config.streamKey, Array.from({ length: 40 }, (_, i) => ({ payload: { k: `k${i}`, n: i === 17 ? -1 : i } })));
    const p = await runPipeline(env, spec);
    await drained(env, env.config.streamKey, 'checked');
    expect(await rows(env, 'SELECT count(*)::int AS n FROM SCHEMA.checked')).toEqual([{ n: 39 }]);
    const dead = await deadLetters(env);
    expect(dead.map((d) => [d.stream_id, d.error_code])).toEqual([[ids[17], 'TRIB_ERR_ENTRY_REJECTED']]);
    expect(dead[0]!.error).toContain('23514');
    expect(p.runner.stats().written).toBe(39);
  });
});

describe('pipeline files: the events layout', () => {
  it('a file with the events table\'s layout takes the raw COPY path and writes the rows the engine writes', async () => {
    const env = await envs.setup('tbl_events_layout');
    const spec = specFor(env, readFileSync(join(REPO, 'src/pipeline-file/builtin/events.yaml'), 'utf8').replace('stream: events\n', 'stream: STREAM\n').replace('table: public.events', 'table: SCHEMA.mine').replace('create: false', 'create: true').replace('stream: events:dead', 'stream: DEAD'));
    const events: Ev[] = [
      { type: 'a', payload: '{ "spaced" :  [1, 2.50, "é"] }', id: 'given-id', at: 1_700_000_000_123 },
      { type: 'b', payload: { n: 1 } },
      { type: 'c', payload: 'not json' },
    ];
    const ids = await add(env, env.config.streamKey, events);
    const p = await runPipeline(env, spec);
    expect(p.writePath).toBe('events');
    await drained(env, env.config.streamKey, 'tributary');
    const got = await rows(env, 'SELECT event_id, event_type, payload::text, stream_id, produced_at FROM SCHEMA.mine ORDER BY stream_id');
    expect(got).toEqual([
      { event_id: 'given-id', event_type: 'a', payload: '{"spaced": [1, 2.50, "é"]}', stream_id: ids[0], produced_at: new Date(1_700_000_000_123) },
      { event_id: `${env.config.streamKey}/${ids[1]}`, event_type: 'b', payload: '{"n": 1}', stream_id: ids[1], produced_at: null },
    ]);
    expect((await deadLetters(env)).map((d) => d.error_code)).toEqual(['TRIB_ERR_ENTRY_BAD_PAYLOAD']);
  });
});

describe('pipeline files: the table at start', () => {
  const yaml = (extra = '') => `
name: shape
source: { stream: STREAM }
dead_letters: { stream: DEAD }
sink:
  table: SCHEMA.shape
  key: [k]
${extra}
  columns:
    k: { from: payload.k, type: text }
    n: { from: payload.n, type: bigint }
    at: { from: produced_at, type: timestamptz }
`;

  it('a table that does not fit stops the pipeline, naming the table, the column and both types', async () => {
    const env = await envs.setup('tbl_mismatch');
    const s = quoteIdent(env.config.pgSchema);
    await env.pool.query(`CREATE TABLE ${s}.shape (k text PRIMARY KEY, n integer, must text NOT NULL)`);
    const p = new TablePipeline(specFor(env, yaml()), { redisUrl: env.config.redisUrl, databaseUrl: env.config.databaseUrl, consumer: env.name, deadLetterSchema: env.config.pgSchema });
    envs.defer(() => p.close({ force: true }));
    const err = await p.start().then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('TRIB_ERR_TABLE_MISMATCH');
    expect(err?.message).toContain(`table ${env.config.pgSchema}.shape does not fit pipeline shape`);
    expect(err?.message).toContain('column n is integer, which cannot hold the mapped bigint');
    expect(err?.message).toContain('column at missing');
    expect(err?.message).toContain('column must is NOT NULL without a default');
  });

  it('evolve adds missing columns; create: false refuses a missing table; a key without a unique index is refused', async () => {
    const env = await envs.setup('tbl_evolve');
    const s = quoteIdent(env.config.pgSchema);
    await env.pool.query(`CREATE TABLE ${s}.shape (k text PRIMARY KEY)`);
    const p = await runPipeline(env, specFor(env, yaml('  evolve: true')));
    await add(env, env.config.streamKey, [{ payload: { k: 'a', n: 5 }, at: 1_700_000_000_000 }]);
    await drained(env, env.config.streamKey, 'shape');
    expect(await rows(env, 'SELECT k, n::int, at FROM SCHEMA.shape')).toEqual([{ k: 'a', n: 5, at: new Date(1_700_000_000_000) }]);
    await p.close();
    const types = await rows(env, `SELECT attname, format_type(atttypid, atttypmod) AS t, attnotnull FROM pg_attribute WHERE attrelid = '${env.config.pgSchema}.shape'::regclass AND attnum > 0 ORDER BY attnum`);
    expect(types).toEqual([
      { attname: 'k', t: 'text', attnotnull: true },
      { attname: 'n', t: 'bigint', attnotnull: false },
      { attname: 'at', t: 'timestamp with time zone', attnotnull: false },
    ]);

    const opts = { redisUrl: env.config.redisUrl, databaseUrl: env.config.databaseUrl, consumer: env.name, deadLetterSchema: env.config.pgSchema };
    const missing = new TablePipeline(specFor(env, yaml('  create: false').replace('SCHEMA.shape', 'SCHEMA.nothere')), opts);
    expect(await codeOf(missing.start())).toMatch(/^TRIB_ERR_TABLE_MISMATCH: .*nothere does not fit pipeline shape: it does not exist \(create: false\)/);
    await env.pool.query(`CREATE TABLE ${s}.nokey (k text, n bigint, at timestamptz)`);
    const nokey = new TablePipeline(specFor(env, yaml().replace('SCHEMA.shape', 'SCHEMA.nokey')), opts);
    const err = await nokey.start().then(() => undefined, (e: Error) => e);
    expect(err?.message).toContain('no unique index or primary key on exactly (k)');
  });
});

describe('pipeline files: the table dropped mid-run', () => {
  const yaml = (create: boolean) => `
name: gone
source: { stream: STREAM }
batch: { count: 10, period: 20ms }
dead_letters: { stream: DEAD }
sink:
  table: SCHEMA.gone
  key: [k]
  create: ${create}
  columns:
    k: { from: payload.k, type: text }
    n: { from: payload.n, type: bigint }
`;

  it('create: true makes it again and writes the entries held; create: false reports not-ready with the code and holds them until the table is back', async () => {
    const env = await envs.setup('tbl_gone');
    const s = quoteIdent(env.config.pgSchema);
    const p = await runPipeline(env, specFor(env, yaml(true)));
    const recreated: string[] = [];
    p.on('tableRecreated', ({ table }) => recreated.push(table));
    await add(env, env.config.streamKey, [{ payload: { k: 'a', n: 1 } }]);
    await drained(env, env.config.streamKey, 'gone');
    expect((await p.probe()).ready).toBe(true);
    await env.pool.query(`DROP TABLE ${s}.gone`);
    await add(env, env.config.streamKey, [{ payload: { k: 'b', n: 2 } }, { payload: { k: 'c', n: 3 } }]);
    await drained(env, env.config.streamKey, 'gone');
    expect(await rows(env, 'SELECT k, n::int FROM SCHEMA.gone ORDER BY k')).toEqual([
      { k: 'b', n: 2 },
      { k: 'c', n: 3 },
    ]);
    expect(recreated).toEqual([`${env.config.pgSchema}.gone`]);
    expect(await deadLetters(env)).toEqual([]);
    await p.close();

    const held = await runPipeline(env, specFor(env, yaml(false)), `${env.name}-held`);
    await env.pool.query(`DROP TABLE ${s}.gone`);
    await add(env, env.config.streamKey, [{ payload: { k: 'd', n: 4 } }]);
    await waitFor(async () => (await held.probe()).postgres.error?.startsWith('TRIB_ERR_POSTGRES_TABLE_MISSING') === true, 10_000, 'not-ready with the fault');
    const probe = await held.probe();
    expect(probe.ready).toBe(false);
    expect(probe.redis.ok).toBe(true);
    const groups = (await env.redis.sendCommand(['XPENDING', env.config.streamKey, 'gone'])) as unknown[];
    expect(Number(groups[0]), 'the entry stays pending').toBe(1);
    await env.pool.query(`CREATE TABLE ${s}.gone (k text PRIMARY KEY, n bigint)`);
    await drained(env, env.config.streamKey, 'gone');
    expect(await rows(env, 'SELECT k, n::int FROM SCHEMA.gone')).toEqual([{ k: 'd', n: 4 }]);
    await waitFor(async () => (await held.probe()).ready, 10_000, 'ready again');
    expect(await deadLetters(env)).toEqual([]);
  });
});

describe('pipeline files: processes', () => {
  const UPSERT = `
name: order-safe
source: { stream: STREAM }
batch: { count: 25, period: 10ms }
workers: 2
dead_letters: { stream: DEAD }
sink:
  table: SCHEMA.state
  mode: upsert
  key: [k]
  version: v
  columns:
    k: { from: payload.k, type: text }
    v: { from: payload.v, type: bigint }
    body: { from: payload.body, type: text }
`;

  function writeFile(env: TestEnv, text: string): string {
    const path = join(tmpdir(), `${env.name}-${randomBytes(3).toString('hex')}.yaml`);
    writeFileSync(path, text.replaceAll('STREAM', env.config.streamKey).replaceAll('SCHEMA', env.config.pgSchema).replaceAll('DEAD', env.config.dlqStream));
    return path;
  }

  function runCli(env: TestEnv, label: string, file: string, consumer: string): EngineProcess {
    assertBuilt();
    return new EngineProcess({ ...env.childEnv, NO_COLOR: '1', CONSUMER_NAME: consumer }, label, ['run', file]);
  }

  it('two processes writing shuffled versions of the same keys: each row holds its highest version', async () => {
    const env = await envs.setup('tbl_two_procs');
    const file = writeFile(env, UPSERT);
    const events: Ev[] = [];
    for (let k = 0; k < 50; k++) for (let v = 1; v <= 40; v++) events.push({ payload: { k: `k${k}`, v, body: `k${k}v${v}` } });
    events.sort(() => Math.random() - 0.5);
    const a = runCli(env, 'a', file, `${env.name}-a`);
    const b = runCli(env, 'b', file, `${env.name}-b`);
    await Promise.all([a.waitForLog('started', 30_000), b.waitForLog('started', 30_000)]);
    // Produced while both read: batches interleave between the processes.
    for (let i = 0; i < events.length; i += 200) await add(env, env.config.streamKey, events.slice(i, i + 200));
    await drained(env, env.config.streamKey, 'order-safe', 30_000);
    a.kill('SIGTERM');
    b.kill('SIGTERM');
    expect((await a.waitExit(15_000))?.code).toBe(0);
    expect((await b.waitExit(15_000))?.code).toBe(0);
    expect(a.output).toMatch(/order-safe stopped: read [1-9]/);
    expect(b.output).toMatch(/order-safe stopped: read [1-9]/);
    const got = await rows<{ k: string; v: string; body: string }>(env, 'SELECT k, v::text, body FROM SCHEMA.state ORDER BY k');
    expect(got).toHaveLength(50);
    for (const r of got) expect(r).toEqual({ k: r.k, v: '40', body: `${r.k}v40` });
  });

  it('kill -9 in the middle of an upsert stream: after a restart the table equals the state computed from what was produced', async () => {
    const env = await envs.setup('tbl_kill9');
    const file = writeFile(env, UPSERT);
    const expected = new Map<string, number>();
    const events: Ev[] = [];
    for (let i = 0; i < 20_000; i++) {
      const k = `k${i % 300}`;
      const v = 1 + Math.floor(Math.random() * 1000);
      expected.set(k, Math.max(expected.get(k) ?? 0, v));
      events.push({ payload: { k, v, body: `${k}:${v}` } });
    }
    await add(env, env.config.streamKey, events);
    const first = runCli(env, 'first', file, env.name);
    await first.waitForLog('started', 30_000);
    await waitFor(async () => Number((await rows<{ n: number }>(env, 'SELECT count(*)::int AS n FROM SCHEMA.state'))[0]?.n ?? 0) > 0, 20_000, 'the first rows');
    await first.killHard();
    const [group] = ((await env.redis.sendCommand(['XINFO', 'GROUPS', env.config.streamKey])) as unknown[][]).map((x) => Object.fromEntries(x.flatMap((v, i) => (i % 2 === 0 ? [[String(v), x[i + 1]]] : []))));
    // Killed mid-stream: work left unread and work read but not acknowledged.
    expect(Number(group!.lag) + Number(group!.pending)).toBeGreaterThan(0);
    const second = runCli(env, 'second', file, env.name);
    await drained(env, env.config.streamKey, 'order-safe', 30_000);
    second.kill('SIGTERM');
    expect((await second.waitExit(15_000))?.code).toBe(0);
    const got = await rows<{ k: string; v: string; body: string }>(env, 'SELECT k, v::text, body FROM SCHEMA.state');
    expect(got).toHaveLength(expected.size);
    for (const r of got) expect([r.v, r.body]).toEqual([String(expected.get(r.k)), `${r.k}:${expected.get(r.k)}`]);
    expect(await deadLetters(env)).toEqual([]);
  });

  it('run: a table that does not fit, or a file that does not check, exits 2 with the coded error; nothing keeps running', async () => {
    const env = await envs.setup('tbl_run_fails');
    await env.pool.query(`CREATE TABLE ${quoteIdent(env.config.pgSchema)}.state (k integer PRIMARY KEY, v bigint, body text)`);
    const good = writeFile(env, UPSERT.replace('name: order-safe', 'name: other').replace('SCHEMA.state', 'SCHEMA.other'));
    const misfit = writeFile(env, UPSERT);
    const both = new EngineProcess({ ...env.childEnv, NO_COLOR: '1', CONSUMER_NAME: env.name }, 'both', ['run', good, misfit]);
    const exit = await both.waitExit(20_000);
    expect(exit?.code, both.output).toBe(2);
    expect(both.output).toMatch(/TRIB_ERR_TABLE_MISMATCH: table \S+\.state does not fit pipeline order-safe: column k is integer, which cannot hold the mapped text/);
    // A database that does not exist is a wrong setting: exit 2 at once, not a wait.
    const url = new URL(env.config.databaseUrl);
    url.pathname = `/${env.name}_missing`;
    const missingDb = new EngineProcess({ ...env.childEnv, NO_COLOR: '1', DATABASE_URL: url.toString() }, 'missing-db', ['run', good]);
    const missingExit = await missingDb.waitExit(15_000);
    expect(missingExit?.code, missingDb.output).toBe(2);
    expect(missingDb.output).toContain('TRIB_ERR_POSTGRES_DATABASE_MISSING');
    const broken = join(tmpdir(), `${env.name}-broken.yaml`);
    writeFileSync(broken, 'name: x\nsource: { stream: s }\n');
    const bad = new EngineProcess({ ...env.childEnv, NO_COLOR: '1' }, 'bad', ['run', broken]);
    expect((await bad.waitExit(10_000))?.code).toBe(2);
    expect(bad.output).toContain(`${broken}:1:1: sink: is required`);
  });

  it('every shipped example runs through the CLI into its table', async () => {
    const env = await envs.setup('tbl_examples');
    const dir = join(REPO, 'examples/pipelines');
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    const sources: Record<string, Ev[]> = {
      'page-views.yaml': [
        { type: 'page_viewed', payload: { session: { id: 's1' }, url: '/a', user_id: 7, props: { ref: 'x' } }, at: 1_700_000_000_000 },
        { type: 'page_viewed', payload: { session: { id: 's1' }, url: '/a', user_id: 7, props: { ref: 'y' } }, at: 1_700_000_005_000 },
        { type: 'page_viewed', payload: { session: { id: 's1' }, url: '/a', user_id: 7, props: { ref: 'old' } }, at: 1_600_000_000_000 },
        { type: 'clicked', payload: { session: { id: 's1' }, url: '/b' } },
      ],
      'audit-log.yaml': [
        { type: 'user.login', payload: { actor: 'ann', target: 'web', tags: ['mfa'] }, at: 1_700_000_000_000 },
        { type: 'user.login', payload: { actor: 'ann', target: 'web', tags: ['mfa'] }, at: 1_700_000_000_000 },
      ],
      'payments.yaml': [
        { type: 'payment_captured', payload: { id: uuid(1), amount: '10.00', currency: 'EUR', captured_at: '2026-12-04T10:00:00Z', live: true, items: [{ sku: 'A1' }], day: '2026-12-04' } },
      ],
    };
    expect(files.sort()).toEqual(Object.keys(sources).sort());
    const procs: EngineProcess[] = [];
    const tables: Record<string, string> = {};
    for (const f of files) {
      // The example, pointed at this test's own stream and schema.
      const text = readFileSync(join(dir, f), 'utf8');
      const spec = parsePipelineFile(text, f);
      const stream = `${env.name}:${spec.source.stream}`;
      tables[f] = `${quoteIdent(env.config.pgSchema)}.${quoteIdent(`${spec.sink.schema}_${spec.sink.table}`)}`;
      const renamed = text
        .replace(new RegExp(`stream: ${spec.source.stream}\\b`), `stream: "${stream}"`)
        .replace(new RegExp(`table: ${spec.sink.schema === 'public' ? '' : `${spec.sink.schema}\\.`}${spec.sink.table}\\b`), `table: ${env.config.pgSchema}.${spec.sink.schema}_${spec.sink.table}`);
      expect(renamed).not.toBe(text);
      const path = join(tmpdir(), `${env.name}-${f}`);
      writeFileSync(path, `${renamed}\ndead_letters: { stream: "${stream}:dead" }\n`);
      envs.defer(() => env.redis.del([stream, `${stream}:dead`]));
      await add(env, stream, sources[f]!);
      procs.push(runCli(env, f, path, `${env.name}-${spec.name}`));
    }
    const count = async (f: string) => Number((await env.pool.query(`SELECT count(*)::int AS n FROM ${tables[f]}`).catch(() => ({ rows: [{ n: 0 }] }))).rows[0]!.n);
    await waitFor(async () => (await count('page-views.yaml')) === 1 && (await count('audit-log.yaml')) === 2 && (await count('payments.yaml')) === 1, 30_000, 'the example tables');
    // The payment resent later (an upstream retry) changes nothing. (Sent together, the two
    // may go to the file's two workers, and the first to commit wins.)
    const payments = `${env.name}:payments`;
    await add(env, payments, [{ type: 'payment_captured', payload: { id: uuid(1), amount: '99.00', currency: 'EUR', captured_at: '2026-12-04T11:00:00Z' } }]);
    await drained(env, payments, 'payments');
    for (const p of procs) p.kill('SIGTERM');
    for (const p of procs) expect((await p.waitExit(15_000))?.code, p.output).toBe(0);
    expect((await env.pool.query(`SELECT props->>'ref' AS ref FROM ${tables['page-views.yaml']}`)).rows).toEqual([{ ref: 'y' }]);
    expect((await env.pool.query(`SELECT amount::text, items FROM ${tables['payments.yaml']}`)).rows).toEqual([{ amount: '10.00', items: 'A1' }]);
  });
});

describe('pipeline files: tributary check', () => {
  it('prints what each valid file does and exits 0; prints every problem with its line and exits 2, within seconds', async () => {
    assertBuilt();
    const ok = new EngineProcess({ ...process.env, NO_COLOR: '1' }, 'check-ok', ['check', 'examples/pipelines/page-views.yaml', 'examples/pipelines/payments.yaml']);
    const okExit = await ok.waitExit(10_000);
    expect(okExit?.code, ok.output).toBe(0);
    expect(ok.output).toContain('ok examples/pipelines/page-views.yaml: page-views: clicks (group page-views, only page_viewed) → analytics.page_views, upsert key (session_id, url), version seen_at, 6 columns, 4 workers');
    expect(ok.output).toContain('ok examples/pipelines/payments.yaml: payments:');

    // The README's example, as a user sees it: the file and the output it shows.
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const shown = /```yaml\n(name: pages\n[\s\S]*?)```\n\n```\n\$ tributary check pages.yaml\n([\s\S]*?)\n\$ echo \$\?\n2\n```/.exec(readme);
    expect(shown, 'the README shows a check example').not.toBeNull();
    const dir = join(tmpdir(), `check-${randomBytes(4).toString('hex')}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'pages.yaml'), shown![1]!);
    const started = Date.now();
    const bad = spawnSync(process.execPath, [CLI, 'check', 'pages.yaml'], { cwd: dir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(bad.status).toBe(2);
    const output = `${bad.stdout}${bad.stderr}`;
    expect(output.trim()).toBe(shown![2]!.trim());
  });
});
