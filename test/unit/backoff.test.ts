import { describe, expect, it } from 'vitest';
import { backoffDelay, sleep } from '../../src/core/backoff.js';

describe('backoffDelay', () => {
  it('doubles from the base with jitter between half and the full ceiling', () => {
    expect(backoffDelay(0, { baseMs: 100, random: () => 0 })).toBe(50);
    expect(backoffDelay(0, { baseMs: 100, random: () => 1 })).toBe(100);
    expect(backoffDelay(3, { baseMs: 100, random: () => 1 })).toBe(800);
    expect(backoffDelay(3, { baseMs: 100, random: () => 0 })).toBe(400);
  });

  it('never exceeds the cap, even for huge attempt numbers', () => {
    for (const attempt of [10, 20, 100, 10_000]) {
      expect(backoffDelay(attempt, { baseMs: 100, maxMs: 5000, random: () => 1 })).toBe(5000);
    }
  });

  it('is never zero, so retries never spin', () => {
    expect(backoffDelay(0, { baseMs: 10, random: () => 0 })).toBeGreaterThan(0);
  });
});

describe('sleep', () => {
  it('returns at once when aborted', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const p = sleep(10_000, controller.signal);
    controller.abort();
    await p;
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
