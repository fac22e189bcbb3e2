import { describe, expect, it } from 'vitest';
import { BatchPolicy, entrySize } from '../../src/core/batch-policy.js';

describe('BatchPolicy', () => {
  const policy = new BatchPolicy({ maxCount: 500, periodMs: 2000 });

  it('rejects a policy with no usable trigger when built', () => {
    expect(() => new BatchPolicy({ maxCount: 0, periodMs: 2000 })).toThrow(/maxCount/);
    expect(() => new BatchPolicy({ maxCount: 1.5, periodMs: 2000 })).toThrow(/maxCount/);
    expect(() => new BatchPolicy({ maxCount: 10, periodMs: 0 })).toThrow(/periodMs/);
    expect(() => new BatchPolicy({ maxCount: 10, periodMs: Number.NaN })).toThrow(/periodMs/);
  });

  it('never flushes an empty batch', () => {
    expect(policy.check({ count: 0, firstAt: undefined, lastRead: { got: 0, asked: 100 } }, 10_000)).toBeNull();
  });

  it('flushes at the size limit', () => {
    expect(policy.check({ count: 500, firstAt: 0, lastRead: { got: 100, asked: 100 } }, 1)).toBe('size');
    expect(policy.check({ count: 499, firstAt: 0, lastRead: { got: 100, asked: 100 } }, 1)).toBeNull();
  });

  it('flushes at the byte limit, and rejects a bad one when built', () => {
    const small = new BatchPolicy({ maxCount: 500, maxBytes: 1000, periodMs: 2000 });
    expect(small.check({ count: 3, bytes: 999, firstAt: 0, lastRead: { got: 100, asked: 100 } }, 1)).toBeNull();
    expect(small.check({ count: 3, bytes: 1000, firstAt: 0, lastRead: { got: 100, asked: 100 } }, 1)).toBe('bytes');
    expect(policy.check({ count: 3, bytes: 1e12, firstAt: 0, lastRead: { got: 100, asked: 100 } }, 1)).toBeNull();
    expect(() => new BatchPolicy({ maxCount: 10, maxBytes: 0, periodMs: 1 })).toThrow(/maxBytes/);
    expect(entrySize({ event_type: 'ab', payload: '{}' })).toBe(10 + 2 + 7 + 2);
  });

  it('flushes when the oldest entry has waited the period', () => {
    expect(policy.check({ count: 10, firstAt: 1000, lastRead: { got: 100, asked: 100 } }, 2999)).toBeNull();
    expect(policy.check({ count: 10, firstAt: 1000, lastRead: { got: 100, asked: 100 } }, 3000)).toBe('time');
  });

  it('flushes as soon as a read comes back short (caught up)', () => {
    expect(policy.check({ count: 10, firstAt: 1000, lastRead: { got: 10, asked: 100 } }, 1001)).toBe('caught_up');
    expect(policy.check({ count: 10, firstAt: 1000, lastRead: { got: 0, asked: 100 } }, 1001)).toBe('caught_up');
  });

  it('size wins over time and caught-up when several fire', () => {
    expect(policy.check({ count: 600, firstAt: 0, lastRead: { got: 1, asked: 100 } }, 5000)).toBe('size');
    expect(policy.check({ count: 6, firstAt: 0, lastRead: { got: 1, asked: 100 } }, 5000)).toBe('time');
  });

  it('can wait out the period instead of flushing when caught up', () => {
    const patient = new BatchPolicy({ maxCount: 500, periodMs: 2000, flushWhenCaughtUp: false });
    expect(patient.check({ count: 10, firstAt: 1000, lastRead: { got: 0, asked: 100 } }, 1500)).toBeNull();
    expect(patient.blockFor({ count: 10, firstAt: 1000 }, 1500, 5000)).toBe(1500);
    expect(patient.blockFor({ count: 10, firstAt: 1000 }, 4000, 5000)).toBe(0);
    expect(patient.blockFor({ count: 0, firstAt: undefined }, 4000, 5000)).toBe(5000);
  });

  it('asks for no more than fills the batch', () => {
    expect(policy.nextReadCount({ count: 0, firstAt: undefined }, 100)).toBe(100);
    expect(policy.nextReadCount({ count: 450, firstAt: 0 }, 100)).toBe(50);
    expect(policy.nextReadCount({ count: 500, firstAt: 0 }, 100)).toBe(0);
  });
});
