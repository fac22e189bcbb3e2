import type { Command } from 'commander';
import type { TributaryConfig } from '../../config/schema.js';
import { createPgPool } from '../../postgres/pool.js';
import { createRedisConnection, destroyQuietly } from '../../redis/client.js';
import { collectSnapshot, type PipelineSnapshot } from '../../observability/stats.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';

export async function snapshotOnce(config: TributaryConfig): Promise<PipelineSnapshot> {
  const redis = createRedisConnection(config.redisUrl, { name: 'tributary:stats', failFast: false });
  const pool = createPgPool(config.databaseUrl, { max: 3 });
  try {
    await redis.connect();
    return await collectSnapshot(redis, pool, config);
  } finally {
    destroyQuietly(redis);
    await pool.end();
  }
}

const ms = (v: number | null) => (v === null ? 'n/a' : `${v} ms`);

/** The dashboard in plain text, in the layout users of the original know. */
export function formatSnapshot(s: PipelineSnapshot): string {
  const rule = '='.repeat(60);
  const lines = [
    rule,
    'STREAMING PIPELINE DASHBOARD',
    rule,
    '',
    'Redis Streams:',
    `  Stream Length: ${s.stream.length}`,
    `  Pending Messages: ${s.stream.pending}`,
    `  Group Lag: ${s.stream.lag ?? 'n/a'}`,
    `  DLQ Length: ${s.deadLetters.streamLength}`,
    '',
    'Postgres:',
    `  Total Events: ${s.postgres.events}`,
    `  Events (last minute): ${s.postgres.eventsLastMinute}`,
    `  DLQ Count: ${s.deadLetters.rows}`,
    `  Table Size: ${s.postgres.tableSize}`,
    `  End-to-end latency (last minute): p50 ${ms(s.latencyMs.p50)}, p99 ${ms(s.latencyMs.p99)}`,
    '',
    '  Events by Type:',
    ...s.eventsByType.map((t) => `    ${t.type}: ${t.count}`),
    '',
    rule,
  ];
  return lines.join('\n');
}

export function registerStats(program: Command): void {
  withConfigOptions(
    program.command('stats').description('one snapshot of the pipeline (stream, group, Postgres, latency)').option('--json', 'machine-readable'),
  ).action(async (opts: Record<string, unknown>) => {
    const snapshot = await snapshotOnce(configFrom(opts));
    print(opts.json ? JSON.stringify(snapshot, null, 2) : formatSnapshot(snapshot));
  });
}
