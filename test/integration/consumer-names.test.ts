/**
 * Consumer names (issue 10): by default each process has its own (host, PID, random
 * suffix), so two processes on one host neither share work nor report each other's
 * entries as trimmed; a CONSUMER_NAME you set is used as given; and consumers left by
 * gone processes, holding nothing, are removed by the reclaim loop — never one that holds
 * pending entries.
 */
import { hostname } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { send } from '../../src/redis/client.js';
import { RedisStreamSource } from '../../src/sources/redis-stream.js';
import { Producer } from '../../src/producer/producer.js';
import { eventRows, killChildren, pendingSummary, produceInBackground, startEngine } from '../helpers/child.js';
import { testEnvs, waitFor } from '../helpers/env.js';

const envs = testEnvs();
afterEach(async () => killChildren());

async function consumers(redis: Parameters<typeof send>[0], key: string, group: string): Promise<Map<string, { pending: number; idle: number }>> {
  const reply = (await send(redis, ['XINFO', 'CONSUMERS', key, group])) as unknown[][];
  const out = new Map<string, { pending: number; idle: number }>();
  for (const c of reply) {
    const o: Record<string, unknown> = {};
    for (let i = 0; i + 1 < c.length; i += 2) o[String(c[i])] = c[i + 1];
    out.set(String(o.name), { pending: Number(o.pending), idle: Number(o.idle) });
  }
  return out;
}

describe('consumer names', () => {
  it('two processes on one host without CONSUMER_NAME get names of their own, share the work with no false "trimmed" warning, and a dead consumer holding nothing is removed', async () => {
    const env = await envs.setup('consumer_names');
    const { streamKey: key, group } = env.config;
    // A consumer left by a process that is gone: holds nothing. Created first, so it is idle longest.
    await send(env.redis, ['XGROUP', 'CREATE', key, group, '0', 'MKSTREAM']);
    await send(env.redis, ['XGROUP', 'CREATECONSUMER', key, group, 'gone-host-1']);
    const settings = { CLAIM_IDLE_MS: '3000', CLAIM_INTERVAL_MS: '500', BATCH_TIMEOUT_MS: '200', NUM_WORKERS: '2', XREAD_BLOCK_MS: '1000', CONSUMER_NAME: '' };
    const a = await startEngine(env, settings, 'a');
    // The second process starts while the first holds entries (with one shared name, it
    // took them over as its "own pending" and could report them as trimmed).
    const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: key });
    let b: Awaited<ReturnType<typeof startEngine>>;
    try {
      const flow = produceInBackground(producer, 4000, { prefix: env.name, batch: 200, rate: 4000 });
      b = await startEngine(env, settings, 'b');
      await flow.finished;
    } finally {
      await producer.close();
    }
    const nameOf = (output: string) => /workers as (\S+)-N,/.exec(output)?.[1];
    const [na, nb] = [nameOf(a.output), nameOf(b.output)];
    expect(na).toMatch(new RegExp(`^${hostname()}-${a.pid}-[0-9a-f]{4}$`));
    expect(nb).toMatch(new RegExp(`^${hostname()}-${b.pid}-[0-9a-f]{4}$`));
    await waitFor(async () => (await eventRows(env)) === 4000 && (await pendingSummary(env)).total === 0, 15_000, 'every event written');
    // Every consumer is one of the two processes' own (Redis creates one at its first delivery).
    const ours = (name: string) => name.startsWith(`${na}-`) || name.startsWith(`${nb}-`);
    const names = [...(await consumers(env.redis, key, group)).keys()];
    expect(names.filter((n) => n !== 'gone-host-1').every(ours), names.join(', ')).toBe(true);
    expect(names).toContain(`${na}-1`);

    // 3 x CLAIM_IDLE_MS after it was created, the consumer holding nothing is removed, and said so.
    await waitFor(async () => !(await consumers(env.redis, key, group)).has('gone-host-1'), 12_000, 'the dead consumer removed');
    await waitFor(async () => /removed 1 consumers holding nothing, idle over 9 s \(gone processes\): gone-host-1/.test(a.output + b.output), 3000, 'the log line');
    // The live processes' consumers are all still there.
    const live = [...(await consumers(env.redis, key, group)).keys()];
    expect(live.sort()).toEqual(names.filter((n) => n !== 'gone-host-1').sort());
    for (const e of [a, b]) {
      expect(e.output).not.toContain('deleted from the stream');
      e.kill('SIGTERM');
    }
    for (const e of [a, b]) expect((await e.waitExit(5000))?.code, e.output).toBe(0);
  });

  it('a CONSUMER_NAME you set is used as given', async () => {
    const env = await envs.setup('consumer_given');
    const engine = await startEngine(env, { CONSUMER_NAME: `${env.name}-given`, NUM_WORKERS: '2' }, 'given');
    expect(engine.output).toContain(`2 workers as ${env.name}-given-N,`);
    // Redis creates a consumer when it first delivers to it.
    await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 't', 'payload', '{}']);
    await waitFor(async () => (await eventRows(env)) === 1, 5000, 'the event written');
    const names = [...(await consumers(env.redis, env.config.streamKey, env.config.group)).keys()];
    expect(names.length).toBeGreaterThan(0);
    expect(names.every((n) => /^t_consumer_given_\w+-given-[12]$/.test(n)), names.join(', ')).toBe(true);
    engine.kill('SIGTERM');
    expect((await engine.waitExit(5000))?.code).toBe(0);
  });

  it('the source never removes a consumer holding pending entries, nor one it is told to keep', async () => {
    const env = await envs.setup('consumer_forget');
    const { streamKey: key, group } = env.config;
    await send(env.redis, ['XGROUP', 'CREATE', key, group, '0', 'MKSTREAM']);
    await send(env.redis, ['XADD', key, '*', 'event_type', 't', 'payload', '{}']);
    await send(env.redis, ['XREADGROUP', 'GROUP', group, 'holder', 'COUNT', '1', 'STREAMS', key, '>']); // holds one entry
    for (const c of ['empty', 'mine']) await send(env.redis, ['XGROUP', 'CREATECONSUMER', key, group, c]);
    const source = new RedisStreamSource({ redisUrl: env.config.redisUrl, key, group });
    envs.defer(() => source.close());
    await source.start();
    expect(await source.forgetIdle(60_000, [])).toEqual([]); // nobody idle that long yet
    await sleep(300);
    expect(await source.forgetIdle(250, ['mine'])).toEqual(['empty']);
    const left = await consumers(env.redis, key, group);
    expect([...left.keys()].sort()).toEqual(['holder', 'mine']);
    expect(left.get('holder')!.pending).toBe(1);
  });
});
