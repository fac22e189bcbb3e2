/**
 * Partitioned streams on one Redis (PARTITIONS > 1 works without a cluster): the engine
 * owning every partition, leases and fencing of the partitioned source, and a takeover of
 * a dead owner's pending entries. The cluster tests are in partitions-cluster.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { ReadAgain, RecoverFirst } from '../../src/core/contracts.js';
import { createPipelineMetrics } from '../../src/observability/metrics.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { Engine, type PartitionLeaseEvent } from '../../src/pipelines/events.js';
import { PartitionLeases } from '../../src/redis/leases.js';
import { partitionConsumer, partitionDeadLetterKey, partitionFenceKey, partitionLeaseKey, partitionMembersKey, partitionOf, partitionStreamKey } from '../../src/redis/partitions.js';
import { PartitionedStreamSource } from '../../src/sources/partitioned-stream.js';
import { testEnvs, waitFor, type TestEnv } from '../helpers/env.js';
import { keyedEvents, orderAudit, partitionKeys, pendingAll, produceRouted } from '../helpers/partitions.js';

const envs = testEnvs({ batchSize: 200, batchTimeoutMs: 100, xreadBlockMs: 200, partitionLeaseMs: 1500 });

async function setup(label: string, n: number): Promise<TestEnv> {
  const env = await envs.setup(label, { partitions: n });
  envs.defer(async () => {
    await env.redis.del(partitionKeys(env.config.streamKey, env.config.group, n)).catch(() => {});
  });
  return env;
}

function engineOf(env: TestEnv, overrides: Partial<TestEnv['config']> = {}): Engine {
  const engine = new Engine({ ...env.config, ...overrides }, { retry: { baseMs: 20, maxMs: 200 } });
  envs.defer(() => engine.close({ force: true }));
  return engine;
}

function sourceOf(env: TestEnv, owner: string, n: number, events: PartitionLeaseEvent[] = [], errors: Error[] = []): PartitionedStreamSource {
  const source = new PartitionedStreamSource({
    redisUrl: env.config.redisUrl,
    commands: env.redis,
    key: env.config.streamKey,
    group: env.config.group,
    partitions: n,
    owner,
    leaseMs: 1500,
    onLease: (e) => events.push(e),
    onError: (e) => errors.push(e),
  });
  envs.defer(() => source.close());
  return source;
}

describe('partitioned streams on one Redis', () => {
  it('PARTITIONS=4, one engine: it holds every partition and writes every event once, in order per key', async () => {
    const n = 4;
    const env = await setup('part_one', n);
    const events = keyedEvents(env.name, 4000, 40);
    await produceRouted(env.redis, env.config.streamKey, n, events);
    // Every partition got some.
    for (let i = 0; i < n; i++) expect(Number(await env.redis.sendCommand(['XLEN', partitionStreamKey(env.config.streamKey, i, n)]))).toBeGreaterThan(0);
    const engine = engineOf(env);
    const leases: PartitionLeaseEvent[] = [];
    engine.on('lease', (e) => leases.push(e));
    await engine.start();
    expect(engine.runner.consumers).toEqual([0, 1, 2, 3].map((i) => partitionConsumer(env.config.consumerName, i)));
    expect(engine.ownedPartitions().map((o) => o.partition)).toEqual([0, 1, 2, 3]);
    await waitFor(async () => (await orderAudit(env.pool, env.config.pgSchema)).rows >= 4000, 30_000, '4,000 rows');
    const audit = await orderAudit(env.pool, env.config.pgSchema);
    expect(audit).toMatchObject({ rows: 4000, distinct: 4000, keys: 40, outOfOrder: [] });
    await waitFor(async () => (await pendingAll(env.redis, env.config.streamKey, env.config.group, n)) === 0, 10_000, 'nothing pending');
    // The gauges add the partitions up; the probe finds the group.
    expect((await engine.gauges()).streamLength).toBe(4000);
    expect((await engine.probe()).ready).toBe(true);
    // Metrics say which partitions this process holds, with their fencing tokens.
    const metrics = await createPipelineMetrics(engine).metrics();
    expect(metrics).toMatch(/^tributary_partitions_owned\{[^}]*\} 4$/m);
    for (const o of engine.ownedPartitions()) expect(metrics).toContain(`partition="${o.partition}"} ${o.token}`);
    const leaseKey = partitionLeaseKey(env.config.streamKey, env.config.group, 2, n);
    expect(String(await env.redis.sendCommand(['GET', leaseKey]))).toMatch(new RegExp(`^\\d+/${env.config.consumerName}$`));
    await engine.close();
    // A graceful stop gives every lease up and leaves the members.
    expect(await env.redis.sendCommand(['GET', leaseKey])).toBeNull();
    expect(Number(await env.redis.sendCommand(['ZCARD', partitionMembersKey(env.config.streamKey, env.config.group)]))).toBe(0);
    expect(leases.filter((e) => e.event === 'acquired').map((e) => e.partition).sort()).toEqual([0, 1, 2, 3]);
    expect(leases.filter((e) => e.event === 'released').map((e) => e.partition).sort()).toEqual([0, 1, 2, 3]);
  });

  it('leases: one holder at a time, a larger token for every new holder, renew and release only by the holder', async () => {
    const env = await setup('part_lease', 2);
    const common = { streamKey: env.config.streamKey, group: env.config.group, partitions: 2, leaseMs: 400 };
    const a = new PartitionLeases(env.redis, { ...common, owner: 'proc-a' });
    const b = new PartitionLeases(env.redis, { ...common, owner: 'proc-b' });
    const first = await a.acquire(1);
    expect(first.acquired).toBe(true);
    const leaseA = first.acquired ? first.lease : undefined!;
    expect(await b.acquire(1)).toEqual({ acquired: false, holder: { token: leaseA.token, owner: 'proc-a' } });
    expect(await b.renew({ ...leaseA, value: `${leaseA.token}/proc-b` })).toBe(false);
    expect(await a.renew(leaseA)).toBe(true);
    // Expired: b takes it with a larger token; a can neither renew nor release it.
    await sleep(500);
    const second = await b.acquire(1);
    expect(second.acquired).toBe(true);
    const leaseB = second.acquired ? second.lease : undefined!;
    expect(leaseB.token).toBe(leaseA.token + 1);
    expect(await a.renew(leaseA)).toBe(false);
    expect(await a.release(leaseA)).toBe(false);
    expect(await b.holder(1)).toEqual({ token: leaseB.token, owner: 'proc-b' });
    // A lease left by an earlier run of the same process id is taken over at once, with a new token.
    const again = await b.acquire(1);
    expect(again.acquired && again.lease.token).toBe(leaseB.token + 1);
    expect(await b.release(again.acquired ? again.lease : leaseB)).toBe(true);
    expect(await b.holder(1)).toBeUndefined();
    // Members: both beat; one leaving is gone at once, one silent is gone after a lease.
    await a.heartbeat();
    expect(await b.heartbeat()).toEqual(['proc-a', 'proc-b']);
    expect(await a.heartbeat(true)).toEqual(['proc-b']);
    await a.heartbeat();
    await sleep(500);
    expect(await b.heartbeat()).toEqual(['proc-b']);
  });

  it('a fenced-out owner can neither read nor acknowledge: the new owner takes its pending entries over', async () => {
    const n = 2;
    const env = await setup('part_fence', n);
    const key = (i: number) => partitionStreamKey(env.config.streamKey, i, n);
    const seenA: PartitionLeaseEvent[] = [];
    const a = sourceOf(env, 'proc-a', n, seenA);
    await a.start();
    expect(a.owned().map((o) => o.partition)).toEqual([0, 1]);
    const events = keyedEvents(env.name, 40, 4);
    await produceRouted(env.redis, env.config.streamKey, n, events);
    const signal = new AbortController().signal;
    const c0 = partitionConsumer('proc-a', 0);
    // A freshly taken partition first recovers its pending list (empty here), then reads.
    await expect(a.read(c0, 100, undefined, signal)).rejects.toBeInstanceOf(RecoverFirst);
    expect((await a.resume(c0, 100, undefined)).more).toBe(false);
    const held = await a.read(c0, 100, undefined, signal);
    expect(held.length).toBe(Number(await env.redis.sendCommand(['XLEN', key(0)])));
    expect(held.length).toBeGreaterThan(0);

    // Another process takes partition 0 (a's lease expired: here, deleted).
    await env.redis.sendCommand(['DEL', partitionLeaseKey(env.config.streamKey, env.config.group, 0, n)]);
    const b = sourceOf(env, 'proc-b', n);
    const bLeases = new PartitionLeases(env.redis, { streamKey: env.config.streamKey, group: env.config.group, partitions: n, owner: 'proc-b', leaseMs: 5000 });
    const taken = await bLeases.acquire(0);
    expect(taken.acquired).toBe(true);

    // a's ack is refused: its entries stay pending; a learns it lost the lease.
    await a.ack(c0, held);
    expect(Number(((await env.redis.sendCommand(['XPENDING', key(0), env.config.group])) as unknown[])[0])).toBe(held.length);
    expect(seenA.filter((e) => e.event === 'lost').map((e) => e.partition)).toEqual([0]);
    expect(a.owned().map((o) => o.partition)).toEqual([1]);
    // a reads nothing more of partition 0, even new entries.
    await env.redis.sendCommand(['XADD', key(0), '*', 'event_type', 'x', 'payload', '{}']);
    expect(await a.read(c0, 100, 50, signal)).toEqual([]);
    // A read while a still believes it holds the lease (partition 1, taken meanwhile) is refused by Redis.
    await a.resume(partitionConsumer('proc-a', 1), 100, undefined);
    await env.redis.sendCommand(['DEL', partitionLeaseKey(env.config.streamKey, env.config.group, 1, n)]);
    expect((await bLeases.acquire(1)).acquired).toBe(true);
    await expect(a.read(partitionConsumer('proc-a', 1), 100, undefined, signal)).rejects.toBeInstanceOf(ReadAgain);
    expect(seenA.filter((e) => e.event === 'lost').map((e) => e.partition)).toEqual([0, 1]);
    expect(Number(((await env.redis.sendCommand(['XPENDING', key(1), env.config.group])) as unknown[])[0])).toBe(0);

    // b (the new owner, with the lease it took) takes a's pending entries over first, in order, one more delivery each.
    (b as unknown as { parts: Array<{ lease: unknown; recover: boolean; renewedAt: number }> }).parts[0]!.lease = taken.acquired ? taken.lease : undefined;
    (b as unknown as { parts: Array<{ lease: unknown; recover: boolean; renewedAt: number }> }).parts[0]!.recover = true;
    const cb0 = partitionConsumer('proc-b', 0);
    await expect(b.read(cb0, 100, undefined, signal)).rejects.toBeInstanceOf(RecoverFirst);
    const recovered = await b.resume(cb0, 1000, undefined);
    expect(recovered.messages.map((m) => m.id)).toEqual(held.map((m) => m.id));
    expect(recovered.messages.every((m) => m.deliveries === 2)).toBe(true);
    expect((await b.resume(cb0, 1000, recovered.cursor)).more).toBe(false);
    const fresh = await b.read(cb0, 100, undefined, signal);
    expect(fresh.length).toBe(1);
    await b.ack(cb0, [...recovered.messages, ...fresh]);
    expect(Number(((await env.redis.sendCommand(['XPENDING', key(0), env.config.group])) as unknown[])[0])).toBe(0);
    // The old owner's consumer, holding nothing now, was removed from the group.
    const consumers = (await env.redis.sendCommand(['XINFO', 'CONSUMERS', key(0), env.config.group])) as unknown[][];
    expect(consumers.map((c) => String(c[1]))).toEqual([cb0]);
  });

  it('a dead owner\'s pending entries are written by the next owner; poison goes to the partition\'s dead letters', async () => {
    const n = 2;
    const env = await setup('part_takeover', n);
    const events = keyedEvents(env.name, 600, 6);
    await produceRouted(env.redis, env.config.streamKey, n, events);
    const poisonKey = `${env.name}-k0`;
    const p = partitionOf(poisonKey, n);
    const key = partitionStreamKey(env.config.streamKey, p, n);
    await env.redis.sendCommand(['XADD', key, '*', 'event_type', 'keyed', 'event_id', `${poisonKey}-bad`, 'payload', '{not json']);
    // A process that died holding entries: read under its consumer, never acknowledged, and a lease that will expire.
    for (let i = 0; i < n; i++) {
      await env.redis.sendCommand(['XGROUP', 'CREATE', partitionStreamKey(env.config.streamKey, i, n), env.config.group, '0', 'MKSTREAM']);
      await env.redis.sendCommand(['XREADGROUP', 'GROUP', env.config.group, 'dead-p', 'COUNT', '50', 'STREAMS', partitionStreamKey(env.config.streamKey, i, n), '>']);
      await env.redis.sendCommand(['SET', partitionLeaseKey(env.config.streamKey, env.config.group, i, n), '1/dead', 'PX', '800']);
      await env.redis.sendCommand(['SET', partitionFenceKey(env.config.streamKey, env.config.group, i, n), '1']);
    }
    const engine = engineOf(env);
    const lost: string[] = [];
    engine.on('deadLetter', (d) => lost.push(d.code));
    await engine.start();
    // Nothing is owned while the dead process's leases last.
    expect(engine.ownedPartitions()).toEqual([]);
    await waitFor(async () => (await orderAudit(env.pool, env.config.pgSchema)).rows >= 600, 20_000, '600 rows');
    const audit = await orderAudit(env.pool, env.config.pgSchema);
    expect(audit).toMatchObject({ rows: 600, distinct: 600, outOfOrder: [] });
    await waitFor(async () => lost.length === 1, 10_000, 'the dead letter');
    expect(lost).toEqual(['TRIB_ERR_ENTRY_BAD_PAYLOAD']);
    await waitFor(async () => (await pendingAll(env.redis, env.config.streamKey, env.config.group, n)) === 0, 10_000, 'nothing pending');
    const dlq = partitionDeadLetterKey(env.config.streamKey, env.config.dlqStream, p, n);
    expect(Number(await env.redis.sendCommand(['XLEN', dlq]))).toBe(1);
    const rows = await env.pool.query(`SELECT stream_key, event_id FROM ${quoteIdent(env.config.pgSchema)}.dead_letter_queue`);
    expect(rows.rows).toEqual([{ stream_key: key, event_id: `${poisonKey}-bad` }]);
    expect(engine.ownedPartitions().map((o) => o.token)).toEqual([2, 2]);
  });
});

describe('partitioned streams: a worker that stops for good', () => {
  it('stops the engine (its partition would go unread), which releases its leases', async () => {
    const n = 2;
    const env = await setup('part_fail', n);
    const engine = engineOf(env);
    const leases: PartitionLeaseEvent[] = [];
    engine.on('lease', (e) => leases.push(e));
    const errors: Error[] = [];
    engine.on('error', (e) => errors.push(e));
    await engine.start();
    expect(engine.ownedPartitions().length).toBe(2);
    // What the runner does when a worker's batch fails with an error retrying cannot fix.
    engine.runner.failed(partitionConsumer(env.config.consumerName, 1), new Error('permanent'));
    await engine.done;
    expect(engine.runner.failure?.message).toBe('permanent');
    expect(errors.map((e) => e.message)).toEqual(['permanent']);
    await engine.close();
    expect(leases.filter((e) => e.event === 'released').map((e) => e.partition).sort()).toEqual([0, 1]);
    expect(await env.redis.sendCommand(['GET', partitionLeaseKey(env.config.streamKey, env.config.group, 1, n)])).toBeNull();
  });

  it('a source whose worker is released while it runs gives that partition up and does not take it again', async () => {
    const n = 2;
    const env = await setup('part_abandon', n);
    const seen: PartitionLeaseEvent[] = [];
    const source = sourceOf(env, 'proc-a', n, seen);
    await source.start();
    expect(source.owned().map((o) => o.partition)).toEqual([0, 1]);
    await source.release(partitionConsumer('proc-a', 0));
    await source.tick();
    expect(source.owned().map((o) => o.partition)).toEqual([1]);
    expect(seen.filter((e) => e.event === 'released').map((e) => [e.partition, e.reason])).toEqual([[0, 'its worker stopped']]);
    await source.tick();
    expect(source.owned().map((o) => o.partition)).toEqual([1]);
  });

  it('a failing heartbeat does not stop the renewals: the leases held stay held, and the failure is reported', async () => {
    const n = 2;
    const env = await setup('part_beat', n);
    const errors: Error[] = [];
    const seen: PartitionLeaseEvent[] = [];
    const source = sourceOf(env, 'proc-a', n, seen, errors);
    await source.start();
    expect(source.owned().length).toBe(2);
    // The members key made unusable (another type): every heartbeat fails from now on.
    const members = partitionMembersKey(env.config.streamKey, env.config.group);
    await env.redis.sendCommand(['DEL', members]);
    await env.redis.sendCommand(['SET', members, 'not a sorted set']);
    await sleep(2500); // more than a lease (1.5 s), several rounds
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]!.message).toMatch(/WRONGTYPE/);
    expect(source.owned().length).toBe(2);
    expect(seen.filter((e) => e.event === 'lost')).toEqual([]);
    await env.redis.sendCommand(['DEL', members]);
    await source.tick();
    expect(source.liveMembers).toEqual(['proc-a']);
  });
});
