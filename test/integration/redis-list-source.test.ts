/**
 * The list source's acknowledgement on a real Redis: by count while all is well, by
 * value once anything failed for the consumer, so a retried ack can never pop the next
 * batch's items.
 */
import { describe, expect, it, vi } from 'vitest';
import { send } from '../../src/redis/client.js';
import { RedisListSource } from '../../src/sources/redis-list.js';
import { ordersTestEnvs } from '../helpers/orders.js';

const envs = ordersTestEnvs();

describe('RedisListSource ack', () => {
  it('an ack whose reply was lost is retried by value: the next batch, already taken, stays in the processing list', async () => {
    const env = await envs.setup('list_ack', 'none');
    const source = new RedisListSource({ redisUrl: env.redisUrl, commands: env.redis, prefix: env.name, staleMs: 30_000 });
    envs.defer(() => source.close());
    await env.queue.push(Array.from({ length: 10 }, (_, i) => `item-${i}`));
    const signal = new AbortController().signal;
    const b1 = await source.read('w-1', 5, undefined, signal);
    const b2 = await source.read('w-1', 5, undefined, signal);
    expect(b1.map((m) => m.body)).toEqual(['item-0', 'item-1', 'item-2', 'item-3', 'item-4']);
    const processing = `${env.name}:processing:w-1`;
    const real = source.queue.ack.bind(source.queue);
    // The first ack runs in Redis, then its reply is "lost" (the connection broke).
    const spy = vi.spyOn(source.queue, 'ack').mockImplementationOnce(async (worker, what) => {
      await real(worker, what);
      throw new Error('Socket closed unexpectedly');
    });
    await expect(source.ack('w-1', b1)).rejects.toThrow('Socket closed');
    await source.ack('w-1', b1); // the runner's retry
    spy.mockRestore();
    const left = (await send(env.redis, ['LRANGE', processing, '0', '-1'])) as string[];
    expect(left.sort()).toEqual(b2.map((m) => m.body).sort());
    await source.ack('w-1', b2);
    expect(Number(await send(env.redis, ['LLEN', processing]))).toBe(0);
    expect(await env.queue.depth()).toBe(0);
  });

  it('a failed take makes the consumer return its list to the queue, once it holds nothing, before it takes again', async () => {
    const env = await envs.setup('list_take', 'none');
    const source = new RedisListSource({ redisUrl: env.redisUrl, commands: env.redis, prefix: env.name, staleMs: 30_000 });
    envs.defer(() => source.close());
    await env.queue.push(Array.from({ length: 6 }, (_, i) => `t-${i}`));
    const signal = new AbortController().signal;
    const b1 = await source.read('w-1', 2, undefined, signal);
    // A take that moved items into the list but failed before we saw them.
    const reader = (source as unknown as { readers: Map<string, { queue: { take: (...a: unknown[]) => Promise<string[]> } }> }).readers.get('w-1')!;
    const take = reader.queue.take.bind(reader.queue);
    const spy = vi.spyOn(reader.queue, 'take').mockImplementationOnce(async (...a: unknown[]) => {
      await take(...a);
      throw new Error('read ECONNRESET');
    });
    await expect(source.read('w-1', 2, undefined, signal)).rejects.toThrow('ECONNRESET');
    spy.mockRestore();
    // Still holding b1: no new take (a ReadAgain after a short wait).
    await expect(source.read('w-1', 2, undefined, signal)).rejects.toMatchObject({ name: 'ReadAgain' });
    await source.ack('w-1', b1); // by value (suspect): the unseen items stay
    expect(Number(await send(env.redis, ['LLEN', `${env.name}:processing:w-1`]))).toBe(2);
    // Holding nothing: the unseen items go back to the queue, then the take goes on.
    const next = await source.read('w-1', 10, undefined, signal);
    expect(next.map((m) => m.body).sort()).toEqual(['t-2', 't-3', 't-4', 't-5']);
    await source.ack('w-1', next);
    expect(Number(await send(env.redis, ['LLEN', `${env.name}:processing:w-1`]))).toBe(0);
    expect(await env.queue.length()).toBe(0);
  });
});
