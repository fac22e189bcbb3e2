import { describe, expect, it } from 'vitest';
import { parseOriginalDrain, median } from '../../src/bench/compare-original.js';
import { externalEventId, externalPayload, externalXadd, parsePipeReport } from '../../src/bench/external.js';
import { TailRecorder, timeline } from '../../src/bench/tail.js';
import type { BatchReport } from '../../src/core/runner.js';

/** RESP array of bulk strings → its strings. */
function decode(resp: string): string[] {
  const lines = resp.split('\r\n');
  const n = Number(lines[0]!.slice(1));
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(lines[2 + 2 * i]!);
  expect(lines[1 + 2 * (n - 1)]).toBe(`$${Buffer.byteLength(out[n - 1]!)}`);
  return out;
}

describe('the outside producer', () => {
  it('writes XADDs with the fields in another order than ours, and each id shape', () => {
    const v7 = decode(externalXadd('s', 7, 'uuidv7', 1_700_000_000_000));
    expect(v7.slice(0, 3)).toEqual(['XADD', 's', '*']);
    expect(v7[3]).toBe('payload');
    expect(v7.slice(5)).toEqual(['event_id', expect.stringMatching(/^[0-9a-f-]{36}$/), 'produced_at', '1700000000000', 'event_type', 'purchase']);
    expect(externalEventId(1, 'uuidv4')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4/);
    expect(externalEventId(42, 'sequential')).toBe('evt-0000000042');
    const none = decode(externalXadd('s', 1, 'none', 1_700_000_000_500));
    expect(none.slice(3)).toEqual(['event_type', 'click', 'payload', expect.any(String), 'timestamp', '1700000000.5']);
  });

  it('payloads are 100 to 250 bytes of JSON', () => {
    for (let i = 0; i < 500; i++) {
      const p = externalPayload(i);
      expect(p.length).toBeGreaterThanOrEqual(100);
      expect(p.length).toBeLessThanOrEqual(250);
      expect(JSON.parse(p).seq).toBe(i);
    }
  });

  it('reads redis-cli --pipe and bench_drain.sh reports', () => {
    expect(parsePipeReport('All data transferred.\nLast reply received from server.\nerrors: 0, replies: 300000\n')).toEqual({ errors: 0, replies: 300000 });
    expect(parsePipeReport('Could not connect')).toBeUndefined();
    expect(parseOriginalDrain('x\ndrain_events_per_s=25712.4 n=300000 drain_s=11.667\n')).toEqual({ eventsPerSec: 25712.4, drainSecs: 11.667 });
    expect(parseOriginalDrain('timeout at 5/10')).toBeUndefined();
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });
});

describe('the tail recorder', () => {
  it('summarises batches: reasons, phases, the slowest first', () => {
    const t = new TailRecorder();
    const report = (size: number, reason: string, write: number, oldestAgo: number): BatchReport =>
      ({ consumer: 'c', reason, size, bytes: 0, written: size, duplicates: 0, deadLettered: 0, skipped: 0, writeMs: write, statements: 1, timings: { read: 1, write, ack: 0.5 }, retries: 0, producedAt: [1000 - oldestAgo, 1000], committedAt: 1000 }) as BatchReport;
    t.batch(report(10, 'caught_up', 2, 5));
    t.batch(report(500, 'size', 40, 80));
    t.batch(report(3, 'caught_up', 1, 3));
    const f = t.stop();
    expect(f.batches).toBe(3);
    expect(f.flushReasons).toEqual({ caught_up: 2, size: 1 });
    expect(f.slowest[0]).toMatchObject({ events: 500, reason: 'size', writeMs: 40, latencyMs: 80 });
    expect(f.writeMs.max).toBe(40);
    expect(f.timeline.reduce((n, r) => n + r[1], 0)).toBe(3);
    expect(f.timeline.reduce((n, r) => n + r[2], 0)).toBe(513);
    expect(f.checkpoints).toBeNull(); // no server counters given
  });

  it('lays the run out second by second and marks slow batches that line up with a checkpoint', () => {
    const rows = timeline(
      [
        [100, 10, 'caught_up', 1, 2, 0.5, 4],
        [900, 5, 'caught_up', 1, 3, 0.5, 6],
        [2500, 500, 'size', 1, 120, 0.5, 130],
      ],
      [[2400, 12.5, false]],
      [
        [1000, 0, 0],
        [2000, 1, 0],
        [3000, 0, 180.2],
      ],
    );
    expect(rows).toEqual([
      [0, 2, 15, 6, 3, 0, 0, 0],
      [2, 1, 500, 130, 120, 12.5, 1, 0],
      [3, 0, 0, 0, 0, 0, 0, 180.2],
    ]);
  });
});
