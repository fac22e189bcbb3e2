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
