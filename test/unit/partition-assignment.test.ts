import { describe, expect, it } from 'vitest';
import { keySlot } from '../../src/redis/cluster.js';
import {
  assignPartitions,
  leaseValue,
  parseLease,
  partitionConsumer,
  partitionFenceKey,
  partitionLeaseKey,
  partitionMembersKey,
  partitionStreamKey,
} from '../../src/redis/partitions.js';

function owners(assignment: Map<string, number[]>, n: number): string[] {
  const owner = new Array<string>(n);
  for (const [m, ps] of assignment) for (const p of ps) owner[p] = m;
  return owner;
}

describe('partition assignment', () => {
  it('gives every partition to exactly one member, each member ⌊n/P⌋ or ⌈n/P⌉', () => {
    for (const [n, p] of [[8, 3], [8, 1], [3, 5], [1024, 7], [2, 2], [16, 4]] as const) {
      const members = Array.from({ length: p }, (_, i) => `host-${i}-${i * 7919}`);
      const a = assignPartitions(members, n);
      expect([...a.keys()].sort()).toEqual([...members].sort());
      const all = [...a.values()].flat().sort((x, y) => x - y);
      expect(all).toEqual(Array.from({ length: n }, (_, i) => i));
      for (const ps of a.values()) {
        expect(ps.length).toBeGreaterThanOrEqual(Math.floor(n / p));
        expect(ps.length).toBeLessThanOrEqual(Math.ceil(n / p));
      }
    }
  });

  it('is the same whatever order the members were seen in, duplicates ignored', () => {
    const a = assignPartitions(['c', 'a', 'b'], 8);
    const b = assignPartitions(['b', 'c', 'a', 'a'], 8);
    expect(owners(a, 8)).toEqual(owners(b, 8));
  });

  it('no members: nobody owns anything', () => {
    expect(assignPartitions([], 8).size).toBe(0);
  });

  it('a member joining takes about its share, and moves little else', () => {
    const n = 64;
    const before = owners(assignPartitions(['a', 'b', 'c'], n), n);
    const after = owners(assignPartitions(['a', 'b', 'c', 'd'], n), n);
    const moved = before.filter((m, i) => after[i] !== m).length;
    const toD = after.filter((m) => m === 'd').length;
    expect(toD).toBe(16);
    // Round-robin by index would move ~3/4 of them; the ranking keeps most where they were.
    expect(moved).toBeLessThan(n / 2);
    // One leaving: its partitions go to the others, each keeping its share.
    const left = assignPartitions(['a', 'b', 'd'], n);
    expect([...left.values()].map((ps) => ps.length).sort()).toEqual([21, 21, 22]);
  });

  it('lease values carry the fencing token and the owner', () => {
    expect(leaseValue(17, 'host-1-abc')).toBe('17/host-1-abc');
    expect(parseLease('17/host-1-abc')).toEqual({ token: 17, owner: 'host-1-abc' });
    expect(parseLease('17/a/b')).toEqual({ token: 17, owner: 'a/b' });
    for (const bad of ['', '/x', 'x/y', '0/x', '-1/x', '1.5/x', 'nothing']) expect(parseLease(bad)).toBeUndefined();
  });

  it('bookkeeping keys: the fence counter shares the partition slot; members are one key; one consumer per partition', () => {
    for (let i = 0; i < 4; i++) {
      const key = partitionStreamKey('events', i, 4);
      expect(keySlot(partitionFenceKey('events', 'g', i, 4))).toBe(keySlot(key));
      expect(keySlot(partitionLeaseKey('events', 'g', i, 4))).toBe(keySlot(key));
    }
    expect(partitionFenceKey('events', 'g', 3, 4)).toBe('{events:p3}:fence:g');
    expect(partitionMembersKey('events', 'g')).toBe('{events}:members:g');
    expect(partitionConsumer('host-1', 3)).toBe('host-1-p3');
  });
});
