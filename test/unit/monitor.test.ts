import { describe, expect, it } from 'vitest';
import {
  batchInterval,
  formatMonitor,
  groupLag,
  monitorWarnings,
  MONITOR_HISTORY,
  parseBatchCounters,
  pushHistory,
  ratePerSec,
  sparkline,
  truncateLine,
  visibleLength,
  type MonitorSnapshot,
} from '../../src/observability/monitor.js';
import type { GroupInfo, StreamInfo } from '../../src/redis/xinfo.js';

function snapshot(overrides: Partial<MonitorSnapshot> = {}): MonitorSnapshot {
  return {
    version: 1,
    takenAt: '2026-11-22T15:56:27.935Z',
    intervalMs: 5000,
    stream: {
      key: 'events',
      exists: true,
      length: 1523,
      entriesAdded: 10_000,
      lastGeneratedId: '1795364664659-0',
      firstEntryId: '1795364600000-0',
      lastEntryId: '1795364664659-0',
      group: 'tributary',
      pending: 12,
      lag: 40,
    },
    groups: [
      {
        name: 'tributary',
        configured: true,
        consumerCount: 2,
        pending: 12,
        lastDeliveredId: '1795364664000-0',
        entriesRead: 9960,
        lag: 40,
        lagSource: 'redis',
        consumers: [
          { name: 'host-1', pending: 12, idleMs: 75_000 },
          { name: 'host-2', pending: 0, idleMs: 120 },
        ],
      },
      {
        name: 'audit',
        configured: false,
        consumerCount: 0,
        pending: 0,
        lastDeliveredId: '0-0',
        entriesRead: null,
        lag: 20_000,
        lagSource: 'computed',
        consumers: [],
      },
    ],
    deadLetters: { stream: 'events:dead', streamLength: 3, rows: 3, growing: true },
    postgres: {
      table: 'public.events',
      tableExists: true,
      events: 8477,
      eventsEstimated: false,
      eventsLastMinute: 1000,
      tableBytes: 1_286_144,
      tableSize: '1256 kB',
      dbTime: '2026-11-22T15:56:27.900Z',
    },
    eventsByType: [
      { type: 'order_placed', count: 1243 },
      { type: 'user_created', count: 1189 },
    ],
    eventsByTypeEstimated: false,
    latencyMs: { p50: 30.8, p99: 69.4, max: 80, samples: 1000 },
    rates: { producedPerSec: 200.5, writtenPerSec: 198, history: { produced: [0, 100, 200.5], written: [0, 90, 198] } },
    batches: {
      published: true,
      key: 'tributary:stats:events:tributary',
      batches: 120,
      rows: 5000,
      avgSize: 41.7,
      flushReasons: { caught_up: 107, time: 10, size: 3 },
      interval: { batches: 4, rows: 160, avgSize: 40, flushReasons: { caught_up: 4 } },
    },
    warnings: [],
    ...overrides,
  };
}

const group = (o: Partial<GroupInfo>): GroupInfo => ({
  name: 'g',
  consumers: 1,
  pending: 0,
  lastDeliveredId: '0-0',
  entriesRead: null,
  lag: null,
  ...o,
});
const stream = (o: Partial<StreamInfo>): StreamInfo => ({
  length: 100,
  lastGeneratedId: '500-0',
  entriesAdded: 150,
  maxDeletedEntryId: '0-0',
  firstEntryId: '401-0',
  lastEntryId: '500-0',
  groups: 1,
  ...o,
});

describe('group lag', () => {
  it('takes what Redis reports', () => {
    expect(groupLag(group({ lag: 7 }), stream({}))).toEqual({ lag: 7, source: 'redis' });
  });

  it('computes it when Redis reports nil: caught up, behind the first entry, or from counters', () => {
    expect(groupLag(group({ lastDeliveredId: '500-0' }), stream({}))).toEqual({ lag: 0, source: 'computed' });
    expect(groupLag(group({ lastDeliveredId: '300-0' }), stream({}))).toEqual({ lag: 100, source: 'computed' });
    expect(groupLag(group({ lastDeliveredId: '450-0', entriesRead: 120 }), stream({}))).toEqual({ lag: 30, source: 'estimated' });
    expect(groupLag(group({ lastDeliveredId: '450-0' }), stream({}))).toEqual({ lag: null, source: 'unknown' });
    expect(groupLag(group({ lastDeliveredId: '450-0' }), stream({ length: 0, firstEntryId: null }))).toEqual({ lag: 0, source: 'computed' });
  });
});

describe('rates and history', () => {
  it('rates a counter per second, unknown when it went back', () => {
    expect(ratePerSec(100, 600, 5000)).toBe(100);
    expect(ratePerSec(100, 101, 3000)).toBe(0.3);
    expect(ratePerSec(null, 600, 5000)).toBeNull();
    expect(ratePerSec(600, 100, 5000)).toBeNull();
    expect(ratePerSec(1, 2, null)).toBeNull();
  });

  it('keeps the last samples', () => {
    let h: number[] = [];
    for (let i = 0; i < 40; i++) h = pushHistory(h, i);
    expect(h).toHaveLength(MONITOR_HISTORY);
    expect(h[0]).toBe(40 - MONITOR_HISTORY);
    expect(pushHistory(h, null)).toEqual(h);
  });

  it('draws sparklines scaled to the maximum', () => {
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7])).toBe('▁▂▃▄▅▆▇█');
    expect(sparkline([0, 0])).toBe('▁▁');
    expect(sparkline([])).toBe('');
  });
});

describe('engine batch counters', () => {
  it('reads the stats hash and the change since the last reading', () => {
    const now = parseBatchCounters(['batches', '10', 'rows', '450', 'flush:size', '2', 'flush:caught_up', '8']);
    expect(now).toEqual({ published: true, batches: 10, rows: 450, avgSize: 45, flushReasons: { size: 2, caught_up: 8 } });
    expect(parseBatchCounters([])).toMatchObject({ published: false, batches: 0, avgSize: null });
    const before = { batches: 6, rows: 250, avgSize: null, flushReasons: { caught_up: 6 } };
    expect(batchInterval(before, now)).toEqual({ batches: 4, rows: 200, avgSize: 50, flushReasons: { size: 2, caught_up: 2 } });
    expect(batchInterval({ ...before, batches: 11 }, now)).toBeNull(); // reset
    expect(batchInterval(undefined, now)).toBeNull();
  });
});

describe('warnings', () => {
  it('flags lag, growing dead letters and idle consumers holding entries', () => {
    const { warnings: _, ...s } = snapshot();
    const w = monitorWarnings(s, { lagWarning: 10_000, idleWarningMs: 60_000 });
    expect(w.map((x) => x.kind).sort()).toEqual(['consumer_idle', 'dead_letters_growing', 'lag']);
    expect(w.find((x) => x.kind === 'lag')).toMatchObject({ group: 'audit' });
    expect(w.find((x) => x.kind === 'consumer_idle')).toMatchObject({ group: 'tributary', consumer: 'host-1' });
    expect(monitorWarnings(s, { lagWarning: 50_000, idleWarningMs: 100_000 }).map((x) => x.kind)).toEqual(['dead_letters_growing']);
  });

  it('a missing events table is a warning, unless the snapshot was told not to read it (a stream whose rows go elsewhere)', () => {
    const { warnings: _, ...s } = snapshot();
    const missing = { ...s, postgres: { ...s.postgres, tableExists: false } };
    expect(monitorWarnings(missing, { lagWarning: 1e9, idleWarningMs: 1e9 }).map((x) => x.kind)).toContain('table_missing');
    expect(monitorWarnings(missing, { lagWarning: 1e9, idleWarningMs: 1e9, eventsTable: false }).map((x) => x.kind)).not.toContain('table_missing');
  });
});

describe('formatMonitor', () => {
  const s = snapshot();
  const full = { ...s, warnings: monitorWarnings(s) };

  it('shows what the original dashboard showed, with its labels', () => {
    const text = formatMonitor(full, { color: false });
    for (const line of [
      'STREAMING PIPELINE DASHBOARD',
      'Redis Streams:',
      '  Stream Length: 1523',
      '  Pending Messages: 12',
      '  DLQ Length: 3',
      '  Total Events: 8477',
      '  Events (last minute): 1000',
      '  DLQ Count: 3',
      '  Table Size: 1256 kB',
      '  Events by Type:',
      '    order_placed: 1243',
    ]) {
      expect(text).toContain(line);
    }
  });

  it('adds groups, consumers, rates, latency, batches and warnings', () => {
    const text = formatMonitor(full, { color: false });
    expect(text).toMatch(/tributary\*\s+40\s+12\s+2\s+1795364664000-0/);
    expect(text).toMatch(/audit\s+20000\s+0\s+0\s+0-0/);
    expect(text).toContain('- host-1: pending 12, idle 1 m 15 s');
    expect(text).toMatch(/Produced: 200\.5\/s\s+▁▄█/);
    expect(text).toMatch(/Written:\s+198\.0\/s\s+▁▄█/);
    expect(text).toContain('p50 30.8 ms, p99 69.4 ms');
    expect(text).toContain('Flush reasons: caught_up 107, time 10, size 3');
    expect(text).toContain('Last interval: 4 batches, avg 40 per batch (caught_up 4)');
    expect(text).toContain('! group audit: lag 20000 is above 10000');
    expect(text).toContain('! dead letters are growing');
  });

  it('has no escape codes without colour, and colours warnings with it', () => {
    expect(formatMonitor(full, { color: false })).not.toContain('\x1b');
    const coloured = formatMonitor(full, { color: true });
    expect(coloured).toContain('\x1b[31m  ! group audit: lag 20000 is above 10000\x1b[0m');
    expect(coloured).toContain('\x1b[33m    - host-1: pending 12, idle 1 m 15 s\x1b[0m');
  });

  it('marks estimates with ~ and says when the engine does not publish batches', () => {
    const text = formatMonitor(
      {
        ...full,
        postgres: { ...full.postgres, events: 2_500_000, eventsEstimated: true },
        eventsByTypeEstimated: true,
        batches: { ...full.batches, published: false, interval: null },
      },
      { color: false },
    );
    expect(text).toContain('Total Events: ~2500000');
    expect(text).toContain('order_placed: ~1243');
    expect(text).toContain('(not published by the engine)');
  });

  it('fits a width and a height, keeping the footer', () => {
    const text = formatMonitor(full, { color: true, width: 40, height: 20, footer: 'q quits' });
    const lines = text.split('\n');
    expect(lines).toHaveLength(20);
    expect(lines.at(-1)).toBe('q quits');
    expect(lines.at(-2)).toMatch(/more lines/);
    for (const l of lines) expect(visibleLength(l)).toBeLessThanOrEqual(40);
  });

  it('cuts coloured lines without breaking escape sequences', () => {
    const cut = truncateLine('\x1b[31mabcdefghij\x1b[0m', 5);
    expect(visibleLength(cut)).toBe(5);
    expect(cut).toBe('\x1b[31mabcd…\x1b[0m');
    expect(truncateLine('short', 10)).toBe('short');
  });
});
