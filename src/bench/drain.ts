import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TributaryConfig } from '../config/schema.js';
import { TributaryError } from '../errors.js';
import { loadExternal, type IdShape } from './external.js';
import { countRows, ingestSpan, preload, readLag, waitForRows } from './load.js';
import { nodeCpuSecs } from './cluster.js';
import { CpuMeter, peakRssKb, processCpuSecs } from './machine.js';
import { summarizeCpuProfile, type CpuProfile, type ProfileSummary } from './profile.js';
import type { DrainFigures } from './result.js';
import { ratePerSec } from './stats.js';
import { configEnv, openWorkspace, type BenchWorkspace } from './workspace.js';

/** `dist/cli/main.js` of this package, whether this module runs from dist/ or (in tests) from src/. */
export function defaultCliPath(): string {
  const beside = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  return existsSync(beside) ? beside : fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
}

/** The Node flags `tributary` runs with (its shebang, run.sh). */
export const CLI_NODE_FLAGS = ['--max-semi-space-size=32'] as const;

export interface DrainOptions {
  /** The settings; the bench runs them on its own stream and schema. */
  config: TributaryConfig;
  count: number;
  /** Settings changed for this run (the sweep's NUM_WORKERS / BATCH_SIZE). */
  overrides?: Partial<TributaryConfig>;
  /** Give up after this long (default 600 s). */
  timeoutMs?: number;
  /** The CLI to run as `node <cliPath> start` (default dist/cli/main.js). */
  cliPath?: string;
  /** Run the engine with `node --cpu-prof` writing its profile into this directory. */
  cpuProfileDir?: string;
  /** Stage messages (the library never prints). */
  onProgress?: (message: string) => void;
  /** Drain this workspace, whose stream already holds `count` entries (the ceiling bench); it is not cleaned up. */
  workspace?: BenchWorkspace;
  /** Pre-load events whose payload is about this many bytes of JSON (default: the small sample events). */
  payloadBytes?: number;
  /** Load the events with `redis-cli --pipe` (an outside producer, external.ts) with event_ids of this shape, instead of our producer. */
  external?: IdShape;
  /**
   * Redis servers (URLs of each node: a cluster's masters) whose CPU (INFO cpu) is read
   * before the engine starts and after the last row, each on its own: `run.masters`.
   */
  masters?: readonly string[];
}

/** One Redis server's CPU over a drain. */
export interface MasterCpu {
  node: string;
  cpuSecs: number | null;
  /** µs of this server's CPU per event drained. */
  usPerEvent: number | null;
}

export interface DrainRun {
  settings: {
    count: number;
    numWorkers: number;
    batchSize: number;
    batchTimeoutMs: number;
    xreadCount: number;
    maxInFlight: number;
    /** PARTITIONS of the run, when above 1 (one worker per partition). */
    partitions?: number;
    /** With payloadBytes: the payload size and the byte settings of the run. */
    payloadBytes?: number;
    batchMaxBytes?: number;
    maxInFlightBytes?: number;
    maxEntryBytes?: number;
    /** `external`: loaded by redis-cli --pipe, with event_ids shaped `idShape`. */
    producer?: 'ours' | 'external';
    idShape?: IdShape;
  };
  figures: DrainFigures;
  /** When cpuProfileDir was given: the profile's path and its summary. */
  profile?: { path: string; summary: ProfileSummary };
  /** When masters were given: each one's CPU over the drain. */
  masters?: MasterCpu[];
}

/**
 * The drain benchmark: N events pre-loaded with the engine stopped, then the engine
 * started as a child process (`node dist/cli/main.js start`, so its RSS is its own);
 * timed from the spawn to the last row committed (max(ingested_at)). Polls slowly
 * (250 ms, Redis first) so that the polling does not compete with the engine.
 */
export async function runDrain(options: DrainOptions): Promise<DrainRun> {
  const progress = options.onProgress ?? (() => {});
  const ws = options.workspace ?? (await openWorkspace('drain', options.config, options.overrides));
  const c = ws.config;
  const count = options.count;
  let child: ChildProcess | undefined;
  try {
    let loadSecs: number | null = null;
    if (!options.workspace) {
      progress(`loading ${count} events into ${c.streamKey} (engine stopped)${options.external ? ` with redis-cli --pipe, event_id ${options.external}` : ''}`);
      if (options.external && c.partitions > 1) {
        throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--producer', 'external loads the one stream key with redis-cli --pipe: not with --partitions above 1']);
      }
      loadSecs = options.external
        ? await loadExternal(c.redisUrl, c.streamKey, count, options.external)
        : await preload(ws, count, undefined, undefined, options.payloadBytes);
      progress(`loaded in ${loadSecs.toFixed(2)} s (${ratePerSec(count, loadSecs)} events/s)`);
    }

    const meter = await CpuMeter.start(ws.redis);
    const mastersAt = await Promise.all((options.masters ?? []).map((u) => nodeCpuSecs(u)));
    // As the bin's shebang runs it (src/cli/main.ts).
    const nodeArgs: string[] = [...CLI_NODE_FLAGS];
    let profileName: string | undefined;
    if (options.cpuProfileDir) {
      mkdirSync(options.cpuProfileDir, { recursive: true });
      profileName = `engine-${ws.tag}.cpuprofile`;
      nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`, `--cpu-prof-name=${profileName}`);
    }
    const spawnedAt = Date.now();
    child = spawn(process.execPath, [...nodeArgs, options.cliPath ?? defaultCliPath(), 'start'], {
      env: { ...configEnv(c), NO_COLOR: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const pid = child.pid;
    if (pid === undefined) throw new Error('could not spawn the engine');
    progress(`engine spawned (pid ${pid}): ${c.numWorkers} ${c.numWorkers === 1 ? 'worker' : 'workers'}, batch ${c.batchSize}; waiting for ${count} rows`);
    let log = '';
    let startedAt: number | undefined;
    let cpuAtStart: number | null = null;
    child.stderr!.on('data', (chunk: Buffer) => {
      log = (log + chunk.toString('utf8')).slice(-20_000);
      if (startedAt === undefined && log.includes('engine started')) {
        startedAt = Date.now();
        cpuAtStart = processCpuSecs(pid);
      }
    });
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));

    let peakKb = 0;
    const counted = await waitForRows(ws, count, {
      timeoutMs: options.timeoutMs ?? 600_000,
      onPoll: () => {
        if (child!.exitCode !== null || child!.signalCode !== null) throw new Error(`the engine exited early (${child!.exitCode ?? child!.signalCode}):\n${log}`);
        peakKb = Math.max(peakKb, peakRssKb(pid) ?? 0);
      },
    });
    // VmHWM is the peak of the process's life: read it once more while it still lives.
    peakKb = Math.max(peakKb, peakRssKb(pid) ?? 0);
    const cpu = await meter.stop(pid);
    const mastersAfter = await Promise.all((options.masters ?? []).map((u) => nodeCpuSecs(u)));
    const span = await ingestSpan(ws);

    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000).unref())]);
    if (code === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
    child = undefined;
    const pendingAfter = (await readLag(ws)).pending;
    const final = await countRows(ws);

    // End = the last commit by Postgres's clock (same host), not when the slow poll noticed it.
    const drainWallSecs = (span.lastMs - spawnedAt) / 1000;
    const ingestSpanSecs = (span.lastMs - span.firstMs) / 1000;
    const afterStartSecs = startedAt === undefined ? null : (span.lastMs - startedAt) / 1000;
    const figures: DrainFigures = {
      rows: final.rows,
      pendingAfter,
      loadEventsPerSec: loadSecs === null ? null : ratePerSec(count, loadSecs),
      drainWallSecs: Number(drainWallSecs.toFixed(3)),
      drainEventsPerSec: ratePerSec(count, drainWallSecs),
      ingestSpanSecs: Number(ingestSpanSecs.toFixed(3)),
      ingestEventsPerSec: ratePerSec(count, ingestSpanSecs),
      enginePeakRssMiB: Math.round(peakKb / 1024),
      engineStartupSecs: startedAt === undefined ? null : Number(((startedAt - spawnedAt) / 1000).toFixed(3)),
      afterStartSecs: afterStartSecs === null ? null : Number(afterStartSecs.toFixed(3)),
      afterStartEventsPerSec: afterStartSecs === null ? null : ratePerSec(count, afterStartSecs),
      deadLetters: counted.deadLetters,
      cpu,
    };
    if (cpuAtStart !== null && cpu.engineSecs !== null) {
      const secs = Math.max(0, cpu.engineSecs - cpuAtStart);
      figures.engineCpuAfterStartSecs = Number(secs.toFixed(2));
      figures.engineUsPerEventAfterStart = Number(((secs / count) * 1e6).toFixed(2));
    }
    if (cpu.postgresSecs !== null) figures.postgresUsPerEvent = Number(((cpu.postgresSecs / count) * 1e6).toFixed(2));
    const run: DrainRun = {
      settings: {
        count,
        numWorkers: c.numWorkers,
        batchSize: c.batchSize,
        batchTimeoutMs: c.batchTimeoutMs,
        xreadCount: c.xreadCount,
        maxInFlight: c.maxInFlight,
        ...(c.partitions > 1 ? { partitions: c.partitions } : {}),
        ...(options.external === undefined ? {} : { producer: 'external' as const, idShape: options.external }),
        ...(options.payloadBytes === undefined
          ? {}
          : { payloadBytes: options.payloadBytes, batchMaxBytes: c.batchMaxBytes, maxInFlightBytes: c.maxInFlightBytes, maxEntryBytes: c.maxEntryBytes }),
      },
      figures,
    };
    if (options.masters) {
      run.masters = options.masters.map((node, i) => {
        const [a, b] = [mastersAt[i], mastersAfter[i]];
        const secs = a === null || a === undefined || b === null || b === undefined ? null : Number((b - a).toFixed(2));
        return { node: node.replace(/\/\/[^@/]*@/, '//'), cpuSecs: secs, usPerEvent: secs === null || count === 0 ? null : Number(((secs / count) * 1e6).toFixed(2)) };
      });
    }
    if (options.cpuProfileDir && profileName) {
      const path = join(options.cpuProfileDir, profileName);
      if (existsSync(path)) {
        figures.cpuProfile = basename(path);
        run.profile = { path, summary: summarizeCpuProfile(JSON.parse(readFileSync(path, 'utf8')) as CpuProfile) };
      }
    }
    return run;
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (!options.workspace) await ws.cleanup();
  }
}
