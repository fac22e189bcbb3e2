import type { Command } from 'commander';
import type { TributaryConfig } from '../../config/schema.js';
import { type ClaimResult } from '../../ops/pending.js';
import { claimAcross, parsePartitionOption, pendingAcross } from '../../ops/partitioned.js';
import { parseDuration } from '../../ops/time.js';
import { withRedis } from '../connect.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';
import { formatTable } from './dlq.js';
import { parsePositiveInt } from './produce.js';

/** `--idle`: ms (`60000`) or a duration (`90s`, `5m`). */
export function parseIdle(value: string, name = '--idle'): number {
  return /^\d+$/.test(value.trim()) ? Number(value.trim()) : parseDuration(value, name);
}

/** 850 ms, 12.3 s, 4m 05s, 2h 10m, 3d 04h. */
export function formatMs(ms: number): string {
  if (ms < 0) return 'never';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m ${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${two(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d ${two(Math.floor(s / 3600) % 24)}h`;
}

/**
 * How the claimed entries get processed. An engine's consumers are
 * `<CONSUMER_NAME>-<n>` (workers) and `<CONSUMER_NAME>-reclaim`; each finishes its own
 * pending entries when it starts, and a running engine reclaims any entry idle longer
 * than CLAIM_IDLE_MS.
 */
export function claimAdvice(result: ClaimResult, config: TributaryConfig): string[] {
  const lines = [
    `A running engine on stream ${config.streamKey}, group ${config.group} reclaims them once they have been idle for its ` +
      `CLAIM_IDLE_MS (${config.claimIdleMs} ms here); that counts one more delivery, and entries delivered more than ` +
      `MAX_DELIVERIES (${config.maxDeliveries}) times are dead-lettered.`,
  ];
  const match = /^(.+)-(\d+|reclaim)$/.exec(result.consumer);
  if (match) {
    const workers = match[2] === 'reclaim' ? '' : ` --num-workers ${match[2]} (or more)`;
    lines.push(
      `\`tributary start --consumer-name ${match[1]}${workers}\` processes them as soon as it starts: its consumer ` +
        `${result.consumer} first finishes its own pending entries, without counting another delivery.`,
    );
  } else {
    lines.push(
      `No engine consumer is named ${result.consumer} (engines use <CONSUMER_NAME>-<n> and <CONSUMER_NAME>-reclaim), so no ` +
        `engine picks them up at start-up; to have \`tributary start --consumer-name <name>\` process them at once, claim ` +
        `them to <name>-reclaim or <name>-1 instead (--to).`,
    );
  }
  return lines;
}

/** The `--partition P` flag of the operating commands. */
export const PARTITION_FLAG = '--partition <p>';
export const PARTITION_HELP = 'with PARTITIONS > 1: only partition P (0 to PARTITIONS-1); default all, added up';

/** "4 partitions" or "partition 2 of 4". */
export function partitionsShown(partitions: number, only: number | undefined): string {
  return only === undefined ? `${partitions} partitions` : `partition ${only} of ${partitions}`;
}

export function registerPending(program: Command): void {
  withConfigOptions(
    program
      .command('pending')
      .description('pending entries of the group: total, ID range, per consumer, and the oldest with idle time and delivery count')
      .option('--limit <n>', 'oldest entries to list', '10')
      .option(PARTITION_FLAG, PARTITION_HELP)
      .option('--json', 'machine-readable'),
  ).action(async (opts: Record<string, unknown>) => {
    const limit = parsePositiveInt('--limit', String(opts.limit));
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    const s = await withRedis(config, 'pending', (redis) => pendingAcross(redis, config, { limit, partition }));
    if (opts.json) {
      print(JSON.stringify(s, null, 2));
      return;
    }
    const parts = s.partitions;
    print(
      `stream ${s.streamKey}${parts ? ` (${partitionsShown(config.partitions, partition)})` : ''}, group ${s.group}: ${s.total} pending` +
        (s.total > 0 ? ` (IDs ${s.smallestId} to ${s.largestId})` : ''),
    );
    if (parts) {
      print('');
      print(formatTable(['PARTITION', 'KEY', 'PENDING'], parts.map((p) => [String(p.partition), p.streamKey, String(p.total)])));
    }
    if (s.total === 0) return;
    print('');
    print(formatTable(['CONSUMER', 'PENDING'], s.consumers.map((c) => [c.name, String(c.pending)])));
    print('');
    print(`oldest ${s.oldest.length}:`);
    print(
      formatTable(
        parts ? ['ID', 'PARTITION', 'CONSUMER', 'IDLE', 'DELIVERIES'] : ['ID', 'CONSUMER', 'IDLE', 'DELIVERIES'],
        s.oldest.map((p) => [p.id, ...(parts ? [String(p.partition)] : []), p.consumer, formatMs(p.idleMs), String(p.deliveries)]),
      ),
    );
  });
}

export function registerClaim(program: Command): void {
  withConfigOptions(
    program
      .command('claim')
      .description('move entries idle longer than --idle to one consumer (XAUTOCLAIM; each claim counts as a delivery)')
      .requiredOption('--idle <ms>', 'minimum idle time: ms, or a duration such as 90s or 5m')
      .option('--to <consumer>', 'the consumer that gets them (default: <CONSUMER_NAME>-manual)')
      .option('--count <n>', 'claim at most this many (default: all idle entries)')
      .option(PARTITION_FLAG, PARTITION_HELP)
      .option('--json', 'machine-readable'),
  ).action(async (opts: Record<string, unknown>) => {
    const minIdleMs = parseIdle(String(opts.idle));
    const count = opts.count === undefined ? undefined : parsePositiveInt('--count', String(opts.count));
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    const consumer = (opts.to as string | undefined) ?? `${config.consumerName}-manual`;
    if (minIdleMs < 2 * config.batchTimeoutMs) {
      process.stderr.write(
        `warning: --idle ${minIdleMs} ms is shorter than two batch timeouts (${2 * config.batchTimeoutMs} ms): ` +
          `entries still in flight on a running engine may be claimed and processed twice (the events table keeps one row per event_id)\n`,
      );
    }
    const result = await withRedis(config, 'claim', (redis) => claimAcross(redis, config, { minIdleMs, consumer, count, partition }));
    if (opts.json) {
      print(JSON.stringify(result, null, 2));
      return;
    }
    const n = result.claimed.length;
    const counts = result.claimed.map((c) => c.deliveries);
    const range = n === 0 ? '' : Math.min(...counts) === Math.max(...counts) ? `${counts[0]}` : `${Math.min(...counts)} to ${Math.max(...counts)}`;
    print(
      n === 0
        ? `claimed 0 entries: none idle for at least ${minIdleMs} ms on stream ${config.streamKey}, group ${config.group}`
        : `claimed ${n} entr${n === 1 ? 'y' : 'ies'} idle for at least ${minIdleMs} ms to consumer ${consumer} ` +
            `(delivery count now ${range}: a claim counts as a delivery)`,
    );
    if (result.deleted.length > 0 || result.deletedUnknown > 0) {
      print(`${result.deleted.length + result.deletedUnknown} pending entries whose stream entry no longer exists (trimmed) were cleared`);
    }
    if (n > 0) for (const line of claimAdvice(result, config)) print(line);
  });
}
