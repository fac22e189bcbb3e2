/**
 * Partitioned streams: one logical stream as N Redis stream keys (PARTITIONS=N).
 *
 * With N = 1 (the default) the logical stream is its one key, named as the user named
 * it (`events`), with its dead-letter stream as configured: nothing changes and nothing
 * migrates. With N > 1, partition `i` (0-based) of stream `events` is the key
 * `events:p<i>` — each partition its own hash slot, so on a Redis Cluster they spread
 * over the masters — and every key that must move with a partition in one script
 * (its dead letters, its lease) carries the partition's key as a hash tag
 * (`{events:p3}:dead`, `{events:p3}:lease:<group>`), so it shares the partition's slot.
 *
 * A producer sends every event of one partition key (default the event's `event_id`,
 * or another field) to one partition: partitionOf(value, N) = FNV-1a 32-bit of the
 * value's UTF-8 bytes, mod N. It is small enough to compute in any language, so a
 * producer that is not ours can route the same way. Changing N remaps keys.
 *
 * Pure: no connection here.
 */
import { TributaryError } from '../errors.js';

/** The largest PARTITIONS accepted. */
export const MAX_PARTITIONS = 1024;

/** Checks a partition count: an integer in 1..MAX_PARTITIONS. */
export function checkPartitions(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_PARTITIONS) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [`PARTITIONS must be an integer from 1 to ${MAX_PARTITIONS} (got ${String(n)})`]);
  }
  return n;
}

/** FNV-1a, 32 bits, of `text`'s UTF-8 bytes. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  const bytes = Buffer.from(text, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The partition (0..n-1) of an event whose partition key is `value`. */
export function partitionOf(value: string, n: number): number {
  if (n <= 1) return 0;
  return fnv1a32(value) % n;
}

/** The stream key of partition `i` of `streamKey` with `n` partitions (`streamKey` itself when n = 1). */
export function partitionStreamKey(streamKey: string, i: number, n: number): string {
  if (n <= 1) return streamKey;
  if (!Number.isInteger(i) || i < 0 || i >= n) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [`partition must be an integer from 0 to ${n - 1} (got ${String(i)})`]);
  }
  return `${streamKey}:p${i}`;
}

/** Every partition's stream key, in partition order. */
export function partitionStreamKeys(streamKey: string, n: number): string[] {
  return Array.from({ length: Math.max(1, n) }, (_, i) => partitionStreamKey(streamKey, i, n));
}

/**
 * The dead-letter stream of partition `i`: with n = 1, `dlqStream` as configured; with
 * n > 1, `{<partition key>}:dead` (in the partition's slot).
 */
export function partitionDeadLetterKey(streamKey: string, dlqStream: string, i: number, n: number): string {
  if (n <= 1) return dlqStream;
  return `{${partitionStreamKey(streamKey, i, n)}}:dead`;
}

/** The lease key of partition `i` for consumer group `group` (in the partition's slot); only n > 1 has leases. */
export function partitionLeaseKey(streamKey: string, group: string, i: number, n: number): string {
  return `{${partitionStreamKey(streamKey, i, n)}}:lease:${group}`;
}

/** The partition a key names, or undefined when `key` is not a partition key of `streamKey` with `n` partitions. */
export function partitionOfKey(streamKey: string, key: string, n: number): number | undefined {
  if (n <= 1) return key === streamKey ? 0 : undefined;
  const prefix = `${streamKey}:p`;
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  if (!/^(0|[1-9][0-9]*)$/.test(rest)) return undefined;
  const i = Number(rest);
  return i < n ? i : undefined;
}

/**
 * The fencing counter of partition `i` for group `group` (in the partition's slot): INCR
 * at every lease acquired, never reset, so each owner's token is larger than every
 * earlier owner's.
 */
export function partitionFenceKey(streamKey: string, group: string, i: number, n: number): string {
  return `{${partitionStreamKey(streamKey, i, n)}}:fence:${group}`;
}

/**
 * The processes reading the partitioned stream `streamKey` as `group`: a sorted set of
 * process ids scored by their last heartbeat (Redis's clock). One key, in its own slot.
 */
export function partitionMembersKey(streamKey: string, group: string): string {
  return `{${streamKey}}:members:${group}`;
}

/** The consumer name a process `owner` reads partition `i` with (one worker per partition). */
export function partitionConsumer(owner: string, i: number): string {
  return `${owner}-p${i}`;
}

/** A lease as stored: `<token>/<owner>`. Pure. */
export function leaseValue(token: number, owner: string): string {
  return `${token}/${owner}`;
}

/** The token and owner of a stored lease value, or undefined when it is not one. Pure. */
export function parseLease(value: string): { token: number; owner: string } | undefined {
  const slash = value.indexOf('/');
  if (slash <= 0) return undefined;
  const token = Number(value.slice(0, slash));
  if (!Number.isSafeInteger(token) || token < 1) return undefined;
  return { token, owner: value.slice(slash + 1) };
}

/**
 * Which partitions each process should own: every partition to exactly one member, each
 * member about n/P of them (⌊n/P⌋ or ⌈n/P⌉: the first n mod P members in sorted order
 * take one more), partition by partition to the member ranking it highest (FNV-1a of
 * `<member>/<partition>`) that still has room. Deterministic: every process computing it
 * from the same members gets the same answer, whatever order it saw them in; a member
 * joining or leaving moves a few partitions, not all. Pure.
 */
export function assignPartitions(members: readonly string[], n: number): Map<string, number[]> {
  const sorted = [...new Set(members)].sort();
  const out = new Map<string, number[]>(sorted.map((m) => [m, []]));
  if (sorted.length === 0) return out;
  const base = Math.floor(n / sorted.length);
  const extra = n % sorted.length;
  const room = new Map(sorted.map((m, i) => [m, base + (i < extra ? 1 : 0)]));
  for (let p = 0; p < n; p++) {
    const ranked = sorted
      .map((m) => ({ m, score: fnv1a32(`${m}/${p}`) }))
      .sort((a, b) => b.score - a.score || (a.m < b.m ? -1 : 1));
    const pick = ranked.find((r) => room.get(r.m)! > 0)!;
    room.set(pick.m, room.get(pick.m)! - 1);
    out.get(pick.m)!.push(p);
  }
  return out;
}
