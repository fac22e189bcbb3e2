import { describe, expect, it } from 'vitest';
import type { IngestBenchFigures } from '../../src/bench/ingest.js';
import { benchReadmeSection } from '../../src/bench/report.js';
import { buildResult } from '../../src/bench/result.js';

const machine = { cores: 2, cpu: 'cpu', memoryGiB: 8, node: 'v20', redis: '7.0', postgres: '15', loadAvg1: 0.5 };
const figures = (eventsPerSec: number): IngestBenchFigures => ({
  seconds: 30,
  eventsPerRequest: 500,
  connections: 8,
  inEngine: false,
  requests: 100,
  statuses: { '202': 99, '429': 1 },
  acceptedEvents: 49_500,
  eventsPerSec,
  requestsPerSec: 3,
  latencyMs: { samples: 100, p50: 10, p95: 20, p99: 33.3, max: 40, mean: 12 },
  writtenDuringLoad: 49_000,
  writtenPerSecDuringLoad: 1633,
  caughtUpSecs: 0.5,
  acceptedTotal: 50_000,
  rows: 50_000,
  cpu: { serverSecs: 1, engineSecs: 2, redisSecs: 3, postgresSecs: 4, hostBusyPct: 90 },
});

describe('bench report: HTTP ingest', () => {
  it('lists every ingest run and judges the latest 500-event run against 50,000 events/s', () => {
    const files = [
      { file: 'ingest-a.json', result: buildResult('ingest', { at: '2026-12-05T06:00:00.000Z', machine, settings: {}, figures: figures(40_000) }) },
      { file: 'ingest-b.json', result: buildResult('ingest', { at: '2026-12-05T06:40:00.000Z', machine, settings: {}, figures: figures(61_000) }) },
    ];
    const section = benchReadmeSection(files as never, 'bench/results', { numWorkers: 5, batchSize: 500, batchTimeoutMs: 2000, xreadCount: 500 });
    expect(section).toContain('**HTTP ingest**');
    expect(section).toMatch(/\| \[ingest-a\.json\]\(bench\/results\/ingest-a\.json\) \| 30 s, 8 conn × 500 events \| 40,000 \|/);
    const summaries = section.split('\n').filter((l) => l.startsWith('| HTTP ingest'));
    expect(summaries).toHaveLength(1); // one layout: serve and start apart
    const summary = summaries[0];
    expect(summary).toContain('61,000 events/s accepted (1,633/s written meanwhile); p99 33.3 ms');
    expect(summary).toContain('| yes |');
    expect(summary).toContain('ingest-b.json');
  });
});
