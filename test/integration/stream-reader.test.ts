import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../src/errors.js';
import { send, type RedisConnection } from '../../src/redis/client.js';
import { xreadgroupArgs } from '../../src/redis/commands.js';
import { RespError } from '../../src/redis/pipe.js';
import { isServerRefusal, StreamReader } from '../../src/redis/stream-reader.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { redisKit } from '../helpers/redis-kit.js';

const { redisUrl, cleanups, admin } = redisKit();

/** A fresh stream key with a group at 0, removed after the test. */
async function stream(r: RedisConnection, label: string): Promise<string> {
  const key = `t_reader_${label}_${randomBytes(4).toString('hex')}`;
  cleanups.push(() => r.del(key));
  await send(r, ['XGROUP', 'CREATE', key, 'g', '0', 'MKSTREAM']);
  return key;
}

function reader(url = redisUrl, commandTimeoutMs = 0): StreamReader {
  const s = new StreamReader({ url, name: `t-reader-${randomBytes(3).toString('hex')}`, commandTimeoutMs });
  cleanups.push(() => s.destroy());
  return s;
}

const read = (s: StreamReader, key: string, count: number, blockMs?: number) =>
  s.read(xreadgroupArgs({ group: 'g', consumer: 'c', key, count, blockMs }), blockMs ?? 0);

describe('StreamReader against Redis', () => {
  it('reads a reply of many socket chunks (2,000 entries of ~1 KiB) exactly as XRANGE gives them', async () => {
    const r = await admin();
    const key = await stream(r, 'big');
    const multi = r.multi();
    for (let i = 0; i < 2000; i++) multi.addCommand(['XADD', key, '*', 'event_type', 't', 'payload', JSON.stringify({ i, pad: 'é\r\n'.repeat(300) }), 'n', String(i)]);
    await multi.exec();
    const s = reader();
    const got = await read(s, key, 5000);
    const want = (await send(r, ['XRANGE', key, '-', '+'])) as Array<[string, string[]]>;
    expect(got.entries).toHaveLength(2000);
    expect(got.entries.map((e) => [e.id, Object.entries(e.fields).flat()])).toEqual(want);
    // The next read blocks, times out and gets nil: no entries, and the connection goes on.
    expect((await read(s, key, 10, 50)).entries).toEqual([]);
    await send(r, ['XADD', key, '*', 'a', 'b']);
    expect((await read(s, key, 10, 1000)).entries.map((e) => e.fields)).toEqual([{ a: 'b' }]);
  });

  it('is named in CLIENT LIST, and CLIENT UNBLOCK from another connection releases its blocked read', async () => {
    const r = await admin();
    const key = await stream(r, 'unblock');
    const s = reader();
    await s.open();
    expect(s.id).toMatch(/^\d+$/);
    expect(String(await send(r, ['CLIENT', 'LIST', 'ID', s.id!]))).toContain('name=t-reader-');
    const started = Date.now();
    const blocked = read(s, key, 10, 30_000);
    await new Promise((res) => setTimeout(res, 100));
    await s.unblock(r);
    expect((await blocked).entries).toEqual([]);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("returns Redis's refusal (NOGROUP) as a server refusal: nothing was delivered, the connection stays", async () => {
    const r = await admin();
    const key = await stream(r, 'nogroup');
    const s = reader();
    const err = await s.read(xreadgroupArgs({ group: 'missing', consumer: 'c', key, count: 1 }), 0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RespError);
    expect(isServerRefusal(err)).toBe(true);
    expect((err as Error).message).toMatch(/^NOGROUP/);
    await send(r, ['XADD', key, '*', 'a', 'b']);
    expect((await read(s, key, 10)).entries).toHaveLength(1);
  });

  it('a read with no reply within its block time plus commandTimeoutMs fails as lost, and the next read connects again', async () => {
    const r = await admin();
    const key = await stream(r, 'stall');
    const u = new URL(redisUrl);
    const proxy = await TcpProxy.start({ host: u.hostname, port: Number(u.port || 6379) });
    cleanups.push(() => proxy.close());
    const s = reader(proxy.urlFor(redisUrl), 300);
    await s.open();
    proxy.blackhole();
    const started = Date.now();
    const err = await read(s, key, 10, 100).catch((e: unknown) => e);
    expect(isTributaryError(err, 'TRIB_ERR_REDIS_UNAVAILABLE')).toBe(true);
    expect(isServerRefusal(err)).toBe(false);
    expect((err as Error).message).toMatch(/no reply from Redis within 400 ms/);
    expect(Date.now() - started).toBeLessThan(5000);
    proxy.pass();
    await send(r, ['XADD', key, '*', 'a', 'b']);
    expect((await read(s, key, 10)).entries).toHaveLength(1);
    expect(proxy.accepted).toBe(2); // the stalled connection was dropped, a new one made
    expect(proxy.connections).toBe(1);
  });

  it('a connection that breaks under a read fails it as lost (not a refusal); a read on a server that is gone fails, coded', async () => {
    const r = await admin();
    const key = await stream(r, 'break');
    const s = reader();
    await s.open();
    const blocked = read(s, key, 10, 30_000).catch((e: unknown) => e);
    await new Promise((res) => setTimeout(res, 100));
    await send(r, ['CLIENT', 'KILL', 'ID', s.id!]);
    const err = await blocked;
    expect(isTributaryError(err, 'TRIB_ERR_REDIS_UNAVAILABLE')).toBe(true);
    expect(isServerRefusal(err)).toBe(false);
    const gone = new StreamReader({ url: 'redis://127.0.0.1:1', name: 'x' });
    expect(isTributaryError(await read(gone, key, 1).catch((e: unknown) => e), 'TRIB_ERR_REDIS_UNAVAILABLE')).toBe(true);
  });

  it('a read while the hand-shake is still unanswered waits for it; a huge REDIS_COMMAND_TIMEOUT_MS does not fire at once', async () => {
    const r = await admin();
    const key = await stream(r, 'slowhello');
    await send(r, ['XADD', key, '*', 'a', 'b']);
    const u = new URL(redisUrl);
    const proxy = await TcpProxy.start({ host: u.hostname, port: Number(u.port || 6379) });
    cleanups.push(() => proxy.close());
    proxy.latency(150);
    // 10^12 ms: past setTimeout's 2^31 - 1, which would otherwise fire after 1 ms.
    const s = reader(proxy.urlFor(redisUrl), 1e12);
    const opening = s.open();
    // Connected to the proxy by now, the hand-shake's replies still on their way.
    await new Promise((res) => setTimeout(res, 60));
    const got = await read(s, key, 10, 100);
    await opening;
    expect(got.entries.map((e) => e.fields)).toEqual([{ a: 'b' }]);
    expect((await read(s, key, 10, 100)).entries).toEqual([]);
    expect(proxy.accepted).toBe(1);
  });

  it('a connection destroyed while it connects leaves no socket behind', async () => {
    const u = new URL(redisUrl);
    const proxy = await TcpProxy.start({ host: u.hostname, port: Number(u.port || 6379) });
    cleanups.push(() => proxy.close());
    const s = reader(proxy.urlFor(redisUrl));
    const opening = s.open();
    s.destroy();
    expect(isTributaryError(await opening.catch((e: unknown) => e), 'TRIB_ERR_REDIS_UNAVAILABLE')).toBe(true);
    expect(s.isOpen).toBe(false);
    await new Promise((res) => setTimeout(res, 200));
    expect(proxy.accepted).toBe(1);
    expect(proxy.connections).toBe(0);
  });
});
