/**
 * Issue 11, item 1: trimming never cuts what no group has received. While the engine's
 * group is missing (XGROUP DESTROY, a Redis restart without persistence) and its workers
 * are busy, entries produced meanwhile are guarded by no group: the trim loop must not
 * trim until the group is back.
 */
import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../src/errors.js';
import { trimStream } from '../../src/ops/retention.js';
import { Engine } from '../../src/pipelines/events.js';
import { withClient, quoteIdent } from '../../src/postgres/pool.js';
import { send } from '../../src/redis/client.js';
import { countRows, testEnvs, waitFor } from '../helpers/env.js';

const envs = testEnvs({ numWorkers: 1, batchTimeoutMs: 100, xreadBlockMs: 100 });

async function add(redis: Parameters<typeof send>[0], stream: string, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) await send(redis, ['XADD', stream, '*', 'event_type', 't', 'payload', '{}', 'event_id', `${tag}-${i}`]);
}

describe('trim never cuts what no group has received (issue 11, item 1)', () => {
  it('trimStream with requireGroups refuses while a required group is missing, and trims once it is back', async () => {
    const env = await envs.setup('trim_req', {}, { migrate: false });
    const stream = env.config.streamKey;
    await send(env.redis, ['XGROUP', 'CREATE', stream, 'g', '$', 'MKSTREAM']);
    await send(env.redis, ['XGROUP', 'DESTROY', stream, 'g']);
    await add(env.redis, stream, 50, 'a');
    const err = await trimStream(env.redis, stream, { maxLen: 0, exact: true, requireGroups: ['g'] }).catch((e: unknown) => e);
    expect(isTributaryError(err, 'TRIB_ERR_GROUP_NOT_FOUND'), String(err)).toBe(true);
    expect(await send(env.redis, ['XLEN', stream])).toBe(50);
    // Back, having read everything: trimming goes ahead.
    await send(env.redis, ['XGROUP', 'CREATE', stream, 'g', '$']);
    const r = await trimStream(env.redis, stream, { maxLen: 0, exact: true, requireGroups: ['g'] });
    expect(r.deleted).toBe(50);
  });

  it("the engine's trim loop does not cut entries produced while its group is gone and its worker is busy", async () => {
    const env = await envs.setup('trim_engine', { trimMaxLen: 1, trimIntervalMs: 100, groupStartId: '0', maxInFlight: 1, batchSize: 1 });
    const stream = env.config.streamKey;
    const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 100 } });
    envs.defer(() => engine.close({ force: true }));
    const trimmed: number[] = [];
    engine.on('trimmed', (t) => trimmed.push(t.deleted));
    await engine.start();
    await add(env.redis, stream, 5, 'first');
    await waitFor(async () => (await countRows(env)).rows === 5, 10_000, 'first rows');

    // The worker is held in a write (the table locked), the group destroyed, 250 events produced (more than one stream node: an approximate trim can cut) (more than a stream node holds, so an approximate trim can cut).
    const table = `${quoteIdent(env.config.pgSchema)}.${quoteIdent(env.config.eventsTable)}`;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = withClient(env.pool, async (client) => {
      await client.query('BEGIN');
      await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      locked();
      await released;
      await client.query('COMMIT');
    });
    await isLocked;
    await add(env.redis, stream, 1, 'held'); // the worker reads it and blocks on the lock
    await new Promise((r) => setTimeout(r, 300));
    await send(env.redis, ['XGROUP', 'DESTROY', stream, env.config.group]);
    await add(env.redis, stream, 250, 'orphan');
    await new Promise((r) => setTimeout(r, 800)); // several trim intervals
    const lengthWhileMissing = Number(await send(env.redis, ['XLEN', stream]));
    const groupsWhileMissing = (await send(env.redis, ['XINFO', 'GROUPS', stream])) as unknown[];
    const trimmedWhileMissing = [...trimmed];
    release();
    await holder;
    expect(groupsWhileMissing).toEqual([]); // the scenario: no group guarded them
    expect(lengthWhileMissing).toBeGreaterThanOrEqual(251);
    expect(trimmedWhileMissing).toEqual([]);
    // The group comes back (GROUP_START_ID 0): every event is written.
    await waitFor(async () => (await countRows(env)).rows === 256, 10_000, 'every event written');
  });
});
