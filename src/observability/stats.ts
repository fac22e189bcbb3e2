import type { TributaryConfig } from '../config/schema.js';
import { quoteIdent, type PgPool } from '../postgres/pool.js';
import { send, type RedisConnection } from '../redis/client.js';
import { redisErrorIs } from '../redis/commands.js';

/** A point-in-time view of a pipeline, from Redis and Postgres. */
export interface PipelineSnapshot {
  takenAt: string;
  stream: { key: string; length: number; group: string; pending: number; lag: number | null; consumers: number };
  deadLetters: { stream: string; streamLength: number; rows: number };
  postgres: { events: number; eventsLastMinute: number; tableSize: string };
  /** ingested_at - produced_at over the last minute, ms. */
  latencyMs: { p50: number | null; p99: number | null; max: number | null; samples: number };
  eventsByType: Array<{ type: string; count: number }>;
}

export async function collectSnapshot(redis: RedisConnection, pool: PgPool, config: TributaryConfig): Promise<PipelineSnapshot> {
  const s = quoteIdent(config.pgSchema);
  const [length, groups, dlqLength] = await Promise.all([
    send(redis, ['XLEN', config.streamKey]),
    send(redis, ['XINFO', 'GROUPS', config.streamKey]).catch((err) => (redisErrorIs(err, 'ERR') ? [] : Promise.reject(err))),
    send(redis, ['XLEN', config.dlqStream]),
  ]);
  const group = (Array.isArray(groups) ? groups : [])
    .filter(Array.isArray)
    .map((g) => {
      const o: Record<string, unknown> = {};
      for (let i = 0; i + 1 < g.length; i += 2) o[String(g[i])] = g[i + 1];
      return o;
    })
    .find((g) => g.name === config.group);

  const [counts, latency, byType] = await Promise.all([
    pool.query<{ events: string; last_minute: string; dead: string; size: string }>(
      `SELECT (SELECT count(*) FROM ${s}.events) AS events,
              (SELECT count(*) FROM ${s}.events WHERE ingested_at > now() - interval '1 minute') AS last_minute,
              (SELECT count(*) FROM ${s}.dead_letter_queue) AS dead,
              pg_size_pretty(pg_total_relation_size('${s}.events')) AS size`,
    ),
    pool.query<{ p50: number | null; p99: number | null; max: number | null; n: string }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
              max(ms) AS max, count(*) AS n
         FROM (SELECT extract(epoch FROM ingested_at - produced_at) * 1000 AS ms
                 FROM ${s}.events
                WHERE ingested_at > now() - interval '1 minute' AND produced_at IS NOT NULL) t`,
    ),
    pool.query<{ event_type: string; n: string }>(
      `SELECT event_type, count(*) AS n FROM ${s}.events GROUP BY event_type ORDER BY n DESC, event_type LIMIT 20`,
    ),
  ]);
  const c = counts.rows[0]!;
  const l = latency.rows[0]!;
  const round = (v: number | null) => (v === null ? null : Math.round(Number(v) * 10) / 10);
  return {
    takenAt: new Date().toISOString(),
    stream: {
      key: config.streamKey,
      length: Number(length),
      group: config.group,
      pending: Number(group?.pending ?? 0),
      lag: group?.lag === undefined || group.lag === null ? null : Number(group.lag),
      consumers: Number(group?.consumers ?? 0),
    },
    deadLetters: { stream: config.dlqStream, streamLength: Number(dlqLength), rows: Number(c.dead) },
    postgres: { events: Number(c.events), eventsLastMinute: Number(c.last_minute), tableSize: c.size },
    latencyMs: { p50: round(l.p50), p99: round(l.p99), max: round(l.max), samples: Number(l.n) },
    eventsByType: byType.rows.map((r) => ({ type: r.event_type, count: Number(r.n) })),
  };
}
