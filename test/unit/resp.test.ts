import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../src/errors.js';
import { encodeCommand, parseRedisUrl, parseReply, RespError, RespWriter } from '../../src/redis/pipe.js';
import { xaddPrefix } from '../../src/producer/producer.js';

const bulkOf = (v: string) => `$${Buffer.byteLength(v)}\r\n${v}\r\n`;

describe('RESP encoding', () => {
  it('encodes commands with byte lengths, not character lengths', () => {
    expect(encodeCommand(['SET', 'k', 'é😀'])).toBe('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\né😀\r\n');
  });

  it('RespWriter writes the same bytes as encodeCommand, growing past its first buffer', () => {
    const w = new RespWriter(8);
    const values = ['', 'x', 'é'.repeat(5000), '9'.repeat(12345), 'a\r\nb'];
    w.ascii(`*${values.length}\r\n`);
    for (const v of values) w.bulk(v);
    expect(w.finish().toString('utf8')).toBe(encodeCommand(values));
  });

  it('RespWriter.bytes copies framing pieces (short and long), intBulk writes integers as bulk strings', () => {
    const w = new RespWriter(4);
    w.bytes(Buffer.from('*3\r\n')).bytes(Buffer.from(bulkOf('x'.repeat(100))));
    for (const n of [0, 9, 10, 99, 100, 1_700_000_000_123, Number.MAX_SAFE_INTEGER]) w.intBulk(n);
    const want = '*3\r\n' + bulkOf('x'.repeat(100)) + ['0', '9', '10', '99', '100', '1700000000123', String(Number.MAX_SAFE_INTEGER)].map(bulkOf).join('');
    expect(w.finish().toString('latin1')).toBe(want);
  });

  it('xaddPrefix frames XADD key [trim] * and announces the 8 field arguments that follow', () => {
    expect(xaddPrefix('s')).toBe('*11\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n');
    expect(xaddPrefix('s', { maxLen: 10 })).toBe('*14\r\n$4\r\nXADD\r\n$1\r\ns\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$2\r\n10\r\n$1\r\n*\r\n');
  });
});

describe('parseReply', () => {
  const replies = Buffer.from('+OK\r\n-ERR bad thing\r\n:42\r\n$-1\r\n$5\r\nhé\r\n\r\n*2\r\n$1\r\na\r\n*1\r\n:7\r\n*-1\r\n', 'utf8');
  const expected = ['OK', new RespError('ERR bad thing'), 42, null, 'hé\r\n', ['a', [7]], null];

  it('parses every RESP2 type, errors as RespError values', () => {
    const out: unknown[] = [];
    for (let pos = 0; pos < replies.length; ) {
      const r = parseReply(replies, pos)!;
      out.push(r.value);
      pos = r.next;
    }
    expect(out).toEqual(expected);
    expect(out[1]).toBeInstanceOf(RespError);
  });

  it('says "incomplete" for every cut short of a whole reply, never a wrong value', () => {
    for (let cut = 0; cut < replies.length; cut++) {
      const part = replies.subarray(0, cut);
      const out: unknown[] = [];
      for (let pos = 0; ; ) {
        const r = parseReply(part, pos);
        if (!r) break;
        out.push(r.value);
        pos = r.next;
      }
      expect(out).toEqual(expected.slice(0, out.length));
    }
  });

  it('refuses an unknown reply type with a coded error', () => {
    expect(() => parseReply(Buffer.from('?x\r\n'), 0)).toThrow(/unexpected reply type/);
  });
});

describe('parseRedisUrl', () => {
  it('reads host, port, credentials, database and TLS', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6380/2')).toEqual({ tls: false, host: '127.0.0.1', port: 6380, username: undefined, password: undefined, db: 2 });
    expect(parseRedisUrl('rediss://us%40r:p%3Ass@cache.example:6390')).toMatchObject({ tls: true, host: 'cache.example', username: 'us@r', password: 'p:ss', db: 0 });
    expect(parseRedisUrl('redis://:secret@[::1]')).toMatchObject({ host: '::1', port: 6379, username: undefined, password: 'secret' });
  });

  it.each(['not a url', 'http://host', 'redis://host/x'])('refuses %j with TRIB_ERR_CONFIG_INVALID', (url) => {
    try {
      parseRedisUrl(url);
      throw new Error('expected an error');
    } catch (err) {
      expect(isTributaryError(err, 'TRIB_ERR_CONFIG_INVALID')).toBe(true);
    }
  });
});
