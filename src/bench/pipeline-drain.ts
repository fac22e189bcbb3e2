/**
 * The pipeline-file drain benchmark: the same N events drained, one after the other,
 * by the built-in events pipeline (JSONB, `tributary start`) and by each pipeline file
 * given (`tributary run <file>`), each as a child process on a stream and schema of its
 * own. Rates are timed from the child's "started" line to the moment its group has
 * nothing undelivered or pending (polled every 50 ms in Redis, the same way for every
 * run), so the figures compare like with like.
 *
 * The events are the sample events with two payload fields added: `bench_seq` (the
 * event's position) and `bench_key`, a key that repeats an earlier one for
 * `repeatShare` of the events (upsert pipelines key on it).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import type { TributaryConfig } from '../config/schema.js';
import { sleep } from '../core/backoff.js';
import { TributaryError } from '../errors.js';
import { parsePipelineFile } from '../pipeline-file/spec.js';
import { quoteIdent } from '../postgres/pool.js';
import { Producer, type ProducerEvent } from '../producer/producer.js';
import { sampleEvent } from '../producer/sample.js';
import { readGroups } from '../redis/xinfo.js';
import { CLI_NODE_FLAGS, defaultCliPath } from './drain.js';
import { CpuMeter, peakRssKb } from './machine.js';
import type { CpuFigures } from './result.js';
import { ratePerSec } from './stats.js';
import { configEnv, openWorkspace, type BenchWorkspace } from './workspace.js';

export interface PipelineDrainOptions {
  config: TributaryConfig;
  count: number;
  files: readonly string[];
  /** Share of events whose bench_key repeats an earlier one (default 0.1). */
  repeatShare?: number;
  timeoutMs?: number;
  cliPath?: string;
  /** Run each pipeline process with `node --cpu-prof`, its profile into this directory. */
  cpuProfileDir?: string;
  onProgress?: (message: string) => void;
}

export interface PipelineDrainRun {
  /** `events (JSONB)` for the built-in pipeline, else the file's name. */
  label: string;
  file: string | null;
  mode: string;
  columns: number;
  workers: number;
  batchSize: number;
  drainSecs: number;
  eventsPerSec: number;
  /** This run's rate over the built-in pipeline's, same events, same sitting. */
  ofBaseline: number | null;
  rows: number;
  deadLetters: number;
  enginePeakRssMiB: number;
  cpu: CpuFigures;
  /** With cpuProfileDir: the process's CPU profile. */
  cpuProfile?: string;
}

export interface PipelineDrainFigures {
  count: number;
  repeatShare: number;
  distinctKeys: number;
  runs: PipelineDrainRun[];
}

/** The bench's events: sample events with bench_seq and a bench_key repeating for `repeatShare` of them. */
export function pipelineBenchEvents(count: number, repeatShare: number, random: () => number = Math.random): { events: ProducerEvent[]; distinctKeys: number } {
  const events = new Array<ProducerEvent>(count);
  let keys = 0;
  for (let i = 0; i < count; i++) {
    const e = sampleEvent(random);
    const repeat = keys > 0 && random() < repeatShare;
    const key = repeat ? Math.floor(random() * keys) : keys++;
    events[i] = { type: e.type, payload: { ...e.payload, bench_key: `k${key}`, bench_seq: i } };
  }
  return { events, distinctKeys: keys };
}

async function preloadEvents(ws: BenchWorkspace, events: readonly ProducerEvent[]): Promise<void> {
  const producer = new Producer({ redisUrl: ws.config.redisUrl, streamKey: ws.config.streamKey, name: `tributary:${ws.tag}:preload` });
  try {
    await producer.connect();
    for (let i = 0; i < events.length; i += 1000) await producer.produceBatch(events.slice(i, i + 1000));
  } finally {
    await producer.close();
  }
}

/** The group has read the whole stream and holds nothing pending. */
async function groupDone(ws: BenchWorkspace, group: string): Promise<boolean> {
  const g = (await readGroups(ws.redis, ws.config.streamKey)).find((x) => x.name === group);
  return g !== undefined && g.lag === 0 && g.pending === 0;
}

interface Candidate {
  label: string;
  file: string | null;
  args: string[];
  group: string;
  mode: string;
  columns: number;
  workers: number;
  batchSize: number;
  table: string;
}

/** The file moved onto the workspace's stream, schema and dead letters (a copy in tmp). */
function candidateFor(file: string, ws: BenchWorkspace): Candidate & { tmp: string } {
  const text = readFileSync(file, 'utf8');
  const spec = parsePipelineFile(text, file);
  const doc = parseDocument(text);
  doc.setIn(['source', 'stream'], ws.config.streamKey);
  doc.setIn(['sink', 'table'], `${ws.config.pgSchema}.${spec.sink.table}`);
  doc.setIn(['dead_letters', 'stream'], ws.config.dlqStream);
  const tmp = join(tmpdir(), `${ws.tag}-${spec.name}.yaml`);
  writeFileSync(tmp, doc.toString());
  return {
    label: spec.name,
    file,
    args: ['run', tmp],
    group: spec.source.group,
    mode: `${spec.sink.mode}${spec.sink.version ? ` (version ${spec.sink.version})` : ''}`,
    columns: spec.sink.columns.length,
    workers: spec.workers,
    batchSize: spec.batch.count,
    table: `${quoteIdent(ws.config.pgSchema)}.${quoteIdent(spec.sink.table)}`,
    tmp,
  };
}

async function drainOnce(ws: BenchWorkspace, c: Candidate, count: number, options: PipelineDrainOptions): Promise<Omit<PipelineDrainRun, 'ofBaseline'>> {
  const meter = await CpuMeter.start(ws.redis);
  const profileName = `pipeline-${c.group}-${Date.now()}.cpuprofile`;
  const profiling = options.cpuProfileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`, `--cpu-prof-name=${profileName}`];
  if (options.cpuProfileDir !== undefined) mkdirSync(options.cpuProfileDir, { recursive: true });
  const child = spawn(process.execPath, [...CLI_NODE_FLAGS, ...profiling, options.cliPath ?? defaultCliPath(), ...c.args], {
    env: { ...configEnv(ws.config), NO_COLOR: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn the pipeline');
  let log = '';
  let startedAt: number | undefined;
  child.stderr!.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString('utf8')).slice(-20_000);
    if (startedAt === undefined && /started/.test(log)) startedAt = performance.now();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    const until = performance.now() + (options.timeoutMs ?? 600_000);
    let peakKb = 0;
    for (;;) {
      await sleep(50);
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${c.label} exited early (${child.exitCode ?? child.signalCode}):\n${log}`);
      if (startedAt !== undefined && (await groupDone(ws, c.group))) break;
      peakKb = Math.max(peakKb, peakRssKb(pid) ?? 0);
      if (performance.now() > until) throw new TributaryError('TRIB_ERR_WAIT_TIMEOUT', [options.timeoutMs ?? 600_000, `${c.label} to drain ${count} events`]);
    }
    const doneAt = performance.now();
    peakKb = Math.max(peakKb, peakRssKb(pid) ?? 0);
    const cpu = await meter.stop(pid);
    const drainSecs = (doneAt - startedAt!) / 1000;
    const r = await ws.pool.query<{ rows: string; dead: string }>(
      `SELECT (SELECT count(*) FROM ${c.table}) AS rows, (SELECT count(*) FROM ${quoteIdent(ws.config.pgSchema)}.dead_letter_queue) AS dead`,
    );
    return {
      label: c.label,
      file: c.file,
      mode: c.mode,
      columns: c.columns,
      workers: c.workers,
      batchSize: c.batchSize,
      drainSecs: Number(drainSecs.toFixed(3)),
      eventsPerSec: ratePerSec(count, drainSecs),
      rows: Number(r.rows[0]!.rows),
      deadLetters: Number(r.rows[0]!.dead),
      enginePeakRssMiB: Math.round(peakKb / 1024),
      cpu,
      ...(options.cpuProfileDir === undefined ? {} : { cpuProfile: join(options.cpuProfileDir, profileName) }),
    };
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
}

export async function runPipelineDrain(options: PipelineDrainOptions): Promise<PipelineDrainFigures> {
  const progress = options.onProgress ?? (() => {});
  const repeatShare = options.repeatShare ?? 0.1;
  for (const f of options.files) parsePipelineFile(readFileSync(f, 'utf8'), f); // every file checks before anything runs
  const { events, distinctKeys } = pipelineBenchEvents(options.count, repeatShare);
  const runs: PipelineDrainRun[] = [];
  for (const file of [null, ...options.files]) {
    const ws = await openWorkspace('pipelines', options.config);
    let tmp: string | undefined;
    try {
      let c: Candidate;
      if (file === null) {
        const k = ws.config;
        c = {
          label: 'events (JSONB)',
          file: null,
          args: ['start'],
          group: k.group,
          mode: 'insert (key event_id)',
          columns: 5,
          workers: k.numWorkers,
          batchSize: k.batchSize,
          table: `${quoteIdent(k.pgSchema)}.${quoteIdent(k.eventsTable)}`,
        };
      } else {
        const made = candidateFor(file, ws);
        tmp = made.tmp;
        c = made;
      }
      progress(`${c.label}: loading ${options.count} events`);
      await preloadEvents(ws, events);
      progress(`${c.label}: draining (${c.mode}, ${c.columns} columns, ${c.workers} workers, batch ${c.batchSize})`);
      const run = await drainOnce(ws, c, options.count, options);
      const base = runs[0]?.eventsPerSec;
      runs.push({ ...run, ofBaseline: file === null ? 1 : base ? Number((run.eventsPerSec / base).toFixed(3)) : null });
      progress(`${c.label}: ${run.eventsPerSec} events/s, ${run.rows} rows, ${run.deadLetters} dead letters`);
    } finally {
      if (tmp) rmSync(tmp, { force: true });
      await ws.cleanup();
    }
  }
  return { count: options.count, repeatShare, distinctKeys, runs };
}
