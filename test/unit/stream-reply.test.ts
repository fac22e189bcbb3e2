import { describe, expect, it } from 'vitest';
import { Decoder, RESP_TYPES } from '@redis/client/dist/lib/RESP/decoder.js';
import { parseRawEntry, type RawEventRow } from '../../src/core/entry.js';
import { isTributaryError } from '../../src/errors.js';
import { parseRawStreamReadReply, RawStreamEntry, type RawBufferReply } from '../../src/redis/commands.js';
import { RespError } from '../../src/redis/pipe.js';
import { decodeStreamRead, ReplyScanner } from '../../src/redis/stream-reply.js';
import { encodeCopyBinary } from '../../src/sinks/postgres-events.js';

const bulk = (v: string | Buffer) => {
  const b = typeof v === 'string' ? Buffer.from(v) : v;
  return Buffer.concat([Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n')]);
};

/** An XREADGROUP reply for `key` as Redis writes it (RESP2); a null field list is a deleted entry. */
function reply(key: string, entries: Array<[string, Array<string | Buffer> | null]>): Buffer {
  const parts = [Buffer.from('*1\r\n*2\r\n'), bulk(key), Buffer.from(`*${entries.length}\r\n`)];
  for (const [id, fields] of entries) {
    parts.push(Buffer.from('*2\r\n'), bulk(id));
    if (fields === null) parts.push(Buffer.from('*-1\r\n'));
    else parts.push(Buffer.from(`*${fields.length}\r\n`), ...fields.map(bulk));
  }
  return Buffer.concat(parts);
}

/** node-redis's own decoding of the same bytes (blob strings as Buffers): the reference. */
function reference(bytes: Buffer): RawBufferReply {
  let out: RawBufferReply = null;
  const d = new Decoder({
    onReply: (r: unknown) => (out = r as RawBufferReply),
    onErrorReply: () => {},
    onPush: () => {},
    getTypeMapping: () => ({ [RESP_TYPES.BLOB_STRING]: Buffer }),
  });
  d.write(bytes);
  return out;
}

/** A deterministic pseudo-random source (the failing case can be replayed). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function randomBytes(next: () => number, max: number): Buffer {
  const n = Math.floor(next() * max);
  const b = Buffer.alloc(n);
  // Bytes that matter to a RESP reader: CR, LF, '$', '*', '-', digits, and any byte.
  const tricky = [0x0d, 0x0a, 0x24, 0x2a, 0x2d, 0x30, 0x39, 0x00, 0xff];
  for (let i = 0; i < n; i++) b[i] = next() < 0.3 ? tricky[Math.floor(next() * tricky.length)]! : Math.floor(next() * 256);
  return b;
}

function randomReply(seed: number): Buffer {
  const next = rng(seed);
  const entries: Array<[string, Buffer[] | null]> = [];
  const count = Math.floor(next() * 20);
  for (let e = 0; e < count; e++) {
    const fields: Buffer[] = [];
    const pairs = Math.floor(next() * 6);
    for (let f = 0; f < pairs * 2; f++) fields.push(randomBytes(next, f % 2 === 0 ? 12 : 300));
    entries.push([`${1_700_000_000_000 + e}-${e}`, next() < 0.1 ? null : fields]);
  }
  return reply('k', entries);
}

function decodeWhole(bytes: Buffer) {
  const result = decodeStreamRead(bytes, 0, bytes.length);
  if (result instanceof RespError) throw result;
  return result;
}

describe('decodeStreamRead', () => {
  it('gives the entries node-redis gives, byte for byte, over 300 random replies (CR, LF, digits and binary in values)', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const bytes = randomReply(seed);
      const ours = decodeWhole(bytes);
      const theirs = parseRawStreamReadReply(reference(bytes));
      expect(ours.deletedIds, `seed ${seed}`).toEqual(theirs.deletedIds);
      expect(ours.entries.map((e) => e.id), `seed ${seed}`).toEqual(theirs.entries.map((e) => e.id));
      ours.entries.forEach((e, i) => {
        const want = theirs.entries[i]!;
        expect(e.raw.map((b) => b.toString('hex')), `seed ${seed} entry ${i}`).toEqual(want.raw.map((b) => b.toString('hex')));
        expect(e.size).toBe(want.size);
        expect(e.bytes).toBe(want.bytes);
        expect(e.fields).toEqual(want.fields);
      });
    }
  });

  it('reads a timeout (nil) as no entries, and returns an error reply as a RespError', () => {
    expect(decodeWhole(Buffer.from('*-1\r\n'))).toEqual({ entries: [], deletedIds: [] });
    const err = decodeStreamRead(Buffer.from('-NOGROUP No such key or consumer group\r\n'), 0, 40);
    expect(err).toBeInstanceOf(RespError);
    expect((err as RespError).message).toBe('NOGROUP No such key or consumer group');
  });

  it('refuses a reply past 2 GiB (its offsets would not fit) before reading it', () => {
    expect(() => decodeStreamRead(Buffer.from('*-1\r\n'), 0, 2 ** 31)).toThrow(/over 2 GiB/);
  });

  it('refuses a reply of another shape with TRIB_ERR_REDIS_UNAVAILABLE, naming what it found', () => {
    const cases = [
      Buffer.from('*2\r\n*2\r\n$1\r\na\r\n*0\r\n*2\r\n$1\r\nb\r\n*0\r\n'), // two streams
      Buffer.from('*1\r\n$3\r\nabc\r\n'), // a stream item that is not an array
      Buffer.from('*1\r\n*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n:5\r\n'), // a field that is an integer
      Buffer.from('*1\r\n*2\r\n$1\r\nk\r\n*x\r\n'), // a length that is not a number
    ];
    for (const bytes of cases) {
      let caught: unknown;
      try {
        decodeStreamRead(bytes, 0, bytes.length);
      } catch (err) {
        caught = err;
      }
      expect(isTributaryError(caught, 'TRIB_ERR_REDIS_UNAVAILABLE'), bytes.toString('latin1')).toBe(true);
    }
  });
});

describe('ReplyScanner', () => {
  it('finds the end of a reply fed in two pieces, split at every byte, and resumes where it stopped', () => {
    const bytes = reply('events', [
      ['1-0', ['event_type', 't', 'payload', '{"a":"\r\n$3\r\n*1"}']],
      ['2-0', null],
      ['3-0', ['payload', '']],
    ]);
    for (let cut = 0; cut < bytes.length; cut++) {
      const s = new ReplyScanner();
      s.reset(0);
      // Only the first `cut` bytes have arrived: never complete.
      expect(s.scan(bytes, cut), `cut ${cut}`).toBe(false);
      expect(s.pos).toBeLessThanOrEqual(cut);
      expect(s.scan(bytes, bytes.length), `cut ${cut}`).toBe(true);
      expect(s.pos).toBe(bytes.length);
    }
  });

  it('walks nil, empty arrays, errors, integers and simple strings, and refuses an unknown type byte', () => {
    for (const text of ['*-1\r\n', '*0\r\n', '-ERR x\r\n', ':12\r\n', '+OK\r\n', '$-1\r\n', '*2\r\n*0\r\n:1\r\n']) {
      const s = new ReplyScanner();
      s.reset(0);
      expect(s.scan(Buffer.from(text), text.length), text).toBe(true);
      expect(s.pos).toBe(text.length);
    }
    const s = new ReplyScanner();
    s.reset(0);
    expect(() => s.scan(Buffer.from('!oops\r\n'), 7)).toThrow(/unexpected reply type/);
  });
});

describe('parseRawEntry on packed entries', () => {
  const cases: Array<Array<string>> = [
    ['event_type', 'click', 'payload', '{"x":1}', 'event_id', 'id-1', 'produced_at', '1700000000123'],
    ['payload', '{"x":1}', 'event_type', 'click'], // no event_id: the default, no produced_at
    ['event_type', 'a', 'payload', '{}', 'produced_at', '1.5e12'], // not digits: read as text
    ['event_type', 'a', 'payload', '{}', 'produced_at', '007'],
    ['event_type', 'a', 'payload', '{}', 'produced_at', 'soon'], // refused
    ['event_type', 'a', 'payload', '{}', 'produced_at', '100000000000001'], // over the limit
    ['event_type', '', 'payload', '{}'], // empty type: refused
    ['event_type', 'a'], // no payload
    ['event_type', 'a', 'payload', '{}', 'event_id', ''], // empty event_id
    ['event_type', 'a', 'payload', '{}', 'payload', '{"last":true}', 'dangling'], // repeated field, odd count
  ];

  it('finds the same row, or the same problem, as on the Buffer-per-field form', () => {
    for (const fields of cases) {
      const packed = decodeWhole(reply('k', [['5-1', fields]])).entries[0]!;
      const plain = new RawStreamEntry('5-1', fields.map((f) => Buffer.from(f)));
      const a = parseRawEntry(packed, 'k');
      const b = parseRawEntry(plain, 'k');
      expect(a.ok, fields.join(' ')).toBe(b.ok);
      if (a.ok && b.ok) {
        const view = (r: RawEventRow) => ({
          eventId: r.eventId.toString(),
          eventType: r.eventType.toString(),
          payload: r.payload.toString(),
          streamId: r.streamId,
          producedAt: r.producedAt,
        });
        expect(view(a.row)).toEqual(view(b.row));
        // And the COPY rows they make are the same bytes, as are those of a plain row object.
        const plainRow: RawEventRow = { entry: plain, eventId: b.row.eventId, eventType: b.row.eventType, payload: b.row.payload, streamId: b.row.streamId, producedAt: b.row.producedAt };
        expect(encodeCopyBinary([a.row]).equals(encodeCopyBinary([b.row]))).toBe(true);
        expect(encodeCopyBinary([a.row]).equals(encodeCopyBinary([plainRow]))).toBe(true);
      } else if (!a.ok && !b.ok) {
        expect(a.problem).toEqual(b.problem);
      }
    }
  });
});
