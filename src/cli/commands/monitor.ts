import { writeSync } from 'node:fs';
import type { Command } from 'commander';
import { sleep } from '../../core/backoff.js';
import { TributaryError } from '../../errors.js';
import type { TributaryConfig } from '../../config/schema.js';
import {
  collectMonitorSnapshot,
  DEFAULT_IDLE_WARNING_MS,
  DEFAULT_LAG_WARNING,
  formatMonitor,
  type MonitorOptions,
  type MonitorSnapshot,
} from '../../observability/monitor.js';
import { collectPartitionedSnapshot, formatPartitions, type PartitionedMonitorSnapshot } from '../../observability/monitor-partitions.js';
import { parsePartitionOption } from '../../ops/partitioned.js';
import type { PgPool } from '../../postgres/pool.js';
import type { RedisConnection } from '../../redis/client.js';
import { openConnections } from '../connect.js';
import { quitOnKey } from '../keys.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';
import { ABORTED, untilAborted } from '../../core/backoff.js';

const ESC = '\x1b[';
/** Alternate screen on, cursor hidden. */
const ENTER = `${ESC}?1049h${ESC}?25l`;
/** Cursor shown, alternate screen off: the terminal as it was. */
const LEAVE = `${ESC}?25h${ESC}?1049l`;

export interface MonitorCommandOptions extends MonitorOptions {
  /** Seconds between refreshes (ignored with once). */
  intervalSec: number;
  /** One snapshot, then return. */
  once: boolean;
  /** JSON instead of the dashboard. */
  json: boolean;
  /** With once: seconds between the two samples the rates are computed from (0: one sample, no rates). */
  sampleSec?: number;
  /** PARTITIONS > 1: only this partition (default all). */
  partition?: number;
}

/** A snapshot: the plain one, or on a partitioned stream the partitions' (with a row each). */
function collect(conn: { redis: RedisConnection; pool: PgPool }, config: TributaryConfig, previous: MonitorSnapshot | undefined, o: MonitorCommandOptions): Promise<PartitionedMonitorSnapshot> {
  return config.partitions > 1
    ? collectPartitionedSnapshot(conn.redis, conn.pool, config, previous, o, o.partition)
    : collectMonitorSnapshot(conn.redis, conn.pool, config, previous, o);
}

/** Parses `monitor [interval-seconds]`: a positive number of seconds (at least 0.1). */
export function parseInterval(text: string | undefined): number {
  if (text === undefined) return 5;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0.1) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['interval-seconds', `must be a number of seconds, at least 0.1 (got ${JSON.stringify(text)})`]);
  }
  return n;
}

function parseNonNegative(name: string, text: unknown, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [name, `must be a non-negative number (got ${JSON.stringify(text)})`]);
  return n;
}

/**
 * Runs the monitor: one snapshot (`once`, or `json` without an interval), or a
 * refresh loop — redrawn in place on a terminal (alternate screen, cursor hidden,
 * `q` or Ctrl-C quits, the terminal restored on every exit path), appended as plain
 * text or JSON lines otherwise (SIGINT/SIGTERM stop it).
 */
export async function runMonitor(config: TributaryConfig, o: MonitorCommandOptions): Promise<void> {
  const out = process.stdout;
  const color = out.isTTY === true && !process.env.NO_COLOR;
  // Both servers must answer once at the start (a coded error otherwise); later, a failed
  // refresh is reported and retried. Redis fails fast, so a refresh never hangs on it.
  const conn = await openConnections(config, 'monitor', { max: 4, statementTimeoutMs: 10_000 });
  const format = (s: PartitionedMonitorSnapshot, extra: { notice?: string; footer?: string; live?: boolean } = {}) => {
    // A partitioned stream: the partition table goes under the dashboard, which gets the rows left.
    const table = s.partitions ? formatPartitions(s.partitions) : undefined;
    const tableRows = table === undefined ? 0 : table.split('\n').length + 1;
    const text = formatMonitor(s, {
      color: extra.live ? !process.env.NO_COLOR : color,
      lagWarning: o.lagWarning,
      notice: extra.notice,
      footer: extra.footer,
      ...(extra.live ? { width: out.columns, height: out.rows === undefined ? undefined : Math.max(5, out.rows - tableRows) } : {}),
    });
    return table === undefined ? text : `${text}\n\n${table}`;
  };
  try {
    if (o.once) {
      // Rates need two samples: take one, wait, and report the second against it.
      let s = await collect(conn, config, undefined, o);
      if ((o.sampleSec ?? 0) > 0) {
        await sleep((o.sampleSec ?? 0) * 1000);
        s = await collect(conn, config, s, o);
      }
      print(o.json ? JSON.stringify(s, null, 2) : format(s));
      return;
    }
    const live = !o.json && out.isTTY === true;
    await refreshLoop(config, conn, o, live, format);
  } finally {
    await conn.close();
  }
}

async function refreshLoop(
  config: TributaryConfig,
  conn: { redis: RedisConnection; pool: PgPool },
  o: MonitorCommandOptions,
  live: boolean,
  format: (s: PartitionedMonitorSnapshot, extra?: { notice?: string; footer?: string; live?: boolean }) => string,
): Promise<void> {
  const out = process.stdout;
  const stop = new AbortController();
  const quit = () => stop.abort();
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  let last: MonitorSnapshot | undefined;
  let notice: string | undefined;
  const intervalMs = Math.round(o.intervalSec * 1000);
  const footer = `refresh every ${o.intervalSec} s · q or Ctrl-C quits`;

  const draw = () => {
    if (!last) {
      if (notice) out.write(`${ESC}H${notice}${ESC}K${ESC}J`);
      return;
    }
    const text = format(last, { notice, footer, live: true });
    out.write(`${ESC}H${text.split('\n').join(`${ESC}K\n`)}${ESC}K${ESC}J`);
  };
  let releaseKeys = () => {};
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    releaseKeys();
    // Synchronous: it must reach the terminal even from an 'exit' handler.
    if (live) writeSync(1, LEAVE);
  };

  for (const s of signals) process.on(s, quit);
  process.on('exit', restore);
  try {
    if (live) {
      out.write(ENTER);
      out.on('resize', draw);
      releaseKeys = quitOnKey(quit);
    }
    while (!stop.signal.aborted) {
      const started = Date.now();
      try {
        const next = await untilAborted(collect(conn, config, last, o), stop.signal);
        if (next === ABORTED) break;
        last = next;
        notice = undefined;
      } catch (err) {
        notice = `refresh failed at ${new Date().toTimeString().slice(0, 8)}: ${(err as Error).message}; retrying`;
        if (!live) process.stderr.write(`tributary monitor: ${notice}\n`);
      }
      if (live) draw();
      else if (last && notice === undefined) print(o.json ? JSON.stringify(last) : `${format(last)}\n`);
      await sleep(Math.max(0, intervalMs - (Date.now() - started)), stop.signal);
    }
  } finally {
    for (const s of signals) process.off(s, quit);
    out.off('resize', draw);
    restore();
    process.off('exit', restore);
  }
}

export function registerMonitor(program: Command): void {
  withConfigOptions(
    program
      .command('monitor')
      .description('the pipeline dashboard, refreshed in place (q quits): stream, groups, consumers, rates, latency, dead letters, batches')
      .argument('[interval-seconds]', 'seconds between refreshes (default 5)')
      .option('--once', 'one snapshot, then exit')
      .option('--sample <seconds>', 'with --once: measure rates over this many seconds (0: no rates)', '1')
      .option('--json', 'machine-readable: one JSON object (with an interval and no --once: one JSON line per refresh)')
      .option('--lag-warning <n>', `warn when a group's lag is above this (default ${DEFAULT_LAG_WARNING})`)
      .option('--idle-warning <seconds>', `warn when a consumer with pending entries is idle longer (default ${DEFAULT_IDLE_WARNING_MS / 1000})`)
      .option('--partition <p>', 'with PARTITIONS > 1: only partition P (0 to PARTITIONS-1); default every partition, a row each and the totals'),
  ).action(async (interval: string | undefined, opts: Record<string, unknown>) => {
    const intervalSec = parseInterval(interval);
    const lagWarning = parseNonNegative('--lag-warning', opts.lagWarning, DEFAULT_LAG_WARNING);
    const idleWarningMs = parseNonNegative('--idle-warning', opts.idleWarning, DEFAULT_IDLE_WARNING_MS / 1000) * 1000;
    const json = opts.json === true;
    // --json without an interval is one object, like --once.
    const once = opts.once === true || (json && interval === undefined);
    const sampleSec = parseNonNegative('--sample', opts.sample, 1);
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    await runMonitor(config, { intervalSec, once, json, lagWarning, idleWarningMs, sampleSec, ...(partition === undefined ? {} : { partition }) });
  });
}
