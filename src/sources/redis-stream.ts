import { ClientOfflineError, RESP_TYPES } from '@redis/client';
import { entrySize } from '../core/batch-policy.js';
import { ReadAgain, type DeadLetter, type Message, type Recovered, type Source } from '../core/contracts.js';
import { groupReader, isServerRefusal, type GroupReader } from '../redis/stream-reader.js';
import { connectChecked, createRedisConnection, destroyQuietly, ensureGroup, send, type RedisConnection } from '../redis/client.js';
import {
  parsePendingRangeReply,
  parseRawAutoClaimReply,
  parseRawEntryList,
  redisErrorIs,
  xackArgs,
  xautoclaimArgs,
  xpendingRangeArgs,
  xreadgroupArgs,
  RawStreamEntry,
  type RawBufferReply,
  type StreamEntry,
} from '../redis/commands.js';
import { moveToDeadLetterStream } from '../redis/dead-letter-stream.js';
import { isTributaryError, TributaryError } from '../errors.js';
import { deleteConsumerIfIdle, planPrune } from '../ops/pending.js';

/** Blob strings as Buffers: what the hot-path read asks node-redis for. */
const BUFFERS = { [RESP_TYPES.BLOB_STRING]: Buffer } as const;

export interface RedisStreamSourceOptions {
  /** Redis URL: each consumer gets its own connection from it for its blocking reads. */
  redisUrl: string;
  /** The connection for every non-blocking command, shared and not closed by the source (default: one of its own, closed with it). */
  commands?: RedisConnection;
  /** The stream key. */
  key: string;
  /** The consumer group. */
  group: string;
  /** Where a new group starts: `0` (the whole stream, the default), `$` (new entries only) or an entry ID. */
  startId?: string;
  /** The dead-letter stream (default `<key>:dead`). */
  dlqStream?: string;
  /** Names the consumers' connections in CLIENT LIST (default `tributary:<consumer>`). */
  connectionName?: (consumer: string) => string;
  /**
   * Called when a read found the group gone (Redis restarted without persistence, the
   * stream deleted, XGROUP DESTROY) and the source created it again, at `startId` `0`
   * (the stream is new: everything in it arrived after the loss).
   */
  onGroupRecreated?: (info: { key: string; group: string; startId: string }) => void;
  /** Each consumer's reading connection reconnects when a command gets no reply within this (plus its block time), ms (see watchCommands; default none). */
  commandTimeoutMs?: number;
}

/** A consumer's connection for blocking reads (stream-reader.ts), and what it knows of its reads. */
interface Reader {
  conn: GroupReader;
  /** The highest ID a `>` read of this consumer returned. */
  lastId?: string;
  /**
   * A read failed without a reply from Redis (a reset, a timeout): Redis may have
   * delivered entries to this consumer that never arrived. They are pending on it, newer
   * than lastId, and are claimed back before the next new read.
   */
  lostRead?: boolean;
}

/** A stream entry as a message: first reads keep the bytes Redis sent (RawStreamEntry). */
export type StreamMessage = Message<StreamEntry>;

function message(entry: StreamEntry & { size?: number }, deliveries: number): StreamMessage {
  return { id: entry.id, body: entry, deliveries, bytes: entry.size ?? entrySize(entry.fields) };
}

/**
 * A consumer group on one stream, as a runner source. Every Redis detail of reading a
 * stream lives here: XREADGROUP `>` on one blocking connection per consumer (entries
 * stay Buffers, for the COPY path), XACK, keep-alive by XCLAIM JUSTID (no delivery
 * counted), the consumer's own pending entries claimed again at start (one delivery
 * more), XAUTOCLAIM of dead consumers' entries, dead letters moved to the dead-letter
 * stream atomically with their ack, CLIENT UNBLOCK, and a deleted group recreated.
 */
export class RedisStreamSource implements Source<StreamEntry> {
  readonly server = 'redis' as const;
  readonly key: string;
  readonly group: string;
  readonly dlqStream: string;
  private readonly commands: RedisConnection;
  private readonly readers = new Map<string, Reader>();
  private readonly ownsCommands: boolean;
  private closed = false;

  constructor(private readonly options: RedisStreamSourceOptions) {
    for (const key of ['redisUrl', 'key', 'group'] as const) {
      if (typeof options?.[key] !== 'string' || options[key] === '') throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [`redis-stream source ${key}`, 'is required (a non-empty string)']);
    }
    if (options.startId !== undefined && !/^(\$|0|\d+(-\d+)?)$/.test(options.startId)) {
      throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['redis-stream source startId', `must be 0, $ or a stream ID (got ${JSON.stringify(options.startId)})`]);
    }
    this.ownsCommands = options.commands === undefined;
    this.commands =
      options.commands ??
      createRedisConnection(options.redisUrl, { name: options.connectionName?.('commands') ?? 'tributary:commands', onError: () => {} });
    this.key = options.key;
    this.group = options.group;
    this.dlqStream = options.dlqStream ?? `${options.key}:dead`;
  }

  /**
   * Connects the command connection and creates the group (MKSTREAM) if it does not exist.
   * Credentials Redis refuses fail at once (TRIB_ERR_REDIS_AUTH, not retried).
   */
  async start(): Promise<void> {
    if (!this.commands.isOpen) await connectChecked(this.commands, this.options.redisUrl);
    await this.ensureGroup(this.options.startId ?? '0');
  }

  /** Creates the group (MKSTREAM) if it does not exist; true when it was created. */
  ensureGroup(startId = '$'): Promise<boolean> {
    return ensureGroup(this.commands, this.key, this.group, startId);
  }

  async read(consumer: string, count: number, blockMs: number | undefined, signal: AbortSignal): Promise<StreamMessage[]> {
    const reader = await this.reader(consumer);
    if (reader.lostRead) {
      const lost = await this.claimLostRead(consumer, reader, count);
      if (lost.length > 0) return lost;
    }
    let entries: RawStreamEntry[];
    try {
      entries = (await reader.conn.read(xreadgroupArgs({ group: this.group, consumer, key: this.key, count, blockMs }), blockMs ?? 0, signal)).entries;
    } catch (err) {
      if (redisErrorIs(err, 'NOGROUP')) {
        // The stream (and with it the group) was deleted: recreate both. At 0: the stream
        // is new, so everything in it arrived after the deletion.
        if (await this.ensureGroup('0')) this.options.onGroupRecreated?.({ key: this.key, group: this.group, startId: '0' });
        throw new ReadAgain('the group was recreated');
      }
      // No reply (the connection broke, or the command was sent and never answered):
      // what Redis delivered, if anything, is pending on this consumer unseen.
      if (!isServerRefusal(err)) reader.lostRead = true;
      // A cluster reader reconnecting: its break was reported already (the read it broke
      // failed), and it waited for the reconnect: no second report while others read fine.
      if (err instanceof ClientOfflineError) throw new ReadAgain('the reader is reconnecting');
      throw err;
    }
    // A RawStreamEntry is its own message (deliveries 1, body itself, bytes measured once).
    if (entries.length > 0) reader.lastId = entries.at(-1)!.id;
    return entries;
  }

  /**
   * After a read that got no reply: the entries Redis delivered to this consumer by it
   * (pending on the consumer, newer than anything it received) are claimed back and
   * handed out now, counted as one more delivery, instead of waiting CLAIM_IDLE_MS for
   * the reclaim loop. Up to `count` at a time; the flag clears once none is left.
   */
  private async claimLostRead(consumer: string, reader: Reader, count: number): Promise<StreamMessage[]> {
    const start = reader.lastId ? `(${reader.lastId}` : '-';
    let pending: ReturnType<typeof parsePendingRangeReply>;
    try {
      pending = parsePendingRangeReply(await send(this.commands, xpendingRangeArgs({ key: this.key, group: this.group, start, count, consumer })));
    } catch (err) {
      // The group is gone (Redis restarted empty): so is its pending list; the read recreates it.
      if (!redisErrorIs(err, 'NOGROUP')) throw err;
      pending = [];
    }
    if (pending.length === 0) {
      reader.lostRead = false;
      return [];
    }
    const ids = pending.map((p) => p.id);
    reader.lastId = ids.at(-1);
    const { entries } = parseRawEntryList(await this.sendRaw(['XCLAIM', this.key, this.group, consumer, '0', ...ids]));
    const found = new Set(entries.map((e) => e.id));
    const missing = ids.filter((id) => !found.has(id));
    if (missing.length > 0) await this.ackIds(missing);
    const deliveries = new Map(pending.map((p) => [p.id, p.deliveries + 1]));
    return entries.map((e) => message(e, deliveries.get(e.id) ?? 1));
  }

  async ack(_consumer: string, messages: readonly StreamMessage[]): Promise<void> {
    await this.ackIds(messages.map((m) => m.id));
  }

  /** One XACK for all the IDs. */
  async ackIds(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    try {
      return Number(await send(this.commands, xackArgs(this.key, this.group, ids)));
    } catch (err) {
      // The group is gone (Redis restarted without persistence): so is its pending list, and
      // nothing is left to acknowledge. Retrying would spin until the group is recreated.
      if (redisErrorIs(err, 'NOGROUP')) return 0;
      throw err;
    }
  }

  /**
   * Resets the idle time of entries this consumer still holds (XCLAIM ... JUSTID does not
   * count a delivery), so work held through a long write or an outage is not reclaimed
   * by anyone while it is still being worked on.
   */
  async keepAlive(consumer: string, messages: readonly StreamMessage[]): Promise<void> {
    if (messages.length === 0) return;
    try {
      await send(this.commands, ['XCLAIM', this.key, this.group, consumer, '0', ...messages.map((m) => m.id), 'JUSTID']);
    } catch (err) {
      // The group is gone (see ackIds): there is no pending entry to keep alive.
      if (!redisErrorIs(err, 'NOGROUP')) throw err;
    }
  }

  /**
   * The consumer's pending entries after `after`, left by an earlier run under the same
   * name. Found pending at start means that run died holding them, which counts as one
   * delivery: they are claimed again without JUSTID (the count goes up once per restart,
   * never per retry within a run). Entries deleted meanwhile (trimmed) are acknowledged
   * and returned in `deleted`.
   */
  async resume(consumer: string, max: number, after: string | undefined): Promise<Recovered<StreamEntry>> {
    const pending = parsePendingRangeReply(
      await send(this.commands, xpendingRangeArgs({ key: this.key, group: this.group, start: after ? `(${after}` : '-', count: max, consumer })),
    );
    if (pending.length === 0) return { messages: [], deleted: [], more: false };
    const ids = pending.map((p) => p.id);
    const { entries } = parseRawEntryList(await this.sendRaw(['XCLAIM', this.key, this.group, consumer, '0', ...ids]));
    const found = new Set(entries.map((e) => e.id));
    const missing = ids.filter((id) => !found.has(id));
    // Redis 7 drops deleted entries from the PEL itself; on 6.2 they must be acknowledged.
    if (missing.length > 0) await this.ackIds(missing);
    const deliveries = new Map(pending.map((p) => [p.id, p.deliveries + 1]));
    return { messages: entries.map((e) => message(e, deliveries.get(e.id) ?? 1)), deleted: missing, more: true, cursor: ids.at(-1) };
  }

  /** XAUTOCLAIM of entries idle longer than `minIdleMs` to `consumer`, with their delivery counts. */
  async reclaim(consumer: string, max: number, minIdleMs: number, cursor: string): Promise<Recovered<StreamEntry>> {
    const claimed = parseRawAutoClaimReply(await this.sendRaw(xautoclaimArgs({ key: this.key, group: this.group, consumer, minIdleMs, start: cursor, count: max })));
    let deliveries = new Map<string, number>();
    if (claimed.entries.length > 0) {
      const first = claimed.entries[0]!.id;
      const last = claimed.entries.at(-1)!.id;
      try {
        const reply = await send(this.commands, xpendingRangeArgs({ key: this.key, group: this.group, start: first, end: last, count: max * 2, consumer }));
        deliveries = new Map(parsePendingRangeReply(reply).map((p) => [p.id, p.deliveries]));
      } catch {
        // Claimed, but their counts unknown: a retry of the whole call would claim nothing
        // (their idle time was just reset). They are this consumer's now: its own-pending
        // pass takes them, counts and all.
        return { messages: [], deleted: claimed.deletedIds, more: claimed.cursor !== '0-0', cursor: claimed.cursor, recheckOwn: true };
      }
    }
    return {
      messages: claimed.entries.map((e) => message(e, deliveries.get(e.id) ?? 1)),
      deleted: claimed.deletedIds,
      more: claimed.cursor !== '0-0',
      cursor: claimed.cursor,
      // Redis 6.2 keeps deleted entries pending and replies nil without their IDs: the
      // consumer's own-pending pass finds them (XCLAIM returns nothing) and clears them.
      recheckOwn: claimed.nilCount > 0,
    };
  }

  /**
   * XGROUP DELCONSUMER of the group's consumers that have no pending entries and have been
   * idle at least `minIdleMs` (dead processes' names: with a name per process, each
   * restart leaves one set behind), except `keep`. Each is checked and deleted in one Lua
   * script, so a consumer that has just received an entry is kept and nothing pending is
   * ever dropped. A group that no longer exists has nothing to forget.
   */
  async forgetIdle(minIdleMs: number, keep: readonly string[]): Promise<string[]> {
    const target = { streamKey: this.key, group: this.group };
    const mine = new Set(keep);
    let plan: Awaited<ReturnType<typeof planPrune>>;
    try {
      plan = await planPrune(this.commands, target, minIdleMs);
    } catch (err) {
      if (isTributaryError(err, 'TRIB_ERR_GROUP_NOT_FOUND')) return [];
      throw err;
    }
    const removed: string[] = [];
    for (const c of plan.remove) {
      if (mine.has(c.name)) continue;
      if ((await deleteConsumerIfIdle(this.commands, target, c.name, minIdleMs)).status === 'deleted') removed.push(c.name);
    }
    return removed;
  }

  async deadLetter(_consumer: string, letters: readonly DeadLetter<StreamEntry>[]): Promise<void> {
    await moveToDeadLetterStream(
      this.commands,
      { streamKey: this.key, group: this.group, dlqStream: this.dlqStream },
      letters.map((l) => {
        const body = l.message.body;
        // Too large to decode: its bytes are copied as Redis sent them.
        if (l.fieldsOmitted !== undefined && body instanceof RawStreamEntry) {
          return { id: l.message.id, fields: {}, raw: body.raw, code: l.code, error: l.error, deliveries: l.message.deliveries };
        }
        return { id: l.message.id, fields: body.fields, code: l.code, error: l.error, deliveries: l.message.deliveries };
      }),
    );
  }

  async interrupt(consumer: string): Promise<void> {
    await this.readers.get(consumer)?.conn.unblock(this.commands);
  }

  async release(consumer: string): Promise<void> {
    this.readers.get(consumer)?.conn.destroy();
    this.readers.delete(consumer);
  }

  describe(m: StreamMessage): Record<string, string> {
    return m.body.fields;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.readers.values()) r.conn.destroy();
    this.readers.clear();
    if (this.ownsCommands) destroyQuietly(this.commands);
  }

  /**
   * A command whose reply carries entries, read with blob strings as Buffers: recovered
   * entries stay bytes, like first reads (a field larger than a JS string can hold would
   * otherwise fail the decoding, and with it every recovery of that entry).
   */
  private async sendRaw(args: string[]): Promise<RawBufferReply> {
    return (await this.commands.sendCommand(args, { typeMapping: BUFFERS })) as RawBufferReply;
  }

  /** The consumer's own connection, connected. */
  private async reader(consumer: string): Promise<Reader> {
    let r = this.readers.get(consumer);
    if (!r) {
      if (this.closed) throw new Error('source closed');
      r = {
        conn: groupReader({
          url: this.options.redisUrl,
          name: this.options.connectionName?.(consumer) ?? `tributary:${consumer}`,
          // A stalled read fails as a lost connection (the reader then claims back what it lost).
          commandTimeoutMs: this.options.commandTimeoutMs,
        }),
      };
      this.readers.set(consumer, r);
    }
    await r.conn.open();
    return r;
  }
}
