/**
 * Tail: follow a stream as a plain reader, outside any consumer group (nothing is
 * delivered, acknowledged or left pending). Each `XREAD BLOCK` starts after the last
 * ID seen, so no entry is skipped or repeated between reads.
 */
import { send, type RedisConnection } from '../redis/client.js';
import { compareStreamIds, parseStreamReadReply, redisErrorIs, type StreamEntry } from '../redis/commands.js';
import { ABORTED, untilAborted } from '../core/backoff.js';
import { parseXinfoStream } from '../redis/xinfo.js';

export interface TailOptions {
  /**
   * Where to start (exclusive): `$` (only entries added from now on; the default),
   * `0` (the whole stream), or an entry ID (the entries after it, e.g. the last one
   * a previous tail printed).
   */
  from?: string;
  /** BLOCK of each XREAD, ms (default 1000). Bounds how long a read holds the connection after an abort. */
  blockMs?: number;
  /** COUNT of each XREAD (default 100). */
  count?: number;
  /** Aborting ends the generator at once (an XREAD in progress is left to time out). */
  signal?: AbortSignal;
}

/** The ID `$` stands for now: the stream's last generated ID (`0-0` while it does not exist). */
export async function currentLastId(redis: RedisConnection, key: string): Promise<string> {
  try {
    return parseXinfoStream(await send(redis, ['XINFO', 'STREAM', key])).lastGeneratedId;
  } catch (err) {
    if (redisErrorIs(err, 'ERR')) return '0-0'; // no such key
    throw err;
  }
}

/**
 * Yields the entries of `key` after `from`, oldest first, waiting for new ones as
 * they arrive, until `signal` aborts or the consumer stops iterating. `$` is resolved
 * once, at the start, to the stream's last ID, so entries added between two reads
 * are not missed. Use a connection of its own: a blocked XREAD occupies it.
 */
export async function* tailStream(redis: RedisConnection, key: string, options: TailOptions = {}): AsyncGenerator<StreamEntry> {
  const { signal } = options;
  const blockMs = Math.max(1, Math.ceil(options.blockMs ?? 1000));
  const count = String(options.count ?? 100);
  const from = options.from ?? '$';
  let last = from === '$' ? await currentLastId(redis, key) : from === '0' ? '0-0' : from;
  while (!signal?.aborted) {
    const read = send(redis, ['XREAD', 'COUNT', count, 'BLOCK', String(blockMs), 'STREAMS', key, last]);
    const reply = await untilAborted(read, signal);
    if (reply === ABORTED) return;
    for (const entry of parseStreamReadReply(reply).entries) {
      last = entry.id;
      yield entry;
      if (signal?.aborted) return;
    }
  }
}

/**
 * tailStream over several keys (a partitioned stream's partitions), each entry with its
 * key. The keys may be in different hash slots (a Redis Cluster refuses one XREAD over
 * them), so each is read on its own without BLOCK, all at once; a round that finds
 * nothing waits `pollMs` (default 200). Per key the entries come oldest first; within a
 * round, the keys' entries are merged by ID.
 */
export async function* tailStreams(
  redis: RedisConnection,
  keys: readonly string[],
  options: TailOptions & { pollMs?: number } = {},
): AsyncGenerator<StreamEntry & { key: string }> {
  const { signal } = options;
  const count = String(options.count ?? 100);
  const from = options.from ?? '$';
  const last = await Promise.all(keys.map((k) => (from === '$' ? currentLastId(redis, k) : from === '0' ? '0-0' : from)));
  while (!signal?.aborted) {
    const read = Promise.all(keys.map((k, i) => send(redis, ['XREAD', 'COUNT', count, 'STREAMS', k, last[i]!])));
    const replies = await untilAborted(read, signal);
    if (replies === ABORTED) return;
    const got = replies.flatMap((reply, i) => {
      const entries = parseStreamReadReply(reply).entries;
      if (entries.length > 0) last[i] = entries.at(-1)!.id;
      return entries.map((e) => ({ ...e, key: keys[i]! }));
    });
    got.sort((a, b) => compareStreamIds(a.id, b.id));
    for (const entry of got) {
      yield entry;
      if (signal?.aborted) return;
    }
    if (got.length === 0) {
      const waited = await untilAborted(new Promise((r) => setTimeout(r, options.pollMs ?? 200)), signal);
      if (waited === ABORTED) return;
    }
  }
}
