import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../src/errors.js';
import { eventPartition, partitionKeyValue, Producer } from '../../src/producer/producer.js';
import { fnv1a32, partitionOf } from '../../src/redis/partitions.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isTributaryError(err) ? err.code : `uncoded: ${String(err)}`;
  }
  return undefined;
}

describe('producer routing (pure)', () => {
  it('event_id routes by the event ID; a payload field by its value', () => {
    expect(partitionKeyValue('event_id', { user_id: 'u1' }, 'e-1')).toBe('e-1');
    expect(partitionKeyValue('user_id', { user_id: 'u1' }, 'e-1')).toBe('u1');
    expect(partitionKeyValue('n', { n: 42 }, 'e')).toBe('42');
    expect(partitionKeyValue('b', { b: true }, 'e')).toBe('true');
    expect(eventPartition('user_id', 8, { user_id: 'u1' }, 'x')).toBe(fnv1a32('u1') % 8);
    expect(eventPartition('user_id', 8, { user_id: 'u1' }, 'y')).toBe(partitionOf('u1', 8));
  });

  it('every event of one key goes to one partition, and the keys spread over all of them', () => {
    const seen = new Map<string, Set<number>>();
    for (let i = 0; i < 2000; i++) {
      const key = `k${i % 100}`;
      const p = eventPartition('account', 4, { account: key }, `e${i}`);
      seen.set(key, (seen.get(key) ?? new Set()).add(p));
    }
    expect([...seen.values()].every((s) => s.size === 1)).toBe(true);
    expect(new Set([...seen.values()].map((s) => [...s][0])).size).toBe(4);
  });

  it.each([
    [{}, /no such top-level field/],
    [{ user_id: null }, /as null/],
    [{ user_id: { id: 1 } }, /as object/],
    [{ user_id: ['a'] }, /as an array/],
    [{ user_id: Number.NaN }, /as number/],
    ['text', /no such top-level field/],
  ])('an event whose payload %j lacks a usable field is refused, naming the field', (payload, why) => {
    expect(codeOf(() => partitionKeyValue('user_id', payload, 'e'))).toBe('TRIB_ERR_PRODUCE_INVALID');
    try {
      partitionKeyValue('user_id', payload, 'e');
    } catch (err) {
      expect((err as Error).message).toContain('"user_id"');
      expect((err as Error).message).toMatch(why);
    }
  });

  it('the Producer refuses a bad partition count or an empty partition key before connecting', () => {
    expect(codeOf(() => new Producer({ redisUrl: 'redis://127.0.0.1:1', partitions: 0 }))).toBe('TRIB_ERR_CONFIG_INVALID');
    expect(codeOf(() => new Producer({ redisUrl: 'redis://127.0.0.1:1', partitions: 1.5 }))).toBe('TRIB_ERR_CONFIG_INVALID');
    expect(codeOf(() => new Producer({ redisUrl: 'redis://127.0.0.1:1', partitions: 4, partitionKey: '' }))).toBe('TRIB_ERR_CONFIG_INVALID');
    const p = new Producer({ redisUrl: 'redis://127.0.0.1:1', partitions: 4, partitionKey: 'user_id' });
    expect(p.partitionOf({ user_id: 'u1' }, 'e')).toBe(partitionOf('u1', 4));
    expect(new Producer({ redisUrl: 'redis://127.0.0.1:1' }).partitionOf({}, 'e')).toBe(0);
  });
});
