import type { PipelineDrainFigures } from './pipeline-drain.js';
import type { IngestBenchFigures } from './ingest.js';
import type { ClusterDrainFigures } from './cluster-drain.js';
import type { CompareFigures } from './compare-original.js';
import type { BenchResult, CeilingFigures, DrainFigures, MachineFacts, ProduceFigures, RateFigures, ResultOf, SweepFigures } from './result.js';
import { fileTimestamp } from './result.js';
import { sweepChartName } from './sweep.js';
import { ordersBenchSection } from './orders-report.js';
import { produceCpu } from './format.js';
import { medianBy, performanceSummary, type EngineDefaults } from './summary.js';

/**
 * The README's benchmark section (between <!-- bench:start --> and <!-- bench:end -->),
 * generated from the result files: nothing in it is typed by hand. Pure.
 */

export interface ResultFile {
  file: string;
  result: BenchResult;
}

const n = (v: number | null | undefined) => (v === null || v === undefined ? '–' : Math.round(v).toLocaleString('en-US'));
const ms = (v: number | null | undefined) => (v === null || v === undefined ? '–' : v.toFixed(1));
const pct = (f: number) => `${(f * 100).toFixed(0)}%`;

export function machineLabel(m: MachineFacts): string {
  return `${m.cores} cores, Node ${m.node}, Redis ${m.redis}, PostgreSQL ${String(m.postgres).split(' ')[0]}`;
}

function link(dir: string, file: string): string {
  return `[${file}](${dir}/${file})`;
}

function of<K extends BenchResult['bench']>(results: readonly ResultFile[], kind: K): Array<{ file: string; result: Extract<BenchResult, { bench: K }> }> {
  return results.filter((r) => r.result.bench === kind) as Array<{ file: string; result: Extract<BenchResult, { bench: K }> }>;
}

function cpuCell(f: DrainFigures): string {
  if (!f.cpu) return '–';
  // µs of CPU per event: what bounds the rate when every process shares the same cores.
  const us = (v: number | null) => (v === null || f.rows === 0 ? '–' : ((v / f.rows) * 1e6).toFixed(1));
  // After the engine's start-up (node and module loading, connecting): what each event costs it.
  const after = f.engineUsPerEventAfterStart == null ? '' : ` (engine after start-up ${f.engineUsPerEventAfterStart.toFixed(1)})`;
  return `${us(f.cpu.engineSecs)} / ${us(f.cpu.postgresSecs)} / ${us(f.cpu.redisSecs)}${after}`;
}

/** Who loaded the events: our Producer, or redis-cli --pipe with its event_id shape. */
function producerCell(settings: Record<string, unknown>): string {
  return settings.producer === 'external' ? `redis-cli, ${String(settings.idShape)}` : 'ours';
}

function drainTable(dir: string, rows: ReadonlyArray<{ file: string; result: ResultOf<'drain', DrainFigures> }>): string[] {
  const out = [
    '| Result file | Events | Producer | Workers × batch | Drain (events/s, incl. start-up) | Steady write rate (events/s) | Engine peak RSS | CPU µs per event: engine / postgres / redis | Machine |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const { file, result: r } of rows) {
    const s = r.settings as { numWorkers: number; batchSize: number; partitions?: number };
    // PARTITIONS > 1 reads with one worker per partition.
    const workers = (s.partitions ?? 1) > 1 ? `${s.partitions} partitions` : String(s.numWorkers);
    out.push(
      `| ${link(dir, file)} | ${n(r.figures.rows)} | ${producerCell(r.settings)} | ${workers} × ${s.batchSize} | ${n(r.figures.drainEventsPerSec)} | ${n(r.figures.ingestEventsPerSec)} | ${r.figures.enginePeakRssMiB} MiB | ${cpuCell(r.figures)} | ${machineLabel(r.machine)} |`,
    );
  }
  return out;
}

function clusterDrainTable(dir: string, rows: ReadonlyArray<{ file: string; result: ResultOf<'cluster-drain', ClusterDrainFigures> }>): string[] {
  const out = [
    '| Result file | Events | Partitions | Redis | Drain (events/s, incl. start-up) | Steady write rate (events/s) | Redis CPU µs per event, per server | CPU µs per event: engine / postgres | Machine |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  const us = (v: number | null | undefined, rows: number) => (v === null || v === undefined || rows === 0 ? '–' : ((v / rows) * 1e6).toFixed(1));
  for (const { file, result: r } of rows) {
    for (const run of r.figures.runs) {
      const f = run.figures;
      const perNode = run.nodes.map((m) => (m.usPerEvent === null ? '–' : m.usPerEvent.toFixed(1))).join(' / ');
      out.push(
        `| ${link(dir, file)} | ${n(f.rows)} | ${r.figures.partitions} | ${run.redis === 'single' ? 'single' : `cluster, ${run.masters} masters`} | ${n(f.drainEventsPerSec)} | ${n(f.ingestEventsPerSec)} | ${perNode} | ${us(f.cpu?.engineSecs, f.rows)} / ${us(f.cpu?.postgresSecs, f.rows)} | ${machineLabel(r.machine)} |`,
      );
    }
  }
  return out;
}

function ceilingTable(dir: string, rows: ReadonlyArray<{ file: string; result: ResultOf<'ceiling', CeilingFigures> }>): string[] {
  const out = [
    '| Result file | Events | Postgres COPY | Engine write alone | Redis XADD (pipelined) | Redis XREADGROUP + XACK | produceBatch (1 process) | Drain (incl. start-up) | Drain / ceiling (steady) | Machine |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const { file, result: r } of rows) {
    const f = r.figures;
    out.push(
      `| ${link(dir, file)} | ${n(r.settings.count as number)} | ${n(f.postgresCopyEventsPerSec)} | ${n(f.sinkWriteEventsPerSec)} | ${n(f.redisXaddEventsPerSec)} | ${n(f.redisReadAckEventsPerSec)} | ${n(f.produce.eventsPerSec)} | ${n(f.drain.drainEventsPerSec)} | ${pct(f.drainFractionOfCeiling)} (${pct(f.steadyFractionOfCeiling)}) | ${machineLabel(r.machine)} |`,
    );
  }
  return out;
}

function rateTable(dir: string, rows: ReadonlyArray<{ file: string; result: ResultOf<'rate', RateFigures> }>): string[] {
  const out = [
    '| Result file | Target | Producer | Produced | Actual rate | Accuracy | Latency ms p50 / p95 / p99 / max | Final lag (undelivered + pending) | Max lag seen | Workers × batch | Machine |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const { file, result: r } of rows) {
    const f = r.figures;
    const e = f.engine;
    const s = r.settings as { durationSecs: number; numWorkers?: number; batchSize?: number };
    out.push(
      `| ${link(dir, file)} | ${n(f.targetRate)}/s × ${s.durationSecs} s | ${producerCell(r.settings)} | ${n(f.totalEvents)} | ${n(f.actualRate)}/s | ${f.accuracyPct.toFixed(2)}% | ` +
        (e
          ? `${ms(e.latencyMs.p50)} / ${ms(e.latencyMs.p95)} / ${ms(e.latencyMs.p99)} / ${ms(e.latencyMs.max)} | ${n((e.finalLag.lag ?? 0) + e.finalLag.pending)} | ${n(e.maxLagSeen.backlog)} | ${s.numWorkers} × ${s.batchSize}`
          : '– | – | – | no engine') +
        ` | ${machineLabel(r.machine)} |`,
    );
  }
  return out;
}

function compareTable(dir: string, rows: ReadonlyArray<{ file: string; result: ResultOf<'compare-original', CompareFigures> }>): string[] {
  const out = ['| Result file | Events | Rounds | Python original (events/s) | Tributary (events/s) | Tributary / original | Machine |', '|---|---|---|---|---|---|---|'];
  for (const { file, result: r } of rows) {
    const f = r.figures;
    out.push(
      `| ${link(dir, file)} | ${n(f.count)} | ${f.original.length} | ${f.original.map((o) => n(o.eventsPerSec)).join(', ')} | ${f.ours.map((o) => n(o.drainEventsPerSec)).join(', ')} | ${f.ratio.toFixed(2)}× | ${machineLabel(r.machine)} |`,
    );
  }
  return out;
}

function produceTable(dir: string, rows: ReadonlyArray<{ file: string; result: ResultOf<'produce', ProduceFigures> }>): string[] {
  const out = ['| Result file | Events | Batch | In flight | produceBatch (events/s) | CPU | Machine |', '|---|---|---|---|---|---|---|'];
  for (const { file, result: r } of rows) {
    const f = r.figures;
    out.push(`| ${link(dir, file)} | ${n(f.events)} | ${n(f.batch)} | ${f.concurrency} | ${n(f.eventsPerSec)} | ${produceCpu(f)} | ${machineLabel(r.machine)} |`);
  }
  return out;
}

function sweepSection(dir: string, rows: ReadonlyArray<{ file: string; result: ResultOf<'sweep', SweepFigures> }>): string[] {
  const latest = rows[rows.length - 1]!;
  const r = latest.result;
  const stamp = fileTimestamp(r.at);
  const out = [`From ${link(dir, latest.file)} (${n(r.settings.count as number)} events per run; ${machineLabel(r.machine)}):`, ''];
  for (const setting of ['numWorkers', 'batchSize'] as const) {
    const points = r.figures.points.filter((p) => p.setting === setting);
    if (points.length === 0) continue;
    const name = setting === 'numWorkers' ? 'NUM_WORKERS' : 'BATCH_SIZE';
    const fixed = setting === 'numWorkers' ? `BATCH_SIZE ${points[0]!.batchSize}` : `NUM_WORKERS ${points[0]!.numWorkers}`;
    out.push(`| ${name} (${fixed}) | Drain (events/s, incl. start-up) | Steady write rate (events/s) | Engine peak RSS |`, '|---|---|---|---|');
    for (const p of points) out.push(`| ${p.value} | ${n(p.figures.drainEventsPerSec)} | ${n(p.figures.ingestEventsPerSec)} | ${p.figures.enginePeakRssMiB} MiB |`);
    const chart = sweepChartName(stamp, setting);
    if (!r.files || r.files.includes(chart)) out.push('', `![Drain rate by ${name}](${dir}/${chart})`);
    out.push('');
  }
  if (rows.length > 1) out.push(`Earlier sweeps: ${rows.slice(0, -1).map((x) => link(dir, x.file)).join(', ')}.`, '');
  return out;
}

/** The generated benchmark section. `dir` is the results directory as linked from the README. */
function pipelinesTable(dir: string, rows: ReadonlyArray<{ file: string; result: ResultOf<'pipelines', PipelineDrainFigures> }>): string[] {
  const out = [
    '| Result file | Events | Pipeline | Mode | Columns | Workers × batch | Events/s | Of JSONB rate | Rows | CPU µs per event: engine / postgres / redis | Machine |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const { file, result: r } of rows) {
    for (const run of r.figures.runs) {
      const us = (v: number | null) => (v === null ? '–' : ((v / r.figures.count) * 1e6).toFixed(1));
      out.push(
        `| ${link(dir, file)} | ${n(r.figures.count)} | ${run.file ?? run.label} | ${run.mode} | ${run.columns} | ${run.workers} × ${run.batchSize} | ${n(run.eventsPerSec)} | ${run.ofBaseline === null ? '–' : pct(run.ofBaseline)} | ${n(run.rows)} | ${us(run.cpu.engineSecs)} / ${us(run.cpu.postgresSecs)} / ${us(run.cpu.redisSecs)} | ${machineLabel(r.machine)} |`,
      );
    }
  }
  return out;
}

function largeEntriesTable(dir: string, rows: ReadonlyArray<{ file: string; result: ResultOf<'large-entries', DrainFigures> }>): string[] {
  const out = [
    '| Result file | Engine | Events × payload | Workers × batch | BATCH_MAX_BYTES | MAX_IN_FLIGHT_BYTES | Engine peak RSS | Drain (events/s, incl. start-up) | Rows | Machine |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const mib = (v: unknown) => (typeof v === 'number' ? `${(v / 1024 / 1024).toFixed(v % (1024 * 1024) === 0 ? 0 : 1)} MiB` : '–');
  for (const { file, result: r } of rows) {
    const s = r.settings as { count: number; payloadBytes: number; numWorkers: number; batchSize: number; batchMaxBytes?: number; maxInFlightBytes?: number; engine?: string };
    out.push(
      `| ${link(dir, file)} | ${s.engine ?? '–'} | ${n(s.count)} × ${n(s.payloadBytes)} B | ${s.numWorkers} × ${s.batchSize} | ${mib(s.batchMaxBytes)} | ${mib(s.maxInFlightBytes)} | ${r.figures.enginePeakRssMiB} MiB | ${n(r.figures.drainEventsPerSec)} | ${n(r.figures.rows)} | ${machineLabel(r.machine)} |`,
    );
  }
  return out;
}

function ingestTable(dir: string, rows: ReadonlyArray<{ file: string; result: ResultOf<'ingest', IngestBenchFigures> }>): string[] {
  const out = [
    '| Result file | Load | Events/s accepted (target ≥ 50,000) | Requests/s | Request latency ms p50 / p99 / max | Statuses | Engine meanwhile (rows/s) | Rows / accepted | CPU s: server / engine / clients / postgres / redis; host busy | Load avg at start | Machine |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const v = (x: number | null) => (x === null ? '–' : String(x));
  for (const { file, result: r } of rows) {
    const f = r.figures;
    const load = `${f.seconds.toFixed(0)} s, ${f.connections} conn × ${f.eventsPerRequest} events${f.inEngine ? ', in `start`' : ''}`;
    const statuses = Object.entries(f.statuses).map(([s, c]) => `${s} × ${n(c)}`).join(', ');
    out.push(
      `| ${link(dir, file)} | ${load} | ${n(f.eventsPerSec)} | ${n(f.requestsPerSec)} | ${v(f.latencyMs.p50)} / ${v(f.latencyMs.p99)} / ${v(f.latencyMs.max)} | ${statuses} | ${n(f.writtenPerSecDuringLoad)} | ${n(f.rows)} / ${n(f.acceptedTotal)} | ${v(f.cpu.serverSecs)} / ${f.inEngine ? '(server)' : v(f.cpu.engineSecs)} / ${v(f.cpu.clientSecs ?? null)} / ${v(f.cpu.postgresSecs)} / ${v(f.cpu.redisSecs)}; ${v(f.cpu.hostBusyPct)}% | ${r.machine.loadAvg1 ?? '–'} | ${machineLabel(r.machine)} |`,
    );
  }
  return out;
}

/** The median of `values`, by the summary's rule (the lower middle one for an even count). */
const median = (values: readonly number[]): number => medianBy(values, (v) => v)!;

/**
 * A grid of 1M-event drains, one row per combination of settings (NUM_WORKERS × BATCH_SIZE,
 * and XREAD_COUNT / MAX_IN_FLIGHT where a run set them apart from the grid's usual value),
 * fastest median first: the runs' median and range, the median steady rate and CPU per
 * event, the largest peak RSS. Pure.
 */
export function drainGridTable(dir: string, runs: readonly ResultFile[]): string[] {
  const drains = of(runs, 'drain');
  type GridSettings = { numWorkers: number; batchSize: number; xreadCount?: number; maxInFlight?: number };
  // XREAD_COUNT and MAX_IN_FLIGHT are named only where a run set them apart from the grid's usual value.
  const usual = (k: 'xreadCount' | 'maxInFlight') => {
    const counts = new Map<unknown, number>();
    for (const d of drains) {
      const v = (d.result.settings as GridSettings)[k];
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  };
  const usualRead = usual('xreadCount');
  const usualCap = usual('maxInFlight');
  const groups = new Map<string, Array<ResultOf<'drain', DrainFigures>>>();
  for (const { result } of drains) {
    const s = result.settings as GridSettings;
    const key =
      `${s.numWorkers} × ${s.batchSize}` +
      (s.xreadCount !== usualRead ? `, XREAD_COUNT ${n(s.xreadCount)}` : '') +
      (s.maxInFlight !== usualCap ? `, MAX_IN_FLIGHT ${n(s.maxInFlight)}` : '');
    groups.set(key, [...(groups.get(key) ?? []), result]);
  }
  const rows = [...groups.entries()].map(([key, rs]) => {
    const drain = rs.map((r) => r.figures.drainEventsPerSec);
    const pg = rs.flatMap((r) => (r.figures.cpu?.postgresSecs == null || r.figures.rows === 0 ? [] : [(r.figures.cpu.postgresSecs / r.figures.rows) * 1e6]));
    const engine = rs.flatMap((r) => (r.figures.engineUsPerEventAfterStart == null ? [] : [r.figures.engineUsPerEventAfterStart]));
    return {
      key,
      runs: rs.length,
      median: median(drain),
      range: `${n(Math.min(...drain))}–${n(Math.max(...drain))}`,
      steady: median(rs.map((r) => r.figures.ingestEventsPerSec)),
      pg: pg.length ? median(pg).toFixed(1) : '–',
      engine: engine.length ? median(engine).toFixed(1) : '–',
      rss: Math.max(...rs.map((r) => r.figures.enginePeakRssMiB)),
    };
  });
  rows.sort((a, b) => b.median - a.median);
  const out = [
    `| Workers × batch | Runs | Drain, median (range), events/s | Steady write rate, median | Postgres CPU µs per event, median | Engine CPU µs per event after start-up, median | Engine peak RSS, largest |`,
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) out.push(`| ${r.key} | ${r.runs} | ${n(r.median)} (${r.range}) | ${n(r.steady)} | ${r.pg} | ${r.engine} | ${r.rss} MiB |`);
  const first = drains[0]?.result.at;
  const last = drains[drains.length - 1]?.result.at;
  if (first && last) out.push('', `${drains.length} runs from ${first} to ${last}, in [${dir}](${dir}); ${machineLabel(drains[0]!.result.machine)}.`);
  return out;
}

export function benchReadmeSection(
  results: readonly ResultFile[],
  dir = 'bench/results',
  defaults?: EngineDefaults,
  grid?: { dir: string; results: readonly ResultFile[] },
): string {
  const drain = of(results, 'drain');
  const ceiling = of(results, 'ceiling');
  const rate = of(results, 'rate');
  const produce = of(results, 'produce');
  const sweep = of(results, 'sweep');
  if (results.length === 0) {
    return '_No benchmark results yet: run `npm run bench:drain -- 100000`, then `npm run bench:report`._\n';
  }
  const out: string[] = defaults ? performanceSummary(results, defaults, dir) : [];
  if (grid && of(grid.results, 'drain').length) {
    out.push(
      '### How the defaults were chosen',
      '',
      '1,000,000-event drains (`NUM_WORKERS=W BATCH_SIZE=B tributary bench drain --count 1000000`, each its own engine process, stream and schema) over a grid of settings, the settings interleaved round by round so that the machine\'s drift falls on all of them alike; each figure is the median of its row\'s runs (the lower middle one for an even count), the peak RSS the largest.' +
        (defaults ? ` The defaults (\`NUM_WORKERS=${defaults.numWorkers} BATCH_SIZE=${defaults.batchSize} XREAD_COUNT=${defaults.xreadCount}\`) were chosen from it.` : ''),
      '',
      ...drainGridTable(grid.dir, grid.results),
      '',
    );
  }
  if (out.length) out.push('### All runs', '');
  if (drain.length) {
    out.push(
      '**Drain** (`tributary bench drain --count N`): N events pre-loaded into the stream with the engine stopped, then `tributary start` as a child process; time from spawning the engine to the last row committed (max(`ingested_at`)). The steady write rate is N over first-to-last `ingested_at`. RSS is the engine\'s peak (VmHWM); CPU seconds are the engine\'s, every `postgres` process\'s and the Redis server\'s during the drain.',
      '',
      ...drainTable(dir, drain),
      '',
    );
  }
  if (ceiling.length) {
    out.push(
      '**Ceiling** (`tributary bench ceiling --count N`), events/s, all on the same N events in one run: one `COPY` (text) into a table like `events` (same columns, primary key and index); the engine\'s own write path alone (binary `COPY`, NUM_WORKERS writers of BATCH_SIZE rows, no Redis); pipelined `XADD`; `XREADGROUP` (COUNT 1000) + `XACK` by one consumer; `Producer.produceBatch` from one process; and the engine draining them. The ceiling is the lower of `COPY` and `XREADGROUP` + `XACK`.',
      '',
      ...ceilingTable(dir, ceiling),
      '',
    );
  }
  if (rate.length) {
    out.push(
      '**Sustained rate** (`tributary bench <rate> <seconds> --with-engine [--producer external]`): events produced at a target rate with the engine running in the bench\'s process; the producer is ours in that process, or `redis-cli --pipe` in a process of its own fed on the same schedule (`external`, fields in another order). Latency is `ingested_at - produced_at` of every event of the run (`ingested_at` is the writing statement\'s start, so the last write\'s own duration is not in it); lag is sampled from `XINFO GROUPS` (undelivered) and `XPENDING` (unacknowledged) every 250 ms.',
      '',
      ...rateTable(dir, rate),
      '',
    );
  }
  const compare = of(results, 'compare-original');
  if (compare.length) {
    out.push(
      '**Against the Python original** (`tributary bench compare-original <dir> --count N --rounds R`): the Python engine Tributary replaces runs its own `bench_drain.sh N` (its producer pre-loads N events, its engine drains them, Postgres polled every 50 ms), then Tributary drains N events of the same shape (`event_type`, `payload`, `timestamp`; no `event_id`) loaded by `redis-cli --pipe`, one after the other, R times; both from starting the engine to the last row. The ratio is of the medians.',
      '',
      ...compareTable(dir, compare),
      '',
    );
  }
  if (produce.length) {
    out.push('**Producer** (`tributary bench produce --count N`): `Producer.produceBatch` throughput from one process, events generated before timing.', '', ...produceTable(dir, produce), '');
  }
  if (sweep.length) {
    out.push('**Sweep** (`tributary bench sweep --count N`): drain rate across NUM_WORKERS at the default batch size, and across BATCH_SIZE (with XREAD_COUNT equal to it: one read per batch) at the default number of workers; one drain run (its own stream, schema and engine process) per point. Engine start-up grows with NUM_WORKERS (a connection per worker), so the steady write rate shows the effect of a setting better than the drain figure that includes it.', '', ...sweepSection(dir, sweep));
  }
  const pipelines = of(results, 'pipelines');
  if (pipelines.length) {
    out.push(
      '**Pipeline files** (`tributary bench drain --count N --pipeline <file>...`): the same N sample events (plus `bench_seq` and a `bench_key` that repeats an earlier key for 10% of them) drained, one run after the other, by the built-in events pipeline (JSONB, `tributary start`) and by each pipeline file (`tributary run`), each a child process on a stream and schema of its own, with the same workers and batch size. Time from the child\'s "started" line until its group has nothing undelivered or pending (polled every 50 ms in Redis, the same way for every run). The files are in `bench/pipelines/`.',
      '',
      ...pipelinesTable(dir, pipelines),
      '',
    );
  }
  const large = of(results, 'large-entries');
  if (large.length) {
    out.push(
      '**Large entries** (`tributary bench large-entries --count N --payload-bytes B`): N events of about B bytes each pre-loaded with the engine stopped, then `tributary start` (or, to compare, an earlier build\'s CLI: `--engine-cli`) as a child process with the settings shown (a build from before a setting existed ignores it: c4b3e55 had no MAX_IN_FLIGHT_BYTES, and read 500 entries at a time whatever their size); the engine\'s peak RSS (VmHWM) until every row is in Postgres.',
      '',
      ...largeEntriesTable(dir, large),
      '',
    );
  }
  const clusterDrain = of(results, 'cluster-drain');
  if (clusterDrain.length) {
    out.push(
      '**Drain on a Redis Cluster** (`tributary bench drain --cluster --partitions P --count N`): the same drain (N events pre-loaded by a producer routing them over P partitions, then `tributary start` with PARTITIONS=P) on the configured single Redis and on a throwaway 3-master cluster started on the same machine (`redis-server`, no replicas). Redis CPU is each server\'s `INFO cpu` (user + system) over the drain, per event; on one machine the masters share its cores with the engine and Postgres.',
      '',
      ...clusterDrainTable(dir, clusterDrain),
      '',
    );
  }
  const ingest = of(results, 'ingest');
  if (ingest.length) {
    out.push(
      '**HTTP ingest** (`tributary bench ingest --seconds S`): keep-alive clients (this process) post JSON arrays of sample events to `tributary serve` (a child) while `tributary start` (another child) drains the stream into Postgres; after a 2-second warm-up, S seconds are timed. Events/s are the events accepted (202) over those seconds; latency is every request\'s, from sending to the whole answer. Rows / accepted: every accepted event, warm-up included, once in Postgres after the load.',
      '',
      ...ingestTable(dir, ingest),
      '',
    );
  }
  out.push(...ordersBenchSection(results, dir)); // the orders pipeline's results: src/bench/orders-report.ts
  out.push(
    'Run them with `npm run bench:drain -- 100000`, `npm run bench:ceiling -- 100000`, `npm run bench:sweep -- 100000`, or `tributary bench <args>` (`./run.sh bench 10000 60 --with-engine`), then `npm run bench:report`. Other work on the machine skews the figures; each result records the load average when it began (`machine.loadAvg1`).',
  );
  return `${out.join('\n').trimEnd()}\n`;
}
