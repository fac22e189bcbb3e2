import type { Command } from 'commander';
import { TributaryError } from '../../errors.js';
import { createReplayGroup, isRangeOrdered, replayRange, type ReplayReport } from '../../ops/replay.js';
import { STREAM_ID, parseStreamPoint } from '../../ops/time.js';
import { parsePartitionOption, partitionScopes } from '../../ops/partitioned.js';
import { migrate } from '../../postgres/migrate.js';
import { quoteIdent } from '../../postgres/pool.js';
import { withConnections, withRedis } from '../connect.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';
import { PARTITION_FLAG, PARTITION_HELP } from './pending.js';

/** `--to`: `+`, an entry ID (an ID without `-seq` covers its whole millisecond), or an ISO time / duration ago (that whole millisecond). */
export function replayEnd(text: string): string {
  const t = text.trim();
  if (t === '+' || STREAM_ID.test(t)) return t;
  return parseStreamPoint(t, '--to').split('-')[0]!;
}

export function formatReplayReport(key: string, from: string, to: string, r: ReplayReport, seconds: number): string {
  const lines = [
    `replayed ${key} from ${from} to ${to}: read ${r.read}, inserted ${r.inserted}, already present ${r.alreadyPresent}, poison ${r.poison} (${seconds.toFixed(2)} s)${r.aborted ? ' — stopped early' : ''}`,
  ];
  for (const p of r.poisonSamples) lines.push(`  poison ${p.id}: ${p.code}: ${p.message}`);
  if (r.poison > r.poisonSamples.length) lines.push(`  ... and ${r.poison - r.poisonSamples.length} more poison entries`);
  if (r.deadLettersRecorded > 0) lines.push(`  ${r.deadLettersRecorded} poison entries recorded in dead_letter_queue`);
  return lines.join('\n');
}

export function registerReplay(program: Command): void {
  const command = withConfigOptions(
    program
      .command('replay')
      .description('write a stretch of stream history to Postgres again (idempotent), or start a new consumer group at a past point')
      .requiredOption('--from <point>', 'first entry: an entry ID, an ISO time or a duration ago such as 2h (inclusive)')
      .option('--to <point>', 'last entry: an entry ID, an ISO time or a duration ago (inclusive; default: the end)')
      .option('--dead-letter', 'record poison entries in dead_letter_queue (under the stream and GROUP; idempotent); default: count and report them only')
      .option(PARTITION_FLAG, PARTITION_HELP)
      .option('--json', 'machine-readable result'),
  );
  // The settings' --group (GROUP) means something else here: the new group to create.
  const group = command.options.find((o) => o.long === '--group');
  if (group) {
    group.description =
      'create this NEW consumer group at --from instead of writing to Postgres; then `tributary start --group <name>` consumes the history from there (refused if it exists)';
  }
  command.action(async (opts: Record<string, unknown>) => {
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    // PARTITIONS > 1: each partition's key in turn (a group is created on each).
    const scopes = partitionScopes(config, partition);
    const parted = config.partitions > 1;
    const from = parseStreamPoint(String(opts.from), '--from');
    const replayGroup = typeof opts.group === 'string' ? opts.group : undefined;
    if (replayGroup !== undefined) {
      if (opts.to !== undefined) {
        throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--to', 'cannot be used with --group: a group reads on to the end of the stream']);
      }
      const all = await withRedis(config, 'replay', async (redis) => {
        const out = [];
        for (const s of scopes) out.push({ stream: s.config.streamKey, ...(await createReplayGroup(redis, s.config.streamKey, replayGroup, from)) });
        return out;
      });
      const created = all[0]!;
      if (opts.json) print(JSON.stringify(parted ? { stream: config.streamKey, from, partitions: all } : { ...created, from }, null, 2));
      else
        print(
          `created group ${created.group} on ${parted ? all.map((c) => c.stream).join(', ') : config.streamKey} at ${created.startId}: ` +
            `\`tributary start --group ${created.group}\` consumes from ${from} on`,
        );
      return;
    }

    const to = opts.to === undefined ? '+' : replayEnd(String(opts.to));
    if (!isRangeOrdered(from, to)) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--to', `must not be before --from (${from} > ${to})`]);
    await withConnections(config, 'replay', { max: 2 }, async ({ redis, pool }) => {
      await migrate(pool, config.pgSchema);
      const table = `${quoteIdent(config.pgSchema)}.${quoteIdent(config.eventsTable)}`;
      const exists = await pool.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [table]);
      if (!exists.rows[0]!.ok) {
        throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['EVENTS_TABLE (--events-table)', `table ${config.pgSchema}.${config.eventsTable} does not exist`]);
      }
      // Only now: while connecting, SIGINT/SIGTERM end the process at once (the default);
      // from here they stop the replay after the page in progress.
      const stop = new AbortController();
      const quit = () => stop.abort();
      process.on('SIGINT', quit);
      process.on('SIGTERM', quit);
      try {
        const started = performance.now();
        const progress = process.stderr.isTTY
          ? (r: ReplayReport) => process.stderr.write(`\rread ${r.read}, inserted ${r.inserted}, already present ${r.alreadyPresent}, poison ${r.poison}`)
          : undefined;
        const reports: Array<{ stream: string; partition: number } & ReplayReport> = [];
        for (const s of scopes) {
          if (stop.signal.aborted) break;
          const report = await replayRange(redis, pool, s.config.streamKey, {
            from,
            to,
            schema: config.pgSchema,
            table: config.eventsTable,
            maxBytes: config.batchMaxBytes,
            deadLetters: opts.deadLetter === true ? { group: config.group, dlqStream: s.config.dlqStream } : undefined,
            signal: stop.signal,
            onProgress: progress,
          });
          reports.push({ stream: s.config.streamKey, partition: s.partition, ...report });
        }
        if (progress) process.stderr.write('\r\x1b[K');
        const seconds = (performance.now() - started) / 1000;
        if (!parted) {
          const { stream: _s, partition: _p, ...report } = reports[0]!;
          print(opts.json ? JSON.stringify({ stream: config.streamKey, from, to, ...report }, null, 2) : formatReplayReport(config.streamKey, from, to, report, seconds));
        } else if (opts.json) {
          const sum = (f: (r: ReplayReport) => number) => reports.reduce((t, r) => t + f(r), 0);
          print(
            JSON.stringify(
              { stream: config.streamKey, from, to, read: sum((r) => r.read), inserted: sum((r) => r.inserted), alreadyPresent: sum((r) => r.alreadyPresent), poison: sum((r) => r.poison), partitions: reports },
              null,
              2,
            ),
          );
        } else {
          for (const r of reports) print(formatReplayReport(r.stream, from, to, r, seconds));
        }
      } finally {
        process.off('SIGINT', quit);
        process.off('SIGTERM', quit);
      }
    });
  });
}
