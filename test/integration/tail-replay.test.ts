import { describe, expect, it } from 'vitest';
import { registerReplay } from '../../src/cli/commands/replay.js';
import { migrate } from '../../src/postgres/migrate.js';
import { registerTail, tailStart } from '../../src/cli/commands/tail.js';
import { Engine } from '../../src/pipelines/events.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { createReplayGroup, replayRange } from '../../src/ops/replay.js';
import { previousStreamId } from '../../src/ops/retention.js';
import { tailStream } from '../../src/ops/tail.js';
import { Producer } from '../../src/producer/producer.js';
import { sampleEvent } from '../../src/producer/sample.js';
import { createRedisConnection, send, destroyQuietly } from '../../src/redis/client.js';
import { compareStreamIds, type StreamEntry } from '../../src/redis/commands.js';
import { waitFor, type TestEnv, testEnvs } from '../helpers/env.js';
import { configFlags, runCommand } from '../fixtures/cli.js';

const fast = { numWorkers: 2, batchSize: 50, batchTimeoutMs: 100, xreadBlockMs: 200, claimIdleMs: 3000, claimIntervalMs: 200 };

const envs = testEnvs(fast);

const setup = (label: string): Promise<TestEnv> => envs.setup(label, {}, { migrate: false });

function producerFor(env: TestEnv): Producer {
  const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
  envs.defer(() => producer.close());
  return producer;
}

/** A schema of its own (dropped after the test), migrated. */
async function extraSchema(env: TestEnv, suffix: string): Promise<string> {
  const schema = `${env.name}_${suffix}`;
  envs.defer(async () => {
    await env.pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
  });
  await migrate(env.pool, schema);
  return schema;
}

async function rows(env: TestEnv, schema = env.config.pgSchema): Promise<string[]> {
  const r = await env.pool.query<{ stream_id: string }>(`SELECT stream_id FROM ${quoteIdent(schema)}.events`);
  return r.rows.map((x) => x.stream_id).sort(compareStreamIds);
}

const byId = compareStreamIds;

/** Runs the engine on `config` until `until()` holds, then stops it gracefully. */
async function runEngineUntil(config: TestEnv['config'], until: () => Promise<boolean>, what: string): Promise<void> {
  const engine = new Engine(config, { retry: { baseMs: 20, maxMs: 300 } });
  envs.defer(() => engine.close({ force: true }));
  await engine.start();
  await waitFor(until, 30_000, what);
  await engine.close();
}

describe('tailStream', () => {
  it('returns the entries after the offset, then new ones as they arrive', async () => {
    const env = await setup('tail');
    const producer = producerFor(env);
    const ids = await producer.produceBatch(Array.from({ length: 5 }, () => sampleEvent()));
    const reader = createRedisConnection(env.config.redisUrl, { failFast: false });
    await reader.connect();
    envs.defer(async () => destroyQuietly(reader));
    const stop = new AbortController();
    const tail = tailStream(reader, env.config.streamKey, { from: ids[1], blockMs: 200, signal: stop.signal });
    const next = async () => ((await tail.next()).value as StreamEntry).id;
    expect([await next(), await next(), await next()]).toEqual(ids.slice(2));

    const pending = next(); // blocks until an entry arrives
    const later = await producer.produceBatch([sampleEvent(), sampleEvent()]);
    expect(await pending).toBe(later[0]);
    const entry = (await tail.next()).value as StreamEntry;
    expect(entry.id).toBe(later[1]);
    expect(Object.keys(entry.fields).sort()).toEqual(['event_id', 'event_type', 'payload', 'produced_at']);

    // An abort ends a blocked read at once.
    const blocked = tail.next();
    const started = Date.now();
    stop.abort();
    expect(await blocked).toEqual({ done: true, value: undefined });
    expect(Date.now() - started).toBeLessThan(150);
  });

  it('from $ sees only entries added after it started; from 0 the whole stream', async () => {
    const env = await setup('tail_dollar');
    const producer = producerFor(env);
    const old = await producer.produceBatch([sampleEvent(), sampleEvent()]);
    const stop = new AbortController();
    envs.defer(async () => stop.abort());
    const fresh = tailStream(env.redis, env.config.streamKey, { from: '$', blockMs: 100, signal: stop.signal });
    const first = fresh.next(); // resolves `$` to the current last ID before reading
    await new Promise((r) => setTimeout(r, 50));
    const [added] = await producer.produceBatch([sampleEvent()]);
    expect(((await first).value as StreamEntry).id).toBe(added);
    stop.abort();

    const reader = createRedisConnection(env.config.redisUrl, { failFast: false });
    await reader.connect();
    envs.defer(async () => destroyQuietly(reader));
    const all: string[] = [];
    for await (const e of tailStream(reader, env.config.streamKey, { from: '0', blockMs: 100 })) {
      all.push(e.id);
      if (all.length === 3) break;
    }
    expect(all).toEqual([...old, added]);
  });

  it('tributary tail --from 0 --count N --json prints N entries and stops', async () => {
    const env = await setup('tail_cli');
    const ids = await producerFor(env).produceBatch(Array.from({ length: 4 }, () => sampleEvent()));
    const out = await runCommand(registerTail, ['tail', '--from', '0', '--count', '3', '--json', ...configFlags(env)]);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as StreamEntry);
    expect(lines.map((l) => l.id)).toEqual(ids.slice(0, 3));
    expect(lines[0]!.fields.event_type).toBeTruthy();
    const plain = await runCommand(registerTail, ['tail', '--from', ids[2]!, '--count', '1', ...configFlags(env)]);
    expect(plain).toMatch(new RegExp(`^${ids[3]}  \\d{4}-\\d{2}-\\d{2}T[\\d:.]+Z  \\w+  \\{.*\\}  event_id=\\S+  produced_at=\\d+\\n$`));
    // An ISO time starts at that time (inclusive); an entry ID after it.
    expect(tailStart(new Date(Number(ids[2]!.split('-')[0])).toISOString())).toBe(previousStreamId(`${ids[2]!.split('-')[0]}-0`));
    expect(tailStart('$')).toBe('$');
    expect(tailStart('1700000000000')).toBe('1700000000000-0');
  });
});

describe('replay', () => {
  it('of history already written changes nothing; into an empty table writes it; poison is counted, not written', async () => {
    const env = await setup('replay');
    const producer = producerFor(env);
    const ids = await producer.produceBatch(Array.from({ length: 250 }, () => sampleEvent()));
    const poisonId = await producer.addRaw({ event_type: 'broken', payload: '{not json' });
    const bare = await producer.addRaw({ event_type: 'bare', payload: '{"no":"event_id"}' }); // keyed by stream and entry ID
    await runEngineUntil(env.config, async () => (await rows(env)).length === 251, '251 rows');
    const before = await rows(env);
    const deadBefore = await env.pool.query(`SELECT count(*)::int AS n FROM ${quoteIdent(env.config.pgSchema)}.dead_letter_queue`);
    expect(deadBefore.rows[0].n).toBe(1);

    const again = await replayRange(env.redis, env.pool, env.config.streamKey, { from: '0-0', schema: env.config.pgSchema, pageSize: 100 });
    expect(again).toMatchObject({ read: 252, inserted: 0, alreadyPresent: 251, poison: 1, pages: 3, firstId: ids[0], lastId: bare, deadLettersRecorded: 0 });
    expect(again.poisonSamples).toEqual([{ id: poisonId, code: 'TRIB_ERR_ENTRY_BAD_PAYLOAD', message: expect.stringContaining(poisonId) }]);
    expect(await rows(env)).toEqual(before);

    // Recording the poison again is idempotent with the engine's own dead letter.
    await replayRange(env.redis, env.pool, env.config.streamKey, {
      from: '0-0',
      schema: env.config.pgSchema,
      deadLetters: { group: env.config.group, dlqStream: env.config.dlqStream },
    });
    const deadAfter = await env.pool.query(`SELECT count(*)::int AS n FROM ${quoteIdent(env.config.pgSchema)}.dead_letter_queue`);
    expect(deadAfter.rows[0].n).toBe(1);

    const empty = await extraSchema(env, 'empty');
    const fresh = await replayRange(env.redis, env.pool, env.config.streamKey, { from: '0-0', schema: empty });
    expect(fresh).toMatchObject({ read: 252, inserted: 251, alreadyPresent: 0, poison: 1, pages: 1 });
    expect(await rows(env, empty)).toEqual(before);
    const eventIds = await env.pool.query<{ event_id: string }>(`SELECT event_id FROM ${quoteIdent(empty)}.events WHERE stream_id = $1`, [bare]);
    const original = await env.pool.query<{ event_id: string }>(`SELECT event_id FROM ${quoteIdent(env.config.pgSchema)}.events WHERE stream_id = $1`, [bare]);
    expect(eventIds.rows[0]!.event_id).toBe(original.rows[0]!.event_id); // the same idempotency key as the engine's

    // --from / --to are inclusive.
    const part = await extraSchema(env, 'part');
    const some = await replayRange(env.redis, env.pool, env.config.streamKey, { from: ids[10]!, to: ids[19]!, schema: part });
    expect(some).toMatchObject({ read: 10, inserted: 10, firstId: ids[10], lastId: ids[19] });
    expect(await rows(env, part)).toEqual(ids.slice(10, 20).sort(byId));
  });

  it('tributary replay reports read / inserted / already present / poison', async () => {
    const env = await setup('replay_cli');
    const producer = producerFor(env);
    const ids = await producer.produceBatch(Array.from({ length: 30 }, () => sampleEvent()));
    await producer.addRaw({ payload: '{}' }); // no event_type
    await migrate(env.pool, env.config.pgSchema);
    const first = JSON.parse(await runCommand(registerReplay, ['replay', '--from', ids[0]!, '--json', ...configFlags(env)]));
    expect(first).toMatchObject({ from: ids[0], to: '+', read: 31, inserted: 30, alreadyPresent: 0, poison: 1 });
    const text = await runCommand(registerReplay, ['replay', '--from', ids[0]!, '--to', ids[9]!, ...configFlags(env)]);
    expect(text).toMatch(new RegExp(`^replayed ${env.config.streamKey} from ${ids[0]} to ${ids[9]}: read 10, inserted 0, already present 10, poison 0 \\(`));
    await expect(runCommand(registerReplay, ['replay', '--from', ids[9]!, '--to', ids[0]!, ...configFlags(env)])).rejects.toMatchObject({
      code: 'TRIB_ERR_CONFIG_INVALID',
    });
  });

  it('--group creates a group at that point, and an engine with that group consumes from there', async () => {
    const env = await setup('replay_group');
    const ids = await producerFor(env).produceBatch(Array.from({ length: 100 }, () => sampleEvent()));
    const created = await createReplayGroup(env.redis, env.config.streamKey, 'again', ids[40]!);
    expect(created).toEqual({ group: 'again', startId: previousStreamId(ids[40]!) });
    await expect(createReplayGroup(env.redis, env.config.streamKey, 'again', ids[0]!)).rejects.toMatchObject({ code: 'TRIB_ERR_REPLAY_GROUP_EXISTS' });
    await expect(createReplayGroup(env.redis, `${env.config.streamKey}:none`, 'again', ids[0]!)).rejects.toMatchObject({
      code: 'TRIB_ERR_REPLAY_STREAM_MISSING',
    });
    expect(Number(await send(env.redis, ['EXISTS', `${env.config.streamKey}:none`]))).toBe(0);

    const schema = await extraSchema(env, 'again');
    await runEngineUntil({ ...env.config, group: 'again', pgSchema: schema }, async () => (await rows(env, schema)).length >= 60, '60 rows');
    expect(await rows(env, schema)).toEqual(ids.slice(40).sort(byId));

    // The CLI: a group at an ISO time starts at the first entry of that millisecond.
    const at = new Date(Number(ids[70]!.split('-')[0])).toISOString();
    const out = JSON.parse(await runCommand(registerReplay, ['replay', '--from', at, '--group', 'later', '--json', ...configFlags(env)]));
    expect(out).toMatchObject({ stream: env.config.streamKey, group: 'later', startId: previousStreamId(`${ids[70]!.split('-')[0]}-0`) });
    const reply = (await send(env.redis, ['XREADGROUP', 'GROUP', 'later', 'c', 'COUNT', '1', 'STREAMS', env.config.streamKey, '>'])) as [string, [string][]][];
    const firstOfThatMs = ids.find((id) => id.split('-')[0] === ids[70]!.split('-')[0]);
    expect(reply[0]![1][0]![0]).toBe(firstOfThatMs);
    await expect(runCommand(registerReplay, ['replay', '--from', at, '--group', 'later', ...configFlags(env)])).rejects.toMatchObject({
      code: 'TRIB_ERR_REPLAY_GROUP_EXISTS',
    });
  });
});
