/**
 * Operating a consumer group: what is pending and where, manual reclaim of idle
 * entries, the group's consumers and the pruning of dead ones. Library functions:
 * they never print; the CLI (`tributary pending | claim | consumers`) prints.
 */
import type { TributaryConfig } from '../config/schema.js';
import { TributaryError } from '../errors.js';
import { RedisScript, send, type RedisConnection } from '../redis/client.js';
import {
  parseAutoClaimReply,
  parsePendingRangeReply,
  redisErrorIs,
  xautoclaimArgs,
  xpendingRangeArgs,
  type PendingEntry,
  type RawReply,
} from '../redis/commands.js';

/** The stream and consumer group operated on. */
export type GroupTarget = Pick<TributaryConfig, 'streamKey' | 'group'>;

export interface PendingSummary {
  streamKey: string;
  group: string;
  /** Entries delivered to a consumer and not yet acknowledged. */
  total: number;
  smallestId: string | null;
  largestId: string | null;
  /** Pending entries per consumer, most first (consumers holding none are not listed). */
  consumers: Array<{ name: string; pending: number }>;
  /** The oldest pending entries (lowest IDs), with idle time and delivery count. */
  oldest: PendingEntry[];
}

/**
 * Runs a command on the group; a missing stream or group becomes
 * TRIB_ERR_GROUP_NOT_FOUND instead of a raw Redis error.
 */
async function onGroup<T>(redis: RedisConnection, target: GroupTarget, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    const missing =
      redisErrorIs(err, 'NOGROUP') ||
      (redisErrorIs(err, 'ERR') && Number(await send(redis, ['EXISTS', target.streamKey]).catch(() => 1)) === 0);
    if (missing) throw new TributaryError('TRIB_ERR_GROUP_NOT_FOUND', [target.group, target.streamKey], { cause: err });
    throw err;
  }
}

/** XPENDING summary plus the `limit` oldest pending entries (default 10). */
export async function pendingSummary(redis: RedisConnection, target: GroupTarget, options: { limit?: number } = {}): Promise<PendingSummary> {
  const limit = options.limit ?? 10;
  const [summary, oldest] = await onGroup(redis, target, () =>
    Promise.all([
      send(redis, ['XPENDING', target.streamKey, target.group]),
      limit > 0 ? send(redis, xpendingRangeArgs({ key: target.streamKey, group: target.group, count: limit })) : Promise.resolve([]),
    ]),
  );
  const s = Array.isArray(summary) ? summary : [];
  const consumers = (Array.isArray(s[3]) ? s[3] : [])
    .filter(Array.isArray)
    .map((c) => ({ name: String(c[0]), pending: Number(c[1]) }))
    .sort((a, b) => b.pending - a.pending || a.name.localeCompare(b.name));
  return {
    streamKey: target.streamKey,
    group: target.group,
    total: Number(s[0] ?? 0),
    smallestId: s[1] === null || s[1] === undefined ? null : String(s[1]),
    largestId: s[2] === null || s[2] === undefined ? null : String(s[2]),
    consumers,
    oldest: parsePendingRangeReply(oldest),
  };
}

export interface ClaimOptions {
  /** Claim only entries idle at least this long (ms). */
  minIdleMs: number;
  /** The consumer that gets them. */
  consumer: string;
  /** Claim at most this many (default: every idle entry). */
  count?: number;
  /** Entries per XAUTOCLAIM call (default 100). */
  pageSize?: number;
}

export interface ClaimResult {
  consumer: string;
  minIdleMs: number;
  /** The claimed entries and their delivery counts after the claim (each claim counts one delivery). */
  claimed: Array<{ id: string; deliveries: number }>;
  /** Pending entries whose stream entry had been deleted (trimmed): removed from the pending list by Redis 7. */
  deleted: string[];
  /** Redis 6.2 only: deleted entries reported as nil without their ID; they stay pending on `consumer`. */
  deletedUnknown: number;
}

/**
 * Moves entries idle at least `minIdleMs` (on any consumer) to `consumer` with an
 * XAUTOCLAIM loop. Not JUSTID: each claim counts as a delivery, so entries that keep
 * getting stuck eventually exceed MAX_DELIVERIES and are dead-lettered by the engine.
 */
export async function claimIdle(redis: RedisConnection, target: GroupTarget, options: ClaimOptions): Promise<ClaimResult> {
  if (!Number.isInteger(options.minIdleMs) || options.minIdleMs < 0) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--idle', `must be a non-negative number of ms (got ${options.minIdleMs})`]);
  }
  const pageSize = options.pageSize ?? 100;
  const result: ClaimResult = { consumer: options.consumer, minIdleMs: options.minIdleMs, claimed: [], deleted: [], deletedUnknown: 0 };
  let cursor = '0-0';
  do {
    const want = options.count === undefined ? pageSize : Math.min(pageSize, options.count - result.claimed.length);
    if (want <= 0) break;
    const reply = await onGroup(redis, target, () =>
      send(
        redis,
        xautoclaimArgs({
          key: target.streamKey,
          group: target.group,
          consumer: options.consumer,
          minIdleMs: options.minIdleMs,
          start: cursor,
          count: want,
        }),
      ),
    );
    const page = parseAutoClaimReply(reply);
    cursor = page.cursor;
    result.deleted.push(...page.deletedIds);
    result.deletedUnknown += page.nilCount;
    if (page.entries.length > 0) {
      const ids = page.entries.map((e) => e.id);
      const counts = await send(
        redis,
        xpendingRangeArgs({ key: target.streamKey, group: target.group, start: ids[0], end: ids.at(-1), count: ids.length * 2 + 10, consumer: options.consumer }),
      );
      const deliveries = new Map(parsePendingRangeReply(counts).map((p) => [p.id, p.deliveries]));
      for (const id of ids) result.claimed.push({ id, deliveries: deliveries.get(id) ?? 0 });
    }
  } while (cursor !== '0-0');
  return result;
}

export interface ConsumerInfo {
  name: string;
  pending: number;
  /** ms since the consumer last interacted with the group (read, claim, ...). */
  idleMs: number;
  /** ms since its last successful read or claim (Redis 7.2+; -1: never; null: not reported by this Redis). */
  inactiveMs: number | null;
}

function parseConsumers(raw: RawReply): ConsumerInfo[] {
  if (!Array.isArray(raw)) return [];
  return raw.filter(Array.isArray).map((c) => {
    const o: Record<string, RawReply> = {};
    for (let i = 0; i + 1 < c.length; i += 2) o[String(c[i])] = c[i + 1]!;
    return {
      name: String(o.name),
      pending: Number(o.pending ?? 0),
      idleMs: Number(o.idle ?? 0),
      inactiveMs: o.inactive === undefined || o.inactive === null ? null : Number(o.inactive),
    };
  });
}

/** XINFO CONSUMERS of the group. */
export async function listConsumers(redis: RedisConnection, target: GroupTarget): Promise<ConsumerInfo[]> {
  const reply = await onGroup(redis, target, () => send(redis, ['XINFO', 'CONSUMERS', target.streamKey, target.group]));
  return parseConsumers(reply);
}

export type KeepReason = 'pending' | 'active';

export interface PrunePlan {
  minIdleMs: number;
  /** Idle at least minIdleMs and holding no pending entries. */
  remove: ConsumerInfo[];
  /** Kept: `pending` (deleting it would lose its pending entries) or `active` (idle less than minIdleMs). */
  keep: Array<ConsumerInfo & { reason: KeepReason }>;
}

export interface PruneResult {
  minIdleMs: number;
  deleted: string[];
  kept: Array<{ name: string; reason: KeepReason; pending: number; idleMs: number }>;
  /** Planned for deletion but already gone when its turn came. */
  missing: string[];
}

/** Which consumers a prune would delete, and which it keeps and why. */
export async function planPrune(redis: RedisConnection, target: GroupTarget, minIdleMs: number): Promise<PrunePlan> {
  const consumers = await listConsumers(redis, target);
  const plan: PrunePlan = { minIdleMs, remove: [], keep: [] };
  for (const c of consumers) {
    if (c.pending > 0) plan.keep.push({ ...c, reason: 'pending' });
    else if (c.idleMs < minIdleMs) plan.keep.push({ ...c, reason: 'active' });
    else plan.remove.push(c);
  }
  return plan;
}

const pruneScript = new RedisScript('prune-consumer');

/**
 * Deletes one consumer only if, at that instant, it holds no pending entries and has
 * been idle at least `minIdleMs` (one Lua script: check and XGROUP DELCONSUMER are
 * atomic, so a consumer that just received an entry is kept and nothing is lost).
 */
export async function deleteConsumerIfIdle(
  redis: RedisConnection,
  target: GroupTarget,
  consumer: string,
  minIdleMs: number,
): Promise<{ status: 'deleted' | 'missing' } | { status: 'pending'; pending: number } | { status: 'active'; idleMs: number }> {
  const reply = await onGroup(redis, target, () => pruneScript.run(redis, [target.streamKey], [target.group, consumer, String(minIdleMs)]));
  const [, status, value] = Array.isArray(reply) ? reply : [];
  switch (String(status)) {
    case 'deleted':
      return { status: 'deleted' };
    case 'pending':
      return { status: 'pending', pending: Number(value) };
    case 'active':
      return { status: 'active', idleMs: Number(value) };
    default:
      return { status: 'missing' };
  }
}

export function describePrune(target: GroupTarget, plan: PrunePlan): string {
  const names = plan.remove.map((c) => c.name).join(', ');
  return (
    `delete ${plan.remove.length} consumer${plan.remove.length === 1 ? '' : 's'} idle for at least ${plan.minIdleMs} ms ` +
    `with no pending entries (${names}) from group ${target.group} on stream ${target.streamKey}`
  );
}

/**
 * Deletes the consumers idle at least `minIdleMs` that hold no pending entries, each
 * re-checked atomically at deletion (deleteConsumerIfIdle). Without `confirm: true`
 * it deletes nothing and throws TRIB_ERR_CONFIRMATION_REQUIRED naming them (when there
 * is anything to delete).
 */
export async function pruneConsumers(
  redis: RedisConnection,
  target: GroupTarget,
  options: { minIdleMs: number; confirm?: boolean },
): Promise<PruneResult> {
  if (!Number.isInteger(options.minIdleMs) || options.minIdleMs < 0) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--idle', `must be a non-negative number of ms (got ${options.minIdleMs})`]);
  }
  const plan = await planPrune(redis, target, options.minIdleMs);
  const result: PruneResult = {
    minIdleMs: options.minIdleMs,
    deleted: [],
    kept: plan.keep.map((c) => ({ name: c.name, reason: c.reason, pending: c.pending, idleMs: c.idleMs })),
    missing: [],
  };
  if (plan.remove.length === 0) return result;
  if (!options.confirm) throw new TributaryError('TRIB_ERR_CONFIRMATION_REQUIRED', [describePrune(target, plan)]);
  for (const c of plan.remove) {
    const outcome = await deleteConsumerIfIdle(redis, target, c.name, options.minIdleMs);
    if (outcome.status === 'deleted') result.deleted.push(c.name);
    else if (outcome.status === 'missing') result.missing.push(c.name);
    else if (outcome.status === 'pending') result.kept.push({ name: c.name, reason: 'pending', pending: outcome.pending, idleMs: c.idleMs });
    else if (outcome.status === 'active') result.kept.push({ name: c.name, reason: 'active', pending: 0, idleMs: outcome.idleMs });
  }
  return result;
}
