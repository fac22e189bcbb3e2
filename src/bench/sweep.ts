import type { TributaryConfig } from '../config/schema.js';
import { runDrain } from './drain.js';
import type { MachineFacts, SweepPoint } from './result.js';
import { renderBarChart } from './svg.js';

export const DEFAULT_SWEEP_WORKERS = [1, 2, 5, 10, 20] as const;
export const DEFAULT_SWEEP_BATCH_SIZES = [100, 500, 1000, 5000] as const;

export interface SweepOptions {
  config: TributaryConfig;
  count: number;
  /** NUM_WORKERS values, each at the configured BATCH_SIZE. */
  workers: readonly number[];
  /** BATCH_SIZE values, each at the configured NUM_WORKERS. */
  batchSizes: readonly number[];
  timeoutMs?: number;
  cliPath?: string;
  onProgress?: (message: string) => void;
  /** After each point. */
  onPoint?: (point: SweepPoint) => void;
}

/**
 * The drain rate across settings: one drain run (its own stream and schema, N
 * events) per NUM_WORKERS value at the configured batch size, then per BATCH_SIZE
 * value at the configured number of workers.
 */
export async function runSweep(options: SweepOptions): Promise<SweepPoint[]> {
  const points: SweepPoint[] = [];
  const grid: Array<{ setting: SweepPoint['setting']; value: number; overrides: Partial<TributaryConfig> }> = [
    ...options.workers.map((value) => ({ setting: 'numWorkers' as const, value, overrides: { numWorkers: value } })),
    // MAX_IN_FLIGHT must hold a whole batch.
    ...options.batchSizes.map((value) => ({
      setting: 'batchSize' as const,
      value,
      // One read per batch at every size (XREAD_COUNT = BATCH_SIZE), so a point measures the batch size alone.
      overrides: { batchSize: value, xreadCount: value, maxInFlight: Math.max(options.config.maxInFlight, value) },
    })),
  ];
  for (const [i, g] of grid.entries()) {
    options.onProgress?.(`[${i + 1}/${grid.length}] ${g.setting === 'numWorkers' ? 'NUM_WORKERS' : 'BATCH_SIZE'}=${g.value}`);
    const run = await runDrain({ config: options.config, count: options.count, overrides: g.overrides, timeoutMs: options.timeoutMs, cliPath: options.cliPath, onProgress: options.onProgress });
    const point: SweepPoint = { setting: g.setting, value: g.value, numWorkers: run.settings.numWorkers, batchSize: run.settings.batchSize, figures: run.figures };
    points.push(point);
    options.onPoint?.(point);
  }
  return points;
}

/** The chart file name for one setting of a sweep: `sweep-<timestamp>-num-workers.svg`. */
export function sweepChartName(resultTimestamp: string, setting: SweepPoint['setting']): string {
  return `sweep-${resultTimestamp}-${setting === 'numWorkers' ? 'num-workers' : 'batch-size'}.svg`;
}

/** One bar chart per swept setting: drain and steady events/s against the setting's values. Pure. */
export function sweepCharts(points: readonly SweepPoint[], count: number, machine: MachineFacts): Array<{ setting: SweepPoint['setting']; svg: string }> {
  const charts: Array<{ setting: SweepPoint['setting']; svg: string }> = [];
  const where = `${count.toLocaleString('en-US')} events, ${machine.cores} cores, Redis ${machine.redis}, PostgreSQL ${String(machine.postgres).split(' ')[0]}`;
  for (const setting of ['numWorkers', 'batchSize'] as const) {
    const rows = points.filter((p) => p.setting === setting);
    if (rows.length === 0) continue;
    const fixed = setting === 'numWorkers' ? `batch ${rows[0]!.batchSize}` : `${rows[0]!.numWorkers} workers`;
    charts.push({
      setting,
      svg: renderBarChart({
        title: `Drain rate by ${setting === 'numWorkers' ? 'NUM_WORKERS' : 'BATCH_SIZE'} (${fixed})`,
        subtitle: where,
        xLabel: setting === 'numWorkers' ? 'NUM_WORKERS' : 'BATCH_SIZE',
        yLabel: 'events/s',
        categories: rows.map((p) => String(p.value)),
        series: [
          { name: 'drain, incl. engine start-up', values: rows.map((p) => p.figures.drainEventsPerSec) },
          { name: 'steady write rate (first to last row)', values: rows.map((p) => p.figures.ingestEventsPerSec) },
        ],
      }),
    });
  }
  return charts;
}
