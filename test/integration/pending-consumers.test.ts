import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { registerConsumers } from '../../src/cli/commands/consumers.js';
import { registerClaim, registerPending } from '../../src/cli/commands/pending.js';
import { isTributaryError } from '../../src/errors.js';
import { claimIdle, deleteConsumerIfIdle, listConsumers, pendingSummary, planPrune, pruneConsumers } from '../../src/ops/pending.js';
import { send } from '../../src/redis/client.js';
import { createTestEnv, type TestEnv, codeOf } from '../helpers/env.js';

let cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function setup(label: string, entries = 0): Promise<{ env: TestEnv; ids: string[] }> {
  const env = await createTestEnv(label);
  cleanups.push(() => env.cleanup());
  await send(env.redis, ['XGROUP', 'CREATE', env.config.streamKey, env.config.group, '0', 'MKSTREAM']);
  const ids: string[] = [];
  for (let i = 0; i < entries; i++) {
    ids.push(String(await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 't', 'payload', `{"i":${i}}`])));
  }
  return { env, ids };
}

async function readAs(env: TestEnv, consumer: string, count: number): Promise<string[]> {
  const reply = (await send(env.redis, [
    'XREADGROUP', 'GROUP', env.config.group, consumer, 'COUNT', String(count), 'STREAMS', env.config.streamKey, '>',
  ])) as [string, [string, string[]][]][] | null;
  return reply ? reply[0]![1].map((e) => e[0]) : [];
}

/** id → [consumer, deliveries] from XPENDING. */
async function pel(env: TestEnv): Promise<Map<string, [string, number]>> {
  const rows = (await send(env.redis, ['XPENDING', env.config.streamKey, env.config.group, '-', '+', '1000'])) as [string, string, number, number][];
  return new Map(rows.map((r) => [r[0], [r[1], Number(r[3])]]));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


describe('pending', () => {
  it('summarises the pending list: total, ID range, per consumer, oldest with idle time and deliveries', async () => {
    const { env, ids } = await setup('pending_summary', 10);
    await readAs(env, 'c-small', 4);
    await readAs(env, 'c-big', 6);
    const s = await pendingSummary(env.redis, env.config, { limit: 3 });
    expect(s).toMatchObject({
      total: 10,
      smallestId: ids[0],
      largestId: ids[9],
      consumers: [
        { name: 'c-big', pending: 6 },
        { name: 'c-small', pending: 4 },
      ],
    });
    expect(s.oldest.map((p) => [p.id, p.consumer, p.deliveries])).toEqual([
      [ids[0], 'c-small', 1],
      [ids[1], 'c-small', 1],
      [ids[2], 'c-small', 1],
    ]);
    expect(s.oldest[0]!.idleMs).toBeGreaterThanOrEqual(0);

    await send(env.redis, ['XACK', env.config.streamKey, env.config.group, ...ids]);
    expect(await pendingSummary(env.redis, env.config)).toMatchObject({ total: 0, smallestId: null, largestId: null, consumers: [], oldest: [] });
  });

  it('names a missing stream or group with a coded error', async () => {
    const { env } = await setup('pending_missing');
    expect(await codeOf(pendingSummary(env.redis, { ...env.config, group: 'nope' }))).toMatch(/^TRIB_ERR_GROUP_NOT_FOUND: consumer group nope does not exist/);
    expect(await codeOf(listConsumers(env.redis, { ...env.config, streamKey: `${env.name}:none` }))).toMatch(/^TRIB_ERR_GROUP_NOT_FOUND/);
    expect(await codeOf(claimIdle(env.redis, { ...env.config, group: 'nope' }, { minIdleMs: 0, consumer: 'x' }))).toMatch(/^TRIB_ERR_GROUP_NOT_FOUND/);
    expect(await codeOf(pruneConsumers(env.redis, { ...env.config, streamKey: `${env.name}:none` }, { minIdleMs: 0 }))).toMatch(/^TRIB_ERR_GROUP_NOT_FOUND/);
  });
});

describe('claim', () => {
  it('moves only entries idle long enough to the named consumer and counts a delivery', async () => {
    const { env, ids } = await setup('claim_moves', 12);
    const stuck = await readAs(env, 'dead-1', 8);
    await sleep(700);
    const fresh = await readAs(env, 'alive-1', 4); // idle ~0: must not be taken
    // A pending entry whose stream entry was deleted (trimmed) is cleared, not claimed.
    await send(env.redis, ['XDEL', env.config.streamKey, stuck[7]!]);

    const limited = await claimIdle(env.redis, env.config, { minIdleMs: 500, consumer: 'rescuer', count: 3, pageSize: 2 });
    expect(limited.claimed.map((c) => c.id)).toEqual(stuck.slice(0, 3));
    expect(limited.claimed.every((c) => c.deliveries === 2)).toBe(true);

    const rest = await claimIdle(env.redis, env.config, { minIdleMs: 500, consumer: 'rescuer', pageSize: 2 });
    expect(rest.claimed.map((c) => c.id)).toEqual(stuck.slice(3, 7));
    expect(rest.deleted).toEqual([stuck[7]]);

    const after = await pel(env);
    for (const id of stuck.slice(0, 7)) expect(after.get(id)).toEqual(['rescuer', 2]);
    for (const id of fresh) expect(after.get(id)).toEqual(['alive-1', 1]);
    expect(after.has(stuck[7]!)).toBe(false);
    expect(after.size).toBe(11);
    expect(ids).toHaveLength(12);

    // Claimed again after another idle period: one more delivery each.
    await sleep(700);
    const again = await claimIdle(env.redis, env.config, { minIdleMs: 500, consumer: 'rescuer-2' });
    expect(again.claimed.map((c) => c.deliveries).sort()).toEqual([...Array(4).fill(2), ...Array(7).fill(3)]);
    expect(await claimIdle(env.redis, env.config, { minIdleMs: 60_000, consumer: 'x' })).toMatchObject({ claimed: [], deleted: [] });
  });
});

describe('consumers', () => {
  it('lists consumers with pending count and idle time', async () => {
    const { env } = await setup('consumers_list', 3);
    await readAs(env, 'reader', 3);
    await send(env.redis, ['XGROUP', 'CREATECONSUMER', env.config.streamKey, env.config.group, 'empty']);
    const list = await listConsumers(env.redis, env.config);
    expect(list.map((c) => [c.name, c.pending]).sort()).toEqual([
      ['empty', 0],
      ['reader', 3],
    ]);
    for (const c of list) {
      expect(c.idleMs).toBeGreaterThanOrEqual(0);
      expect(c.inactiveMs === null || typeof c.inactiveMs === 'number').toBe(true);
    }
  });

  it('prune deletes only idle consumers without pending entries, and nothing without confirmation', async () => {
    const { env } = await setup('consumers_prune', 5);
    await readAs(env, 'holder', 5); // idle, but holds pending entries: must be kept
    await send(env.redis, ['XGROUP', 'CREATECONSUMER', env.config.streamKey, env.config.group, 'idle-empty']);
    await send(env.redis, ['XGROUP', 'CREATECONSUMER', env.config.streamKey, env.config.group, 'idle-empty-2']);
    await sleep(700);
    await send(env.redis, ['XGROUP', 'CREATECONSUMER', env.config.streamKey, env.config.group, 'active-empty']); // just seen: kept

    const plan = await planPrune(env.redis, env.config, 500);
    expect(plan.remove.map((c) => c.name).sort()).toEqual(['idle-empty', 'idle-empty-2']);
    expect(plan.keep.map((c) => [c.name, c.reason]).sort()).toEqual([
      ['active-empty', 'active'],
      ['holder', 'pending'],
    ]);

    const refused = await codeOf(pruneConsumers(env.redis, env.config, { minIdleMs: 500 }));
    expect(refused).toMatch(/^TRIB_ERR_CONFIRMATION_REQUIRED: would delete 2 consumers idle for at least 500 ms with no pending entries \(idle-empty, idle-empty-2\)/);
    expect((await listConsumers(env.redis, env.config)).map((c) => c.name).sort()).toEqual(['active-empty', 'holder', 'idle-empty', 'idle-empty-2']);

    const result = await pruneConsumers(env.redis, env.config, { minIdleMs: 500, confirm: true });
    expect(result.deleted.sort()).toEqual(['idle-empty', 'idle-empty-2']);
    expect(result.kept.map((k) => [k.name, k.reason, k.pending]).sort()).toEqual([
      ['active-empty', 'active', 0],
      ['holder', 'pending', 5],
    ]);
    expect((await listConsumers(env.redis, env.config)).map((c) => c.name).sort()).toEqual(['active-empty', 'holder']);
    expect((await pendingSummary(env.redis, env.config)).total).toBe(5);

    // Nothing left to delete: no confirmation needed to do nothing.
    expect(await pruneConsumers(env.redis, env.config, { minIdleMs: 3_600_000 })).toMatchObject({ deleted: [] });
  });

  it('the delete re-checks atomically: a consumer that gained a pending entry after the plan is kept', async () => {
    const { env } = await setup('consumers_race', 2);
    await readAs(env, 'holder', 2);
    await send(env.redis, ['XGROUP', 'CREATECONSUMER', env.config.streamKey, env.config.group, 'victim']);
    await sleep(200);
    const plan = await planPrune(env.redis, env.config, 100);
    expect(plan.remove.map((c) => c.name)).toEqual(['victim']);

    // Between the look and the delete, the consumer is handed an entry (XCLAIM from holder).
    const [first] = (await pel(env)).keys();
    await send(env.redis, ['XCLAIM', env.config.streamKey, env.config.group, 'victim', '0', first!]);
    expect(await deleteConsumerIfIdle(env.redis, env.config, 'victim', 0)).toEqual({ status: 'pending', pending: 1 });
    expect((await pel(env)).get(first!)?.[0]).toBe('victim');

    // Too recently active, and already gone, are both kept/no-ops.
    await send(env.redis, ['XGROUP', 'CREATECONSUMER', env.config.streamKey, env.config.group, 'fresh']);
    expect(await deleteConsumerIfIdle(env.redis, env.config, 'fresh', 60_000)).toMatchObject({ status: 'active' });
    expect(await deleteConsumerIfIdle(env.redis, env.config, 'fresh', 0)).toEqual({ status: 'deleted' });
    expect(await deleteConsumerIfIdle(env.redis, env.config, 'fresh', 0)).toEqual({ status: 'missing' });
    expect((await listConsumers(env.redis, env.config)).map((c) => c.name).sort()).toEqual(['holder', 'victim']);
  });
});

describe('tributary pending / claim / consumers (commander)', () => {
  async function run(env: TestEnv, args: string[], flagsAfter = true): Promise<{ out: string; err: string; error?: unknown }> {
    const program = new Command().exitOverride();
    registerPending(program);
    registerClaim(program);
    registerConsumers(program);
    const c = env.config;
    const flags = ['--redis-url', c.redisUrl, '--stream-key', c.streamKey, '--group', c.group, '--consumer-name', c.consumerName];
    const out: string[] = [];
    const err: string[] = [];
    const o = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => (out.push(String(chunk)), true));
    const e = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (err.push(String(chunk)), true));
    try {
      await program.parseAsync(flagsAfter ? [...args, ...flags] : [args[0]!, ...flags, ...args.slice(1)], { from: 'user' });
      return { out: out.join(''), err: err.join('') };
    } catch (error) {
      return { out: out.join(''), err: err.join(''), error };
    } finally {
      o.mockRestore();
      e.mockRestore();
    }
  }

  it('pending, claim, consumers and prune print what they did; prune without --yes refuses', async () => {
    const { env } = await setup('pending_cli', 6);
    const stuck = await readAs(env, 'gone-1', 6);
    await send(env.redis, ['XGROUP', 'CREATECONSUMER', env.config.streamKey, env.config.group, 'old-empty']);
    await sleep(300);

    const pending = await run(env, ['pending', '--limit', '2']);
    expect(pending.error).toBeUndefined();
    expect(pending.out).toContain(`stream ${env.config.streamKey}, group tributary: 6 pending (IDs ${stuck[0]} to ${stuck[5]})`);
    expect(pending.out).toMatch(/gone-1\s+6/);
    expect(pending.out).toContain('oldest 2:');
    expect(JSON.parse((await run(env, ['pending', '--json'])).out).total).toBe(6);

    const claim = await run(env, ['claim', '--idle', '200', '--count', '4']);
    expect(claim.error).toBeUndefined();
    const target = `${env.config.consumerName}-manual`;
    expect(claim.out).toContain(`claimed 4 entries idle for at least 200 ms to consumer ${target} (delivery count now 2: a claim counts as a delivery)`);
    expect(claim.out).toMatch(/A running engine .* reclaims them once they have been idle for its CLAIM_IDLE_MS/);
    expect(claim.out).toContain(`No engine consumer is named ${target}`);
    expect(claim.err).toMatch(/warning: --idle 200 ms is shorter than two batch timeouts/);
    const toWorker = await run(env, ['claim', '--idle', '200', '--to', `${env.config.consumerName}-reclaim`]);
    expect(toWorker.out).toContain(`\`tributary start --consumer-name ${env.config.consumerName}\` processes them as soon as it starts`);
    expect((await pel(env)).get(stuck[0]!)).toEqual([target, 2]);
    expect((await pel(env)).get(stuck[5]!)).toEqual([`${env.config.consumerName}-reclaim`, 2]);

    const consumers = await run(env, ['consumers']);
    expect(consumers.out).toMatch(/^NAME\s+PENDING\s+IDLE\s+INACTIVE/);
    expect(consumers.out).toMatch(new RegExp(`${target}\\s+4`));
    expect(consumers.out).toMatch(/4 consumers in group tributary/);
    expect(JSON.parse((await run(env, ['consumers', '--json'])).out).map((c: { name: string }) => c.name).sort()).toEqual(
      [`${env.config.consumerName}-manual`, `${env.config.consumerName}-reclaim`, 'gone-1', 'old-empty'].sort(),
    );

    await sleep(300);
    // Flags before and after the subcommand both reach it.
    for (const flagsAfter of [true, false]) {
      const refused = await run(env, ['consumers', 'prune', '--idle', '250'], flagsAfter);
      expect(isTributaryError(refused.error, 'TRIB_ERR_CONFIRMATION_REQUIRED')).toBe(true);
      expect(refused.out).toMatch(/would delete 2 consumers idle for at least 250 ms with no pending entries:/);
      expect(refused.out).toMatch(/DELETE\s+IDLE\n(gone-1|old-empty)/);
      expect(refused.out).toMatch(new RegExp(`${target}\\s+4\\s+\\S+.*holds pending entries`));
      expect((await listConsumers(env.redis, env.config)).length).toBe(4);
    }
    const pruned = await run(env, ['consumers', 'prune', '--idle', '250', '--yes']);
    expect(pruned.error).toBeUndefined();
    expect(pruned.out).toContain('deleted 2 consumers: gone-1, old-empty');
    expect((await listConsumers(env.redis, env.config)).map((c) => c.name).sort()).toEqual([target, `${env.config.consumerName}-reclaim`].sort());
    expect((await pendingSummary(env.redis, env.config)).total).toBe(6);
  });
});
