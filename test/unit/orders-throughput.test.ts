import { describe, expect, it } from 'vitest';
import { throughputWindowSecs } from '../../src/orders/stats.js';

// Slots are 10 s; six of them (the current one and five before it).
const now = 1_000_000_000_000 + 7_500; // 7.5 s into its slot
const current = Math.floor(now / 10_000) * 10_000;

describe('orders stats throughput window', () => {
  it('right after a short run: from its first commit, not the last minute', () => {
    expect(throughputWindowSecs(now, [2000, 0, 0, 0, 0, 0], [now - 1200, null, null, null, null, null])).toBeCloseTo(1.2);
    // The run began in the slot before: from its first commit there.
    expect(throughputWindowSecs(now, [500, 800, 0, 0, 0, 0], [current + 1, current - 2_000, null, null, null, null])).toBeCloseTo(9.5);
  });

  it('busy since before the window, or idle: the whole window (50 s plus the current slot so far)', () => {
    expect(throughputWindowSecs(now, [1, 1, 1, 1, 1, 1], [now - 10, null, null, null, null, current - 50_000 + 3])).toBeCloseTo(57.5);
    expect(throughputWindowSecs(now, [0, 0, 0, 0, 0, 0], [null, null, null, null, null, null])).toBeCloseTo(57.5);
  });

  it('a slot without its first-commit time counts from the slot start; never under one second', () => {
    expect(throughputWindowSecs(now, [0, 10, 0, 0, 0, 0], [null, null, null, null, null, null])).toBeCloseTo(17.5);
    expect(throughputWindowSecs(now, [10, 0, 0, 0, 0, 0], [now - 5, null, null, null, null, null])).toBe(1);
  });
});
