/**
 * `tributary monitor` on a partitioned stream (PARTITIONS > 1): a row per partition
 * (its key, length, lag and pending of the group, the lease's owner and fencing token,
 * its dead-letter stream) and the stream's figures added up over the partitions.
 *
 * The snapshot is collectMonitorSnapshot's (the Postgres side, batches) with its Redis
 * side — stream, groups, dead letters, produced rate, warnings — replaced by the sums over
 * the partitions shown (all, or the one `--partition` names), plus `partitions`. Never prints.
 */
import type { TributaryConfig } from '../config/schema.js';
import { quoteIdent, type PgPool } from '../postgres/pool.js';
import { send, type RedisConnection } from '../redis/client.js';
import { compareStreamIds, redisErrorIs } from '../redis/commands.js';
import { parseLease, partitionLeaseKey } from '../redis/partitions.js';
import { parseXinfoConsumers, parseXinfoStream, readGroups, type StreamInfo } from '../redis/xinfo.js';
import { partitionScopes } from '../ops/partitioned.js';
import {
  collectMonitorSnapshot,
  groupLag,
  monitorWarnings,
  pushHistory,
  ratePerSec,
  type MonitorGroup,
  type MonitorOptions,
  type MonitorSnapshot,
} from './monitor.js';

export interface MonitorPartition {
  partition: number;
  key: string;
  exists: boolean;
  length: number;
  /** Lag of the configured group on this partition (null: unknown, or no group yet). */
  lag: number | null;
  /** Pending entries of the configured group. */
  pending: number;
  /** The lease holder (the process id in `<token>/<owner>`), null when no one holds it. */
  owner: string | null;
  /** The holder's fencing token. */
  token: number | null;
  /** The lease as stored, when it is not in the `<token>/<owner>` form. */
  leaseRaw: string | null;
  /** ms the lease has left (null: no lease). */
  leaseTtlMs: number | null;
  deadLetterStream: string;
  deadLetterLength: number;
}

export interface PartitionedMonitorSnapshot extends MonitorSnapshot {
  /** Present only for a partitioned stream. */
  partitions?: { count: number; only: number | null; rows: MonitorPartition[] };
}

interface PartitionFacts {
  row: MonitorPartition;
  stream: StreamInfo | null;
  groups: MonitorGroup[];
}

async function readPartition(redis: RedisConnection, config: TributaryConfig, partition: number, part: TributaryConfig): Promise<PartitionFacts> {
  const lease = partitionLeaseKey(config.streamKey, config.group, partition, config.partitions);
  const [stream, groups, dlq, leaseValue, ttl] = await Promise.all([
    send(redis, ['XINFO', 'STREAM', part.streamKey]).then(parseXinfoStream, (err) => (redisErrorIs(err, 'ERR') ? null : Promise.reject(err))),
    readGroups(redis, part.streamKey),
    send(redis, ['XLEN', part.dlqStream]),
    send(redis, ['GET', lease]),
    send(redis, ['PTTL', lease]),
  ]);
  const consumers = await Promise.all(
    groups.map((g) =>
      send(redis, ['XINFO', 'CONSUMERS', part.streamKey, g.name]).then(parseXinfoConsumers, (err) => (redisErrorIs(err, 'NOGROUP') ? [] : Promise.reject(err))),
    ),
  );
  const monitorGroups: MonitorGroup[] = groups.map((g, i) => {
    const { lag, source } = groupLag(g, stream);
    return {
      name: g.name,
      configured: g.name === config.group,
      consumerCount: consumers[i]!.length,
      pending: g.pending,
      lastDeliveredId: g.lastDeliveredId,
      entriesRead: g.entriesRead,
      lag,
      lagSource: source,
      consumers: consumers[i]!.map((c) => ({ name: c.name, pending: c.pending, idleMs: c.idleMs })),
    };
  });
  const own = monitorGroups.find((g) => g.configured);
  const raw = leaseValue === null || leaseValue === undefined ? null : String(leaseValue);
  const parsed = raw === null ? undefined : parseLease(raw);
  return {
    stream,
    groups: monitorGroups,
    row: {
      partition,
      key: part.streamKey,
      exists: stream !== null,
      length: stream?.length ?? 0,
      lag: own ? own.lag : null,
      pending: own?.pending ?? 0,
      owner: parsed?.owner ?? null,
      token: parsed?.token ?? null,
      leaseRaw: raw !== null && parsed === undefined ? raw : null,
      leaseTtlMs: Number(ttl) >= 0 ? Number(ttl) : null,
      deadLetterStream: part.dlqStream,
      deadLetterLength: Number(dlq),
    },
  };
}

/** The groups of all partitions, added up by name (lag unknown if any partition's is). */
function mergeGroups(all: readonly MonitorGroup[][]): MonitorGroup[] {
  const byName = new Map<string, MonitorGroup>();
  for (const list of all) {
    for (const g of list) {
      const m = byName.get(g.name);
      if (!m) {
        byName.set(g.name, { ...g, consumers: [...g.consumers] });
        continue;
      }
      m.consumerCount += g.consumerCount;
      m.pending += g.pending;
      m.lastDeliveredId = compareStreamIds(g.lastDeliveredId, m.lastDeliveredId) > 0 ? g.lastDeliveredId : m.lastDeliveredId;
      m.entriesRead = m.entriesRead === null || g.entriesRead === null ? null : m.entriesRead + g.entriesRead;
      m.lag = m.lag === null || g.lag === null ? null : m.lag + g.lag;
      if (g.lagSource !== 'redis') m.lagSource = g.lagSource;
      m.consumers.push(...g.consumers);
    }
  }
  for (const g of byName.values()) g.consumers.sort((a, b) => b.pending - a.pending || b.idleMs - a.idleMs || a.name.localeCompare(b.name));
  return [...byName.values()];
}

async function deadLetterRows(pool: PgPool, config: TributaryConfig, keys: readonly string[]): Promise<number> {
  const dlq = `${quoteIdent(config.pgSchema)}.dead_letter_queue`;
  const exists = await pool.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [dlq]);
  if (!exists.rows[0]!.ok) return 0;
  const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${dlq} WHERE stream_key = ANY($1) AND group_name = $2`, [keys, config.group]);
  return Number(r.rows[0]!.n);
}

/**
 * A monitor snapshot of a partitioned stream: every partition (or `only`), the totals
 * over them in `stream`, `groups` and `deadLetters`, and a row per partition.
 */
export async function collectPartitionedSnapshot(
  redis: RedisConnection,
  pool: PgPool,
  config: TributaryConfig,
  previous: PartitionedMonitorSnapshot | undefined,
  options: MonitorOptions = {},
  only?: number,
): Promise<PartitionedMonitorSnapshot> {
  const scopes = partitionScopes(config, only);
  const [base, facts, rows] = await Promise.all([
    collectMonitorSnapshot(redis, pool, config, previous, options),
    Promise.all(scopes.map((s) => readPartition(redis, config, s.partition, s.config))),
    deadLetterRows(
      pool,
      config,
      scopes.map((s) => s.config.streamKey),
    ),
  ]);
  const groups = mergeGroups(facts.map((f) => f.groups));
  const own = groups.find((g) => g.configured);
  const streams = facts.map((f) => f.stream).filter((s): s is StreamInfo => s !== null);
  const ids = (pick: (s: StreamInfo) => string | null) => streams.map(pick).filter((x): x is string => x !== null).sort(compareStreamIds);
  const entriesAdded = streams.length === 0 ? null : streams.some((s) => s.entriesAdded === null) ? null : streams.reduce((t, s) => t + s.entriesAdded!, 0);
  const dlqLength = facts.reduce((t, f) => t + f.row.deadLetterLength, 0);
  const producedPerSec = ratePerSec(previous?.stream.entriesAdded, entriesAdded, base.intervalMs);
  const { warnings: _ignored, ...rest } = base;
  const snapshot: Omit<PartitionedMonitorSnapshot, 'warnings'> = {
    ...rest,
    stream: {
      key: config.streamKey,
      exists: streams.length > 0,
      length: facts.reduce((t, f) => t + f.row.length, 0),
      entriesAdded,
      lastGeneratedId: ids((s) => s.lastGeneratedId).at(-1) ?? null,
      firstEntryId: ids((s) => s.firstEntryId)[0] ?? null,
      lastEntryId: ids((s) => s.lastEntryId).at(-1) ?? null,
      group: config.group,
      pending: own?.pending ?? 0,
      lag: own ? own.lag : null,
    },
    groups,
    deadLetters: {
      stream: scopes.length === 1 ? scopes[0]!.config.dlqStream : `{${config.streamKey}:p<i>}:dead`,
      streamLength: dlqLength,
      rows,
      growing: previous !== undefined && (dlqLength > previous.deadLetters.streamLength || rows > previous.deadLetters.rows),
    },
    rates: {
      ...base.rates,
      producedPerSec,
      history: { ...base.rates.history, produced: pushHistory(previous?.rates.history.produced, producedPerSec) },
    },
    partitions: { count: config.partitions, only: only ?? null, rows: facts.map((f) => f.row) },
  };
  return { ...snapshot, warnings: monitorWarnings(snapshot, options) };
}

/** The per-partition table under the dashboard, with a totals line. Pure. */
export function formatPartitions(p: NonNullable<PartitionedMonitorSnapshot['partitions']>): string {
  const head = ['PARTITION', 'KEY', 'LENGTH', 'LAG', 'PENDING', 'OWNER', 'TOKEN', 'LEASE', 'DEAD'];
  const cells = p.rows.map((r) => [
    String(r.partition),
    r.key,
    String(r.length),
    r.lag === null ? 'n/a' : String(r.lag),
    String(r.pending),
    r.owner ?? r.leaseRaw ?? '(none)',
    r.token === null ? '' : String(r.token),
    r.leaseTtlMs === null ? '' : `${(r.leaseTtlMs / 1000).toFixed(1)} s`,
    String(r.deadLetterLength),
  ]);
  const lagKnown = p.rows.every((r) => r.lag !== null);
  const owners = new Set(p.rows.map((r) => r.owner).filter((o) => o !== null));
  cells.push([
    'total',
    `${p.rows.length} of ${p.count}`,
    String(p.rows.reduce((t, r) => t + r.length, 0)),
    lagKnown ? String(p.rows.reduce((t, r) => t + r.lag!, 0)) : 'n/a',
    String(p.rows.reduce((t, r) => t + r.pending, 0)),
    `${owners.size} owner${owners.size === 1 ? '' : 's'}`,
    '',
    '',
    String(p.rows.reduce((t, r) => t + r.deadLetterLength, 0)),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]) => `  ${c.map((x, i) => x.padEnd(widths[i]!)).join('  ').trimEnd()}`;
  return [`Partitions (${p.only === null ? `${p.count}` : `partition ${p.only} of ${p.count}`}):`, line(head), ...cells.map(line)].join('\n');
}
