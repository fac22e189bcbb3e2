/**
 * `tributary clean`: start over on one stream. Drops the stream (and with it its
 * consumer groups), its dead-letter stream and the batch counters published for it,
 * empties the events table and deletes the stream's rows in dead_letter_queue.
 * `planClean` only counts what would go; `clean` deletes it. Never prints.
 */
import type { PgPool } from '../postgres/pool.js';
import { quoteIdent, withClient } from '../postgres/pool.js';
import { send, type RedisConnection } from '../redis/client.js';
import { readGroups } from '../redis/xinfo.js';
import { statsKey } from '../redis/keys.js';

export interface CleanTarget {
  streamKey: string;
  dlqStream: string;
  /** Postgres schema of the tables. */
  pgSchema: string;
  /** The events table (emptied: every row). */
  eventsTable: string;
}

export interface CleanPlan {
  stream: { key: string; entries: number; groups: string[] };
  deadLetterStream: { key: string; entries: number };
  /** The `tributary:stats:<stream>:<group>` hashes that exist. */
  statsKeys: string[];
  /** Rows of the events table, or null when the table does not exist. */
  eventRows: number | null;
  /** dead_letter_queue rows of this stream, or null when the table does not exist. */
  deadLetterRows: number | null;
  /** `schema.table`, for display. */
  eventsTableName: string;
  deadLetterTableName: string;
}

export type CleanResult = CleanPlan;

/** Postgres's "no such table / schema" (nothing to delete there). */
function isMissingRelation(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === '42P01' || code === '3F000';
}

async function countOrNull(pool: PgPool, sql: string, params: unknown[] = []): Promise<number | null> {
  try {
    const r = await pool.query<{ n: string }>(sql, params);
    return Number(r.rows[0]!.n);
  } catch (err) {
    if (isMissingRelation(err)) return null;
    throw err;
  }
}

async function existingStatsKeys(redis: RedisConnection, streamKey: string, groups: string[]): Promise<string[]> {
  const keys = groups.map((g) => statsKey(streamKey, g));
  // Counters may outlive their group (a group deleted by hand): look for them by name too.
  let cursor = '0';
  const pattern = `${statsKey(streamKey, '').replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
  do {
    const reply = (await send(redis, ['SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000'])) as [string, string[]];
    cursor = String(reply[0]);
    for (const k of reply[1]) if (!keys.includes(String(k))) keys.push(String(k));
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  const exists = await Promise.all(keys.map(async (k) => Number(await send(redis, ['EXISTS', k])) > 0));
  return keys.filter((_, i) => exists[i]);
}

/** The two tables, quoted for SQL. */
function tables(target: CleanTarget): { events: string; deadLetters: string } {
  const s = quoteIdent(target.pgSchema);
  return { events: `${s}.${quoteIdent(target.eventsTable)}`, deadLetters: `${s}.dead_letter_queue` };
}

/** Counts what `clean` would delete; deletes nothing. */
export async function planClean(redis: RedisConnection, pool: PgPool, target: CleanTarget): Promise<CleanPlan> {
  const t = tables(target);
  const [entries, deadEntries, groups, eventRows, deadLetterRows] = await Promise.all([
    send(redis, ['XLEN', target.streamKey]).then(Number),
    send(redis, ['XLEN', target.dlqStream]).then(Number),
    readGroups(redis, target.streamKey).then((gs) => gs.map((g) => g.name)),
    countOrNull(pool, `SELECT count(*) AS n FROM ${t.events}`),
    countOrNull(pool, `SELECT count(*) AS n FROM ${t.deadLetters} WHERE stream_key = $1`, [target.streamKey]),
  ]);
  return {
    stream: { key: target.streamKey, entries, groups },
    deadLetterStream: { key: target.dlqStream, entries: deadEntries },
    statsKeys: await existingStatsKeys(redis, target.streamKey, groups),
    eventRows,
    deadLetterRows,
    eventsTableName: `${target.pgSchema}.${target.eventsTable}`,
    deadLetterTableName: `${target.pgSchema}.dead_letter_queue`,
  };
}

/** True when there is nothing to delete. */
export function isCleanPlanEmpty(p: CleanPlan): boolean {
  return (
    p.stream.entries === 0 &&
    p.stream.groups.length === 0 &&
    p.deadLetterStream.entries === 0 &&
    p.statsKeys.length === 0 &&
    !p.eventRows &&
    !p.deadLetterRows
  );
}

const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

/** What the plan deletes, as one phrase per item ("the stream events (1,200 entries, group tributary)"). */
export function describeCleanPlan(p: CleanPlan): string[] {
  const groups = p.stream.groups.length === 0 ? '' : `, ${p.stream.groups.length === 1 ? 'group' : 'groups'} ${p.stream.groups.join(', ')}`;
  return [
    `the stream ${p.stream.key} (${plural(p.stream.entries, 'entry', 'entries')}${groups})`,
    `the dead-letter stream ${p.deadLetterStream.key} (${plural(p.deadLetterStream.entries, 'entry', 'entries')})`,
    p.eventRows === null ? `no rows of ${p.eventsTableName} (no such table)` : `every row of ${p.eventsTableName} (${plural(p.eventRows, 'row')})`,
    p.deadLetterRows === null
      ? `no rows of ${p.deadLetterTableName} (no such table)`
      : `the ${plural(p.deadLetterRows, 'row')} of ${p.deadLetterTableName} from stream ${p.stream.key}`,
    ...(p.statsKeys.length > 0 ? [`the batch counters ${p.statsKeys.join(', ')}`] : []),
  ];
}

/**
 * Deletes what `planClean` counts: the Postgres rows first, in one transaction (the
 * events table is truncated), then the Redis keys in one DEL. Returns what was there.
 */
export async function clean(redis: RedisConnection, pool: PgPool, target: CleanTarget): Promise<CleanResult> {
  const plan = await planClean(redis, pool, target);
  const t = tables(target);
  await withClient(pool, async (client) => {
    await client.query('BEGIN');
    try {
      if (plan.eventRows !== null) await client.query(`TRUNCATE ${t.events}`);
      if (plan.deadLetterRows !== null) await client.query(`DELETE FROM ${t.deadLetters} WHERE stream_key = $1`, [target.streamKey]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  });
  await send(redis, ['DEL', target.streamKey, target.dlqStream, ...plan.statsKeys]);
  return plan;
}
