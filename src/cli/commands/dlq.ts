import type { Command } from 'commander';
import type { TributaryConfig } from '../../config/schema.js';
import { TributaryError } from '../../errors.js';
import {
  type DeadLetterOps,
  type DeadLetterRow,
  type RetryOutcome,
} from '../../ops/dead-letters.js';
import { deadLetterAcross, deadLettersAcross, parsePartitionOption, purgeAcross, retryAcross } from '../../ops/partitioned.js';
import { parseTime } from '../../ops/time.js';
import { migrate } from '../../postgres/migrate.js';
import { withConnections } from '../connect.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';
import { PARTITION_FLAG, PARTITION_HELP, partitionsShown } from './pending.js';
import { parsePositiveInt } from './produce.js';

/**
 * Connects to both servers (failing with a coded error within seconds when one is down),
 * migrates (so the retry columns exist), runs `fn`, closes.
 */
export async function withDeadLetterOps<T>(config: TributaryConfig, fn: (ops: DeadLetterOps) => Promise<T>): Promise<T> {
  return withConnections(config, 'dlq', { max: 2 }, async ({ redis, pool }) => {
    await migrate(pool, config.pgSchema);
    return fn({ redis, pool, config });
  });
}

/** Plain-text columns, padded to the widest cell. */
export function formatTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

const time = (d: Date | null) => (d === null ? '' : `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`);

function truncate(text: string, max: number): string {
  const one = text.replace(/\s+/g, ' ');
  return one.length <= max ? one : `${one.slice(0, max - 1)}…`;
}

function retried(row: DeadLetterRow): string {
  if (row.retryState === 'retried') return `as ${row.retriedAs}`;
  if (row.retryState === 'in_doubt') return 'in doubt';
  return 'no';
}

const json = (value: unknown) => JSON.stringify(value, null, 2);

export function describeOutcome(o: RetryOutcome): string {
  switch (o.status) {
    case 'retried':
      return (
        `#${o.id} retried as ${o.newStreamId} (fields from the ${o.source === 'stream' ? 'dead-letter stream entry' : 'table row'}` +
        `${o.recovered ? '; completed an interrupted retry' : ''})`
      );
    case 'already_retried':
      return `#${o.id} already retried${o.retriedAs ? ` as ${o.retriedAs}` : ''}: nothing added`;
    case 'in_progress':
      return `#${o.id} is being retried by another process: nothing added`;
    case 'in_doubt':
      return `#${o.id} in doubt: ${o.reason}`;
    case 'unretryable':
      return `#${o.id} cannot be retried: ${o.reason}`;
    case 'not_found':
      return `#${o.id} not found`;
  }
}

export function registerDlq(program: Command): void {
  const dlq = program
    .command('dlq')
    .description('inspect, retry and purge dead letters (the dead_letter_queue table and the dead-letter stream)');

  withConfigOptions(
    dlq
      .command('list')
      .description('dead letters of this stream and group, newest first, with the total count')
      .option('--limit <n>', 'rows to show', '20')
      .option('--type <type>', 'only this event_type')
      .option('--code <code>', 'only this error code (e.g. TRIB_ERR_VALIDATION)')
      .option('--since <time>', 'only those that failed since: an ISO time or a duration ago (15m, 7d)')
      .option(PARTITION_FLAG, PARTITION_HELP)
      .option('--json', 'machine-readable'),
  ).action(async (opts: Record<string, unknown>) => {
    const limit = parsePositiveInt('--limit', String(opts.limit));
    const since = opts.since === undefined ? undefined : parseTime(String(opts.since), '--since');
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    const parted = config.partitions > 1;
    const page = await withDeadLetterOps(config, (ops) =>
      deadLettersAcross(ops, config, {
        partition, limit, type: opts.type as string | undefined, errorCode: opts.code as string | undefined, since }),
    );
    if (opts.json) {
      print(json(page));
      return;
    }
    if (page.rows.length > 0) {
      print(
        formatTable(
          ['ID', ...(parted ? ['PARTITION'] : []), 'FAILED AT', 'STREAM ID', 'TYPE', 'CODE', 'DELIVERIES', 'RETRIED', 'ERROR'],
          page.rows.map((r) => [
            String(r.id),
            ...(parted ? [String(r.partition)] : []),
            time(r.failedAt),
            r.streamId ?? '',
            r.eventType ?? '',
            r.errorCode,
            String(r.deliveries),
            retried(r),
            truncate(r.error, 60),
          ]),
        ),
      );
    }
    print(
      `${page.rows.length} of ${page.total} dead letter${page.total === 1 ? '' : 's'} ` +
        `(stream ${config.streamKey}${parted ? ` (${partitionsShown(config.partitions, partition)})` : ''}, group ${config.group}${opts.type ? `, type ${opts.type}` : ''}${opts.code ? `, code ${opts.code}` : ''}${since ? `, since ${since.toISOString()}` : ''})`,
    );
  });

  withConfigOptions(
    dlq
      .command('show')
      .description('one dead letter in full: its row and its dead-letter stream entry')
      .argument('<id>', 'the row ID (from dlq list)')
      .option(PARTITION_FLAG, PARTITION_HELP)
      .option('--json', 'machine-readable'),
  ).action(async (idArg: string, opts: Record<string, unknown>) => {
    const id = parsePositiveInt('id', idArg);
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    const row = await withDeadLetterOps(config, (ops) => deadLetterAcross(ops, config, id, partition));
    if (opts.json) {
      print(json(row));
      return;
    }
    const lines = [
      `id:          ${row.id}`,
      `failed at:   ${row.failedAt.toISOString()}`,
      `stream:      ${row.streamKey ?? ''} (group ${row.group ?? ''})`,
      `stream id:   ${row.streamId ?? ''}`,
      `event id:    ${row.eventId ?? ''}`,
      `event type:  ${row.eventType ?? ''}`,
      `error code:  ${row.errorCode}`,
      `error:       ${row.error}`,
      `deliveries:  ${row.deliveries}`,
      `retried:     ${
        row.retryState === 'retried'
          ? `at ${row.retriedAt!.toISOString()} as ${row.retriedAs}`
          : row.retryState === 'in_doubt'
            ? `in doubt (claimed at ${row.retriedAt!.toISOString()}, no new entry recorded)`
            : 'no'
      }`,
      `dead-letter stream entry: ${row.streamEntry ? row.streamEntry.id : 'none (retried, purged or trimmed)'}`,
      'fields:',
      json(row.fields),
    ];
    print(lines.join('\n'));
  });

  withConfigOptions(
    dlq
      .command('retry')
      .description(
        're-add dead letters to the stream (original fields, event_id kept), mark them retried and remove their dead-letter stream entries; never adds one twice',
      )
      .argument('[ids...]', 'row IDs (from dlq list)')
      .option('--all', 'every dead letter not yet retried')
      .option('--type <type>', 'with --all: only this event_type')
      .option(PARTITION_FLAG, PARTITION_HELP),
  ).action(async (idArgs: string[], opts: Record<string, unknown>) => {
    const ids = idArgs.map((a) => parsePositiveInt('id', a));
    if (opts.all && ids.length > 0) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--all', 'give either row IDs or --all, not both']);
    if (!opts.all && ids.length === 0) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['ids', 'give one or more row IDs, or --all']);
    if (opts.type !== undefined && !opts.all) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--type', 'only applies with --all']);
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    const outcomes = await withDeadLetterOps(config, (ops) =>
      retryAcross(ops, config, opts.all ? { all: true, type: opts.type as string | undefined } : { ids }, partition),
    );
    for (const o of outcomes) print(describeOutcome(o));
    const done = outcomes.filter((o) => o.status === 'retried').length;
    print(`retried ${done} of ${outcomes.length} to stream ${config.streamKey}${config.partitions > 1 ? ' (each to its own partition)' : ''}`);
    const missing = outcomes.filter((o) => o.status === 'not_found').map((o) => o.id);
    if (missing.length > 0) {
      throw new TributaryError('TRIB_ERR_DLQ_NOT_FOUND', [missing.join(', '), config.streamKey, config.group, config.pgSchema]);
    }
  });

  withConfigOptions(
    dlq
      .command('purge')
      .description('delete dead letters (rows and dead-letter stream entries), all or those older than --before; asks for --yes')
      .option('--before <time>', 'only those that failed before: an ISO time or a duration ago (7d)')
      .option(PARTITION_FLAG, PARTITION_HELP)
      .option('--yes', 'really delete'),
  ).action(async (opts: Record<string, unknown>) => {
    const before = opts.before === undefined ? undefined : parseTime(String(opts.before), '--before');
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    const counts = await withDeadLetterOps(config, (ops) => purgeAcross(ops, config, { before, confirm: opts.yes === true, partition }));
    print(
      counts.rows === 0
        ? 'nothing to purge'
        : `deleted ${counts.rows} dead letter${counts.rows === 1 ? '' : 's'} (${counts.rows} rows, ${counts.streamEntries} dead-letter stream entries)`,
    );
  });
}
