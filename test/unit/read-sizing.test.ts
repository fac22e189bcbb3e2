/**
 * Reads sized by bytes (issue 11, item 4): the pure parts — the entry-size estimate,
 * the count of a read, the prefix of a batch within BATCH_MAX_BYTES — and the splitting
 * rules of the faults module and the statement path's size estimate.
 */
import { describe, expect, it } from 'vitest';
import { EntrySizeEstimate, prefixWithin, readCountFor } from '../../src/core/batch-policy.js';
import { isTooLargeToWrite, isWriteTimeout } from '../../src/core/faults.js';
import { TributaryError } from '../../src/errors.js';
import { encodedLength, encodeRows } from '../../src/sinks/postgres-events.js';

describe('EntrySizeEstimate', () => {
  it('knows nothing before a read, rises at once, falls slowly', () => {
    const e = new EntrySizeEstimate();
    expect(e.value).toBeUndefined();
    e.observe(0, 0);
    expect(e.value).toBeUndefined();
    e.observe(10, 1000);
    expect(e.value).toBe(100);
    e.observe(1, 2_000_000); // a switch to large entries: the next read is sized by it at once
    expect(e.value).toBe(2_000_000);
    e.observe(100, 10_000); // small again: a quarter of the way down per read
    expect(e.value).toBeCloseTo(2_000_000 * 0.75 + 100 * 0.25);
    for (let i = 0; i < 60; i++) e.observe(100, 10_000);
    expect(e.value).toBeLessThan(110);
  });
});

describe('readCountFor', () => {
  it('one entry before anything is known of their size; none more into a batch with no estimate', () => {
    expect(readCountFor(500, 8 << 20, undefined, true)).toBe(1);
    expect(readCountFor(500, 8 << 20, undefined, false)).toBe(0);
  });

  it('count x size within the byte room, never more than the count rules allow', () => {
    expect(readCountFor(500, 8_000_000, 2_000_000, true)).toBe(4);
    expect(readCountFor(500, 8_000_000, 1_000, true)).toBe(500);
    expect(readCountFor(3, 8_000_000, 1_000, true)).toBe(3);
    expect(readCountFor(0, 8_000_000, 1_000, true)).toBe(0);
    expect(readCountFor(500, Number.POSITIVE_INFINITY, 1_000, true)).toBe(500);
  });

  it('an empty batch reads at least one entry, however large; a filled one may read none (flush first)', () => {
    expect(readCountFor(500, 1_000_000, 2_000_000, true)).toBe(1);
    expect(readCountFor(500, 0, 2_000_000, true)).toBe(1);
    expect(readCountFor(500, -5, 2_000_000, true)).toBe(1);
    expect(readCountFor(500, 1_000_000, 2_000_000, false)).toBe(0);
    expect(readCountFor(500, 4_500_000, 2_000_000, false)).toBe(2);
  });
});

describe('prefixWithin', () => {
  const m = (...bytes: number[]) => bytes.map((b) => ({ bytes: b }));
  it('the longest prefix within the budget, at least one', () => {
    expect(prefixWithin(m(1, 2, 3), 10)).toBe(3);
    expect(prefixWithin(m(4, 4, 4), 10)).toBe(2);
    expect(prefixWithin(m(4, 6, 4), 10)).toBe(2);
    expect(prefixWithin(m(20, 1, 1), 10)).toBe(1); // larger than the budget: alone
    expect(prefixWithin(m(1, 20, 1), 10)).toBe(1); // the small one goes before it
    expect(prefixWithin(m(), 10)).toBe(0);
  });
});

describe('write failures retrying cannot cure', () => {
  it('statement timeouts, Postgres size limits, V8 string limits and TRIB_ERR_BATCH_TOO_LARGE split; other failures do not', () => {
    const timeout = Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' });
    const cancel = Object.assign(new Error('canceling statement due to user request'), { code: '57014' });
    expect(isWriteTimeout(timeout)).toBe(true);
    expect(isWriteTimeout(cancel)).toBe(false);
    expect(isTooLargeToWrite(timeout)).toBe(true);
    expect(isTooLargeToWrite(cancel)).toBe(false);
    expect(isTooLargeToWrite(Object.assign(new Error('total size of jsonb array elements exceeds the maximum of 268435455 bytes'), { code: '54000' }))).toBe(true);
    expect(isTooLargeToWrite(new RangeError('Invalid string length'))).toBe(true);
    expect(isTooLargeToWrite(Object.assign(new Error('Cannot create a string longer than 0x1fffffe8 characters'), { code: 'ERR_STRING_TOO_LONG' }))).toBe(true);
    expect(isTooLargeToWrite(new TributaryError('TRIB_ERR_BATCH_TOO_LARGE', ['x']))).toBe(true);
    expect(isTooLargeToWrite(new TributaryError('TRIB_ERR_ENTRY_REJECTED', ['1-0', '22P02', 'x']))).toBe(false);
    expect(isTooLargeToWrite(Object.assign(new Error('connection reset'), { code: 'ECONNRESET' }))).toBe(false);
    expect(isTooLargeToWrite(Object.assign(new Error('relation does not exist'), { code: '42P01' }))).toBe(false);
  });

  it('the statement path estimates a row at no less than its text', () => {
    const rows = [
      { eventId: 'a"\\\u0001b', eventType: 'ty\npe', payload: '{"x":"' + 'y'.repeat(1000) + '"}', streamId: '1-0', producedAt: 1_700_000_000_000 },
      { eventId: '\u00e9\u{1F600}', eventType: 't', payload: '[1,2,3]', streamId: '123456789-12', producedAt: null },
    ];
    for (const r of rows) expect(encodedLength(r)).toBeGreaterThanOrEqual(encodeRows([r]).length - 2);
  });
});
