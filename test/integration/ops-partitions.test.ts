/**
 * The operating commands on a partitioned stream (PARTITIONS=4, one Redis): monitor,
 * pending, claim, consumers, dlq list/show/retry, tail, replay and trim work on every
 * partition's key and add up, `--partition P` narrows to one, and a P outside 0..3 is a
 * coded error. (On a Redis Cluster: cluster-ops.test.ts.)
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { quoteIdent } from '../../src/postgres/pool.js';
import { Engine } from '../../src/pipelines/events.js';
import { Producer } from '../../src/producer/producer.js';
import { partitionDeadLetterKey, partitionStreamKey } from '../../src/redis/partitions.js';
import { assertBuilt, CLI } from '../helpers/child.js';
import { testEnvs, waitFor, type TestEnv } from '../helpers/env.js';
import { partitionKeys } from '../helpers/partitions.js';

const N = 4;
const pexec = promisify(execFile);
const envs = testEnvs({ partitions: N, batchSize: 200, batchTimeoutMs: 100, xreadBlockMs: 200, partitionLeaseMs: 3000 });

async function cli(env: TestEnv, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await pexec('node', [CLI, ...args], { env: { ...env.childEnv, PARTITIONS: String(N) } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function json(env: TestEnv, args: string[], stderr: RegExp = /^$/): Promise<any> {
  const r = await cli(env, [...args, '--json']);
  expect(r.stderr).toMatch(stderr);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

const xlen = async (env: TestEnv, key: string) => Number(await env.redis.sendCommand(['XLEN', key]));

async function deadLetterRows(env: TestEnv): Promise<number> {
  const r = await env.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(env.config.pgSchema)}.dead_letter_queue`);
  return Number(r.rows[0]!.n);
}

describe('operating commands on a partitioned stream (one Redis, PARTITIONS=4)', () => {
  it('monitor, dlq, pending, claim, consumers, tail, replay and trim cover every partition; --partition narrows', async () => {
    assertBuilt();
    const env = await envs.setup('opspart');
    envs.defer(() => env.redis.del(partitionKeys(env.config.streamKey, env.config.group, N)).catch(() => {}));
    const key = (i: number) => partitionStreamKey(env.config.streamKey, i, N);

    // 200 events routed by event_id, and one poison entry (no event_type) in each partition.
    const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey, partitions: N });
    envs.defer(() => producer.close());
    await producer.produceBatch(Array.from({ length: 200 }, (_, i) => ({ type: 't', payload: { i } })));
    for (let i = 0; i < N; i++) await env.redis.sendCommand(['XADD', key(i), '*', 'payload', '{}']);

    const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 200 } });
    envs.defer(() => engine.close({ force: true }));
    await engine.start();
    await waitFor(async () => (await deadLetterRows(env)) === N, 20_000, '4 dead letters');
    await waitFor(async () => (await env.pool.query(`SELECT 1 FROM ${quoteIdent(env.config.pgSchema)}.events`)).rowCount === 200, 20_000, '200 rows');
    await waitFor(async () => engine.ownedPartitions().length === N, 10_000, 'every lease held');

    // monitor: a row per partition with its owner and token, the totals added up.
    // Read-only commands run side by side (each is a process of its own).
    const [m, text, one] = await Promise.all([
      json(env, ['monitor', '--once', '--sample', '0']),
      cli(env, ['monitor', '--once', '--sample', '0']),
      json(env, ['monitor', '--once', '--sample', '0', '--partition', '2']),
    ]);
    expect(m.partitions.count).toBe(N);
    expect(m.partitions.rows.map((r: any) => r.partition)).toEqual([0, 1, 2, 3]);
    for (const r of m.partitions.rows) {
      expect(r.key).toBe(key(r.partition));
      expect(r.owner).toBe(env.config.consumerName);
      expect(r.token).toBeGreaterThan(0);
      expect(r.deadLetterLength).toBe(1);
    }
    expect(m.stream.length).toBe(204);
    expect(m.partitions.rows.reduce((t: number, r: any) => t + r.length, 0)).toBe(204);
    expect(m.deadLetters).toMatchObject({ rows: N, streamLength: N });
    expect(text.stdout).toContain(`Partitions (${N}):`);
    expect(text.stdout).toMatch(/total\s+4 of 4\s+204/);
    expect(one.partitions.rows).toHaveLength(1);
    expect(one.stream.length).toBe(await xlen(env, key(2)));
    await engine.close();

    // dlq list: all four partitions' dead letters; --partition one of them; show finds a row in any.
    const [page, pageText, p3] = await Promise.all([json(env, ['dlq', 'list']), cli(env, ['dlq', 'list']), json(env, ['dlq', 'list', '--partition', '3'])]);
    expect(page.total).toBe(N);
    expect(page.rows.map((r: any) => r.partition).sort()).toEqual([0, 1, 2, 3]);
    expect(pageText.stdout).toMatch(/^ID\s+PARTITION\s+FAILED AT/m);
    expect(p3.total).toBe(1);
    expect(p3.rows[0].streamKey).toBe(key(3));
    const shown = await json(env, ['dlq', 'show', String(p3.rows[0].id)]);
    expect(shown).toMatchObject({ id: p3.rows[0].id, partition: 3 });

    // pending: nothing; then five entries read and left unacknowledged on partition 1.
    expect((await json(env, ['pending'])).total).toBe(0);
    for (let i = 0; i < 5; i++) await env.redis.sendCommand(['XADD', key(1), '*', 'event_type', 't', 'payload', `{"late":${i}}`, 'event_id', `late-${i}`]);
    await env.redis.sendCommand(['XREADGROUP', 'GROUP', env.config.group, 'stuck-p1', 'COUNT', '5', 'STREAMS', key(1), '>']);
    const [pending, pending0, consumers] = await Promise.all([json(env, ['pending']), json(env, ['pending', '--partition', '0']), json(env, ['consumers'])]);
    expect(pending.total).toBe(5);
    expect(pending.partitions.map((p: any) => p.total)).toEqual([0, 5, 0, 0]);
    expect(pending.oldest.every((e: any) => e.partition === 1)).toBe(true);
    expect(pending0.total).toBe(0);
    expect(consumers).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'stuck-p1', pending: 5, partition: 1 })]));
    const claimed = await json(env, ['claim', '--idle', '0', '--to', 'other-p1'], /^warning: --idle 0 ms is shorter/);
    expect(claimed.claimed).toHaveLength(5);
    expect(claimed.claimed.every((c: any) => c.partition === 1)).toBe(true);
    // consumers prune: over every partition, asking first; one holding entries is kept.
    const asked = await cli(env, ['consumers', 'prune', '--idle', '0']);
    expect(asked.code).toBe(2);
    expect(asked.stderr).toMatch(/TRIB_ERR_CONFIRMATION_REQUIRED.*stuck-p1.*\(4 partitions\)/);
    const pruned = await json(env, ['consumers', 'prune', '--idle', '0', '--yes']);
    expect(pruned.deleted).toContain('stuck-p1');
    expect(pruned.kept).toEqual([expect.objectContaining({ name: 'other-p1', reason: 'pending', pending: 5 })]);
    expect((await json(env, ['consumers'])).map((c: any) => c.name)).toEqual(['other-p1']);

    // A partition outside 0..3: coded, for each command.
    // (Every command parses it with parsePartitionOption: unit/ops-partitioned.test.ts.)
    const refusing = [['pending'], ['dlq', 'list'], ['tail', '--count', '1']];
    const refused = await Promise.all(refusing.map((args) => cli(env, [...args, '--partition', '4'])));
    for (const [i, args] of refusing.entries()) {
      const bad = refused[i]!;
      expect([args.join(' '), bad.code, bad.stderr]).toEqual([args.join(' '), 2, expect.stringMatching(/TRIB_ERR_CONFIG_INVALID.*--partition.*0 to 3/)]);
      expect(bad.stderr).toMatch(/TRIB_ERR_CONFIG_INVALID.*--partition.*0 to 3/);
    }

    // tail: entries of every partition, each with its partition.
    const [tail, replay, trim] = await Promise.all([
      cli(env, ['tail', '--from', '0', '--count', '6', '--json']),
      json(env, ['replay', '--from', '0']),
      json(env, ['trim', '--trim-max-len', '0', '--dry-run']),
    ]);
    const lines = tail.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(6);
    for (const l of lines) expect(typeof l.partition).toBe('number');

    // replay: every partition's history again: the five late ones are new, the rest present, the poison counted.
    expect(replay).toMatchObject({ read: 209, inserted: 5, alreadyPresent: 200, poison: N });
    expect(replay.partitions).toHaveLength(N);

    // trim (dry run) per partition.
    expect(trim.partitions.map((p: any) => p.stream)).toEqual([0, 1, 2, 3].map(key));

    // dlq retry --all: each dead letter back to its own partition.
    const before = await Promise.all([0, 1, 2, 3].map((i) => xlen(env, key(i))));
    const retried = await cli(env, ['dlq', 'retry', '--all']);
    expect(retried.stdout).toContain(`retried ${N} of ${N}`);
    const after = await Promise.all([0, 1, 2, 3].map((i) => xlen(env, key(i))));
    expect(after.map((n, i) => n - before[i]!)).toEqual([1, 1, 1, 1]);
    for (let i = 0; i < N; i++) expect(await xlen(env, partitionDeadLetterKey(env.config.streamKey, env.config.dlqStream, i, N))).toBe(0);
  });
});
