import { RESP_TYPES } from '@redis/client';
import { ensureGroup, send, type RedisConnection } from '../redis/client.js';
import {
  parseAutoClaimReply,
  parseEntryList,
  parsePendingRangeReply,
  parseRawStreamReadReply,
  xackArgs,
  xautoclaimArgs,
  xpendingRangeArgs,
  xreadgroupArgs,
  type AutoClaimResult,
  type RawBufferReply,
  type RawStreamEntry,
  type PendingEntry,
  type StreamEntry,
} from '../redis/commands.js';

/** Blob strings as Buffers: what the hot-path read asks node-redis for. */
const BUFFERS = { [RESP_TYPES.BLOB_STRING]: Buffer } as const;

export interface RedisStreamSourceOptions {
  key: string;
  group: string;
}

/**
 * A consumer-group view of one stream. Blocking reads go through the caller's own
 * connection (one per worker); everything else shares the command connection, where
 * node-redis pipelines concurrent commands.
 */
export class RedisStreamSource {
  readonly key: string;
  readonly group: string;

  constructor(
    private readonly commands: RedisConnection,
    options: RedisStreamSourceOptions,
  ) {
    this.key = options.key;
    this.group = options.group;
  }

  /** Creates the group (MKSTREAM) if it does not exist. */
  ensureGroup(startId = '$'): Promise<boolean> {
    return ensureGroup(this.commands, this.key, this.group, startId);
  }

  /**
   * XREADGROUP of new entries (`>`) on the worker's own connection. Values come back as
   * the bytes Redis holds (RawStreamEntry), for the engine's COPY path.
   */
  async read(reader: RedisConnection, consumer: string, count: number, blockMs?: number): Promise<{ entries: RawStreamEntry[]; deletedIds: string[] }> {
    const reply = (await reader.sendCommand(xreadgroupArgs({ group: this.group, consumer, key: this.key, count, blockMs }), {
      typeMapping: BUFFERS,
    })) as RawBufferReply;
    return parseRawStreamReadReply(reply);
  }

  /** The consumer's pending entries after `after` (exclusive), oldest first. */
  async pendingOf(consumer: string, count: number, after?: string): Promise<PendingEntry[]> {
    const reply = await send(
      this.commands,
      xpendingRangeArgs({ key: this.key, group: this.group, start: after ? `(${after}` : '-', count, consumer }),
    );
    return parsePendingRangeReply(reply);
  }

  /**
   * Claims the entries to `consumer` again, counting a delivery (XCLAIM without JUSTID),
   * and returns their contents. IDs whose entry was deleted come back in `missing`
   * (Redis 7 drops them from the PEL itself; on 6.2 the caller acknowledges them).
   */
  async claim(consumer: string, ids: readonly string[]): Promise<{ entries: StreamEntry[]; missing: string[] }> {
    if (ids.length === 0) return { entries: [], missing: [] };
    const reply = await send(this.commands, ['XCLAIM', this.key, this.group, consumer, '0', ...ids]);
    const { entries } = parseEntryList(reply);
    const found = new Set(entries.map((e) => e.id));
    return { entries, missing: ids.filter((id) => !found.has(id)) };
  }

  /** One XACK for all the IDs. */
  async ack(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    return Number(await send(this.commands, xackArgs(this.key, this.group, ids)));
  }

  /**
   * Resets the idle time of entries this consumer still holds (XCLAIM ... JUSTID does
   * not bump the delivery count), so a batch held through a long outage is not
   * reclaimed by another process while it is still being worked on.
   */
  async touch(consumer: string, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await send(this.commands, ['XCLAIM', this.key, this.group, consumer, '0', ...ids, 'JUSTID']);
  }

  /** XAUTOCLAIM entries idle longer than `minIdleMs` to `consumer`. */
  async autoclaim(consumer: string, minIdleMs: number, cursor: string, count: number): Promise<AutoClaimResult> {
    const reply = await send(
      this.commands,
      xautoclaimArgs({ key: this.key, group: this.group, consumer, minIdleMs, start: cursor, count }),
    );
    return parseAutoClaimReply(reply);
  }

  /** Delivery counts of the consumer's pending entries between two IDs (inclusive). */
  async deliveries(consumer: string, first: string, last: string, count: number): Promise<Map<string, number>> {
    const reply = await send(
      this.commands,
      xpendingRangeArgs({ key: this.key, group: this.group, start: first, end: last, count, consumer }),
    );
    return new Map(parsePendingRangeReply(reply).map((p) => [p.id, p.deliveries]));
  }
}
