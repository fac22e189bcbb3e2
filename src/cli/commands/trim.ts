import type { Command } from 'commander';
import { TributaryError } from '../../errors.js';
import { trimStream, type TrimResult } from '../../ops/retention.js';
import { parseDuration } from '../../ops/time.js';
import { createRedisConnection, destroyQuietly } from '../../redis/client.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';

/** How many `~` passes one `tributary trim` makes at most (each removes whole nodes, about 10,000 entries at most). */
const MAX_PASSES = 10_000;

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

export function registerTrim(program: Command): void {
  withConfigOptions(
    program
      .command('trim')
      .description('trim the stream by length or age, never past what a consumer group has not yet received or acknowledged')
      .option('--maxlen <n>', 'keep about the newest N entries (default TRIM_MAXLEN)')
      .option('--max-age <duration>', 'remove entries older than this, e.g. 7d, 12h (default TRIM_MAX_AGE)')
      .option('--exact', 'remove exactly the entries below the cut (MINID =); default MINID ~, whole nodes only: cheaper, may keep a few more')
      .option('--dry-run', 'report what would be trimmed, remove nothing')
      .option('--json', 'machine-readable result'),
  ).action(async (opts: Record<string, unknown>) => {
    const config = configFrom(opts);
    const maxLenText = opts.maxlen ?? config.trimMaxLen;
    const maxAgeText = opts.maxAge ?? config.trimMaxAge;
    if (maxLenText === undefined && maxAgeText === undefined) {
      throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--maxlen / --max-age', 'give one of them (or set TRIM_MAXLEN / TRIM_MAX_AGE)']);
    }
    let maxLen: number | undefined;
    if (maxLenText !== undefined) {
      maxLen = Number(maxLenText);
      if (!Number.isInteger(maxLen) || maxLen < 0) {
        throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--maxlen', `must be a non-negative integer (got ${JSON.stringify(maxLenText)})`]);
      }
    }
    const maxAgeMs = maxAgeText === undefined ? undefined : parseDuration(String(maxAgeText), '--max-age');
    const dryRun = opts.dryRun === true;
    const exact = opts.exact === true;

    const redis = createRedisConnection(config.redisUrl, { name: 'tributary:trim', failFast: false });
    try {
      await redis.connect();
      const first = await trimStream(redis, config.streamKey, { maxLen, maxAgeMs, dryRun, exact });
      // `~` removes at most one bounded batch of whole nodes per call: go on while it makes progress.
      let deleted = first.deleted;
      for (let pass = 1, last = first.deleted; !dryRun && !exact && last > 0 && pass < MAX_PASSES; pass++) {
        last = (await trimStream(redis, config.streamKey, { maxLen, maxAgeMs, exact })).deleted;
        deleted += last;
      }
      const total = { ...first, deleted };
      print(opts.json ? JSON.stringify({ stream: config.streamKey, ...total }, null, 2) : formatTrimResult(config.streamKey, total));
    } finally {
      destroyQuietly(redis);
    }
  });
}
