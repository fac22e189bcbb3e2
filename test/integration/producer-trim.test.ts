/**
 * Issue 11, item 3: the producer's `trim` option (XADD MAXLEN ~ / MINID ~) deletes
 * entries no group has read. It is refused unless the caller opts into losing unread
 * entries (trim.allowUnreadLoss), so a Producer can no longer cut a group's backlog by
 * accident.
 */
import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../src/errors.js';
import { Producer } from '../../src/producer/producer.js';
import { send } from '../../src/redis/client.js';
import { testEnvs } from '../helpers/env.js';

const envs = testEnvs();

describe("the producer's trim option (issue 11, item 3)", () => {
  it('is refused without allowUnreadLoss, and the unread backlog of a group stays whole', async () => {
    const env = await envs.setup('prod_trim', {}, { migrate: false });
    const stream = env.config.streamKey;
    await send(env.redis, ['XGROUP', 'CREATE', stream, 'g', '$', 'MKSTREAM']);
    for (let i = 0; i < 50; i++) await send(env.redis, ['XADD', stream, '*', 'event_type', 't', 'payload', String(i)]);

    for (const trim of [{ maxLen: 10 }, { maxLen: 10, exact: true }, { minId: '9999999999999-0' }] as const) {
      let err: unknown;
      let producer: Producer | undefined;
      try {
        producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: stream, trim });
        await producer.produce('t', { late: true });
      } catch (e) {
        err = e;
      } finally {
        await producer?.close();
      }
      expect(isTributaryError(err, 'TRIB_ERR_CONFIG_INVALID'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/allowUnreadLoss/);
    }
    // Nothing was added, nothing cut: the group still has all 50 to read.
    expect(await send(env.redis, ['XLEN', stream])).toBe(50);
    const read = (await send(env.redis, ['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '100', 'STREAMS', stream, '>'])) as [string, unknown[]][];
    expect(read[0]![1]).toHaveLength(50);
  });

  it('with allowUnreadLoss: true the caller gets what it asked for (unread entries cut)', async () => {
    const env = await envs.setup('prod_trim_ok', {}, { migrate: false });
    const stream = env.config.streamKey;
    await send(env.redis, ['XGROUP', 'CREATE', stream, 'g', '$', 'MKSTREAM']);
    const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: stream, trim: { maxLen: 10, exact: true, allowUnreadLoss: true } });
    try {
      await producer.produceBatch(Array.from({ length: 50 }, (_, i) => ({ type: 't', payload: i })));
    } finally {
      await producer.close();
    }
    expect(await send(env.redis, ['XLEN', stream])).toBe(10);
  });
});
