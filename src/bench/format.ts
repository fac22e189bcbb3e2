import type { CompareFigures } from './compare-original.js';
import type { CeilingFigures, CpuFigures, DrainFigures, ProduceFigures, RateFigures, SweepPoint } from './result.js';

/**
 * What the bench commands print (pure: figures in, text out). The rate bench keeps
 * the familiar layout of the Python pipeline's benchmark script: a header block,
 * progress every 1,000 events, then BENCHMARK RESULTS with the same labels.
 */

export const RULE = '='.repeat(60);
export const THIN_RULE = '-'.repeat(60);

function block(title: string, lines: string[]): string {
  return [RULE, title, RULE, ...lines, RULE].join('\n');
}

const secs = (s: number) => `${s.toFixed(2)} seconds`;
const perSec = (n: number) => `${Math.round(n)} events/sec`;
const ms = (v: number | null) => (v === null ? 'n/a' : `${v.toFixed(1)} ms`);
const pct = (f: number) => `${(f * 100).toFixed(1)}%`;

/** The header printed before producing. */
export function rateHeader(rate: number, durationSecs: number): string {
  return block('STREAMING BENCHMARK', [
    `Target Rate: ${rate} events/sec`,
    `Duration: ${durationSecs} seconds`,
    `Expected Total: ${rate * durationSecs} events`,
  ]);
}

/** The multiples of `every` passed going from `before` to `after` events (for one progress line each). */
export function progressMarks(before: number, after: number, every = 1000): number[] {
  const marks: number[] = [];
  for (let m = (Math.floor(before / every) + 1) * every; m <= after; m += every) marks.push(m);
  return marks;
}

/** A progress line when output is not a terminal. */
export function producedLine(done: number): string {
  return `Produced ${done} events...`;
}

/** A progress bar for a terminal (redrawn in place with a carriage return). */
export function progressBar(done: number, total: number, width = 40): string {
  const f = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(f * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} events (${(f * 100).toFixed(1)}%)`;
}

export function completedLine(total: number): string {
  return `Completed: ${total} total events produced`;
}

/** BENCHMARK RESULTS; with the engine's end-to-end figures when it ran. */
export function rateResults(f: RateFigures, engine?: { numWorkers: number; batchSize: number }): string {
  const lines = [
    `Total Events: ${f.totalEvents}`,
    `Elapsed Time: ${secs(f.elapsedSecs)}`,
    `Actual Rate: ${f.actualRate.toFixed(2)} events/sec`,
    `Target Rate: ${f.targetRate} events/sec`,
    `Accuracy: ${f.accuracyPct.toFixed(2)}%`,
  ];
  const e = f.engine;
  if (e) {
    const lag = (l: { lag: number | null; pending: number }) => `${l.lag === null ? 'unknown' : l.lag} undelivered, ${l.pending} pending`;
    lines.push(
      THIN_RULE,
      `Engine: ${engine ? `${engine.numWorkers} ${engine.numWorkers === 1 ? 'worker' : 'workers'}, batch ${engine.batchSize}, ` : ''}in-process`,
      `Events Written: ${e.written}${e.deadLetters ? ` (+${e.deadLetters} dead letters)` : ''}`,
      `Latency p50: ${ms(e.latencyMs.p50)}`,
      `Latency p95: ${ms(e.latencyMs.p95)}`,
      `Latency p99: ${ms(e.latencyMs.p99)}`,
      `Latency max: ${ms(e.latencyMs.max)}`,
      `Final Lag: ${lag(e.finalLag)}`,
      `Max Lag Seen: ${e.maxLagSeen.backlog} events (${lag(e.maxLagSeen)})`,
      `Caught Up: ${secs(e.caughtUpSecs)} after the last event was produced`,
    );
    const t = e.tail;
    if (t) {
      const p = (l: { p50: number | null; p99: number | null; max: number | null }) => `p50 ${ms(l.p50)}, p99 ${ms(l.p99)}, max ${ms(l.max)}`;
      lines.push(
        THIN_RULE,
        `Batches: ${t.batches} (${Object.entries(t.flushReasons).map(([r, n]) => `${r} ${n}`).join(', ')})`,
        `Batch read: ${p(t.readMs)}`,
        `Batch write: ${p(t.writeMs)}`,
        `Batch ack: ${p(t.ackMs)}`,
        `GC pauses: ${t.gc.pauses} (${t.gc.major} major), ${ms(t.gc.totalMs)} in all, longest ${ms(t.gc.maxMs)}, ${t.gc.over10ms} over 10 ms`,
        ...(t.checkpoints
          ? [`Postgres checkpoints: ${t.checkpoints.started} started during the run; their sync ${ms(t.checkpoints.syncMs)}, write ${secs(t.checkpoints.writeMs / 1000)}`]
          : []),
        ...t.slowest.map(
          (b) =>
            `Slow batch at ${secs(b.atMs / 1000)}: ${ms(b.latencyMs)} oldest event; ${b.events} events (${b.reason}), read ${ms(b.readMs)}, write ${ms(b.writeMs)}, ack ${ms(b.ackMs)}, GC ${ms(b.gcMsNear)}` +
            (b.checkpointNear ? '; a Postgres checkpoint started or ended within a second' : ''),
        ),
      );
    }
  }
  return block('BENCHMARK RESULTS', lines);
}

function cpuLine(cpu: CpuFigures | undefined): string | undefined {
  if (!cpu) return undefined;
  const s = (v: number | null) => (v === null ? 'n/a' : `${v.toFixed(1)} s`);
  const host = cpu.hostBusyPct === null ? '' : `; all cores ${cpu.hostBusyPct.toFixed(0)}% busy`;
  return `CPU: engine ${s(cpu.engineSecs)}, postgres ${s(cpu.postgresSecs)}, redis ${s(cpu.redisSecs)}${host}`;
}

function drainLines(f: DrainFigures): string[] {
  const lines = [
    `Rows Written: ${f.rows}${f.deadLetters ? ` (+${f.deadLetters} dead letters)` : ''}`,
    `Drain Time: ${secs(f.drainWallSecs)} (engine spawned to last row committed)`,
    `Drain Rate: ${perSec(f.drainEventsPerSec)}`,
    `Steady Write Rate: ${perSec(f.ingestEventsPerSec)} (first to last row, ${secs(f.ingestSpanSecs)})`,
  ];
  if (f.engineStartupSecs != null) lines.push(`Engine Start-up: ${secs(f.engineStartupSecs)}`);
  if (f.afterStartEventsPerSec != null) lines.push(`Rate After Start-up: ${perSec(f.afterStartEventsPerSec)}`);
  lines.push(`Engine Peak RSS: ${f.enginePeakRssMiB} MiB`);
  const cpu = cpuLine(f.cpu);
  if (cpu) lines.push(cpu);
  if (f.engineUsPerEventAfterStart != null) {
    const pg = f.postgresUsPerEvent == null ? '' : `; postgres ${f.postgresUsPerEvent.toFixed(1)} µs per event over the drain`;
    lines.push(`Engine CPU After Start-up: ${f.engineCpuAfterStartSecs!.toFixed(2)} s, ${f.engineUsPerEventAfterStart.toFixed(1)} µs per event${pg}`);
  }
  lines.push(`Pending After: ${f.pendingAfter}`);
  return lines;
}

export function drainResults(f: DrainFigures, settings: { count: number; numWorkers: number; batchSize: number; producer?: string; idShape?: string }): string {
  return block('DRAIN RESULTS', [
    `Events: ${settings.count}`,
    ...(settings.producer === 'external' ? [`Producer: redis-cli --pipe (outside process), event_id ${settings.idShape}`] : []),
    `Engine: ${settings.numWorkers} ${settings.numWorkers === 1 ? 'worker' : 'workers'}, batch ${settings.batchSize} (child process)`,
    ...(f.loadEventsPerSec !== null ? [`Load Rate: ${perSec(f.loadEventsPerSec)} (pre-loaded, engine stopped)`] : []),
    ...drainLines(f),
  ]);
}

export function compareResults(f: CompareFigures): string {
  return block('TRIBUTARY AGAINST THE PYTHON ORIGINAL', [
    `Events: ${f.count} per drain (event_type, payload, timestamp; no event_id), ${f.original.length} ${f.original.length === 1 ? 'round' : 'rounds'}`,
    `Python original: ${f.original.map((o) => perSec(Math.round(o.eventsPerSec))).join(', ')}`,
    `Tributary:       ${f.ours.map((o) => perSec(o.drainEventsPerSec)).join(', ')} (engine start to last row)`,
    `Ratio: ${f.ratio}x (median ${perSec(f.oursEventsPerSec)} against ${perSec(f.originalEventsPerSec)})`,
  ]);
}

export function produceResults(f: ProduceFigures): string {
  return block('PRODUCE RESULTS', [
    `Total Events: ${f.events}`,
    `Batch: ${f.batch} events per produceBatch, ${f.concurrency} in flight`,
    `Elapsed Time: ${secs(f.elapsedSecs)}`,
    `Rate: ${perSec(f.eventsPerSec)}`,
    ...(f.cpu ? [`CPU: ${produceCpu(f)}`] : []),
  ]);
}

/** The producer's and Redis' CPU over a produce run, in seconds and µs per event. */
export function produceCpu(f: ProduceFigures): string {
  if (!f.cpu) return '–';
  const us = (v: number | null) => (v === null || f.events === 0 ? '?' : ((v / f.events) * 1e6).toFixed(1));
  return `producer ${f.cpu.producerSecs} s (${us(f.cpu.producerSecs)} µs per event), redis ${f.cpu.redisSecs ?? '?'} s (${us(f.cpu.redisSecs)} µs per event)`;
}

export function ceilingResults(f: CeilingFigures, count: number): string {
  return block('CEILING RESULTS', [
    `Events: ${count}`,
    `Postgres COPY: ${perSec(f.postgresCopyEventsPerSec)} (one COPY, text format, ${secs(f.postgresCopySecs)})`,
    `Engine write alone: ${perSec(f.sinkWriteEventsPerSec)} (the sink's binary COPY, ${f.sinkWriteSecs === undefined ? '' : secs(f.sinkWriteSecs)}, no Redis)`,
    `Redis XADD: ${perSec(f.redisXaddEventsPerSec)} (pipelined, ${secs(f.redisXaddSecs)})`,
    `Redis XREADGROUP+XACK: ${perSec(f.redisReadAckEventsPerSec)} (one consumer, ${secs(f.redisReadAckSecs)})`,
    `produceBatch: ${perSec(f.produce.eventsPerSec)} (batch ${f.produce.batch}, ${f.produce.concurrency} in flight, one process)`,
    `Ceiling: ${perSec(f.ceilingEventsPerSec)} (min of Postgres COPY and Redis XREADGROUP+XACK)`,
    THIN_RULE,
    ...drainLines(f.drain),
    `Drain / Ceiling: ${pct(f.drainFractionOfCeiling)} (steady: ${pct(f.steadyFractionOfCeiling)})`,
  ]);
}

export function sweepResults(points: readonly SweepPoint[], count: number): string {
  const lines: string[] = [`Events per run: ${count}`];
  for (const setting of ['numWorkers', 'batchSize'] as const) {
    const rows = points.filter((p) => p.setting === setting);
    if (rows.length === 0) continue;
    lines.push(THIN_RULE, setting === 'numWorkers' ? `NUM_WORKERS (batch ${rows[0]!.batchSize})` : `BATCH_SIZE (${rows[0]!.numWorkers} workers)`);
    for (const p of rows) {
      lines.push(
        `${String(p.value).padStart(6)}: ${perSec(p.figures.drainEventsPerSec)} (steady ${perSec(p.figures.ingestEventsPerSec)}, RSS ${p.figures.enginePeakRssMiB} MiB)`,
      );
    }
  }
  return block('SWEEP RESULTS', lines);
}
