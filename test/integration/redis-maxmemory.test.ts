/**
 * Redis at maxmemory (issue 11, item 6): a dead letter Redis refuses to store (OOM: the
 * dead-letter stream's XADD is denied, while reads and XACK still work) must not stall
 * the healthy messages of its batch. They are acknowledged; the refused one stays
 * pending (deadLetterDeferred), and is dead-lettered once memory is freed and it is
 * reclaimed. On a private redis-server (never the shared one), maxmemory set on it alone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { consume } from '../../src/api.js';
import { sleep } from '../../src/core/backoff.js';
import { createRedisConnection, destroyQuietly, send } from '../../src/redis/client.js';
import { freePort, RedisServerProcess } from '../helpers/child.js';
import { waitFor } from '../helpers/env.js';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('Redis at maxmemory', () => {
  it('a dead letter Redis refuses (OOM) does not stall its batch: the healthy messages are acknowledged, it stays pending, and lands once memory is freed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trib-maxmem-'));
    const server = await RedisServerProcess.start(await freePort(), dir);
    cleanups.push(() => {
      server.killNow();
      rmSync(dir, { recursive: true, force: true });
    });
    const admin = createRedisConnection(server.url, { failFast: false });
    await admin.connect();
    cleanups.push(() => destroyQuietly(admin));
    const key = 'maxmem:events';
    for (let i = 0; i < 5; i++) await send(admin, ['XADD', key, '*', 'n', String(i), 'kind', i === 2 ? 'bad' : 'good']);
    await send(admin, ['CONFIG', 'SET', 'maxmemory-policy', 'noeviction']);

    // The batch is read, then Redis reaches maxmemory while the handler runs.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const handled: string[] = [];
    const consumer = await consume(
      { redisUrl: server.url, stream: key, group: 'g', batchSize: 10, batchPeriodMs: 50, blockMs: 200, claimIdleMs: 1000, claimIntervalMs: 200, retry: { baseMs: 20, maxMs: 100 } },
      async (batch, ctx) => {
        await gate;
        for (const m of batch) {
          if (m.fields.kind === 'bad') ctx.reject(m, new Error('bad kind'));
          else handled.push(m.fields.n!);
        }
      },
    );
    cleanups.push(() => consumer.close({ force: true }));
    const deferred: Array<{ ids: string[]; code?: string }> = [];
    const dead: string[] = [];
    consumer.on('deadLetterDeferred', ({ ids, error }) => deferred.push({ ids, code: (error as { code?: string }).code }));
    consumer.on('deadLetter', ({ id }) => dead.push(id));

    await waitFor(async () => consumer.stats().inFlight === 5, 5_000, 'the batch read');
    await send(admin, ['CONFIG', 'SET', 'maxmemory', '1']); // every write that grows memory is refused
    open();
    const pending = async () => Number(((await send(admin, ['XPENDING', key, 'g'])) as unknown[])[0]);
    // Its four batch-mates are acknowledged at once; only the refused one is pending.
    await waitFor(async () => (await pending()) === 1, 5_000, 'the four healthy messages acknowledged, only the refused dead letter pending');
    await waitFor(async () => deferred.length > 0, 2_000, 'the dead letter refused and deferred');
    expect(deferred[0]!.code).toBe('TRIB_ERR_REDIS_OOM');
    expect(handled.sort()).toEqual(['0', '1', '3', '4']);
    expect(dead).toEqual([]);
    expect(await send(admin, ['EXISTS', `${key}:dead`])).toBe(0);
    // The worker is not wedged retrying it: a new message (added once memory allows) is handled.
    await sleep(300);
    await send(admin, ['CONFIG', 'SET', 'maxmemory', '0']);
    await send(admin, ['XADD', key, '*', 'n', '5', 'kind', 'good']);
    await waitFor(async () => handled.includes('5'), 5_000, 'a later message handled');
    // Reclaimed after claimIdleMs, rejected again, and stored this time.
    await waitFor(async () => dead.length === 1 && (await pending()) === 0, 10_000, 'the refused message dead-lettered once memory is freed');
    expect(Number(await send(admin, ['XLEN', `${key}:dead`]))).toBe(1);
    await consumer.close();
  });
});
