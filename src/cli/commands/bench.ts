import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import type { Command } from 'commander';
import { runCeiling } from '../../bench/ceiling.js';
import { runDrain } from '../../bench/drain.js';
import { runClusterDrain } from '../../bench/cluster-drain.js';
import { ingestResults, runIngestBench } from '../../bench/ingest.js';
import { runPipelineDrain } from '../../bench/pipeline-drain.js';
import {
  ceilingResults,
  completedLine,
  drainResults,
  produceResults,
  progressBar,
  progressMarks,
  producedLine,
  compareResults,
  rateHeader,
  rateResults,
  sweepResults,
} from '../../bench/format.js';
import { measureProduce, sampleEvents } from '../../bench/load.js';
import { collectMachine } from '../../bench/machine.js';
import { formatProfileSummary, summarizeCpuProfile, type CpuProfile } from '../../bench/profile.js';
import { runRate } from '../../bench/rate.js';
import { ID_SHAPES, type IdShape } from '../../bench/external.js';
import { compareOriginal } from '../../bench/compare-original.js';
import { buildResult, defaultResultsDir, fileTimestamp, writeResult, type BenchResult, type MachineFacts } from '../../bench/result.js';
import { DEFAULT_SWEEP_BATCH_SIZES, DEFAULT_SWEEP_WORKERS, runSweep, sweepChartName, sweepCharts } from '../../bench/sweep.js';
import { openWorkspace } from '../../bench/workspace.js';
import type { TributaryConfig } from '../../config/schema.js';
import { TributaryError } from '../../errors.js';
import { createPgPool } from '../../postgres/pool.js';
import { createRedisConnection, destroyQuietly } from '../../redis/client.js';
import { openConnections } from '../connect.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';
import { parsePositiveInt } from './produce.js';

/** `1,2,5` → [1, 2, 5]; each a positive integer. */
export function parseIntList(name: string, value: string): number[] {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [name, `must be a comma-separated list of positive integers (got ${JSON.stringify(value)})`]);
  return items.map((s) => parsePositiveInt(name, s));
}

async function machineFacts(config: TributaryConfig): Promise<MachineFacts> {
  const redis = createRedisConnection(config.redisUrl, { failFast: false });
  const pool = createPgPool(config.databaseUrl, { max: 1 });
  try {
    await redis.connect();
    return await collectMachine(redis, pool);
  } finally {
    destroyQuietly(redis);
    await pool.end();
  }
}

function resultsDir(opts: Record<string, unknown>): string {
  return typeof opts.resultsDir === 'string' ? opts.resultsDir : defaultResultsDir();
}

function saved(path: string): void {
  const rel = relative(process.cwd(), path);
  print(`Result: ${rel.startsWith('..') ? path : rel}`);
}

const wallSince = (t: number) => (performance.now() - t) / 1000;

/** A command's options merged with those given to `bench` itself (the settings flags, --results-dir). */
function allOptions(command: Command): Record<string, unknown> {
  return command.optsWithGlobals();
}

/** `--producer` and `--id-shape`: the shape of an outside producer's event_ids, or undefined for ours. */
function parseProducer(opts: Record<string, unknown>): IdShape | undefined {
  const who = String(opts.producer ?? 'ours');
  if (who !== 'ours' && who !== 'external') throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--producer', `must be ours or external (got ${JSON.stringify(who)})`]);
  const shape = String(opts.idShape ?? 'uuidv7');
  if (!(ID_SHAPES as readonly string[]).includes(shape)) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--id-shape', `must be one of ${ID_SHAPES.join(', ')} (got ${JSON.stringify(shape)})`]);
  if (who === 'ours' && shape !== 'uuidv7') throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--id-shape', 'needs --producer external (our producer makes UUIDv7 event_ids)']);
  return who === 'external' ? (shape as IdShape) : undefined;
}

/**
 * `tributary bench <rate> <duration-s> [--with-engine]` and its sub-commands `drain`,
 * `ceiling`, `sweep`, `produce` and `large-entries`. Settings flags and --results-dir go on `bench`
 * and apply to every sub-command; each writes `<bench>-<timestamp>.json` to the
 * results directory (default bench/results, or BENCH_RESULTS_DIR).
 */
export function registerBench(program: Command): void {
  const bench = withConfigOptions(
    program
      .command('bench')
      .alias('benchmark') // the original's `./run.sh benchmark <rate> <duration>`
      .description(
        'benchmarks: produce <rate> events/s for <duration-s> seconds and report (with --with-engine: end-to-end latency and lag); ' +
          'sub-commands drain, ceiling, sweep, produce, large-entries. Every bench uses its own stream and schema and writes a JSON result',
      )
      .argument('<rate>', 'target rate, events/s')
      .argument('<duration-s>', 'how long to produce, seconds')
      .option('--with-engine', 'run an engine in this process; report end-to-end latency p50/p95/p99/max, final and max lag')
      .option('--produce-batch <n>', 'events per produceBatch (default rate/100, 1 to 1000: a batch every 10 ms)')
      .option('--producer <who>', '`ours` (Producer.produceBatch in this process) or `external`: redis-cli --pipe, a process of its own, fed on the same schedule', 'ours')
      .option('--id-shape <shape>', `with --producer external: the event_ids, ${ID_SHAPES.join(' | ')}`, 'uuidv7')
      .option('--results-dir <dir>', 'where result files go (default bench/results, or BENCH_RESULTS_DIR)'),
  );
  // A bench is a one-shot command: a server that does not answer (or refuses the URL) is a
  // coded error within seconds, as for every other one, not a hang before the first line.
  bench.hook('preAction', async (_bench, action) => {
    const conn = await openConnections(configFrom(allOptions(action)), 'bench-check', { max: 1 });
    await conn.close();
  });
  bench.action(async (rateArg: string, durationArg: string, opts: Record<string, unknown>) => {
    const rate = parsePositiveInt('rate', rateArg);
    const durationSecs = parsePositiveInt('duration-s', durationArg);
    const batch = opts.produceBatch === undefined ? undefined : parsePositiveInt('--produce-batch', String(opts.produceBatch));
    const config = configFrom(opts);
    const machine = await machineFacts(config);
    const at = new Date();
    const t = performance.now();
    const total = rate * durationSecs;
    print(rateHeader(rate, durationSecs));
    print('');
    const tty = process.stdout.isTTY === true;
    let reported = 0;
    let drawnAt = 0;
    const run = await runRate({
      config,
      rate,
      durationSecs,
      withEngine: opts.withEngine === true,
      batch,
      external: parseProducer(opts),
      onProgress: (m) => process.stderr.write(`${m}\n`),
      onProduced: (done) => {
        if (tty) {
          if (done === total || performance.now() - drawnAt > 100) {
            drawnAt = performance.now();
            process.stdout.write(`\r${progressBar(done, total)}`);
          }
        } else {
          for (const mark of progressMarks(reported, done)) print(producedLine(mark));
        }
        reported = done;
      },
    });
    if (tty) process.stdout.write('\n');
    print(completedLine(run.figures.totalEvents));
    print('');
    print(rateResults(run.figures, run.settings.withEngine ? { numWorkers: run.settings.numWorkers as number, batchSize: run.settings.batchSize as number } : undefined));
    saved(writeResult(resultsDir(opts), buildResult('rate', { at, machine, settings: run.settings, figures: run.figures, wallSecs: wallSince(t) })));
  });

  bench
    .command('drain')
    .description('pre-load N events with the engine stopped, start it as a child process, time until all N rows are in Postgres; events/s and the engine\'s peak RSS')
    .option('--count <n>', 'events to drain', '100000')
    .option('--timeout <s>', 'give up after this many seconds', '600')
    .option('--engine-cpu-prof [dir]', 'run the engine (with --pipeline: each pipeline process) with node --cpu-prof, the profile into dir (default: the results directory), and print where its time went')
    .option('--pipeline <file...>', 'compare: drain the same events with the built-in events pipeline, then with each pipeline file (tributary run), one after the other')
    .option('--cluster', 'drain on the configured Redis, then on a throwaway 3-master Redis Cluster started here (redis-server), both with --partitions N; events/s and each Redis server\'s CPU per event')
    .option('--cluster-only', 'with --cluster: the cluster run only')
    .option('--producer <who>', '`ours` (Producer.produceBatch) or `external`: redis-cli --pipe in a process of its own, fields in another order, 100-250-byte payloads', 'ours')
    .option('--id-shape <shape>', `with --producer external: the event_id of each event, ${ID_SHAPES.join(' | ')} (none: the Python original's events, keyed by entry ID)`, 'uuidv7')
    .action(async (_opts: Record<string, unknown>, command: Command) => {
      const opts = allOptions(command);
      const count = parsePositiveInt('--count', String(opts.count));
      const timeoutMs = parsePositiveInt('--timeout', String(opts.timeout)) * 1000;
      const external = parseProducer(opts);
      const config = configFrom(opts);
      const dir = resultsDir(opts);
      const machine = await machineFacts(config);
      const at = new Date();
      const t = performance.now();
      if (opts.cluster === true || opts.clusterOnly === true) {
        // --partitions (PARTITIONS) is the settings flag: `bench drain --cluster --partitions 6`.
        const figures = await runClusterDrain({ config, count, partitions: config.partitions, timeoutMs, clusterOnly: opts.clusterOnly === true, onProgress: (m) => print(m) });
        print('');
        for (const r of figures.runs) {
          print(`${r.redis === 'single' ? 'single Redis' : `${r.masters}-master cluster`}, PARTITIONS=${figures.partitions}:`);
          print(drainResults(r.figures, r.settings));
          print(`  Redis CPU per event: ${r.nodes.map((m) => `${m.node.replace(/^rediss?:\/\//, '')} ${m.usPerEvent ?? '–'} µs`).join(', ')}`);
        }
        saved(writeResult(dir, buildResult('cluster-drain', { at, machine, settings: { count, partitions: config.partitions, masters: 3, numWorkers: config.numWorkers, batchSize: config.batchSize }, figures, wallSecs: wallSince(t) })));
        return;
      }
      if (Array.isArray(opts.pipeline)) {
        const files = opts.pipeline as string[];
        const cpuProfileDir = opts.engineCpuProf === undefined ? undefined : typeof opts.engineCpuProf === 'string' ? opts.engineCpuProf : dir;
        const figures = await runPipelineDrain({ config, count, files, timeoutMs, cpuProfileDir, onProgress: (m) => print(m) });
        print('');
        for (const r of figures.runs) {
          print(`${r.label.padEnd(24)} ${String(r.eventsPerSec).padStart(8)} events/s  ${r.ofBaseline === null ? '' : `${(r.ofBaseline * 100).toFixed(0)}% of JSONB`}  (${r.mode}, ${r.columns} columns, ${r.rows} rows)`);
        }
        for (const r of figures.runs) {
          if (r.cpuProfile === undefined || !existsSync(r.cpuProfile)) continue;
          print('');
          print(`${r.label}:`);
          print(formatProfileSummary(summarizeCpuProfile(JSON.parse(readFileSync(r.cpuProfile, 'utf8')) as CpuProfile)));
          print(`Profile: ${r.cpuProfile}`);
        }
        saved(writeResult(dir, buildResult('pipelines', { at, machine, settings: { count, files, repeatShare: figures.repeatShare }, figures, wallSecs: wallSince(t) })));
        return;
      }
      const cpuProfileDir = opts.engineCpuProf === undefined ? undefined : typeof opts.engineCpuProf === 'string' ? opts.engineCpuProf : dir;
      const run = await runDrain({ config, count, timeoutMs, cpuProfileDir, external, onProgress: (m) => print(m) });
      print('');
      print(drainResults(run.figures, run.settings));
      if (run.profile) {
        print('');
        print(formatProfileSummary(run.profile.summary));
        print(`Profile: ${run.profile.path}`);
      }
      saved(writeResult(dir, buildResult('drain', { at, machine, settings: run.settings, figures: run.figures, wallSecs: wallSince(t) })));
    });

  bench
    .command('large-entries')
    .description('memory on a backlog of large entries: N events of about --payload-bytes each pre-loaded with the engine stopped, then `tributary start` as a child process with the settings given (default: the defaults); the engine\'s peak RSS (VmHWM) and the drain rate')
    .option('--count <n>', 'events to drain', '250')
    .option('--payload-bytes <n>', 'bytes of JSON payload per event', '2000000')
    .option('--timeout <s>', 'give up after this many seconds', '600')
    .option('--engine-cli <path>', 'run this build\'s CLI as the engine instead (e.g. a checkout of an earlier commit, to compare): `node <path> start`')
    .option('--label <text>', 'a name for the engine in the result (default: "this build", or the --engine-cli path)')
    .action(async (_opts: Record<string, unknown>, command: Command) => {
      const opts = allOptions(command);
      const count = parsePositiveInt('--count', String(opts.count));
      const payloadBytes = parsePositiveInt('--payload-bytes', String(opts.payloadBytes));
      const timeoutMs = parsePositiveInt('--timeout', String(opts.timeout)) * 1000;
      const cliPath = typeof opts.engineCli === 'string' ? opts.engineCli : undefined;
      if (cliPath !== undefined && !existsSync(cliPath)) throw new TributaryError('TRIB_ERR_CLI_USAGE', [`--engine-cli ${cliPath}: no such file`, 'bench large-entries ']);
      const label = typeof opts.label === 'string' ? opts.label : (cliPath ?? 'this build');
      const config = configFrom(opts);
      const dir = resultsDir(opts);
      const machine = await machineFacts(config);
      const at = new Date();
      const t = performance.now();
      const run = await runDrain({ config, count, payloadBytes, timeoutMs, cliPath, onProgress: (m) => print(m) });
      print('');
      print(drainResults(run.figures, run.settings));
      print(`Payload: ${payloadBytes} bytes per event (${((count * payloadBytes) / 1024 / 1024).toFixed(0)} MiB backlog), engine: ${label}`);
      saved(writeResult(dir, buildResult('large-entries', { at, machine, settings: { ...run.settings, engine: label }, figures: run.figures, wallSecs: wallSince(t) })));
    });

  bench
    .command('ingest')
    .description('the HTTP ingest API under load: keep-alive clients post requests of sample events to `tributary serve` for a duration while `tributary start` drains the stream; accepted events/s, request latency p50/p99, statuses, and every accepted event in Postgres once')
    .option('--seconds <s>', 'seconds of load, after a 2-second warm-up', '30')
    .option('--events <n>', 'events per request', '500')
    .option('--connections <n>', 'keep-alive connections, one request in flight each', '8')
    .option('--in-engine', 'serve the ingest API from `tributary start --http-port` (one process with the engine) instead of a `tributary serve` of its own')
    .action(async (_opts: Record<string, unknown>, command: Command) => {
      const opts = allOptions(command);
      const seconds = parsePositiveInt('--seconds', String(opts.seconds));
      const eventsPerRequest = parsePositiveInt('--events', String(opts.events));
      const connections = parsePositiveInt('--connections', String(opts.connections));
      const config = configFrom(opts);
      const machine = await machineFacts(config);
      const at = new Date();
      const t = performance.now();
      const run = await runIngestBench({ config, seconds, eventsPerRequest, connections, inEngine: opts.inEngine === true, onProgress: (m) => print(m) });
      print('');
      print(ingestResults(run.figures));
      saved(writeResult(resultsDir(opts), buildResult('ingest', { at, machine, settings: run.settings, figures: run.figures, wallSecs: wallSince(t) })));
    });

  bench
    .command('ceiling')
    .description('on the same N events: one COPY into a table like events, the engine\'s INSERT alone, pipelined XADD, XREADGROUP+XACK, produceBatch, and the engine\'s drain as a fraction of the ceiling')
    .option('--count <n>', 'events', '100000')
    .option('--batch <n>', 'entries per pipelined XADD round trip and per produceBatch', '1000')
    .option('--concurrency <n>', 'produceBatch calls in flight', '1')
    .option('--timeout <s>', 'give up the drain after this many seconds', '600')
    .action(async (_opts: Record<string, unknown>, command: Command) => {
      const opts = allOptions(command);
      const count = parsePositiveInt('--count', String(opts.count));
      const batch = parsePositiveInt('--batch', String(opts.batch));
      const concurrency = parsePositiveInt('--concurrency', String(opts.concurrency));
      const timeoutMs = parsePositiveInt('--timeout', String(opts.timeout)) * 1000;
      const config = configFrom(opts);
      const machine = await machineFacts(config);
      const at = new Date();
      const t = performance.now();
      const run = await runCeiling({ config, count, batch, produceConcurrency: concurrency, timeoutMs, onProgress: (m) => print(m) });
      print('');
      print(ceilingResults(run.figures, count));
      saved(writeResult(resultsDir(opts), buildResult('ceiling', { at, machine, settings: run.settings, figures: run.figures, wallSecs: wallSince(t) })));
    });

  bench
    .command('compare-original')
    .description('the Python original (its bench_drain.sh, in the directory given) and Tributary drain the same number of events of the same shape, one after the other; the ratio of their rates (needs python3-redis and python3-asyncpg)')
    .argument('<dir>', 'the Python original\'s directory (holding bench_drain.sh)')
    .option('--count <n>', 'events per drain', '300000')
    .option('--rounds <n>', 'alternate the two this many times; medians are compared', '1')
    .option('--timeout <s>', 'give up a drain after this many seconds', '600')
    .action(async (dirArg: string, _opts: Record<string, unknown>, command: Command) => {
      const opts = allOptions(command);
      const count = parsePositiveInt('--count', String(opts.count));
      const rounds = parsePositiveInt('--rounds', String(opts.rounds));
      const timeoutMs = parsePositiveInt('--timeout', String(opts.timeout)) * 1000;
      const config = configFrom(opts);
      const machine = await machineFacts(config);
      const at = new Date();
      const t = performance.now();
      const figures = await compareOriginal({ config, originalDir: dirArg, count, rounds, timeoutMs, onProgress: (m) => print(m) });
      print('');
      print(compareResults(figures));
      saved(writeResult(resultsDir(opts), buildResult('compare-original', { at, machine, settings: { count, rounds }, figures, wallSecs: wallSince(t) })));
    });

  bench
    .command('produce')
    .description('Producer.produceBatch throughput from one process (events generated before timing)')
    .option('--count <n>', 'events', '100000')
    .option('--batch <n>', 'events per produceBatch', '1000')
    .option('--concurrency <n>', 'produceBatch calls in flight', '1')
    .action(async (_opts: Record<string, unknown>, command: Command) => {
      const opts = allOptions(command);
      const count = parsePositiveInt('--count', String(opts.count));
      const batch = parsePositiveInt('--batch', String(opts.batch));
      const concurrency = parsePositiveInt('--concurrency', String(opts.concurrency));
      const config = configFrom(opts);
      const machine = await machineFacts(config);
      const at = new Date();
      const t = performance.now();
      const ws = await openWorkspace('produce', config);
      let figures;
      try {
        print(`generating ${count} sample events`);
        const events = sampleEvents(count);
        print(`producing to ${ws.config.streamKey}: batch ${batch}, ${concurrency} in flight`);
        figures = await measureProduce(ws.config.redisUrl, ws.config.streamKey, events, batch, concurrency);
      } finally {
        await ws.cleanup();
      }
      print('');
      print(produceResults(figures));
      saved(writeResult(resultsDir(opts), buildResult('produce', { at, machine, settings: { count, batch, concurrency }, figures, wallSecs: wallSince(t) })));
    });

  bench
    .command('sweep')
    .description('drain rate across NUM_WORKERS at the configured batch size and across BATCH_SIZE at the configured workers; a JSON result and one SVG chart per setting')
    .option('--count <n>', 'events per drain run', '100000')
    .option('--workers <list>', 'NUM_WORKERS values', DEFAULT_SWEEP_WORKERS.join(','))
    .option('--batch-sizes <list>', 'BATCH_SIZE values', DEFAULT_SWEEP_BATCH_SIZES.join(','))
    .option('--timeout <s>', 'give up a drain run after this many seconds', '600')
    .action(async (_opts: Record<string, unknown>, command: Command) => {
      const opts = allOptions(command);
      const count = parsePositiveInt('--count', String(opts.count));
      const workers = parseIntList('--workers', String(opts.workers));
      const batchSizes = parseIntList('--batch-sizes', String(opts.batchSizes));
      const timeoutMs = parsePositiveInt('--timeout', String(opts.timeout)) * 1000;
      const config = configFrom(opts);
      const machine = await machineFacts(config);
      const at = new Date();
      const t = performance.now();
      const points = await runSweep({
        config,
        count,
        workers,
        batchSizes,
        timeoutMs,
        onProgress: (m) => print(m),
        onPoint: (p) => print(`  → ${p.figures.drainEventsPerSec} events/s (steady ${p.figures.ingestEventsPerSec}), RSS ${p.figures.enginePeakRssMiB} MiB`),
      });
      print('');
      print(sweepResults(points, count));
      const stamp = fileTimestamp(at.toISOString());
      const charts = sweepCharts(points, count, machine).map((c) => ({ name: sweepChartName(stamp, c.setting), content: c.svg }));
      const result: BenchResult = buildResult('sweep', {
        at,
        machine,
        settings: { count, workers, batchSizes, numWorkers: config.numWorkers, batchSize: config.batchSize, batchTimeoutMs: config.batchTimeoutMs, xreadCount: config.xreadCount },
        figures: { points },
        wallSecs: wallSince(t),
        files: charts.map((c) => c.name),
      });
      const path = writeResult(resultsDir(opts), result, charts);
      for (const c of charts) print(`Chart: ${c.name}`);
      saved(path);
    });
}
