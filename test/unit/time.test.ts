import { describe, expect, it } from 'vitest';
import { parseDuration, parseStreamPoint, parseTime, streamIdTime } from '../../src/ops/time.js';

describe('time and stream points', () => {
  it('parses durations', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('12h')).toBe(43_200_000);
    expect(parseDuration('7d')).toBe(604_800_000);
  });

  it.each(['', '7', '7 days', '-1d', '1.5h', 'd'])('rejects duration %j with a coded error', (text) => {
    expect(() => parseDuration(text, '--max-age')).toThrow(expect.objectContaining({ code: 'TRIB_ERR_CONFIG_INVALID', message: expect.stringContaining('--max-age') }));
  });

  it('turns IDs, ISO times and durations ago into stream IDs', () => {
    const now = Date.parse('2026-11-22T12:00:00Z');
    expect(parseStreamPoint('1700000000000-5')).toBe('1700000000000-5');
    expect(parseStreamPoint('1700000000000')).toBe('1700000000000-0');
    expect(parseStreamPoint('2026-11-22T10:00:00Z')).toBe(`${Date.parse('2026-11-22T10:00:00Z')}-0`);
    expect(parseStreamPoint('15m', 'from', now)).toBe(`${now - 900_000}-0`);
    expect(() => parseStreamPoint('yesterday', '--from')).toThrow(/--from/);
    expect(parseTime('1d', 'since', now).toISOString()).toBe('2026-11-21T12:00:00.000Z');
    expect(() => parseTime('soon', '--since')).toThrow(/--since/);
    expect(streamIdTime('1700000000000-5')).toBe(1700000000000);
  });
});
