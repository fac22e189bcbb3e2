/**
 * Operating tools on a partitioned stream (PARTITIONS > 1): the same operation on every
 * partition's key (or on the one `--partition P` names), with the results added up.
 *
 * A partition is operated on as a stream of its own: its key `<stream>:p<i>`, its
 * dead-letter stream `{<stream>:p<i>}:dead`, the same group (partitionScopes). With
 * PARTITIONS = 1 the one scope is the configuration itself, so every command does what
 * it did before. Never prints.
 */
import type { TributaryConfig } from '../config/schema.js';
import { TributaryError } from '../errors.js';
import type { RedisConnection } from '../redis/client.js';
import { compareStreamIds } from '../redis/commands.js';
import { partitionDeadLetterKey, partitionStreamKey } from '../redis/partitions.js';
import {
  describePurge,
  getDeadLetter,
  listDeadLetters,
  planPurge,
  purgeDeadLetters,
  retryDeadLetters,
  type DeadLetterDetail,
  type DeadLetterOps,
  type DeadLetterPage,
  type DeadLetterRow,
  type ListDeadLettersOptions,
  type PurgeCounts,
  type PurgeOptions,
  type RetryOutcome,
  type RetrySelector,
} from './dead-letters.js';
import {
  claimIdle,
  describePrune,
  listConsumers,
  pendingSummary,
  planPrune,
  pruneConsumers,
  type ClaimOptions,
  type ClaimResult,
  type ConsumerInfo,
  type PendingSummary,
  type PrunePlan,
  type PruneResult,
} from './pending.js';

/** One partition as its own stream: the configuration with its key and dead-letter stream. */
export interface PartitionScope {
  /** The partition (0 when the stream is not partitioned). */
  partition: number;
  /** The configuration for this partition alone (streamKey, dlqStream of the partition; partitions 1). */
  config: TributaryConfig;
}

/**
 * `--partition P`: undefined when not given; else an integer 0..partitions-1, or
 * TRIB_ERR_CONFIG_INVALID saying the range. Pure.
 */
export function parsePartitionOption(value: unknown, partitions: number): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n >= partitions) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [
      '--partition',
      `must be a partition from 0 to ${partitions - 1} (PARTITIONS=${partitions}; got ${JSON.stringify(text)})`,
    ]);
  }
  return n;
}

/** The partitions an operation covers: all of them, or `only`. With one partition, the configuration as it is. Pure. */
export function partitionScopes(config: TributaryConfig, only?: number): PartitionScope[] {
  const n = config.partitions;
  if (only !== undefined) parsePartitionOption(only, n);
  if (n <= 1) return [{ partition: 0, config }];
  const all = only === undefined ? Array.from({ length: n }, (_, i) => i) : [only];
  return all.map((i) => ({
    partition: i,
    config: { ...config, partitions: 1, streamKey: partitionStreamKey(config.streamKey, i, n), dlqStream: partitionDeadLetterKey(config.streamKey, config.dlqStream, i, n) },
  }));
}

/** Whether `scopes` are partitions of a partitioned stream (not the one plain stream). */
export function isPartitioned(config: TributaryConfig): boolean {
  return config.partitions > 1;
}

/** A group missing on a partition is an empty partition (its owner creates the group when it first holds it). */
async function orEmpty<T>(p: Promise<T>, empty: T): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof TributaryError && err.code === 'TRIB_ERR_GROUP_NOT_FOUND') return empty;
    throw err;
  }
}

export interface PartitionedPendingSummary extends Omit<PendingSummary, 'oldest'> {
  /** Partitioned: each partition's key and pending count (absent for a plain stream). */
  partitions?: Array<{ partition: number; streamKey: string; total: number; smallestId: string | null; largestId: string | null }>;
  oldest: Array<PendingSummary['oldest'][number] & { partition?: number }>;
}

/**
 * pendingSummary over the partitions: totals added up, consumers from all of them (a
 * partition's consumers are `<owner>-p<i>`), the `limit` oldest entries over all of them
 * (by ID: IDs of different partitions are comparable as times). A plain stream: as
 * pendingSummary. A group no partition has is TRIB_ERR_GROUP_NOT_FOUND, as for one stream.
 */
export async function pendingAcross(redis: RedisConnection, config: TributaryConfig, options: { limit?: number; partition?: number } = {}): Promise<PartitionedPendingSummary> {
  if (!isPartitioned(config)) return pendingSummary(redis, config, options);
  const scopes = partitionScopes(config, options.partition);
  let found = 0;
  const parts = await Promise.all(
    scopes.map(async (s) => {
      try {
        const r = await pendingSummary(redis, s.config, options);
        found++;
        return { s, r };
      } catch (err) {
        if (err instanceof TributaryError && err.code === 'TRIB_ERR_GROUP_NOT_FOUND') return { s, r: undefined };
        throw err;
      }
    }),
  );
  if (found === 0) throw new TributaryError('TRIB_ERR_GROUP_NOT_FOUND', [config.group, scopes.map((s) => s.config.streamKey).join(', ')]);
  const ids = parts.flatMap((p) => (p.r ? [p.r.smallestId, p.r.largestId] : [])).filter((x): x is string => x !== null).sort(compareStreamIds);
  return {
    streamKey: config.streamKey,
    group: config.group,
    total: parts.reduce((t, p) => t + (p.r?.total ?? 0), 0),
    smallestId: ids[0] ?? null,
    largestId: ids.at(-1) ?? null,
    consumers: parts.flatMap((p) => p.r?.consumers ?? []).sort((a, b) => b.pending - a.pending || a.name.localeCompare(b.name)),
    oldest: parts
      .flatMap((p) => (p.r?.oldest ?? []).map((e) => ({ ...e, partition: p.s.partition })))
      .sort((a, b) => compareStreamIds(a.id, b.id))
      .slice(0, options.limit ?? 10),
    partitions: parts.map((p) => ({
      partition: p.s.partition,
      streamKey: p.s.config.streamKey,
      total: p.r?.total ?? 0,
      smallestId: p.r?.smallestId ?? null,
      largestId: p.r?.largestId ?? null,
    })),
  };
}

/** listConsumers over the partitions, each consumer with its partition (partitioned streams only). */
export async function consumersAcross(redis: RedisConnection, config: TributaryConfig, partition?: number): Promise<Array<ConsumerInfo & { partition?: number }>> {
  if (!isPartitioned(config)) return listConsumers(redis, config);
  const lists = await Promise.all(
    partitionScopes(config, partition).map(async (s) => (await orEmpty(listConsumers(redis, s.config), [])).map((c) => ({ ...c, partition: s.partition }))),
  );
  return lists.flat();
}

export type PartitionedClaimResult = Omit<ClaimResult, 'claimed'> & { claimed: Array<{ id: string; deliveries: number; partition?: number }> };

/**
 * claimIdle on each partition in turn (`count` shared: the first partitions first). The
 * claimed entries carry their partition. Claimed entries stay on `consumer` in their
 * partition: only the partition's lease holder's consumer (`<owner>-p<i>`) resumes them
 * at its next takeover; anything else waits for a claim back.
 */
export async function claimAcross(
  redis: RedisConnection,
  config: TributaryConfig,
  options: ClaimOptions & { partition?: number },
): Promise<PartitionedClaimResult> {
  if (!isPartitioned(config)) return claimIdle(redis, config, options);
  const out: PartitionedClaimResult = {
    consumer: options.consumer,
    minIdleMs: options.minIdleMs,
    claimed: [],
    deleted: [],
    deletedUnknown: 0,
  };
  for (const s of partitionScopes(config, options.partition)) {
    const left = options.count === undefined ? undefined : options.count - out.claimed.length;
    if (left !== undefined && left <= 0) break;
    const r = await orEmpty(claimIdle(redis, s.config, { ...options, ...(left === undefined ? {} : { count: left }) }), undefined);
    if (!r) continue;
    out.claimed.push(...r.claimed.map((c) => ({ ...c, partition: s.partition })));
    out.deleted.push(...r.deleted);
    out.deletedUnknown += r.deletedUnknown;
  }
  return out;
}

// ---------------------------------------------------------------- dead letters

/** Dead-letter operations of each partition covered: the connections with the partition's scope. */
function deadLetterScopes(ops: DeadLetterOps, config: TributaryConfig, partition?: number): Array<{ partition: number; ops: DeadLetterOps }> {
  return partitionScopes(config, partition).map((s) => ({ partition: s.partition, ops: { ...ops, config: s.config } }));
}

/**
 * listDeadLetters over the partitions: each partition's newest `limit`, merged newest
 * first (failed_at, then row ID), `limit` of them; the total added up. Rows carry their
 * partition (partitioned streams only).
 */
export async function deadLettersAcross(
  ops: DeadLetterOps,
  config: TributaryConfig,
  options: ListDeadLettersOptions & { partition?: number } = {},
): Promise<{ total: DeadLetterPage['total']; rows: Array<DeadLetterRow & { partition?: number }> }> {
  const { partition, ...list } = options;
  if (!isPartitioned(config)) return listDeadLetters(ops, list);
  const pages = await Promise.all(
    deadLetterScopes(ops, config, partition).map(async (s) => {
      const page = await listDeadLetters(s.ops, list);
      return { total: page.total, rows: page.rows.map((r) => ({ ...r, partition: s.partition })) };
    }),
  );
  return {
    total: pages.reduce((t, p) => t + p.total, 0),
    rows: pages
      .flatMap((p) => p.rows)
      .sort((a, b) => b.failedAt.getTime() - a.failedAt.getTime() || b.id - a.id)
      .slice(0, list.limit ?? 20),
  };
}

/** getDeadLetter in whichever partition holds row `id`; TRIB_ERR_DLQ_NOT_FOUND naming the stream when none does. */
export async function deadLetterAcross(ops: DeadLetterOps, config: TributaryConfig, id: number, partition?: number): Promise<DeadLetterDetail & { partition?: number }> {
  if (!isPartitioned(config)) return getDeadLetter(ops, id);
  for (const s of deadLetterScopes(ops, config, partition)) {
    try {
      return { ...(await getDeadLetter(s.ops, id)), partition: s.partition };
    } catch (err) {
      if (!(err instanceof TributaryError && err.code === 'TRIB_ERR_DLQ_NOT_FOUND')) throw err;
    }
  }
  throw new TributaryError('TRIB_ERR_DLQ_NOT_FOUND', [id, `${config.streamKey} (${partition === undefined ? `${config.partitions} partitions` : `partition ${partition}`})`, config.group, config.pgSchema]);
}

/**
 * retryDeadLetters over the partitions: a row goes back to its own partition's key (the
 * key it was read from). By IDs: each ID's outcome from the partition holding it
 * (`not_found` when none does); `all`: every partition's, in partition order.
 */
export async function retryAcross(ops: DeadLetterOps, config: TributaryConfig, selector: RetrySelector, partition?: number): Promise<Array<RetryOutcome & { partition?: number }>> {
  if (!isPartitioned(config)) return retryDeadLetters(ops, selector);
  const results: Array<RetryOutcome & { partition?: number }> = [];
  let ids = 'ids' in selector ? [...selector.ids] : undefined;
  for (const s of deadLetterScopes(ops, config, partition)) {
    if (ids !== undefined && ids.length === 0) break;
    const outcomes = await retryDeadLetters(s.ops, ids === undefined ? selector : { ids });
    const found = outcomes.filter((o) => o.status !== 'not_found');
    results.push(...found.map((o) => ({ ...o, partition: s.partition })));
    if (ids !== undefined) {
      const done = new Set(found.map((o) => o.id));
      ids = ids.filter((id) => !done.has(id));
    }
  }
  for (const id of ids ?? []) results.push({ id, status: 'not_found' });
  return results.sort((a, b) => a.id - b.id);
}

/**
 * purgeDeadLetters over the partitions, counts added up. Without `confirm`, nothing is
 * deleted: TRIB_ERR_CONFIRMATION_REQUIRED says what would go from all of them.
 */
export async function purgeAcross(ops: DeadLetterOps, config: TributaryConfig, options: PurgeOptions & { partition?: number } = {}): Promise<PurgeCounts> {
  const { partition, ...purge } = options;
  if (!isPartitioned(config)) return purgeDeadLetters(ops, purge);
  const scopes = deadLetterScopes(ops, config, partition);
  const sum = (list: PurgeCounts[]): PurgeCounts => ({
    rows: list.reduce((t, c) => t + c.rows, 0),
    streamEntries: list.reduce((t, c) => t + c.streamEntries, 0),
    before: purge.before ?? null,
  });
  if (!purge.confirm) {
    const plan = sum(await Promise.all(scopes.map((s) => planPurge(s.ops, { before: purge.before }))));
    if (plan.rows === 0) return plan;
    const what = `${config.streamKey} (${partition === undefined ? `${config.partitions} partitions` : `partition ${partition}`})`;
    throw new TributaryError('TRIB_ERR_CONFIRMATION_REQUIRED', [describePurge({ ...config, streamKey: what, dlqStream: `{${config.streamKey}:p<i>}:dead` }, plan)]);
  }
  const counts: PurgeCounts[] = [];
  for (const s of scopes) counts.push(await purgeDeadLetters(s.ops, purge));
  return sum(counts);
}

// ---------------------------------------------------------------- consumers prune

type Parted<T> = T & { partition?: number };

/** planPrune over the partitions: the consumers of each, with their partition. */
export async function planPruneAcross(
  redis: RedisConnection,
  config: TributaryConfig,
  minIdleMs: number,
  partition?: number,
): Promise<{ minIdleMs: number; remove: Array<Parted<PrunePlan['remove'][number]>>; keep: Array<Parted<PrunePlan['keep'][number]>> }> {
  if (!isPartitioned(config)) return planPrune(redis, config, minIdleMs);
  const plans = await Promise.all(
    partitionScopes(config, partition).map(async (s) => ({ s, plan: await orEmpty(planPrune(redis, s.config, minIdleMs), { minIdleMs, remove: [], keep: [] }) })),
  );
  return {
    minIdleMs,
    remove: plans.flatMap(({ s, plan }) => plan.remove.map((c) => ({ ...c, partition: s.partition }))),
    keep: plans.flatMap(({ s, plan }) => plan.keep.map((c) => ({ ...c, partition: s.partition }))),
  };
}

/**
 * pruneConsumers over the partitions (each consumer re-checked atomically at deletion).
 * Without `confirm`, nothing is deleted: TRIB_ERR_CONFIRMATION_REQUIRED names what would go
 * from all of them.
 */
export async function pruneAcross(
  redis: RedisConnection,
  config: TributaryConfig,
  options: { minIdleMs: number; confirm?: boolean; partition?: number },
): Promise<PruneResult> {
  if (!isPartitioned(config)) return pruneConsumers(redis, config, options);
  if (!options.confirm) {
    const plan = await planPruneAcross(redis, config, options.minIdleMs, options.partition);
    if (plan.remove.length > 0) {
      const what = `${config.streamKey} (${options.partition === undefined ? `${config.partitions} partitions` : `partition ${options.partition}`})`;
      throw new TributaryError('TRIB_ERR_CONFIRMATION_REQUIRED', [describePrune({ ...config, streamKey: what }, plan)]);
    }
  }
  const out: PruneResult = { minIdleMs: options.minIdleMs, deleted: [], kept: [], missing: [] };
  for (const s of partitionScopes(config, options.partition)) {
    const r = await orEmpty(pruneConsumers(redis, s.config, { minIdleMs: options.minIdleMs, confirm: true }), undefined);
    if (!r) continue;
    out.deleted.push(...r.deleted);
    out.kept.push(...r.kept);
    out.missing.push(...r.missing);
  }
  return out;
}
