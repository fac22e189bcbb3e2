/**
 * Tail: follow a stream as a plain reader, outside any consumer group (nothing is
 * delivered, acknowledged or left pending). Each `XREAD BLOCK` starts after the last
 * ID seen, so no entry is skipped or repeated between reads.
 */
import { send, type RedisConnection } from '../redis/client.js';
import { parseStreamReadReply, redisErrorIs, type StreamEntry } from '../redis/commands.js';
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
