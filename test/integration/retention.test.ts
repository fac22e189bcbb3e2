import { describe, expect, it } from 'vitest';
import { registerTrim } from '../../src/cli/commands/trim.js';
import { sleep } from '../../src/core/backoff.js';
import { Engine } from '../../src/pipelines/events.js';
import {
  nextStreamId,
  previousStreamId,
  safeTrimPoint,
  TRIM_GUARD,
  trimStream,
  type TrimOptions,
  type TrimResult,
} from '../../src/ops/retention.js';
import { Producer } from '../../src/producer/producer.js';
import { sampleEvent } from '../../src/producer/sample.js';
import { send } from '../../src/redis/client.js';
import { compareStreamIds } from '../../src/redis/commands.js';
import { expectExactlyOnce, produceInBackground } from '../helpers/child.js';
import { countRows, pendingCount, waitFor, type TestEnv, testEnvs } from '../helpers/env.js';
import { configFlags, runCommand } from '../fixtures/cli.js';

const fast = { numWorkers: 3, batchSize: 50, batchTimeoutMs: 100, xreadBlockMs: 200, claimIdleMs: 3000, claimIntervalMs: 200 };

const envs = testEnvs(fast);

const setup = (label: string): Promise<TestEnv> => envs.setup(label);

function producerFor(env: TestEnv): Producer {
  const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
  envs.defer(() => producer.close());
  return producer;
}

async function produce(env: TestEnv, n: number): Promise<string[]> {
  const producer = producerFor(env);
  const ids: string[] = [];
  for (let done = 0; done < n; done += 500) {
    ids.push(...(await producer.produceBatch(Array.from({ length: Math.min(500, n - done) }, () => sampleEvent()))));
  }
  return ids;
}

const xlen = (env: TestEnv) => send(env.redis, ['XLEN', env.config.streamKey]).then(Number);
const firstId = async (env: TestEnv) => ((await send(env.redis, ['XRANGE', env.config.streamKey, '-', '+', 'COUNT', '1'])) as [string, string[]][])[0]?.[0];

describe('trimStream under load', () => {
  it('loses nothing: every event reaches Postgres once while trims run concurrently with small maxlen', async () => {
    const env = await setup('trim_load');
    const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 300 } });
    const deleted: string[] = [];
    engine.on('deleted', ({ ids }) => deleted.push(...ids)); // a pending entry found trimmed: must never happen
    envs.defer(() => engine.close({ force: true }));
    await engine.start();

    const producer = producerFor(env);
    const flow = produceInBackground(producer, 20_000, { prefix: 'trim', batch: 200, rate: 8000 });
    const results: TrimResult[] = [];
    let producing = true;
    void flow.finished.finally(() => (producing = false));

    // Two "engines" trimming at once, with every kind of request: exact small maxlen,
    // approximate maxlen 0 (everything acknowledged) and max age 0 (everything older than now).
    const trimmer = async (options: TrimOptions[]) => {
      for (let i = 0; producing || i < 5; i++) {
        results.push(await trimStream(env.redis, env.config.streamKey, options[i % options.length]!));
        await sleep(5);
      }
    };
    await Promise.all([
      trimmer([{ maxLen: 100, exact: true }, { maxLen: 0 }]),
      trimmer([{ maxAgeMs: 0, exact: true }, { maxLen: 20, exact: true }]),
    ]);
    await flow.finished;
    await waitFor(async () => (await countRows(env)).rows >= flow.ids.length, 60_000, 'every event in Postgres');
    await waitFor(async () => (await pendingCount(env)) === 0, 30_000, 'nothing pending');
    // Trim once more after the flow: the whole stream is acknowledged, so it all goes.
    results.push(await trimStream(env.redis, env.config.streamKey, { maxLen: 0, exact: true }));
    await engine.close();

    expect(deleted, 'pending entries that had been trimmed').toEqual([]);
    await expectExactlyOnce(env, flow.ids);
    const totalDeleted = results.reduce((n, r) => n + r.deleted, 0);
    expect(totalDeleted).toBe(flow.ids.length); // everything was trimmed in the end, and nothing twice
    expect(await xlen(env)).toBe(0);
    expect(results.some((r) => r.limitedBy === 'group:tributary'), 'some trims were held back by the group').toBe(true);
    for (const r of results) {
      if (r.cut !== null && r.safePoint !== null) expect(compareStreamIds(r.cut, r.safePoint)).toBeLessThanOrEqual(0);
      if (r.limitedBy === 'request' && r.cut !== null) expect(r.cut).toBe(r.requestedCut);
    }
  });
});

describe('trimStream and consumer groups', () => {
  it('never removes what a group has not received, nor what it has not acknowledged', async () => {
    const env = await setup('trim_groups');
    const key = env.config.streamKey;
    const ids = await produce(env, 500);
    await send(env.redis, ['XGROUP', 'CREATE', key, 'idle', '0']); // has read nothing
    const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 300 } });
    envs.defer(() => engine.close({ force: true }));
    await engine.start();
    await waitFor(async () => (await countRows(env)).rows === 500, 30_000, '500 rows');
    await engine.close();

    // The engine's group has everything; `idle` has received nothing: nothing may go.
    let r = await trimStream(env.redis, key, { maxLen: 10, exact: true });
    expect(r).toMatchObject({ requestedCut: ids[490], safePoint: '0-1', cut: '0-1', deleted: 0, limitedBy: 'group:idle' });
    r = await trimStream(env.redis, key, { maxAgeMs: 0 });
    expect(r).toMatchObject({ deleted: 0, limitedBy: 'group:idle' });
    expect(await xlen(env)).toBe(500);

    // `idle` receives 100 entries and acknowledges none: still nothing may go.
    await send(env.redis, ['XREADGROUP', 'GROUP', 'idle', 'c1', 'COUNT', '100', 'STREAMS', key, '>']);
    r = await trimStream(env.redis, key, { maxLen: 10, exact: true });
    expect(r).toMatchObject({ safePoint: ids[0], cut: ids[0], deleted: 0, limitedBy: 'group:idle' });
    expect(await xlen(env)).toBe(500);

    // It acknowledges the first 60: exactly those go; its 40 pending entries stay.
    await send(env.redis, ['XACK', key, 'idle', ...ids.slice(0, 60)]);
    expect((await safeTrimPoint(env.redis, key)).safePoint).toBe(ids[60]);
    r = await trimStream(env.redis, key, { maxLen: 10, exact: true });
    expect(r).toMatchObject({ safePoint: ids[60], cut: ids[60], deleted: 60, limitedBy: 'group:idle' });
    expect(await xlen(env)).toBe(440);
    expect(await firstId(env)).toBe(ids[60]);

    // It acknowledges the rest of what it received: up to its last delivered entry may go.
    await send(env.redis, ['XACK', key, 'idle', ...ids.slice(60, 100)]);
    const dry = await trimStream(env.redis, key, { maxLen: 10, dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, deleted: 0, wouldDelete: 40, cut: nextStreamId(ids[99]!), limitedBy: 'group:idle' });
    expect(await xlen(env)).toBe(440);
    r = await trimStream(env.redis, key, { maxLen: 10, exact: true });
    expect(r.deleted).toBe(40);
    expect(await firstId(env)).toBe(ids[100]);

    // A request behind every group is used as it is.
    r = await trimStream(env.redis, key, { maxAgeMs: 3_600_000, exact: true });
    expect(r).toMatchObject({ limitedBy: 'request', deleted: 0 });
  });

  it('the atomic guard refuses a cut that a group created meanwhile has not received', async () => {
    const env = await setup('trim_guard');
    const key = env.config.streamKey;
    const ids = await produce(env, 20);
    await send(env.redis, ['XGROUP', 'CREATE', key, 'late', ids[4]!]); // received up to the 5th entry
    const guard = (cut: string) => send(env.redis, ['EVAL', TRIM_GUARD.source, '1', key, cut, previousStreamId(cut)!, '=']);
    expect(await guard(ids[10]!)).toEqual([-1, 'late']);
    expect(await xlen(env)).toBe(20);
    expect(await guard(nextStreamId(ids[4]!))).toEqual([5, '']); // just past its last delivered entry: allowed
    await send(env.redis, ['XREADGROUP', 'GROUP', 'late', 'c', 'COUNT', '3', 'STREAMS', key, '>']); // pending: ids 5..7
    expect(await guard(ids[7]!)).toEqual([-1, 'late']);
    expect(await guard(ids[5]!)).toEqual([0, '']);
    expect(await send(env.redis, ['EVAL', TRIM_GUARD.source, '1', `${key}:none`, '5-0', '4-0', '='])).toEqual([0, '']);
  });

  it('trims a stream without groups as asked, and keeps about maxlen with ~', async () => {
    const env = await setup('trim_nogroup');
    const key = env.config.streamKey;
    const ids = await produce(env, 1000);
    const r = await trimStream(env.redis, key, { maxLen: 700, exact: true });
    expect(r).toMatchObject({ requestedCut: ids[300], safePoint: null, cut: ids[300], deleted: 300, limitedBy: 'request' });
    // ~ removes whole nodes (100 entries here) only: never below the request, perhaps a little less.
    const approx = await trimStream(env.redis, key, { maxLen: 150 });
    expect(approx.cut).toBe(ids[850]);
    expect(approx.deleted).toBeLessThanOrEqual(550);
    expect(await xlen(env)).toBeGreaterThanOrEqual(150);
    expect(await trimStream(env.redis, `${key}:none`, { maxLen: 5 })).toMatchObject({ cut: null, deleted: 0 });
  });
});

describe('tributary trim (commander program)', () => {
  it('reports the cut and what held it back; --dry-run removes nothing', async () => {
    const env = await setup('trim_cli');
    const key = env.config.streamKey;
    const ids = await produce(env, 50);
    await send(env.redis, ['XGROUP', 'CREATE', key, 'tributary', ids[19]!]);
    const dry = await runCommand(registerTrim, ['trim', '--maxlen', '5', '--dry-run', ...configFlags(env)]);
    const safe = nextStreamId(ids[19]!);
    expect(dry).toContain(`dry run: would trim entries below ${safe} (20 entries), limited by group tributary`);
    expect(await xlen(env)).toBe(50);
    const out = JSON.parse(await runCommand(registerTrim, ['trim', '--maxlen', '5', '--exact', '--json', ...configFlags(env)]));
    expect(out).toMatchObject({ stream: key, requestedCut: ids[45], safePoint: safe, cut: safe, deleted: 20, limitedBy: 'group:tributary' });
    expect(await xlen(env)).toBe(30);
    await expect(runCommand(registerTrim, ['trim', ...configFlags(env)])).rejects.toMatchObject({ code: 'TRIB_ERR_CONFIG_INVALID' });
    await expect(runCommand(registerTrim, ['trim', '--max-age', 'week', ...configFlags(env)])).rejects.toMatchObject({
      code: 'TRIB_ERR_CONFIG_INVALID',
      message: expect.stringContaining('--max-age'),
    });
  });
});
