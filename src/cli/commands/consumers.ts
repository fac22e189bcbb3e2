import type { Command } from 'commander';
import { TributaryError } from '../../errors.js';
import { consumersAcross, parsePartitionOption, planPruneAcross, pruneAcross } from '../../ops/partitioned.js';
import { describePrune, type PrunePlan } from '../../ops/pending.js';
import { withRedis } from '../connect.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';
import { formatTable } from './dlq.js';
import { formatMs, parseIdle, PARTITION_FLAG, PARTITION_HELP, partitionsShown } from './pending.js';

const inactive = (ms: number | null) => (ms === null ? 'n/a' : formatMs(ms));

function keptLines(kept: ReadonlyArray<{ name: string; reason: 'pending' | 'active'; pending: number; idleMs: number }>): string {
  return formatTable(
    ['KEPT', 'PENDING', 'IDLE', 'WHY'],
    kept.map((k) => [
      k.name,
      String(k.pending),
      formatMs(k.idleMs),
      k.reason === 'pending' ? 'holds pending entries (deleting it would lose them)' : 'not idle long enough',
    ]),
  );
}

function planText(plan: PrunePlan): string {
  const lines = [
    plan.remove.length === 0
      ? `no consumer is idle for at least ${plan.minIdleMs} ms with no pending entries: nothing to delete`
      : `would delete ${plan.remove.length} consumer${plan.remove.length === 1 ? '' : 's'} idle for at least ${plan.minIdleMs} ms with no pending entries:`,
  ];
  if (plan.remove.length > 0) {
    lines.push(formatTable(['DELETE', 'IDLE'], plan.remove.map((c) => [c.name, formatMs(c.idleMs)])));
  }
  if (plan.keep.length > 0) lines.push(keptLines(plan.keep));
  return lines.join('\n');
}

export function registerConsumers(program: Command): void {
  const consumers = withConfigOptions(
    program
      .command('consumers')
      .description('consumers of the group: name, pending entries, idle time (and inactive time on Redis 7.2+)')
      .option(PARTITION_FLAG, PARTITION_HELP)
      .option('--json', 'machine-readable'),
  ).action(async (opts: Record<string, unknown>) => {
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    const list = await withRedis(config, 'consumers', (redis) => consumersAcross(redis, config, partition));
    if (opts.json) {
      print(JSON.stringify(list, null, 2));
      return;
    }
    const parted = config.partitions > 1;
    if (list.length > 0) {
      print(
        formatTable(
          [...(parted ? ['PARTITION'] : []), 'NAME', 'PENDING', 'IDLE', 'INACTIVE'],
          list.map((c) => [...(parted ? [String(c.partition)] : []), c.name, String(c.pending), formatMs(c.idleMs), inactive(c.inactiveMs)]),
        ),
      );
    }
    print(
      `${list.length} consumer${list.length === 1 ? '' : 's'} in group ${config.group} on stream ${config.streamKey}` +
        (parted ? ` (${partitionsShown(config.partitions, partition)})` : ''),
    );
  });

  withConfigOptions(
    consumers
      .command('prune')
      .description(
        'delete consumers idle for at least --idle that hold no pending entries (checked atomically at deletion); asks for --yes',
      )
      .requiredOption('--idle <ms>', 'minimum idle time: ms, or a duration such as 30m or 7d')
      .option('--yes', 'really delete')
      .option(PARTITION_FLAG, PARTITION_HELP)
      .option('--json', 'machine-readable'),
  ).action(async (_opts: Record<string, unknown>, command: Command) => {
    // Flags given after `prune` may be parsed by `consumers` (it has the same ones): take both.
    const opts = command.optsWithGlobals() as Record<string, unknown>;
    const minIdleMs = parseIdle(String(opts.idle));
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    await withRedis(config, 'consumers', async (redis) => {
      if (opts.yes !== true) {
        const plan = await planPruneAcross(redis, config, minIdleMs, partition);
        print(opts.json ? JSON.stringify(plan, null, 2) : planText(plan));
        if (plan.remove.length > 0) {
          const what = config.partitions > 1 ? `${config.streamKey} (${partitionsShown(config.partitions, partition)})` : config.streamKey;
          throw new TributaryError('TRIB_ERR_CONFIRMATION_REQUIRED', [describePrune({ ...config, streamKey: what }, plan)]);
        }
        return;
      }
      const result = await pruneAcross(redis, config, { minIdleMs, confirm: true, partition });
      if (opts.json) {
        print(JSON.stringify(result, null, 2));
        return;
      }
      print(
        result.deleted.length === 0
          ? 'deleted no consumer'
          : `deleted ${result.deleted.length} consumer${result.deleted.length === 1 ? '' : 's'}: ${result.deleted.join(', ')}`,
      );
      if (result.missing.length > 0) print(`already gone: ${result.missing.join(', ')}`);
      if (result.kept.length > 0) print(keptLines(result.kept));
    });
  });
}
