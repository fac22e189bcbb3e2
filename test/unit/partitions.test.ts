import { describe, expect, it } from 'vitest';
import {
  checkPartitions,
  fnv1a32,
  partitionDeadLetterKey,
  partitionLeaseKey,
  partitionOf,
  partitionOfKey,
  partitionStreamKey,
  partitionStreamKeys,
} from '../../src/redis/partitions.js';
import { keySlot } from '../../src/redis/cluster.js';

describe('partitions', () => {
  it('FNV-1a 32 matches the published test vectors', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
  });

  it('routes one key to one partition, and spreads many keys over all of them', () => {
    expect(partitionOf('customer-42', 8)).toBe(partitionOf('customer-42', 8));
    expect(partitionOf('anything', 1)).toBe(0);
    const counts = new Array(8).fill(0);
    for (let i = 0; i < 8000; i++) counts[partitionOf(`key-${i}`, 8)]++;
    for (const c of counts) expect(c).toBeGreaterThan(800);
  });

  it('names: one partition is the stream itself; more are <stream>:p<i> with tagged companions in the same slot', () => {
    expect(partitionStreamKey('events', 0, 1)).toBe('events');
    expect(partitionStreamKeys('events', 1)).toEqual(['events']);
    expect(partitionDeadLetterKey('events', 'events:dead', 0, 1)).toBe('events:dead');
    expect(partitionStreamKeys('events', 3)).toEqual(['events:p0', 'events:p1', 'events:p2']);
    expect(partitionDeadLetterKey('events', 'events:dead', 2, 3)).toBe('{events:p2}:dead');
    expect(partitionLeaseKey('events', 'g', 2, 3)).toBe('{events:p2}:lease:g');
    for (let i = 0; i < 3; i++) {
      const key = partitionStreamKey('events', i, 3);
      expect(keySlot(partitionDeadLetterKey('events', 'events:dead', i, 3))).toBe(keySlot(key));
      expect(keySlot(partitionLeaseKey('events', 'g', i, 3))).toBe(keySlot(key));
    }
  });

  it('reads a partition back from its key, and refuses bad counts and indexes with a code', () => {
    expect(partitionOfKey('events', 'events:p7', 8)).toBe(7);
    expect(partitionOfKey('events', 'events:p8', 8)).toBeUndefined();
    expect(partitionOfKey('events', 'events:p07', 8)).toBeUndefined();
    expect(partitionOfKey('events', 'events', 1)).toBe(0);
    expect(() => checkPartitions(0)).toThrow(expect.objectContaining({ code: 'TRIB_ERR_CONFIG_INVALID' }));
    expect(() => checkPartitions(1.5)).toThrow(expect.objectContaining({ code: 'TRIB_ERR_CONFIG_INVALID' }));
    expect(checkPartitions(8)).toBe(8);
    expect(() => partitionStreamKey('events', 3, 3)).toThrow(expect.objectContaining({ code: 'TRIB_ERR_CONFIG_INVALID' }));
  });
});
