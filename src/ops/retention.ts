/**
 * Retention: trimming a stream without ever removing an entry that some consumer
 * group has not yet received or acknowledged.
 *
 * Redis 7.0 has no "trim only acknowledged entries" option, so the safe point is
 * computed from each group's facts:
 *
 *   - entries after the group's `last-delivered-id` have not been received by it;
 *   - entries from its oldest pending ID on have been received, not acknowledged.
 *
 * The group still needs everything from `min(next(last-delivered-id), oldest pending)`
 * on; the stream's safe point is the smallest of those over all groups. A trim is
 * `XTRIM key MINID <cut>` (which removes the entries with IDs below `cut`) with
 * `cut = min(requested cut, safe point)`.
 *
 * The decision is made here, in TypeScript (pure functions, unit-tested); the trim
 * itself runs in a small Lua guard that re-reads every group's facts and refuses if
 * a group was created, or moved back, behind the cut meanwhile — so a concurrent
 * `XGROUP CREATE ... 0` or `SETID` can never lose entries. Groups only ever move
 * forward otherwise, and an advancing group only makes the cut more conservative.
 *
 * Exact (`=`) or approximate (`~`) trimming: `~` removes only whole radix-tree nodes
 * (at most 100 × stream-node-max-entries entries per call) — it may keep a few
 * entries below the cut, never remove one at or above it, so it is as safe and much
 * cheaper; it is the default. `=` removes exactly the entries below the cut.
 */
import { TributaryError } from '../errors.js';
import { readGroups } from '../redis/xinfo.js';
import { RedisScript, send, type RedisConnection } from '../redis/client.js';
import { compareStreamIds, parseEntryList, parsePendingRangeReply, redisErrorIs } from '../redis/commands.js';

/** The largest sequence number of a stream ID (2^64 - 1). */
export const MAX_SEQUENCE = 18446744073709551615n;

function splitId(id: string): [bigint, bigint] {
  const [ms = '0', seq = '0'] = id.split('-');
  return [BigInt(ms), BigInt(seq)];
}

/** The smallest stream ID greater than `id` (`5-3` → `5-4`, `5-<max>` → `6-0`). */
export function nextStreamId(id: string): string {
  const [ms, seq] = splitId(id);
  return seq >= MAX_SEQUENCE ? `${ms + 1n}-0` : `${ms}-${seq + 1n}`;
}

/** The largest stream ID smaller than `id` (`5-3` → `5-2`, `5-0` → `4-<max>`); null for `0-0`. */
export function previousStreamId(id: string): string | null {
  const [ms, seq] = splitId(id);
  if (seq > 0n) return `${ms}-${seq - 1n}`;
  if (ms > 0n) return `${ms - 1n}-${MAX_SEQUENCE}`;
  return null;
}

const minId = (a: string, b: string) => (compareStreamIds(a, b) <= 0 ? a : b);
const maxId = (a: string, b: string) => (compareStreamIds(a, b) >= 0 ? a : b);

/** What a trim needs to know about one consumer group. */
export interface GroupTrimFacts {
  name: string;
  /** The last entry delivered to the group: everything after it is not yet received. */
  lastDeliveredId: string;
  /** The oldest entry delivered and not yet acknowledged; null when nothing is pending. */
  oldestPendingId: string | null;
}

/** The first entry ID the group still needs (every ID below it may go). Pure. */
export function groupKeepFrom(group: GroupTrimFacts): string {
  const notReceived = nextStreamId(group.lastDeliveredId);
  return group.oldestPendingId === null ? notReceived : minId(notReceived, group.oldestPendingId);
}

export interface SafePoint {
  /** Entries below this ID are received and acknowledged by every group; null when the stream has no group. */
  safePoint: string | null;
  /** The group that sets the safe point (the furthest behind); null when there is no group. */
  limitedBy: string | null;
}

/** The smallest `groupKeepFrom` over all groups (ties: the first group listed). Pure. */
export function safePointOf(groups: readonly GroupTrimFacts[]): SafePoint {
  let safePoint: string | null = null;
  let limitedBy: string | null = null;
  for (const g of groups) {
    const keep = groupKeepFrom(g);
    if (safePoint === null || compareStreamIds(keep, safePoint) < 0) {
      safePoint = keep;
      limitedBy = g.name;
    }
  }
  return { safePoint, limitedBy };
}

export type TrimLimit = 'request' | `group:${string}`;

export interface CutChoice {
  /** The MINID to trim at (entries below it go); null: nothing to trim. */
  cut: string | null;
  safePoint: string | null;
  /** `request` when the requested cut is used as is, `group:<name>` when that group held it back. */
  limitedBy: TrimLimit;
}

/** `cut = min(requested cut, safe point)`. Pure. */
export function chooseCut(requestedCut: string | null, groups: readonly GroupTrimFacts[]): CutChoice {
  const { safePoint, limitedBy } = safePointOf(groups);
  if (requestedCut === null) return { cut: null, safePoint, limitedBy: 'request' };
  if (safePoint === null || compareStreamIds(requestedCut, safePoint) <= 0) {
    return { cut: requestedCut, safePoint, limitedBy: 'request' };
  }
  return { cut: safePoint, safePoint, limitedBy: `group:${limitedBy}` };
}

/** The cut for a maximum age: entries older than `now - maxAgeMs` go. Pure. */
export function cutForMaxAge(maxAgeMs: number, now = Date.now()): string {
  return `${Math.max(0, Math.floor(now - maxAgeMs))}-0`;
}

/** Both limits given: keep what satisfies both, i.e. the later cut. Pure. */
export function laterCut(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return maxId(a, b);
}

/** The facts of every group of the stream (XINFO GROUPS, then one XPENDING per group, pipelined). */
export async function readGroupTrimFacts(redis: RedisConnection, key: string): Promise<GroupTrimFacts[]> {
  const groups = await readGroups(redis, key);
  const oldest = await Promise.all(
    groups.map(async (g) => {
      if (g.pending === 0) return null;
      try {
        return parsePendingRangeReply(await send(redis, ['XPENDING', key, g.name, '-', '+', '1']))[0]?.id ?? null;
      } catch (err) {
        if (redisErrorIs(err, 'NOGROUP')) return null; // destroyed meanwhile: it needs nothing
        throw err;
      }
    }),
  );
  return groups.map((g, i) => ({ name: g.name, lastDeliveredId: g.lastDeliveredId, oldestPendingId: oldest[i] ?? null }));
}

/** Where the stream may be trimmed up to now (entries below `safePoint` may go), and which group holds it. */
export async function safeTrimPoint(redis: RedisConnection, key: string): Promise<SafePoint & { groups: GroupTrimFacts[] }> {
  const groups = await readGroupTrimFacts(redis, key);
  return { ...safePointOf(groups), groups };
}

const PAGE = 1000;

/**
 * The cut that keeps the newest `maxLen` entries: the ID of the maxLen-th entry from
 * the end. Walks the shorter side of the stream in pages: back from the end over
 * `maxLen` entries, or forward from the start over the entries to remove — and in
 * that case stops at `stopAt` (the safe point): nothing past it can go anyway, and a
 * lagging group must not make every periodic trim read the whole backlog. Then it
 * returns the first ID at or past `stopAt`, and `complete: false`.
 */
export async function cutForMaxLen(
  redis: RedisConnection,
  key: string,
  maxLen: number,
  stopAt: string | null,
): Promise<{ cut: string | null; complete: boolean }> {
  const length = Number(await send(redis, ['XLEN', key]));
  if (length <= maxLen) return { cut: null, complete: true };
  if (maxLen === 0) {
    const newest = parseEntryList(await send(redis, ['XREVRANGE', key, '+', '-', 'COUNT', '1'])).entries[0];
    return { cut: newest ? nextStreamId(newest.id) : null, complete: true };
  }
  const toRemove = length - maxLen;
  if (maxLen <= toRemove) {
    let from = '+';
    let seen = 0;
    for (;;) {
      const page = parseEntryList(await send(redis, ['XREVRANGE', key, from, '-', 'COUNT', String(Math.min(PAGE, maxLen - seen))])).entries;
      if (page.length === 0) return { cut: null, complete: true }; // trimmed meanwhile
      seen += page.length;
      const last = page.at(-1)!.id;
      if (seen >= maxLen) return { cut: last, complete: true };
      from = `(${last}`;
    }
  }
  // The (toRemove + 1)-th entry from the start is the first one kept.
  let from = '-';
  let seen = 0;
  for (;;) {
    const want = Math.min(PAGE, toRemove + 1 - seen);
    const page = parseEntryList(await send(redis, ['XRANGE', key, from, '+', 'COUNT', String(want)])).entries;
    if (page.length === 0) return { cut: null, complete: true };
    for (const entry of page) {
      seen++;
      if (stopAt !== null && compareStreamIds(entry.id, stopAt) >= 0) return { cut: entry.id, complete: false };
      if (seen === toRemove + 1) return { cut: entry.id, complete: true };
    }
    from = `(${page.at(-1)!.id}`;
  }
}

/** How many entries have an ID below `cut` (paged XRANGE; for dry runs). */
export async function countBelow(redis: RedisConnection, key: string, cut: string): Promise<number> {
  let from = '-';
  let n = 0;
  for (;;) {
    const page = parseEntryList(await send(redis, ['XRANGE', key, from, `(${cut}`, 'COUNT', String(PAGE)])).entries;
    n += page.length;
    if (page.length < PAGE) return n;
    from = `(${page.at(-1)!.id}`;
  }
}

/** The atomic guard (src/redis/scripts/trim-guard.lua): re-checks every group, then trims. */
export const TRIM_GUARD = new RedisScript('trim-guard');

async function guardedTrim(redis: RedisConnection, key: string, cut: string, exact: boolean, requireGroups: readonly string[] = []): Promise<{ deleted: number; refusedBy: string | null }> {
  const before = previousStreamId(cut);
  if (before === null) return { deleted: 0, refusedBy: null }; // MINID 0-0 removes nothing
  const reply = await TRIM_GUARD.run(redis, [key], [cut, before, exact ? '=' : '~', ...requireGroups]);
  const [deleted, group] = reply as [number, string];
  if (Number(deleted) === -2) throw new TributaryError('TRIB_ERR_GROUP_NOT_FOUND', [String(group), key]);
  return Number(deleted) < 0 ? { deleted: 0, refusedBy: String(group) } : { deleted: Number(deleted), refusedBy: null };
}

export interface TrimOptions {
  /** Keep about this many of the newest entries. */
  maxLen?: number;
  /** Remove entries older than this (ms, by their ID's time). */
  maxAgeMs?: number;
  /** Decide and report, remove nothing (default false). */
  dryRun?: boolean;
  /** `XTRIM MINID =` instead of `~` (default false: approximate, cheaper, see above). */
  exact?: boolean;
  /** Keep repeating approximate passes with the same cut for at most this long (default 5000 ms). */
  maxPassMs?: number;
  /** The clock, for maxAgeMs (default Date.now). */
  now?: () => number;
  /**
   * Groups that must exist on the stream: while one is missing nothing is trimmed and the
   * call fails with TRIB_ERR_GROUP_NOT_FOUND (checked first, and again atomically in the
   * guard). The engine passes its own group: a group lost to a restart or XGROUP DESTROY
   * guards nothing, and what is produced before a worker recreates it must not be cut.
   */
  requireGroups?: readonly string[];
}

export interface TrimResult {
  /**
   * The cut the request alone asks for (null: nothing needs trimming). With maxLen,
   * when the safe point is reached before it, the first ID at or past the safe
   * point (the walk stops there; see cutForMaxLen).
   */
  requestedCut: string | null;
  /** Entries below this ID are received and acknowledged by every group; null: no group. */
  safePoint: string | null;
  /** The MINID trimmed at: `min(requestedCut, safePoint)`; null when nothing was to be trimmed. */
  cut: string | null;
  /** Entries removed (0 in a dry run). With `~` it can be fewer than the entries below the cut. */
  deleted: number;
  /** Dry run only: entries below the cut, i.e. what an exact trim would remove. */
  wouldDelete?: number;
  limitedBy: TrimLimit;
  dryRun: boolean;
  exact: boolean;
}

const ATTEMPTS = 3;

/**
 * Trims `key` to `maxLen` entries and/or `maxAgeMs` of age, never past the safe
 * point. Safe to call concurrently (from several engines, or with `tributary trim`):
 * each trim is decided from fresh facts and applied by the atomic guard. Cheap when
 * called periodically: a few O(1) commands, a walk bounded by the entries that can
 * actually go (maxLen), and with `~` at most one node-aligned batch removed per call.
 */
export async function trimStream(redis: RedisConnection, key: string, options: TrimOptions): Promise<TrimResult> {
  const { maxLen, maxAgeMs } = options;
  if (maxLen === undefined && maxAgeMs === undefined) throw new RangeError('trimStream needs maxLen or maxAgeMs');
  if (maxLen !== undefined && (!Number.isInteger(maxLen) || maxLen < 0)) throw new RangeError('maxLen must be a non-negative integer');
  if (maxAgeMs !== undefined && !(maxAgeMs >= 0)) throw new RangeError('maxAgeMs must be a non-negative number');
  const dryRun = options.dryRun === true;
  const exact = options.exact === true;
  let refusedBy = '';
  const required = options.requireGroups ?? [];
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const groups = await readGroupTrimFacts(redis, key);
    const missing = required.find((name) => !groups.some((g) => g.name === name));
    if (missing !== undefined) throw new TributaryError('TRIB_ERR_GROUP_NOT_FOUND', [missing, key]);
    const { safePoint } = safePointOf(groups);
    let requestedCut = maxAgeMs === undefined ? null : cutForMaxAge(maxAgeMs, (options.now ?? Date.now)());
    if (maxLen !== undefined) requestedCut = laterCut(requestedCut, (await cutForMaxLen(redis, key, maxLen, safePoint)).cut);
    const choice = chooseCut(requestedCut, groups);
    const base = { requestedCut, safePoint: choice.safePoint, cut: choice.cut, limitedBy: choice.limitedBy, dryRun, exact };
    if (choice.cut === null) return { ...base, deleted: 0, ...(dryRun ? { wouldDelete: 0 } : {}) };
    if (dryRun) return { ...base, deleted: 0, wouldDelete: await countBelow(redis, key, choice.cut) };
    // An approximate pass removes at most 100 nodes: repeat the guarded XTRIM with the
    // same cut (decided once: no re-walk of the stream) until a pass removes nothing.
    let deleted = 0;
    let trimmed = await guardedTrim(redis, key, choice.cut, exact, required);
    const until = Date.now() + (options.maxPassMs ?? 5000);
    while (trimmed.refusedBy === null && trimmed.deleted > 0 && !exact && Date.now() < until) {
      deleted += trimmed.deleted;
      trimmed = await guardedTrim(redis, key, choice.cut, exact, required);
    }
    if (trimmed.refusedBy === null) return { ...base, deleted: deleted + trimmed.deleted };
    if (deleted > 0) return { ...base, deleted }; // a later pass was refused: what was removed stays removed
    refusedBy = trimmed.refusedBy; // a group appeared or moved back meanwhile: decide again
  }
  throw new TributaryError('TRIB_ERR_TRIM_CONTENDED', [key, ATTEMPTS, `group ${refusedBy}`]);
}
