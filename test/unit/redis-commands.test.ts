import { describe, expect, it } from 'vitest';
import {
  compareStreamIds,
  fieldsToObject,
  parseAutoClaimReply,
  parsePendingRangeReply,
  parseStreamReadReply,
  redisErrorIs,
  xackArgs,
  xaddArgs,
  xautoclaimArgs,
  xpendingRangeArgs,
  xreadgroupArgs,
} from '../../src/redis/commands.js';

describe('argument builders', () => {
  it('XREADGROUP blocking and non-blocking', () => {
    expect(xreadgroupArgs({ group: 'g', consumer: 'c-1', key: 'events', count: 100, blockMs: 5000 })).toEqual([
      'XREADGROUP', 'GROUP', 'g', 'c-1', 'COUNT', '100', 'BLOCK', '5000', 'STREAMS', 'events', '>',
    ]);
    expect(xreadgroupArgs({ group: 'g', consumer: 'c', key: 'k', count: 5, id: '0' })).toEqual([
      'XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '5', 'STREAMS', 'k', '0',
    ]);
  });

  it('refuses BLOCK 0, which would block forever', () => {
    expect(() => xreadgroupArgs({ group: 'g', consumer: 'c', key: 'k', count: 1, blockMs: 0 })).toThrow(/non-blocking/);
  });

  it('XAUTOCLAIM, XPENDING, XACK', () => {
    expect(xautoclaimArgs({ key: 'k', group: 'g', consumer: 'c', minIdleMs: 60000, start: '0-0', count: 500 })).toEqual([
      'XAUTOCLAIM', 'k', 'g', 'c', '60000', '0-0', 'COUNT', '500',
    ]);
    expect(xpendingRangeArgs({ key: 'k', group: 'g', count: 10 })).toEqual(['XPENDING', 'k', 'g', '-', '+', '10']);
    expect(xpendingRangeArgs({ key: 'k', group: 'g', start: '(5-0', count: 10, consumer: 'c', minIdleMs: 100 })).toEqual([
      'XPENDING', 'k', 'g', 'IDLE', '100', '(5-0', '+', '10', 'c',
    ]);
    expect(xackArgs('k', 'g', ['1-0', '2-0'])).toEqual(['XACK', 'k', 'g', '1-0', '2-0']);
  });

  it('XADD with approximate or exact trimming', () => {
    expect(xaddArgs('k', { a: '1', b: '2' })).toEqual(['XADD', 'k', '*', 'a', '1', 'b', '2']);
    expect(xaddArgs('k', { a: '1' }, { maxLen: 1000 })).toEqual(['XADD', 'k', 'MAXLEN', '~', '1000', '*', 'a', '1']);
    expect(xaddArgs('k', { a: '1' }, { minId: '5-0', exact: true })).toEqual(['XADD', 'k', 'MINID', '=', '5-0', '*', 'a', '1']);
  });
});

describe('reply parsers', () => {
  it('fieldsToObject keeps the last of repeated fields', () => {
    expect(fieldsToObject(['a', '1', 'b', '2', 'a', '3'])).toEqual({ a: '3', b: '2' });
  });

  it('XREADGROUP: nil on timeout, entries otherwise, deleted history entries apart', () => {
    expect(parseStreamReadReply(null)).toEqual({ entries: [], deletedIds: [] });
    expect(
      parseStreamReadReply([['events', [['1-0', ['event_type', 't', 'payload', '{}']], ['2-0', null]]]]),
    ).toEqual({ entries: [{ id: '1-0', fields: { event_type: 't', payload: '{}' } }], deletedIds: ['2-0'] });
  });

  it('XAUTOCLAIM, Redis 7.x shape: cursor, entries, deleted IDs', () => {
    expect(parseAutoClaimReply(['0-0', [['3-0', ['a', 'b']]], ['4-0', '5-0']])).toEqual({
      cursor: '0-0',
      entries: [{ id: '3-0', fields: { a: 'b' } }],
      deletedIds: ['4-0', '5-0'],
      nilCount: 0,
    });
  });

  it('XAUTOCLAIM, Redis 6.2 shape: two elements, a deleted entry is a bare nil', () => {
    expect(parseAutoClaimReply(['7-0', [['3-0', ['a', 'b']], null, null]])).toEqual({
      cursor: '7-0',
      entries: [{ id: '3-0', fields: { a: 'b' } }],
      deletedIds: [],
      nilCount: 2,
    });
  });

  it('XAUTOCLAIM: a malformed reply is an error, not an empty claim', () => {
    expect(() => parseAutoClaimReply(null)).toThrow(/XAUTOCLAIM/);
  });

  it('XPENDING extended form', () => {
    expect(parsePendingRangeReply([['1-0', 'c1', 1500, 3], ['2-0', 'c2', 10, 1]])).toEqual([
      { id: '1-0', consumer: 'c1', idleMs: 1500, deliveries: 3 },
      { id: '2-0', consumer: 'c2', idleMs: 10, deliveries: 1 },
    ]);
    expect(parsePendingRangeReply(null)).toEqual([]);
  });

  it('compares stream IDs numerically, not as text', () => {
    expect(compareStreamIds('9-0', '10-0')).toBeLessThan(0);
    expect(compareStreamIds('10-2', '10-10')).toBeLessThan(0);
    expect(compareStreamIds('10-2', '10-2')).toBe(0);
    expect(compareStreamIds('1700000000000-5', '1700000000000-4')).toBeGreaterThan(0);
  });

  it('matches Redis error replies by their leading word', () => {
    expect(redisErrorIs(new Error('BUSYGROUP Consumer Group name already exists'), 'BUSYGROUP')).toBe(true);
    expect(redisErrorIs(new Error('NOGROUP No such key'), 'BUSYGROUP')).toBe(false);
  });
});
