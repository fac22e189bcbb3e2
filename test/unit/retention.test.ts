import { describe, expect, it } from 'vitest';
import {
  chooseCut,
  cutForMaxAge,
  groupKeepFrom,
  laterCut,
  MAX_SEQUENCE,
  nextStreamId,
  previousStreamId,
  safePointOf,
  type GroupTrimFacts,
} from '../../src/ops/retention.js';

const group = (name: string, lastDeliveredId: string, oldestPendingId: string | null = null): GroupTrimFacts => ({
  name,
  lastDeliveredId,
  oldestPendingId,
});

describe('stream ID neighbours', () => {
  it('steps to the next and previous ID, across the sequence limit', () => {
    expect(nextStreamId('5-3')).toBe('5-4');
    expect(nextStreamId('0-0')).toBe('0-1');
    expect(nextStreamId(`5-${MAX_SEQUENCE}`)).toBe('6-0');
    expect(nextStreamId('1700000000000')).toBe('1700000000000-1');
    expect(previousStreamId('5-3')).toBe('5-2');
    expect(previousStreamId('5-0')).toBe(`4-${MAX_SEQUENCE}`);
    expect(previousStreamId('0-1')).toBe('0-0');
    expect(previousStreamId('0-0')).toBeNull();
    // 64-bit sequences do not lose precision.
    expect(previousStreamId(`9007199254740993-${MAX_SEQUENCE}`)).toBe(`9007199254740993-${MAX_SEQUENCE - 1n}`);
  });
});

describe('what a group still needs', () => {
  it('is everything after its last delivered entry when nothing is pending', () => {
    expect(groupKeepFrom(group('g', '100-5'))).toBe('100-6');
  });

  it('is everything from its oldest pending entry on when something is', () => {
    expect(groupKeepFrom(group('g', '100-5', '90-0'))).toBe('90-0');
  });

  it('is the whole stream for a group that has read nothing', () => {
    expect(groupKeepFrom(group('fresh', '0-0'))).toBe('0-1');
  });
});

describe('the safe point', () => {
  it('is the furthest-behind group, by pending or by delivery', () => {
    expect(safePointOf([group('a', '200-0', '150-0'), group('b', '120-0'), group('c', '300-0', '250-1')])).toEqual({
      safePoint: '120-1',
      limitedBy: 'b',
    });
    expect(safePointOf([group('a', '200-0', '110-0'), group('b', '120-0')])).toEqual({ safePoint: '110-0', limitedBy: 'a' });
  });

  it('is absent without groups', () => {
    expect(safePointOf([])).toEqual({ safePoint: null, limitedBy: null });
  });

  it('compares IDs numerically, not as text', () => {
    expect(safePointOf([group('a', '99-0'), group('b', '100-0')]).limitedBy).toBe('a');
    expect(safePointOf([group('a', '5-10'), group('b', '5-9')]).limitedBy).toBe('b');
  });
});

describe('choosing the cut', () => {
  it('uses the requested cut when every group is past it', () => {
    expect(chooseCut('100-0', [group('a', '500-0'), group('b', '400-0', '300-0')])).toEqual({
      cut: '100-0',
      safePoint: '300-0',
      limitedBy: 'request',
    });
  });

  it('stops at the group that has not received or acknowledged beyond the safe point', () => {
    expect(chooseCut('1000-0', [group('a', '500-0'), group('b', '400-0', '300-0')])).toEqual({
      cut: '300-0',
      safePoint: '300-0',
      limitedBy: 'group:b',
    });
    expect(chooseCut('1000-0', [group('a', '500-0')])).toEqual({ cut: '500-1', safePoint: '500-1', limitedBy: 'group:a' });
  });

  it('never removes anything from a group that has read nothing', () => {
    const choice = chooseCut('1000-0', [group('busy', '900-0'), group('idle', '0-0')]);
    expect(choice).toEqual({ cut: '0-1', safePoint: '0-1', limitedBy: 'group:idle' });
  });

  it('a cut equal to the safe point is the request', () => {
    expect(chooseCut('300-0', [group('a', '400-0', '300-0')]).limitedBy).toBe('request');
  });

  it('trims as asked when the stream has no group, and nothing when nothing is asked', () => {
    expect(chooseCut('100-0', [])).toEqual({ cut: '100-0', safePoint: null, limitedBy: 'request' });
    expect(chooseCut(null, [group('a', '5-0')])).toEqual({ cut: null, safePoint: '5-1', limitedBy: 'request' });
  });
});

describe('requested cuts', () => {
  it('turns a maximum age into a MINID', () => {
    expect(cutForMaxAge(7 * 86_400_000, Date.parse('2026-11-22T00:00:00Z'))).toBe(`${Date.parse('2026-11-15T00:00:00Z')}-0`);
    expect(cutForMaxAge(10_000, 5_000)).toBe('0-0');
  });

  it('with both a length and an age, keeps what satisfies both (the later cut)', () => {
    expect(laterCut('100-0', '99-5')).toBe('100-0');
    expect(laterCut(null, '99-5')).toBe('99-5');
    expect(laterCut('7-0', null)).toBe('7-0');
    expect(laterCut(null, null)).toBeNull();
  });
});
