/**
 * Where a latency tail comes from: per-batch timings recorded while a rate run goes on
 * (when each batch committed, how long its read, write and ack took, why it was
 * flushed, the oldest event's latency in it) and the engine process's GC pauses, then
 * summarised: flush reasons, the phases' percentiles, and the slowest batches with what
 * they spent their time on. The rate bench (rate.ts) runs the engine in its own
 * process, so the GC pauses are the engine's (and the bench's own, which is small).
 */
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import type { BatchReport } from '../core/runner.js';
import { summarizeLatencies, type LatencySummary } from './stats.js';

/** [ms since the run began, events, reason, read ms, write ms, ack ms, the batch's largest end-to-end latency ms]. */
export type BatchSample = [number, number, string, number, number, number, number];

export interface TailFigures {
  batches: number;
  flushReasons: Record<string, number>;
  readMs: LatencySummary;
  writeMs: LatencySummary;
  ackMs: LatencySummary;
  /** Each batch's largest end-to-end latency (commit - oldest produced_at), ms. */
  batchLatencyMs: LatencySummary;
  gc: { pauses: number; totalMs: number; maxMs: number; over10ms: number; major: number };
  /** Postgres' checkpoints over the run (pg_stat_bgwriter, read every second); null when the server would not say. */
  checkpoints: { started: number; syncMs: number; writeMs: number } | null;
  /**
   * The 5 batches with the largest latency, with their timings, the GC pauses that
   * overlapped them, and whether a Postgres checkpoint started or finished within a
   * second of their commit.
   */
  slowest: Array<{ atMs: number; events: number; reason: string; readMs: number; writeMs: number; ackMs: number; latencyMs: number; gcMsNear: number; checkpointNear: boolean }>;
  /**
   * Second by second: [second, batches, events, largest end-to-end latency ms, longest
   * write ms, GC pause ms, checkpoints started, checkpoint sync ms]: where in the run a
   * tail happened and what else happened then.
   */
  timeline: Array<[number, number, number, number, number, number, number, number]>;
}

/** pg_stat_bgwriter's checkpoint counters at one moment. */
export interface CheckpointCounters {
  /** checkpoints_timed + checkpoints_req. */
  started: number;
  /** checkpoint_sync_time, ms. */
  syncMs: number;
  /** checkpoint_write_time, ms. */
  writeMs: number;
}

export class TailRecorder {
  private readonly samples: BatchSample[] = [];
  /** [ms since the run began, pause ms, major]. */
  private readonly gcs: Array<[number, number, boolean]> = [];
  /** [ms since the run began, Postgres' checkpoint counters then]. */
  private readonly checkpoints: Array<[number, CheckpointCounters]> = [];
  private readonly observer: PerformanceObserver;

  constructor(private readonly startedAt: number = performance.now()) {
    this.observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
        this.gcs.push([Math.round(e.startTime - this.startedAt), e.duration, kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR]);
      }
    });
    this.observer.observe({ entryTypes: ['gc'] });
  }

  /** An engine 'batch' event. */
  batch(b: BatchReport): void {
    let oldest = Infinity;
    for (let i = 0; i < b.producedAt.length; i++) if (b.producedAt[i]! < oldest) oldest = b.producedAt[i]!;
    const latency = oldest === Infinity ? 0 : b.committedAt - oldest;
    const t = b.timings;
    this.samples.push([
      Math.round(performance.now() - this.startedAt),
      b.size,
      b.reason,
      round1(t.read ?? 0),
      round1(t.write ?? b.writeMs),
      round1(t.ack ?? 0),
      round1(latency),
    ]);
  }

  /** Postgres' checkpoint counters now (the rate bench reads them every second). */
  server(counters: CheckpointCounters): void {
    this.checkpoints.push([Math.round(performance.now() - this.startedAt), counters]);
  }

  stop(): TailFigures {
    this.observer.disconnect();
    const reasons: Record<string, number> = {};
    for (const s of this.samples) reasons[s[2]] = (reasons[s[2]] ?? 0) + 1;
    const col = (i: 3 | 4 | 5 | 6) => summarizeLatencies(this.samples.map((s) => s[i]));
    const gcNear = (atMs: number, spanMs: number) =>
      this.gcs.filter(([g, d]) => g + d >= atMs - spanMs && g <= atMs).reduce((sum, [, d]) => sum + d, 0);
    // The checkpoint counters' changes between readings: [ms, checkpoints started, sync ms].
    const cps: Array<[number, number, number]> = [];
    for (let i = 1; i < this.checkpoints.length; i++) {
      const [at, now] = this.checkpoints[i]!;
      const before = this.checkpoints[i - 1]![1];
      cps.push([at, now.started - before.started, now.syncMs - before.syncMs]);
    }
    const checkpointNear = (atMs: number) => cps.some(([at, started, sync]) => (started > 0 || sync > 0) && at >= atMs - 1000 && at <= atMs + 2000);
    const slowest = [...this.samples]
      .sort((a, b) => b[6] - a[6])
      .slice(0, 5)
      .map((s) => ({
        atMs: s[0],
        events: s[1],
        reason: s[2],
        readMs: s[3],
        writeMs: s[4],
        ackMs: s[5],
        latencyMs: s[6],
        gcMsNear: round1(gcNear(s[0], s[6])),
        checkpointNear: checkpointNear(s[0]),
      }));
    const pauses = this.gcs.map((g) => g[1]);
    const first = this.checkpoints[0]?.[1];
    const last = this.checkpoints.at(-1)?.[1];
    return {
      batches: this.samples.length,
      flushReasons: reasons,
      readMs: col(3),
      writeMs: col(4),
      ackMs: col(5),
      batchLatencyMs: col(6),
      gc: {
        pauses: pauses.length,
        totalMs: round1(pauses.reduce((a, b) => a + b, 0)),
        maxMs: round1(pauses.reduce((a, b) => Math.max(a, b), 0)),
        over10ms: pauses.filter((p) => p > 10).length,
        major: this.gcs.filter((g) => g[2]).length,
      },
      checkpoints:
        first && last ? { started: last.started - first.started, syncMs: round1(last.syncMs - first.syncMs), writeMs: round1(last.writeMs - first.writeMs) } : null,
      slowest,
      timeline: timeline(this.samples, this.gcs, cps),
    };
  }
}

/** The run second by second (see TailFigures.timeline). Pure. */
export function timeline(
  samples: readonly BatchSample[],
  gcs: ReadonlyArray<[number, number, boolean]>,
  checkpoints: ReadonlyArray<[number, number, number]>,
): TailFigures['timeline'] {
  const rows = new Map<number, [number, number, number, number, number, number, number, number]>();
  const row = (ms: number) => {
    const sec = Math.max(0, Math.floor(ms / 1000));
    let r = rows.get(sec);
    if (!r) rows.set(sec, (r = [sec, 0, 0, 0, 0, 0, 0, 0]));
    return r;
  };
  for (const s of samples) {
    const r = row(s[0]);
    r[1]++;
    r[2] += s[1];
    r[3] = Math.max(r[3], s[6]);
    r[4] = Math.max(r[4], s[4]);
  }
  for (const [at, ms] of gcs) row(at)[5] = round1(row(at)[5] + ms);
  for (const [at, started, sync] of checkpoints) {
    if (started === 0 && sync === 0) continue;
    const r = row(at);
    r[6] += started;
    r[7] = round1(r[7] + sync);
  }
  return [...rows.values()].sort((a, b) => a[0] - b[0]);
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}
