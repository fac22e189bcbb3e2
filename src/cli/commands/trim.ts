import { Option, type Command } from 'commander';
import { TributaryError } from '../../errors.js';
import { parsePartitionOption, partitionScopes } from '../../ops/partitioned.js';
import { trimStream, type TrimResult } from '../../ops/retention.js';
import { parseDuration } from '../../ops/time.js';
import type { TributaryConfig } from '../../config/schema.js';
import type { RedisConnection } from '../../redis/client.js';
import { readGroups } from '../../redis/xinfo.js';
import { withRedis } from '../connect.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';
import { PARTITION_FLAG } from './pending.js';

/** How many `~` passes one `tributary trim` makes at most (each removes whole nodes, about 10,000 entries at most). */

export function formatTrimResult(key: string, r: TrimResult): string {
  const limit = r.limitedBy === 'request' ? 'the request' : `${r.limitedBy.replace(/^group:/, 'group ')} (not yet received or acknowledged beyond it)`;
  const lines = [
    `stream ${key}: requested cut ${r.requestedCut ?? 'none (nothing to trim)'}, safe point ${r.safePoint ?? 'none (no consumer group)'}`,
    r.cut === null
      ? 'nothing to trim'
      : r.dryRun
        ? `dry run: would trim entries below ${r.cut} (${r.wouldDelete ?? 0} entries), limited by ${limit}`
        : `trimmed ${r.deleted} entries below ${r.cut} (MINID ${r.exact ? '=' : '~'}), limited by ${limit}`,
  ];
  return lines.join('\n');
}

/**
 * Refuses (TRIB_ERR_GROUP_NOT_FOUND) a trim that would remove entries while the
 * configured GROUP does not exist on the stream: the safe point only knows the groups
 * that exist, and an engine that creates its group later (at GROUP_START_ID) would
 * still have to consume those entries. Nothing to remove, or an existing group: no-op.
 */
export async function refuseWithoutGroup(
  redis: RedisConnection,
  config: TributaryConfig,
  request: { maxLen?: number; maxAgeMs?: number },
): Promise<void> {
  const groups = await readGroups(redis, config.streamKey);
  if (groups.some((g) => g.name === config.group)) return;
  const preview = await trimStream(redis, config.streamKey, { ...request, dryRun: true, exact: true });
  const n = preview.wouldDelete ?? 0;
  if (preview.cut === null || n === 0) return;
  throw new TributaryError('TRIB_ERR_GROUP_NOT_FOUND', [
    config.group,
    `${config.streamKey}: this trim would remove ${n} entr${n === 1 ? 'y' : 'ies'} that the engine's group, once created ` +
      `(at GROUP_START_ID ${config.groupStartId}), would still have to consume; nothing was trimmed. Start the engine first ` +
      `(it creates the group), check STREAM_KEY / GROUP (--stream-key, --group), or run again with --force to trim anyway`,
  ]);
}

export function registerTrim(program: Command): void {
  const trim = withConfigOptions(
    program
      .command('trim')
      .description(
        'trim the stream by length or age, never past what a consumer group has not yet received or acknowledged; ' +
          'refused while the configured GROUP does not exist on the stream (see --force)',
      )
      // The old spellings, kept working but not shown: `start` and `trim` share --trim-max-len / --trim-max-age.
      .addOption(new Option('--maxlen <n>').hideHelp())
      .addOption(new Option('--max-age <duration>').hideHelp())
      .option('--exact', 'remove exactly the entries below the cut (MINID =); default MINID ~, whole nodes only: cheaper, may keep a few more')
      .option('--dry-run', 'report what would be trimmed, remove nothing')
      .option(
        '--force',
        'trim even though the configured GROUP does not exist on the stream (refused otherwise: the entries removed are lost to the engine that creates it later)',
      )
      .option(PARTITION_FLAG, 'with PARTITIONS > 1: only partition P (0 to PARTITIONS-1); default each partition in turn, the limits applying to each')
      .option('--json', 'machine-readable result'),
  );
  // The same flags as `start`, described for this command.
  describeOption(trim, '--trim-max-len', 'keep about the newest N entries [TRIM_MAXLEN]');
  describeOption(trim, '--trim-max-age', 'remove entries older than this, e.g. 7d, 12h [TRIM_MAX_AGE]');
  trim.action(async (opts: Record<string, unknown>) => {
    // Parsed here, not by the configuration: a trim may keep 0 entries (TRIM_MAXLEN, the engine's, is at least 1).
    // --maxlen / --max-age: the old spellings of --trim-max-len / --trim-max-age.
    const config = configFrom({ ...opts, trimMaxLen: undefined, trimMaxAge: undefined });
    const maxLenText = opts.trimMaxLen ?? opts.maxlen ?? config.trimMaxLen;
    const maxAgeText = opts.trimMaxAge ?? opts.maxAge ?? config.trimMaxAge;
    // Errors name the flag as typed (or the environment variable).
    const maxLenFlag = opts.trimMaxLen !== undefined ? '--trim-max-len' : opts.maxlen !== undefined ? '--maxlen' : 'TRIM_MAXLEN';
    const maxAgeFlag = opts.trimMaxAge !== undefined ? '--trim-max-age' : opts.maxAge !== undefined ? '--max-age' : 'TRIM_MAX_AGE';
    if (maxLenText === undefined && maxAgeText === undefined) {
      throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--trim-max-len / --trim-max-age', 'give one of them (or set TRIM_MAXLEN / TRIM_MAX_AGE)']);
    }
    let maxLen: number | undefined;
    if (maxLenText !== undefined) {
      maxLen = Number(maxLenText);
      if (!Number.isInteger(maxLen) || maxLen < 0) {
        throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [maxLenFlag, `must be a non-negative integer (got ${JSON.stringify(maxLenText)})`]);
      }
    }
    const maxAgeMs = maxAgeText === undefined ? undefined : parseDuration(String(maxAgeText), maxAgeFlag);
    const dryRun = opts.dryRun === true;
    const exact = opts.exact === true;

    const partition = parsePartitionOption(opts.partition, config.partitions);

    await withRedis(config, 'trim', async (redis) => {
      // PARTITIONS > 1: each partition is a stream of its own with its own groups and safe
      // point; --trim-max-len keeps about N entries in each.
      const scopes = partitionScopes(config, partition);
      if (opts.force !== true) for (const s of scopes) await refuseWithoutGroup(redis, s.config, { maxLen, maxAgeMs });
      const results: Array<{ stream: string; partition?: number } & TrimResult> = [];
      for (const s of scopes) {
        // trimStream repeats the guarded pass with one cut until nothing more goes; an
        // operator's trim may take as long as the stream needs (the engine's is capped).
        const total = await trimStream(redis, s.config.streamKey, { maxLen, maxAgeMs, dryRun, exact, maxPassMs: 10 * 60_000 });
        results.push({ stream: s.config.streamKey, ...(config.partitions > 1 ? { partition: s.partition } : {}), ...total });
      }
      if (config.partitions <= 1) {
        const only = results[0]!;
        print(opts.json ? JSON.stringify(only, null, 2) : formatTrimResult(config.streamKey, only));
        return;
      }
      if (opts.json) {
        const sum = (f: (r: TrimResult) => number | undefined) => results.reduce((t, r) => t + (f(r) ?? 0), 0);
        print(JSON.stringify({ stream: config.streamKey, deleted: sum((r) => r.deleted), ...(dryRun ? { wouldDelete: sum((r) => r.wouldDelete) } : {}), partitions: results }, null, 2));
        return;
      }
      print(results.map((r) => formatTrimResult(r.stream, r)).join('\n'));
    });
  });
}

/** Replaces the help text of an option a command already has (a shared setting flag, described for this command). */
function describeOption(command: Command, flag: string, description: string): void {
  const option = command.options.find((o) => o.long === flag);
  if (option) option.description = description;
}
