import type { Command } from 'commander';
import { TributaryError } from '../../errors.js';
import { STREAM_ID, parseStreamPoint } from '../../ops/time.js';
import { previousStreamId } from '../../ops/retention.js';
import { tailStream, tailStreams } from '../../ops/tail.js';
import { parsePartitionOption, partitionScopes } from '../../ops/partitioned.js';
import type { StreamEntry } from '../../redis/commands.js';
import { withRedis } from '../connect.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';
import { PARTITION_FLAG, PARTITION_HELP } from './pending.js';

/**
 * `--from` → the exclusive start of tailStream: `$` and `0` as they are, an entry ID
 * as it is (the entries after it: pass the last ID a previous tail printed), an ISO
 * time or a duration ago (`15m`) as the ID just before that time (entries at or after it).
 */
export function tailStart(text: string): string {
  const t = text.trim();
  if (t === '$' || t === '0') return t;
  if (STREAM_ID.test(t)) return t.includes('-') ? t : `${t}-0`;
  return previousStreamId(parseStreamPoint(t, '--from')) ?? '0';
}

/** One line per entry: ID, time, event_type, payload, then the other fields as name=value. */
export function formatTailEntry(entry: StreamEntry): string {
  const { event_type: type, payload, ...rest } = entry.fields;
  const ms = Number(entry.id.split('-')[0]);
  const time = Number.isFinite(ms) && ms < 8.64e15 ? new Date(ms).toISOString() : '';
  const others = Object.entries(rest).map(([k, v]) => `${k}=${v}`);
  return [entry.id, time, type ?? '(no event_type)', payload ?? '(no payload)', ...others].join('  ');
}

export function registerTail(program: Command): void {
  withConfigOptions(
    program
      .command('tail')
      .description('print stream entries as they arrive (a plain reader: no group, nothing acknowledged); Ctrl-C stops')
      .option('--from <point>', '$ (new entries only), 0 (the whole stream), an entry ID (the entries after it), or an ISO time / duration ago such as 15m', '$')
      .option('--count <n>', 'stop after this many entries')
      .option(PARTITION_FLAG, PARTITION_HELP)
      .option('--json', 'one JSON object per line: {"id", "fields"} (with PARTITIONS > 1 also "partition")'),
  ).action(async (opts: Record<string, unknown>) => {
    const config = configFrom(opts);
    const partition = parsePartitionOption(opts.partition, config.partitions);
    const scopes = partitionScopes(config, partition);
    const from = tailStart(String(opts.from));
    let limit = Infinity;
    if (opts.count !== undefined) {
      limit = Number(opts.count);
      if (!Number.isInteger(limit) || limit < 1) {
        throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--count', `must be a positive integer (got ${JSON.stringify(opts.count)})`]);
      }
    }
    await withRedis(config, 'tail', async (redis) => {
      // Only now: while connecting, SIGINT/SIGTERM end the process at once (the default).
      const stop = new AbortController();
      const quit = () => stop.abort();
      process.on('SIGINT', quit);
      process.on('SIGTERM', quit);
      process.stdout.on('error', quit); // e.g. EPIPE when piped into `head`
      let n = 0;
      try {
        if (config.partitions <= 1) {
          for await (const entry of tailStream(redis, config.streamKey, { from, signal: stop.signal })) {
            print(opts.json ? JSON.stringify({ id: entry.id, fields: entry.fields }) : formatTailEntry(entry));
            if (++n >= limit) break;
          }
        } else {
          // A partitioned stream: every partition's entries, each line starting with its partition.
          const partitionOf = new Map(scopes.map((s) => [s.config.streamKey, s.partition]));
          for await (const entry of tailStreams(redis, scopes.map((s) => s.config.streamKey), { from, signal: stop.signal })) {
            const p = partitionOf.get(entry.key)!;
            print(opts.json ? JSON.stringify({ partition: p, id: entry.id, fields: entry.fields }) : `p${p}  ${formatTailEntry(entry)}`);
            if (++n >= limit) break;
          }
        }
      } finally {
        process.off('SIGINT', quit);
        process.off('SIGTERM', quit);
        process.stdout.off('error', quit);
      }
    });
  });
}
