import { describe, expect, it } from 'vitest';
import type { RawEventRow } from '../../src/core/entry.js';
import { RawStreamEntry } from '../../src/redis/commands.js';
import { encodeCopyBinary } from '../../src/sinks/postgres-events.js';

const entry = new RawStreamEntry('1-0', []);
const row = (over: Partial<RawEventRow>): RawEventRow => ({
  entry,
  eventId: 'é',
  eventType: Buffer.from('t'),
  payload: Buffer.from('{}'),
  streamId: '1-0',
  producedAt: null,
  ...over,
});

/** Reads the fields of the first row back out of a COPY BINARY buffer. */
function firstRow(buf: Buffer): Array<Buffer | null> {
  let o = 19;
  const n = buf.readInt16BE(o);
  o += 2;
  const fields: Array<Buffer | null> = [];
  for (let i = 0; i < n; i++) {
    const len = buf.readInt32BE(o);
    o += 4;
    if (len < 0) fields.push(null);
    else {
      fields.push(buf.subarray(o, o + len));
      o += len;
    }
  }
  return fields;
}

describe('encodeCopyBinary', () => {
  it('frames rows: signature, five length-prefixed fields, jsonb version byte, -1 for NULL, trailer', () => {
    const buf = encodeCopyBinary([row({})]);
    expect(buf.subarray(0, 11).toString('latin1')).toBe('PGCOPY\n\xff\r\n\0');
    expect(buf.readInt32BE(11)).toBe(0); // flags
    expect(buf.readInt32BE(15)).toBe(0); // header extension
    const [id, type, payload, stream, at] = firstRow(buf);
    expect(id).toEqual(Buffer.from('é')); // UTF-8: 2 bytes
    expect(type).toEqual(Buffer.from('t'));
    expect(payload).toEqual(Buffer.from([1, ...Buffer.from('{}')]));
    expect(stream).toEqual(Buffer.from('1-0'));
    expect(at).toBeNull();
    expect(buf.readInt16BE(buf.length - 2)).toBe(-1);
  });

  it('writes produced_at as microseconds since 2000-01-01, exact for whole ms past 2^53 µs', () => {
    const us = (ms: number) => firstRow(encodeCopyBinary([row({ producedAt: ms })]))[4]!.readBigInt64BE(0);
    expect(us(946_684_800_000)).toBe(0n);
    expect(us(946_684_800_001.5)).toBe(1500n);
    expect(us(0)).toBe(-946_684_800_000_000n);
    expect(us(1e14)).toBe(BigInt(1e14 - 946_684_800_000) * 1000n);
  });

  it('sizes the buffer exactly for many rows of mixed ids', () => {
    const rows = Array.from({ length: 100 }, (_, i) => row({ eventId: i % 2 ? Buffer.from(`id-${i}`) : `ключ-${i}`, producedAt: i % 3 ? null : 1.7e12 }));
    const buf = encodeCopyBinary(rows);
    let expected = 19 + 2;
    for (const r of rows) expected += 2 + 4 * 5 + Buffer.byteLength(r.eventId as string) + 1 + 1 + 2 + 3 + (r.producedAt === null ? 0 : 8);
    expect(buf.length).toBe(expected);
  });
});
