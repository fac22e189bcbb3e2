/**
 * Server health (issue 10): an outage is reported over ("redis back after N s") only when
 * the server has answered again — not because a step that had nothing to send to it
 * succeeded. A private redis-server (never the shared one) is stopped mid-batch.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pipeline } from '../../src/api.js';
import { sleep } from '../../src/core/backoff.js';
import type { Sink, Stage } from '../../src/core/contracts.js';
import { createRedisConnection, destroyQuietly, send } from '../../src/redis/client.js';
import { RedisStreamSource, type StreamMessage } from '../../src/sources/redis-stream.js';
import { freePort, RedisServerProcess } from '../helpers/child.js';
import { waitFor } from '../helpers/env.js';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('server health', () => {
  it('an outage is not reported over while it lasts (an after-commit step with nothing kept sends nothing), and is once the server answers again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trib-health-'));
    const server = await RedisServerProcess.start(await freePort(), dir);
    cleanups.push(() => {
      server.killNow();
      rmSync(dir, { recursive: true, force: true });
    });
    const key = 'health:events';
    const admin = createRedisConnection(server.url, { failFast: false });
    await admin.connect();
    await send(admin, ['XADD', key, '*', 'event_type', 't', 'payload', '{}']);
    destroyQuietly(admin);

    // The batch's first stage takes Redis away and keeps nothing; the second, a Redis stage
    // like the orders dedup window, has nothing to mark after the commit.
    const dropAll: Stage<StreamMessage['body'], StreamMessage['body']> = {
      name: 'drop-all',
      async run() {
        await server.stop();
        return { keep: [] };
      },
    };
    const markSeen: Stage<StreamMessage['body'], StreamMessage['body']> = {
      name: 'mark-seen',
      server: 'redis',
      run: (batch) => ({ keep: batch }),
      async afterCommit(kept) {
        await sleep(100); // after the ack has failed and Redis is known to be down
        if (kept.length > 0) throw new Error('would send to Redis');
      },
    };
    const sink: Sink<StreamMessage['body']> = {
      name: 'nothing',
      async write(batch) {
        return { written: batch.length, duplicates: 0, rejected: [] };
      },
    };
    const runner = pipeline({
      source: new RedisStreamSource({ redisUrl: server.url, key, group: 'g' }),
      stages: [dropAll, markSeen],
      sink,
      workers: 1,
      batch: { maxCount: 10, periodMs: 50 },
      blockMs: 200,
      retry: { baseMs: 20, maxMs: 200 },
    });
    cleanups.push(() => runner.close({ force: true }));
    const health: string[] = [];
    runner.on('serverDown', ({ server: s }) => health.push(`down ${s}`));
    runner.on('serverUp', ({ server: s }) => health.push(`up ${s}`));
    await runner.start();

    await waitFor(async () => health.includes('down redis'), 10_000, 'redis reported down');
    await sleep(1500); // the acknowledgement keeps failing; the after-commit step has long returned
    expect(health).toEqual(['down redis']);

    await server.restart();
    await waitFor(async () => health.includes('up redis'), 10_000, 'redis reported back');
    expect(health).toEqual(['down redis', 'up redis']);
    await waitFor(async () => runner.stats().inFlight === 0, 10_000, 'the batch acknowledged');
    await runner.close();
  });
});
