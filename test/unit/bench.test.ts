import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { copyTextField, copyTextLine, eventCopyLine } from '../../src/bench/copy.js';
import {
  ceilingResults,
  completedLine,
  drainResults,
  produceCpu,
  produceResults,
  progressBar,
  progressMarks,
  producedLine,
  RULE,
  rateHeader,
  rateResults,
  sweepResults,
} from '../../src/bench/format.js';
import { postgresCpuDelta, statCpuTicks } from '../../src/bench/machine.js';
import { areaOf, summarizeCpuProfile, type CpuProfile } from '../../src/bench/profile.js';
import { benchReadmeSection, drainGridTable } from '../../src/bench/report.js';
import { newestSitting, performanceSummary } from '../../src/bench/summary.js';
import {
  buildResult,
  fileTimestamp,
  readResults,
  resultFileName,
  writeResult,
  type BenchResult,
  type CeilingFigures,
  type DrainFigures,
  type MachineFacts,
  type RateFigures,
  type SweepPoint,
} from '../../src/bench/result.js';
import { percentile, ratePerSec, summarizeLatencies } from '../../src/bench/stats.js';
import { escapeXml, niceStep, renderBarChart } from '../../src/bench/svg.js';
import { sweepChartName, sweepCharts } from '../../src/bench/sweep.js';
import { benchConfig, configEnv } from '../../src/bench/workspace.js';
import { parseIntList } from '../../src/cli/commands/bench.js';
import { resolveConfig } from '../../src/config/index.js';

const machine: MachineFacts = { cores: 2, cpu: 'AMD EPYC', memoryGiB: 24, node: 'v20.20.2', redis: '7.0.15', postgres: '15.20 (Debian 15.20-0+deb12u1)' };

const drainFigures = (over: Partial<DrainFigures> = {}): DrainFigures => ({
  rows: 100_000,
  pendingAfter: 0,
  loadEventsPerSec: 80_000,
  drainWallSecs: 2.5,
  drainEventsPerSec: 40_000,
  ingestSpanSecs: 1.6,
  ingestEventsPerSec: 62_500,
  enginePeakRssMiB: 170,
  engineStartupSecs: 0.6,
  afterStartSecs: 1.9,
  afterStartEventsPerSec: 52_632,
  deadLetters: 0,
  cpu: { engineSecs: 2.1, redisSecs: 0.3, postgresSecs: 1.4, hostBusyPct: 90 },
  ...over,
});

const rateFigures = (withEngine: boolean): RateFigures => ({
  totalEvents: 600_000,
  elapsedSecs: 60.02,
  actualRate: 9996.67,
  targetRate: 10_000,
  accuracyPct: 99.97,
  ...(withEngine
    ? {
        engine: {
          written: 600_000,
          deadLetters: 0,
          latencyMs: { samples: 600_000, p50: 12.3, p95: 25.5, p99: 40.1, max: 120.7, mean: 14 },
          finalLag: { lag: 0, pending: 100 },
          maxLagSeen: { lag: 300, pending: 1500, backlog: 1600 },
          caughtUpSecs: 0.05,
          lagSamples: [[250, 0, 100]],
        },
      }
    : {}),
});

const ceilingFigures: CeilingFigures = {
  postgresCopySecs: 0.6,
  postgresCopyEventsPerSec: 166_667,
  sinkWriteSecs: 0.7,
  sinkWriteEventsPerSec: 142_857,
  redisXaddSecs: 0.5,
  redisXaddEventsPerSec: 200_000,
  redisReadAckSecs: 0.55,
  redisReadAckEventsPerSec: 181_818,
  produce: { events: 100_000, batch: 1000, concurrency: 1, elapsedSecs: 0.7, eventsPerSec: 142_857 },
  drain: drainFigures(),
  ceilingEventsPerSec: 166_667,
  drainFractionOfCeiling: 0.24,
  steadyFractionOfCeiling: 0.375,
};

const sweepPoints: SweepPoint[] = [
  { setting: 'numWorkers', value: 1, numWorkers: 1, batchSize: 500, figures: drainFigures({ drainEventsPerSec: 21_000 }) },
  { setting: 'numWorkers', value: 5, numWorkers: 5, batchSize: 500, figures: drainFigures({ drainEventsPerSec: 40_000 }) },
  { setting: 'batchSize', value: 100, numWorkers: 5, batchSize: 100, figures: drainFigures({ drainEventsPerSec: 30_500 }) },
  { setting: 'batchSize', value: 5000, numWorkers: 5, batchSize: 5000, figures: drainFigures({ drainEventsPerSec: 45_250 }) },
];

describe('percentile (linear interpolation, as percentile_cont)', () => {
  const oneToHundred = Array.from({ length: 100 }, (_, i) => i + 1);

  it('interpolates between the nearest ranks', () => {
    expect(percentile(oneToHundred, 0.5)).toBe(50.5);
    expect(percentile(oneToHundred, 0.95)).toBeCloseTo(95.05, 10);
    expect(percentile(oneToHundred, 0.99)).toBeCloseTo(99.01, 10);
    expect(percentile([10, 20], 0.25)).toBe(12.5);
  });

  it('p0 is the minimum and p100 the maximum; one value is every percentile', () => {
    expect(percentile(oneToHundred, 0)).toBe(1);
    expect(percentile(oneToHundred, 1)).toBe(100);
    expect(percentile([7], 0.99)).toBe(7);
  });

  it('is null for no values and rejects p outside [0, 1]', () => {
    expect(percentile([], 0.5)).toBeNull();
    expect(() => percentile([1], 1.5)).toThrow(RangeError);
    expect(() => percentile([1], Number.NaN)).toThrow(RangeError);
  });

  it('summarizeLatencies sorts a copy and reports p50/p95/p99/max/mean', () => {
    const values = [...oneToHundred].reverse();
    const s = summarizeLatencies(values);
    expect(s).toEqual({ samples: 100, p50: 50.5, p95: 95.1, p99: 99, max: 100, mean: 50.5 });
    expect(values[0]).toBe(100); // not sorted in place
    expect(summarizeLatencies([])).toEqual({ samples: 0, p50: null, p95: null, p99: null, max: null, mean: null });
  });

  it('ratePerSec rounds and survives zero time', () => {
    expect(ratePerSec(100_000, 2.5)).toBe(40_000);
    expect(ratePerSec(10, 0)).toBe(0);
  });
});

/** Every tag closed in order (a small well-formedness check: no XML parser needed). */
function expectWellFormed(svg: string): void {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing) continue;
    if (closing) expect(stack.pop(), `closing </${name}>`).toBe(name);
    else stack.push(name!);
  }
  expect(stack).toEqual([]);
  expect(svg.replace(/&(amp|lt|gt|quot|apos);/g, '')).not.toMatch(/&/);
}

describe('SVG bar chart', () => {
  const svg = renderBarChart({
    title: 'Drain rate by NUM_WORKERS',
    subtitle: '100,000 events',
    xLabel: 'NUM_WORKERS',
    yLabel: 'events/s',
    categories: ['1', '5', '20'],
    series: [{ name: 'drain', values: [21_000, 40_000, 38_765] }],
  });
  const twoSeries = renderBarChart({
    title: 't',
    xLabel: 'BATCH_SIZE',
    yLabel: 'events/s',
    categories: ['100', '500'],
    series: [
      { name: 'drain', values: [30_000, 37_000] },
      { name: 'steady', values: [41_000, 55_483] },
    ],
  });

  it('is one well-formed svg element', () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expectWellFormed(svg);
  });

  it('writes every value, label and axis title', () => {
    for (const text of ['>21,000<', '>40,000<', '>38,765<', '>1<', '>5<', '>20<', '>NUM_WORKERS<', '>events/s<', '>Drain rate by NUM_WORKERS<', '>100,000 events<']) {
      expect(svg).toContain(text);
    }
    expect(svg.match(/<rect [^>]*fill="#4a78b5"/g)).toHaveLength(3);
    expect(svg).not.toContain('>drain<'); // one series: no legend
  });

  it('several series: grouped bars in the palette colours, every value, and a legend', () => {
    expectWellFormed(twoSeries);
    expect(twoSeries.match(/<rect [^>]*fill="#4a78b5"><title>/g)).toHaveLength(2);
    expect(twoSeries.match(/<rect [^>]*fill="#e08a2c"><title>/g)).toHaveLength(2);
    for (const text of ['>30,000<', '>37,000<', '>41,000<', '>55,483<', '>drain<', '>steady<', '>100<', '>500<']) expect(twoSeries).toContain(text);
    expect(twoSeries).toContain('<title>500, steady: 55,483</title>');
  });

  it('the tallest bar reaches at most the top of the axis; bar heights follow the values', () => {
    const heights = [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" fill="#4a78b5"/g)].map((m) => Number(m[1]));
    expect(heights[1]! / heights[0]!).toBeCloseTo(40_000 / 21_000, 1);
    expect(Math.max(...heights)).toBeLessThanOrEqual(420 - 64 - 64);
  });

  it('escapes text and copes with no points or zero values', () => {
    expect(escapeXml(`a<b & "c" 'd'>`)).toBe('a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;');
    const odd = renderBarChart({ title: 'x < y & z', xLabel: 'x', yLabel: 'y', categories: ['<0>', 'missing'], series: [{ name: 'a&b', values: [0] }] });
    expectWellFormed(odd);
    expect(odd).toContain('x &lt; y &amp; z');
    expect(odd).toContain('>&lt;0&gt;<');
    expect(odd).toContain('>–<'); // a category without a value
    expectWellFormed(renderBarChart({ title: 't', xLabel: 'x', yLabel: 'y', categories: [], series: [] }));
  });

  it('niceStep picks 1, 2 or 5 × 10^k', () => {
    expect(niceStep(40_000)).toBe(10_000);
    expect(niceStep(45_250)).toBe(10_000);
    expect(niceStep(9)).toBe(2);
    expect(niceStep(0)).toBe(1);
    expect(niceStep(1_000_000)).toBe(200_000);
  });

  it('a sweep draws one chart per setting, named after the result', () => {
    const charts = sweepCharts(sweepPoints, 100_000, machine);
    expect(charts.map((c) => c.setting)).toEqual(['numWorkers', 'batchSize']);
    expect(charts[1]!.svg).toContain('>45,250<');
    expect(charts[1]!.svg).toContain('>62,500<'); // the steady rate beside it
    expect(charts[1]!.svg).toContain('steady write rate');
    expect(charts[1]!.svg).toContain('BATCH_SIZE');
    expect(sweepChartName('2026-11-22T15-56-27-935Z', 'batchSize')).toBe('sweep-2026-11-22T15-56-27-935Z-batch-size.svg');
  });
});

describe('report formatting', () => {
  it('the rate header has the familiar block', () => {
    expect(rateHeader(10_000, 60).split('\n')).toEqual([
      RULE,
      'STREAMING BENCHMARK',
      RULE,
      'Target Rate: 10000 events/sec',
      'Duration: 60 seconds',
      'Expected Total: 600000 events',
      RULE,
    ]);
  });

  it('progress: a line per 1,000 events passed, or a bar on a terminal', () => {
    expect(progressMarks(0, 999)).toEqual([]);
    expect(progressMarks(900, 3100)).toEqual([1000, 2000, 3000]);
    expect(progressMarks(1000, 1500)).toEqual([]);
    expect(producedLine(2000)).toBe('Produced 2000 events...');
    expect(completedLine(600_000)).toBe('Completed: 600000 total events produced');
    expect(progressBar(300, 600, 10)).toBe('[#####-----] 300/600 events (50.0%)');
    expect(progressBar(700, 600, 4)).toBe('[####] 700/600 events (100.0%)');
  });

  it('BENCHMARK RESULTS has the exact labels', () => {
    const lines = rateResults(rateFigures(false)).split('\n');
    expect(lines).toEqual([
      RULE,
      'BENCHMARK RESULTS',
      RULE,
      'Total Events: 600000',
      'Elapsed Time: 60.02 seconds',
      'Actual Rate: 9996.67 events/sec',
      'Target Rate: 10000 events/sec',
      'Accuracy: 99.97%',
      RULE,
    ]);
  });

  it('with the engine it adds latency percentiles and lag', () => {
    const text = rateResults(rateFigures(true), { numWorkers: 5, batchSize: 500 });
    for (const line of [
      'Accuracy: 99.97%',
      'Engine: 5 workers, batch 500, in-process',
      'Events Written: 600000',
      'Latency p50: 12.3 ms',
      'Latency p95: 25.5 ms',
      'Latency p99: 40.1 ms',
      'Latency max: 120.7 ms',
      'Final Lag: 0 undelivered, 100 pending',
      'Max Lag Seen: 1600 events (300 undelivered, 1500 pending)',
      'Caught Up: 0.05 seconds after the last event was produced',
    ]) {
      expect(text.split('\n')).toContain(line);
    }
  });

  it('drain, ceiling, produce and sweep results name their figures', () => {
    const drain = drainResults(drainFigures(), { count: 100_000, numWorkers: 5, batchSize: 500 });
    for (const s of ['DRAIN RESULTS', 'Drain Rate: 40000 events/sec', 'Steady Write Rate: 62500 events/sec', 'Engine Peak RSS: 170 MiB', 'CPU: engine 2.1 s, postgres 1.4 s, redis 0.3 s; all cores 90% busy', 'Pending After: 0']) {
      expect(drain).toContain(s);
    }
    const ceiling = ceilingResults(ceilingFigures, 100_000);
    for (const s of ['CEILING RESULTS', 'Postgres COPY: 166667 events/sec', 'Redis XADD: 200000 events/sec', 'Redis XREADGROUP+XACK: 181818 events/sec', 'produceBatch: 142857 events/sec', 'Drain / Ceiling: 24.0% (steady: 37.5%)']) {
      expect(ceiling).toContain(s);
    }
    expect(produceResults(ceilingFigures.produce)).toContain('Rate: 142857 events/sec');
    const sweep = sweepResults(sweepPoints, 100_000);
    expect(sweep).toContain('NUM_WORKERS (batch 500)');
    expect(sweep).toContain('BATCH_SIZE (5 workers)');
    expect(sweep).toMatch(/ {2}5000: 45250 events\/sec/);
  });
});

describe('result files', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('buildResult has a fixed shape; the file is named <bench>-<timestamp>.json', () => {
    const r = buildResult('drain', { at: new Date('2026-11-22T15:56:27.935Z'), machine, settings: { count: 10 }, figures: drainFigures(), wallSecs: 3.14159 });
    expect(Object.keys(r)).toEqual(['bench', 'version', 'at', 'machine', 'settings', 'figures', 'wallSecs']);
    expect(r).toMatchObject({ bench: 'drain', version: 1, at: '2026-11-22T15:56:27.935Z', wallSecs: 3.142 });
    expect(fileTimestamp(r.at)).toBe('2026-11-22T15-56-27-935Z');
    expect(resultFileName('sweep', r.at)).toBe('sweep-2026-11-22T15-56-27-935Z.json');
    expect(buildResult('sweep', { at: r.at, machine, settings: {}, figures: { points: [] }, files: ['a.svg'] }).files).toEqual(['a.svg']);
  });

  it('written and read back, oldest first; the first drain files (no version) read as version 1', () => {
    dir = mkdtempSync(join(tmpdir(), 'bench-results-'));
    const later = buildResult('rate', { at: '2026-11-22T17:00:00.000Z', machine, settings: { durationSecs: 60 }, figures: rateFigures(true) });
    const path = writeResult(dir, later, [{ name: 'x.svg', content: '<svg/>' }]);
    expect(path).toBe(join(dir, 'rate-2026-11-22T17-00-00-000Z.json'));
    const legacy = { bench: 'drain', at: '2026-11-22T15:56:27.935Z', machine, settings: { count: 100000, numWorkers: 5, batchSize: 500 }, figures: drainFigures({ cpu: undefined }) };
    writeFileSync(join(dir, 'drain-2026-11-22T15-56-27-935Z.json'), JSON.stringify(legacy));
    writeFileSync(join(dir, 'notes.txt'), 'not a result');
    const read = readResults(dir);
    expect(read.map((r) => r.file)).toEqual(['drain-2026-11-22T15-56-27-935Z.json', 'rate-2026-11-22T17-00-00-000Z.json']);
    expect(read[0]!.result.version).toBe(1);
    expect(read[1]!.result).toEqual(later);
    expect(readResults(join(dir, 'missing'))).toEqual([]);
  });
});

describe('README bench section', () => {
  const at = (m: number) => `2026-11-22T16:${String(m).padStart(2, '0')}:00.000Z`;
  const files = [
    { file: 'drain-legacy.json', result: { bench: 'drain', version: 1, at: at(1), machine, settings: { count: 100000, numWorkers: 5, batchSize: 500 }, figures: drainFigures({ cpu: undefined }) } },
    { file: 'drain-new.json', result: buildResult('drain', { at: at(2), machine, settings: { count: 100000, numWorkers: 5, batchSize: 500 }, figures: drainFigures() }) },
    { file: 'ceiling-x.json', result: buildResult('ceiling', { at: at(3), machine, settings: { count: 100000 }, figures: ceilingFigures }) },
    { file: 'rate-x.json', result: buildResult('rate', { at: at(4), machine, settings: { durationSecs: 60, numWorkers: 5, batchSize: 500 }, figures: rateFigures(true) }) },
    {
      file: 'sweep-x.json',
      result: buildResult('sweep', { at: at(5), machine, settings: { count: 100000 }, figures: { points: sweepPoints }, files: [sweepChartName(fileTimestamp(at(5)), 'numWorkers'), sweepChartName(fileTimestamp(at(5)), 'batchSize')] }),
    },
  ] as const;
  const section = benchReadmeSection(files as never, 'bench/results');

  it('has a table per bench with links to the result files', () => {
    expect(section).toContain('| [drain-legacy.json](bench/results/drain-legacy.json) | 100,000 | ours | 5 × 500 | 40,000 | 62,500 | 170 MiB | – | 2 cores, Node v20.20.2, Redis 7.0.15, PostgreSQL 15.20 |');
    expect(section).toContain('| 170 MiB | 21.0 / 14.0 / 3.0 |');
    expect(section).toContain('| [ceiling-x.json](bench/results/ceiling-x.json) | 100,000 | 166,667 | 142,857 | 200,000 | 181,818 | 142,857 | 40,000 | 24% (38%) |');
    expect(section).toContain('| 10,000/s × 60 s | ours | 600,000 | 9,997/s | 99.97% | 12.3 / 25.5 / 40.1 / 120.7 | 100 | 1,600 | 5 × 500 |');
  });

  it('links the sweep charts', () => {
    expect(section).toContain('![Drain rate by NUM_WORKERS](bench/results/sweep-2026-11-22T16-05-00-000Z-num-workers.svg)');
    expect(section).toContain('![Drain rate by BATCH_SIZE](bench/results/sweep-2026-11-22T16-05-00-000Z-batch-size.svg)');
    expect(section).toContain('| 5000 | 45,250 |');
  });

  it('says how to get results when there are none', () => {
    expect(benchReadmeSection([])).toMatch(/No benchmark results yet/);
  });
});

describe('bench plumbing', () => {
  it('COPY text format escapes backslash, tab, newline and carriage return; NULL is \\N', () => {
    expect(copyTextField('a\\b\tc\nd\re')).toBe('a\\\\b\\tc\\nd\\re');
    expect(copyTextField(null)).toBe('\\N');
    expect(copyTextLine(['x', null, '{"a":"\\n"}'])).toBe('x\t\\N\t{"a":"\\\\n"}\n');
    expect(eventCopyLine({ eventId: 'e1', eventType: 't', payload: '{"k":1}', streamId: '1-0', producedAt: 0 })).toBe('e1\tt\t{"k":1}\t1-0\t1970-01-01T00:00:00.000Z\n');
  });

  it('a bench runs on its own stream, schema and consumer; the child env carries every setting', () => {
    const base = resolveConfig({ envFile: false, overrides: { metricsPort: 9464 } });
    const c = benchConfig(base, 'bench_drain_1_abcd', { numWorkers: 2 });
    expect(c).toMatchObject({ streamKey: 'bench_drain_1_abcd:events', dlqStream: 'bench_drain_1_abcd:dead', pgSchema: 'bench_drain_1_abcd', consumerName: 'bench_drain_1_abcd', numWorkers: 2, metricsPort: undefined });
    expect(() => benchConfig(base, 'bench_x', { batchSize: 50_000 })).toThrow(/BATCH_SIZE|maxInFlight/);
    const env = configEnv(c, { METRICS_PORT: '9464', PATH: '/bin' });
    expect(env).toMatchObject({ STREAM_KEY: 'bench_drain_1_abcd:events', PG_SCHEMA: 'bench_drain_1_abcd', NUM_WORKERS: '2', BATCH_SIZE: String(c.batchSize), PATH: '/bin' });
    expect(env.METRICS_PORT).toBeUndefined();
  });

  it('parses /proc/<pid>/stat with a command name holding spaces and parentheses', () => {
    const line = '1234 (node (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 11 0 100 1000 100';
    expect(statCpuTicks(line)).toBe(325);
  });

  it('summarises a CPU profile by self time', () => {
    const profile: CpuProfile = {
      startTime: 0,
      endTime: 10_000,
      nodes: [
        { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [2, 3, 4] },
        { id: 2, callFrame: { functionName: 'encodeRows', url: 'file:///w/dist/sinks/postgres-events.js', lineNumber: 79 } },
        { id: 3, callFrame: { functionName: 'parse', url: 'file:///w/node_modules/pg/lib/x.js', lineNumber: 9 } },
        { id: 4, callFrame: { functionName: '(garbage collector)', url: '', lineNumber: -1 } },
      ],
      samples: [2, 2, 3, 4, 2],
      timeDeltas: [1000, 1000, 1000, 1000, 1000],
    };
    const s = summarizeCpuProfile(profile);
    expect(s.totalMs).toBe(5);
    expect(s.top[0]).toEqual({ name: 'encodeRows (dist/sinks/postgres-events.js:80)', selfMs: 3, selfPct: 60 });
    expect(s.byArea.map((a) => a.name)).toEqual(['tributary', 'pg', '(garbage collector)']);
    expect(areaOf('node:internal/streams', 'x')).toBe('node internals');
    expect(areaOf('file:///w/node_modules/@redis/client/dist/x.js', 'x')).toBe('@redis/client');
  });

  it('parses the sweep lists', () => {
    expect(parseIntList('--workers', '1, 2,5')).toEqual([1, 2, 5]);
    expect(() => parseIntList('--workers', '1,x')).toThrow(/TRIB_ERR_CONFIG_INVALID|--workers/);
    expect(() => parseIntList('--workers', '')).toThrow(/--workers/);
  });
});

describe('performanceSummary (the README headline table)', () => {
  const defaults = { numWorkers: 5, batchSize: 500, batchTimeoutMs: 2000, xreadCount: 100 };
  const at = '2026-11-22T18:00:00.000Z';
  const file = (result: BenchResult, name: string) => ({ file: name, result });
  const drain = (name: string, settings: Record<string, unknown>, over: Partial<DrainFigures>) =>
    file(buildResult('drain', { at, machine, settings: { ...defaults, ...settings }, figures: drainFigures(over) }), name);

  it('judges each target from the result files: the median default 1M drain, the settings with the fastest median, the highest RSS', () => {
    const rows = performanceSummary(
      [
        drain('d-small.json', { count: 100_000 }, { rows: 100_000, drainEventsPerSec: 999_999 }), // too small to be the headline
        drain('d-1m-slow.json', { count: 1_000_000 }, { rows: 1_000_000, drainEventsPerSec: 90_000, enginePeakRssMiB: 200 }),
        drain('d-1m.json', { count: 1_000_000 }, { rows: 1_000_000, drainEventsPerSec: 101_000, ingestEventsPerSec: 110_000, enginePeakRssMiB: 180 }),
        drain('d-1m-fast.json', { count: 1_000_000 }, { rows: 1_000_000, drainEventsPerSec: 105_000, enginePeakRssMiB: 300 }),
        drain('d-best.json', { count: 1_000_000, batchSize: 2000 }, { rows: 1_000_000, drainEventsPerSec: 120_000 }),
        file(buildResult('ceiling', { at, machine, settings: { count: 1_000_000 }, figures: { ...ceilingFigures, postgresCopyEventsPerSec: 150_000, drain: drainFigures({ drainEventsPerSec: 96_000, ingestEventsPerSec: 105_000 }) } }), 'c.json'),
        file(buildResult('rate', { at, machine, settings: { ...defaults, durationSecs: 60 }, figures: rateFigures(true) }), 'r.json'),
        file(buildResult('rate', { at, machine, settings: { ...defaults, durationSecs: 60, producer: 'external', idShape: 'uuidv4' }, figures: rateFigures(true) }), 'r-ext.json'),
        drain('d-ext.json', { count: 1_000_000, producer: 'external', idShape: 'uuidv4' }, { rows: 1_000_000, drainEventsPerSec: 500_000 }), // not a default drain
        file(
          buildResult('compare-original', {
            at,
            machine,
            settings: { count: 300_000, rounds: 1 },
            figures: { count: 300_000, original: [{ eventsPerSec: 30_000, drainSecs: 10 }], ours: [{ drainEventsPerSec: 96_000, drainWallSecs: 3.1, steadyEventsPerSec: 110_000, engineCpuSecs: 2, postgresCpuSecs: 3 }], originalEventsPerSec: 30_000, oursEventsPerSec: 96_000, ratio: 3.2 },
          }),
          'cmp.json',
        ),
        file(buildResult('produce', { at, machine, settings: {}, figures: { events: 1e6, batch: 1000, concurrency: 4, elapsedSecs: 3, eventsPerSec: 310_000 } }), 'p.json'),
        file(buildResult('produce', { at, machine, settings: {}, figures: { events: 1e6, batch: 1000, concurrency: 4, elapsedSecs: 3, eventsPerSec: 330_000 } }), 'p-fast.json'),
        file(buildResult('produce', { at, machine, settings: {}, figures: { events: 1e6, batch: 1000, concurrency: 1, elapsedSecs: 3, eventsPerSec: 200_000 } }), 'p-one.json'),
      ],
      defaults,
      'bench/results',
    ).join('\n');
    expect(rows).toContain('| Drain, default settings (1,000,000 events; median of 3 runs) | ≥ 150,000 events/s steady | 101,000 events/s incl. start-up; 110,000 steady | **no** | [d-1m.json](bench/results/d-1m.json) |');
    expect(rows).toContain('| Drain, best settings measured (BATCH_SIZE=2000; 1,000,000 events; median of 1 run) | ≥ 150,000 events/s | 120,000 events/s incl. start-up; 62,500 steady | **no** | [d-best.json]');
    expect(rows).toContain('| 64% (96,000 of 150,000 events/s; steady 70%) | yes | [c.json]');
    expect(rows).toContain('| 12.3 ms / 40.1 ms, 1,600 (actual rate 9,997/s) | **no** | [r.json]');
    expect(rows).toContain("an outside producer (redis-cli --pipe, a process of its own; event_id uuidv4): end-to-end latency p50 / p99, max lag (undelivered + unacknowledged); run with the median p99 of 1 | ≤ 5 ms / ≤ 25 ms, ≤ 2,000 | 12.3 ms / 40.1 ms, 1,600 (actual rate 9,997/s) | **no** | [r-ext.json]");
    expect(rows).toContain("| The engine's CPU against Postgres' CPU, in that drain | ≤ 30% | 150% (2.1 µs against 1.4 µs per event; Redis 0.3 µs) | **no** | [d-1m.json]");
    expect(rows).toContain('| Drain against the Python original, side by side (`bench compare-original`, 300,000 events, median of 1 round each) | ≥ 3× | 3.20× (96,000 against 30,000 events/s) | yes | [cmp.json]');
    expect(rows).not.toContain('d-ext.json');
    expect(rows).toContain('(batch 1,000, 4 in flight; median of 2 runs) | ≥ 400,000 events/s | 310,000 events/s | **no** | [p.json]');
    expect(rows).toContain('| Engine memory draining a 1,000,000-event backlog (highest peak of 3 runs) | peak RSS < 256 MiB | 300 MiB | **no** | [d-1m-fast.json]');
    expect(rows).toContain('Measured on 2 cores (AMD EPYC), 24 GiB');
  });

  it('takes each kind of run from its newest sitting (no gap of over an hour), and gives the engine CPU after its start-up', () => {
    const dr = (name: string, when: string, rate: number) =>
      file(
        buildResult('drain', {
          at: when,
          machine,
          settings: { ...defaults, count: 1_000_000 },
          figures: drainFigures({ rows: 1_000_000, drainEventsPerSec: rate, engineUsPerEventAfterStart: 0.7, engineCpuAfterStartSecs: 0.7 }),
        }),
        name,
      );
    const runs = [dr('old-fast.json', '2026-11-22T08:00:00.000Z', 200_000), dr('new-1.json', '2026-11-22T18:00:00.000Z', 90_000), dr('new-2.json', '2026-11-22T18:50:00.000Z', 95_000), dr('new-3.json', '2026-11-22T19:40:00.000Z', 99_000)];
    expect(newestSitting(runs).map((r) => r.file)).toEqual(['new-1.json', 'new-2.json', 'new-3.json']);
    expect(newestSitting(runs.slice(0, 1)).map((r) => r.file)).toEqual(['old-fast.json']);
    expect(newestSitting([])).toEqual([]);
    const rows = performanceSummary(runs, defaults).join('\n');
    expect(rows).toContain('median of 3 runs) | ≥ 150,000 events/s steady | 95,000 events/s');
    expect(rows).not.toContain('old-fast.json');
    expect(rows).toContain("after the engine's start-up 0.7 µs per event, 50% of Postgres'");
  });

  it('is empty without results, and benchReadmeSection leaves it out without defaults', () => {
    expect(performanceSummary([], defaults)).toEqual([]);
    const one = [drain('d.json', {}, {})];
    expect(benchReadmeSection(one, 'bench/results')).not.toContain('| What | Target |');
    expect(benchReadmeSection(one, 'bench/results', defaults)).toContain('| What | Target |');
  });
});

describe('produceCpu', () => {
  const f = { events: 1_000_000, batch: 5000, concurrency: 4, elapsedSecs: 2.5, eventsPerSec: 400_000 };
  it('gives the producer and Redis CPU in seconds and per event, and says what it does not know', () => {
    expect(produceCpu({ ...f, cpu: { producerSecs: 1.8, redisSecs: 2.5 } })).toBe('producer 1.8 s (1.8 µs per event), redis 2.5 s (2.5 µs per event)');
    expect(produceCpu({ ...f, cpu: { producerSecs: 1.8, redisSecs: null } })).toBe('producer 1.8 s (1.8 µs per event), redis ? s (? µs per event)');
    expect(produceCpu(f)).toBe('–');
  });
});

describe('drainGridTable (how the defaults were chosen)', () => {
  const at = (i: number) => `2026-12-06T02:0${i}:00.000Z`;
  const run = (i: number, w: number, b: number, rate: number, over: Record<string, unknown> = {}, fig: Partial<DrainFigures> = {}) => ({
    file: `drain-${i}.json`,
    result: buildResult('drain', {
      at: at(i),
      machine,
      settings: { count: 1_000_000, numWorkers: w, batchSize: b, batchTimeoutMs: 2000, xreadCount: 500, maxInFlight: 20_000, ...over },
      figures: drainFigures({ rows: 1_000_000, drainEventsPerSec: rate, ingestEventsPerSec: rate + 20_000, engineUsPerEventAfterStart: 2.5, ...fig }),
    }),
  });

  it('one row per setting, fastest median first, with the range, and names XREAD_COUNT / MAX_IN_FLIGHT only where they differ', () => {
    const rows = drainGridTable('bench/results/defaults-grid', [
      run(1, 5, 500, 100_000, {}, { cpu: { engineSecs: 3, redisSecs: 2, postgresSecs: 9, hostBusyPct: 99 }, enginePeakRssMiB: 180 }),
      run(2, 2, 5000, 150_000, {}, { enginePeakRssMiB: 190 }),
      run(3, 5, 500, 110_000, {}, { cpu: { engineSecs: 3, redisSecs: 2, postgresSecs: 10, hostBusyPct: 99 }, enginePeakRssMiB: 200 }),
      run(4, 2, 5000, 170_000, {}, { enginePeakRssMiB: 210 }),
      run(5, 2, 5000, 160_000),
      run(6, 2, 5000, 140_000, { xreadCount: 5000 }),
      run(7, 5, 5000, 130_000, { maxInFlight: 40_000 }),
    ]);
    expect(rows[0]).toContain('| Workers × batch | Runs | Drain, median (range)');
    expect(rows[2]).toBe('| 2 × 5000 | 3 | 160,000 (150,000–170,000) | 180,000 | 1.4 | 2.5 | 210 MiB |');
    expect(rows[3]).toBe('| 2 × 5000, XREAD_COUNT 5,000 | 1 | 140,000 (140,000–140,000) | 160,000 | 1.4 | 2.5 | 170 MiB |');
    expect(rows[4]).toBe('| 5 × 5000, MAX_IN_FLIGHT 40,000 | 1 | 130,000 (130,000–130,000) | 150,000 | 1.4 | 2.5 | 170 MiB |');
    // Even count: the lower middle one, as the summary's medians.
    expect(rows[5]).toBe('| 5 × 500 | 2 | 100,000 (100,000–110,000) | 120,000 | 9.0 | 2.5 | 200 MiB |');
    expect(rows.at(-1)).toBe(`7 runs from ${at(1)} to ${at(7)}, in [bench/results/defaults-grid](bench/results/defaults-grid); 2 cores, Node ${machine.node}, Redis ${machine.redis}, PostgreSQL ${String(machine.postgres).split(' ')[0]}.`);
  });

  it('goes into the bench section only when the grid has drains', () => {
    const one = [run(1, 2, 5000, 150_000)];
    const defaults = { numWorkers: 2, batchSize: 5000, batchTimeoutMs: 2000, xreadCount: 500 };
    expect(benchReadmeSection(one, 'bench/results', defaults, { dir: 'g', results: one })).toContain('### How the defaults were chosen');
    expect(benchReadmeSection(one, 'bench/results', defaults, { dir: 'g', results: [] })).not.toContain('### How the defaults were chosen');
  });
});

describe('postgresCpuDelta', () => {
  it('counts each PID since the first reading, a new one whole, a vanished one not at all: never negative', () => {
    const before = new Map([[1, 10], [2, 50]]);
    const after = new Map([[1, 12.5], [3, 0.75]]); // 2 exited with 50 s: the old machine-wide sum went -36.75
    expect(postgresCpuDelta(before, after)).toBe(3.25);
    expect(postgresCpuDelta(null, after)).toBeNull();
  });
});
