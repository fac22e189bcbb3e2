import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../src/errors.js';
import { Producer } from '../../src/producer/producer.js';
import { createRedisConnection, destroyQuietly, type RedisConnection } from '../../src/redis/client.js';
import { RespError, RespPipe } from '../../src/redis/pipe.js';
import { freePort, RedisServerProcess } from '../helpers/child.js';
import { codeOf } from '../helpers/env.js';
import { redisKit } from '../helpers/redis-kit.js';

const { redisUrl, cleanups, admin } = redisKit();

function key(label: string): string {
  return `t_pipe_${label}_${randomBytes(4).toString('hex')}`;
}

describe('RespPipe against Redis', () => {
  it('pipelines commands in order; an error reply stands in its place and its neighbours succeed', async () => {
    const k = key('order');
    const r = await admin();
    cleanups.push(() => r.del([k, `${k}:list`]));
    const pipe = new RespPipe({ url: redisUrl });
    cleanups.push(() => pipe.destroy());
    await r.lPush(`${k}:list`, 'x');
    const cmds = ['*3\r\n$3\r\nSET\r\n', `$${Buffer.byteLength(k)}\r\n${k}\r\n`, '$1\r\n1\r\n', '*2\r\n$4\r\nINCR\r\n', `$${Buffer.byteLength(k)}\r\n${k}\r\n`];
    const wrong = `*2\r\n$3\r\nGET\r\n$${Buffer.byteLength(`${k}:list`)}\r\n${k}:list\r\n`;
    const replies = await pipe.pipeline(cmds.join('') + wrong + `*2\r\n$3\r\nGET\r\n$${Buffer.byteLength(k)}\r\n${k}\r\n`, 4);
    expect(replies.slice(0, 2)).toEqual(['OK', 2]);
    expect(replies[2]).toBeInstanceOf(RespError);
    expect((replies[2] as RespError).message).toMatch(/^WRONGTYPE/);
    expect(replies[3]).toBe('2');
    // A reply far larger than one socket read arrives whole.
    const big = 'x'.repeat(3_000_000);
    await r.set(k, big);
    expect(await pipe.command(['GET', k])).toBe(big);
    await pipe.close();
    await pipe.close(); // twice is fine
  });

  it('authenticates with the user and password of the URL, selects its database, and names itself', async () => {
    const user = key('user');
    const r = await admin();
    await r.sendCommand(['ACL', 'SETUSER', user, 'on', '>s3cr:t', 'allkeys', '+@all']);
    cleanups.push(() => r.sendCommand(['ACL', 'DELUSER', user]));
    const u = new URL(redisUrl);
    u.username = user;
    u.password = encodeURIComponent('s3cr:t');
    u.pathname = '/3';
    const pipe = new RespPipe({ url: u.toString(), name: `${user}-conn` });
    cleanups.push(() => pipe.destroy());
    expect(await pipe.command(['ACL', 'WHOAMI'])).toBe(user);
    const info = String(await pipe.command(['CLIENT', 'INFO']));
    expect(info).toContain(` db=3 `);
    expect(info).toContain(`name=${user}-conn `);

    u.password = 'wrong';
    const bad = new RespPipe({ url: u.toString() });
    // A refused login is a wrong setting, coded as such (not an outage).
    expect(await codeOf(bad.command(['PING']))).toMatch(/^TRIB_ERR_REDIS_AUTH: Redis at 127\.0\.0\.1:\d+ refused the login: WRONGPASS/);
  });

  it('an unreachable server fails with TRIB_ERR_REDIS_UNAVAILABLE, promptly', async () => {
    const port = await freePort();
    const pipe = new RespPipe({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 1000 });
    const started = Date.now();
    expect(await codeOf(pipe.command(['PING']))).toMatch(/^TRIB_ERR_REDIS_UNAVAILABLE: Redis is unavailable: 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('a connection killed with commands in flight fails them; the next call connects again', async () => {
    const name = key('killed');
    const r = await admin();
    const pipe = new RespPipe({ url: redisUrl, name });
    cleanups.push(() => pipe.destroy());
    expect(await pipe.command(['PING'])).toBe('PONG');
    // BLPOP on a key nobody pushes to holds the reply back until the kill.
    // codeOf takes the rejection at once: it happens while the test is busy killing.
    const inFlight = codeOf(pipe.command(['BLPOP', key('never'), '5']));
    await new Promise((res) => setTimeout(res, 100));
    await r.sendCommand(['CLIENT', 'KILL', 'SKIPME', 'yes', 'USER', 'default', 'ID', String(await clientId(r, name))]);
    expect(await inFlight).toMatch(/^TRIB_ERR_REDIS_UNAVAILABLE: Redis is unavailable: connection closed with commands in flight/);
    expect(await pipe.command(['PING'])).toBe('PONG');
  });
});

async function clientId(r: RedisConnection, name: string): Promise<number> {
  const list = String(await r.sendCommand(['CLIENT', 'LIST']));
  const line = list.split('\n').find((l) => l.includes(` name=${name} `))!;
  return Number(/id=(\d+)/.exec(line)![1]);
}

describe('Producer on its pipe', () => {
  it('produceBatch returns the entry IDs in order and the entries carry the stream contract', async () => {
    const stream = key('stream');
    const r = await admin();
    cleanups.push(() => r.del(stream));
    const producer = new Producer({ redisUrl, streamKey: stream });
    cleanups.push(() => producer.close());
    const ids = await producer.produceBatch(Array.from({ length: 2500 }, (_, i) => ({ type: 'n', payload: { i, s: 'é\t"' }, eventId: `e-${i}`, producedAt: 1000 + i })));
    expect(ids).toHaveLength(2500);
    const entries = await r.xRange(stream, '-', '+');
    expect(entries.map((e) => e.id)).toEqual(ids);
    expect(entries[7]!.message).toEqual({ event_type: 'n', payload: '{"i":7,"s":"é\\t\\""}', event_id: 'e-7', produced_at: '1007' });
    // produced_at as given (0, a fraction, 14 digits) or now (null: now, as undefined); many types, each framed once.
    const before = Date.now();
    const more = [0, 1.5, 99_999_999_999_999, null].map((producedAt, i) => ({ type: `type-${i}-é`, payload: [i], producedAt: producedAt as number | undefined }));
    await producer.produceBatch(more);
    const last = (await r.xRange(stream, '-', '+')).slice(-4).map((e) => e.message);
    expect(last.slice(0, 3)).toEqual([
      { event_type: 'type-0-é', payload: '[0]', event_id: expect.stringMatching(/^[0-9a-f-]{36}$/), produced_at: '0' },
      { event_type: 'type-1-é', payload: '[1]', event_id: expect.stringMatching(/^[0-9a-f-]{36}$/), produced_at: '1.5' },
      { event_type: 'type-2-é', payload: '[2]', event_id: expect.stringMatching(/^[0-9a-f-]{36}$/), produced_at: '99999999999999' },
    ]);
    expect(Number(last[3]!.produced_at)).toBeGreaterThanOrEqual(before);
    expect(Number(last[3]!.produced_at)).toBeLessThanOrEqual(Date.now());
    expect(await codeOf(producer.produceBatch([{ type: 't', payload: 1, producedAt: Number.NaN }]))).toMatch(/^TRIB_ERR_PRODUCE_INVALID/);
  });

  it('trims with MAXLEN ~ on every XADD (when the caller accepts losing unread entries)', async () => {
    const stream = key('trim');
    const r = await admin();
    cleanups.push(() => r.del(stream));
    const producer = new Producer({ redisUrl, streamKey: stream, trim: { maxLen: 100, exact: true, allowUnreadLoss: true } });
    cleanups.push(() => producer.close());
    await producer.produceBatch(Array.from({ length: 500 }, () => ({ type: 't', payload: {} })));
    expect(await r.xLen(stream)).toBe(100);
  });

  it('an event Redis refuses fails the call with TRIB_ERR_PRODUCE_REFUSED; a bad event sends nothing', async () => {
    const stream = key('wrongtype');
    const r = await admin();
    cleanups.push(() => r.del(stream));
    await r.set(stream, 'not a stream');
    const producer = new Producer({ redisUrl, streamKey: stream });
    cleanups.push(() => producer.close());
    expect(await codeOf(producer.produceBatch([{ type: 't', payload: 1 }, { type: 't', payload: 2 }]))).toMatch(/^TRIB_ERR_PRODUCE_REFUSED: Redis refused 2 of 2 events: WRONGTYPE/);
    await r.del(stream);
    expect(await codeOf(producer.produceBatch([{ type: 't', payload: 1 }, { type: '', payload: 2 }]))).toMatch(/^TRIB_ERR_PRODUCE_INVALID/);
    expect(await r.exists(stream)).toBe(0);
  });

  it('Redis at maxmemory (OOM, noeviction) fails the call with TRIB_ERR_REDIS_OOM, not a generic refusal; freed, the same call succeeds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trib-oom-'));
    const server = await RedisServerProcess.start(await freePort(), dir);
    cleanups.push(() => {
      server.killNow();
      rmSync(dir, { recursive: true, force: true });
    });
    const r = createRedisConnection(server.url, { failFast: false });
    await r.connect();
    cleanups.push(() => destroyQuietly(r));
    await r.sendCommand(['CONFIG', 'SET', 'maxmemory-policy', 'noeviction']);
    await r.sendCommand(['CONFIG', 'SET', 'maxmemory', '1']); // always above it: every XADD is refused
    const producer = new Producer({ redisUrl: server.url, streamKey: 'oom:events' });
    cleanups.push(() => producer.close());
    const events = [{ type: 't', payload: 1, eventId: 'oom-1' }, { type: 't', payload: 2, eventId: 'oom-2' }];
    const err = await producer.produceBatch(events).catch((e: unknown) => e);
    expect(isTributaryError(err, 'TRIB_ERR_REDIS_OOM')).toBe(true);
    expect((err as Error).message).toMatch(/^Redis is at maxmemory and refused 2 of 2 events: OOM /);
    expect((err as { retryable: boolean }).retryable).toBe(true);
    await r.sendCommand(['CONFIG', 'SET', 'maxmemory', '0']);
    expect(await producer.produceBatch(events)).toHaveLength(2);
  });

  it('close waits for batches in flight', async () => {
    const stream = key('close');
    const r = await admin();
    cleanups.push(() => r.del(stream));
    const producer = new Producer({ redisUrl, streamKey: stream });
    const sent = producer.produceBatch(Array.from({ length: 5000 }, () => ({ type: 't', payload: { x: 'y'.repeat(100) } })));
    await new Promise((res) => setImmediate(res));
    await producer.close();
    expect(await sent).toHaveLength(5000);
    expect(await r.xLen(stream)).toBe(5000);
    expect(isTributaryError(await producer.produce('t', 1).catch((e: unknown) => e), 'TRIB_ERR_REDIS_UNAVAILABLE')).toBe(true);
  });
});
