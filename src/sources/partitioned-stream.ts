/**
 * A partitioned stream (PARTITIONS = N > 1) as one runner source: N stream keys
 * (`<stream>:p<i>`), each read by one process at a time under a lease (redis/leases.ts),
 * by one worker of that process (consumer `<owner>-p<i>`), so a partition's batches are
 * written one after the other, in stream order.
 *
 *   every process: heartbeat ─▶ live members ─▶ assignPartitions ─▶ its share
 *     share − owned: acquire (a new fencing token) ─▶ the worker first takes over the
 *                    partition's whole pending list (every consumer's), then reads new entries
 *     owned − share: stop reading, wait for what is held to be acknowledged, release
 *
 * Every command about a partition carries the lease as the process holds it and runs in a
 * script that checks it first (read, ack, claim, dead letter): a process whose lease
 * expired or was taken reads and acknowledges nothing more. Reads never block inside a
 * script; an owner with nothing new waits in a plain XREAD BLOCK, which delivers nothing.
 *
 * What keeps order per key from end to end: an entry is read only under a valid lease;
 * a new owner writes every entry still pending (whatever an old owner could still be
 * writing) before it reads anything new; and every row is inserted once (keyed by
 * event_id), so an old owner's late batch, if it lands at all, inserts nothing the new
 * owner had not already written.
 */
import { ErrorReply, RESP_TYPES } from '@redis/client';
import { ReadAgain, RecoverFirst, type DeadLetter, type Message, type Recovered, type Source } from '../core/contracts.js';
import { TributaryError } from '../errors.js';
import { blockingConnection, connectChecked, destroyQuietly, ensureGroup, openBlocking, send, unblock, type BlockingConnection, type RedisConnection, RedisScript } from '../redis/client.js';
import { parsePendingRangeReply, parseRawEntryList, parseRawStreamReadReply, redisErrorIs, RawStreamEntry, xpendingRangeArgs, type RawBufferReply, type StreamEntry } from '../redis/commands.js';
import { deadLetterFields } from '../redis/dead-letter-stream.js';
import { PartitionLeases, type Lease } from '../redis/leases.js';
import { assignPartitions, checkPartitions, partitionConsumer, partitionDeadLetterKey, partitionStreamKey } from '../redis/partitions.js';
import { watchCommands } from '../redis/watchdog.js';
import { deleteConsumerIfIdle } from '../ops/pending.js';

const BUFFERS = { [RESP_TYPES.BLOB_STRING]: Buffer } as const;
const READ = new RedisScript('partition-read');
const ACK = new RedisScript('partition-ack');
const CLAIM = new RedisScript('partition-claim');
const DEAD_LETTER = new RedisScript('partition-dead-letter');
/** IDs per script call: Lua's unpack() takes ~8,000 values. */
const IDS_PER_CALL = 4000;

export type StreamMessage = Message<StreamEntry>;

/** What happened to a lease of this process; the source's `onLease`. */
export interface PartitionLeaseEvent {
  /** acquired: taken, with a new token; released: given up (rebalance, stop); lost: expired or taken by another process (fenced). */
  event: 'acquired' | 'released' | 'lost';
  partition: number;
  /** The partition's stream key. */
  key: string;
  token: number;
  owner: string;
  /** Why it was released or lost. */
  reason?: string;
}

/** One fenced read that brought entries; the source's `onRead` (diagnostics, tests). */
export interface PartitionReadEvent {
  partition: number;
  token: number;
  count: number;
  first: string;
  last: string;
  /** Taken over from the pending list (an earlier owner's entries, or a lost read's), not read new. */
  recovered: boolean;
}

export interface PartitionedStreamSourceOptions {
  /** Redis URL: each owned partition's worker gets its own connection from it for its blocking waits. */
  redisUrl: string;
  /** The connection for every other command (shared; not closed by the source). */
  commands: RedisConnection;
  /** The logical stream (its partitions are `<key>:p<i>`). */
  key: string;
  group: string;
  /** N, at least 2. */
  partitions: number;
  /** Where a new group starts on each partition (default `0`). */
  startId?: string;
  /** This process's id (its consumer name; unique among live processes): workers are `<owner>-p<i>`. */
  owner: string;
  /** A lease's life, ms; renewed (and members beat) every third of it. */
  leaseMs: number;
  /** Names the workers' connections in CLIENT LIST (default `tributary:<consumer>`). */
  connectionName?: (consumer: string) => string;
  /** Each waiting connection reconnects when a command gets no reply within this (plus its block time), ms (default none). */
  commandTimeoutMs?: number;
  onLease?: (e: PartitionLeaseEvent) => void;
  onRead?: (e: PartitionReadEvent) => void;
  /** A partition's group was gone and was created again at `0`. */
  onGroupRecreated?: (info: { key: string; group: string; startId: string }) => void;
  /** A heartbeat or rebalance round failed (tried again at the next one). */
  onError?: (err: Error) => void;
}

interface Partition {
  readonly index: number;
  readonly key: string;
  readonly dlq: string;
  readonly consumer: string;
  lease: Lease | undefined;
  /** When the lease was last taken or renewed (this process's clock). */
  renewedAt: number;
  /** Taken over and not yet recovered: the whole pending list comes before any new read. */
  recover: boolean;
  /** Given up: no more reads; the lease goes once what is held is acknowledged (or at releaseBy). */
  releasing: boolean;
  releaseBy: number;
  /** Messages handed out under the lease and not yet acknowledged or dead-lettered. */
  outstanding: number;
  /** The worker stopped for good (a permanent failure): never taken again by this process. */
  abandoned: boolean;
  reader: BlockingConnection | undefined;
  /** Wakes the worker's wait for the lease. */
  wake: (() => void) | undefined;
}

/**
 * A partitioned stream's consumer group, as a runner source: one worker per partition
 * (`consumers`), each reading its partition only while this process holds the lease.
 */
export class PartitionedStreamSource implements Source<StreamEntry> {
  readonly server = 'redis' as const;
  readonly key: string;
  readonly group: string;
  readonly leases: PartitionLeases;
  /** The runner's consumers: one per partition, in partition order. */
  readonly consumers: string[];
  private readonly parts: Partition[];
  private readonly byConsumer = new Map<string, Partition>();
  private readonly commands: RedisConnection;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private closed = false;
  private members: string[] = [];

  constructor(private readonly options: PartitionedStreamSourceOptions) {
    for (const key of ['redisUrl', 'key', 'group', 'owner'] as const) {
      if (typeof options?.[key] !== 'string' || options[key] === '') throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [`partitioned-stream source ${key}`, 'is required (a non-empty string)']);
    }
    const n = checkPartitions(options.partitions);
    if (n < 2) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['partitioned-stream source partitions', `must be at least 2 (got ${n}): one partition is the plain stream source`]);
    if (!(Number.isFinite(options.leaseMs) && options.leaseMs >= 300)) {
      throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['partitioned-stream source leaseMs', `must be at least 300 (got ${String(options.leaseMs)})`]);
    }
    this.commands = options.commands;
    this.key = options.key;
    this.group = options.group;
    this.leases = new PartitionLeases(options.commands, { streamKey: options.key, group: options.group, partitions: n, owner: options.owner, leaseMs: options.leaseMs });
    this.parts = Array.from({ length: n }, (_, i) => ({
      index: i,
      key: partitionStreamKey(options.key, i, n),
      dlq: partitionDeadLetterKey(options.key, '', i, n),
      consumer: partitionConsumer(options.owner, i),
      lease: undefined,
      renewedAt: 0,
      recover: false,
      releasing: false,
      releaseBy: 0,
      outstanding: 0,
      abandoned: false,
      reader: undefined,
      wake: undefined,
    }));
    this.consumers = this.parts.map((p) => p.consumer);
    for (const p of this.parts) this.byConsumer.set(p.consumer, p);
  }

  /** The partition a consumer of this source reads (undefined for another name). */
  partitionOf(consumer: string): number | undefined {
    return this.byConsumer.get(consumer)?.index;
  }

  /** The partition's stream key. */
  keyOf(partition: number): string {
    return this.parts[partition]!.key;
  }

  /** The partitions this process holds the lease of now, with their tokens. */
  owned(): Array<{ partition: number; token: number }> {
    return this.parts.filter((p) => p.lease !== undefined).map((p) => ({ partition: p.index, token: p.lease!.token }));
  }

  /** The live members at the last heartbeat. */
  get liveMembers(): readonly string[] {
    return this.members;
  }

  /**
   * Connects, creates the group on every partition (MKSTREAM), joins the members and
   * takes this process's share of the partitions that are free, then keeps beating and
   * rebalancing every third of a lease.
   */
  async start(): Promise<void> {
    if (!this.commands.isOpen) await connectChecked(this.commands, this.options.redisUrl);
    for (const p of this.parts) await ensureGroup(this.commands, p.key, this.group, this.options.startId ?? '0');
    await this.tick();
    this.timer ??= setInterval(() => void this.tick(), Math.max(100, Math.floor(this.options.leaseMs / 3)));
    this.timer.unref();
  }

  /**
   * One round: beat, renew every lease held (a lease that can no longer be renewed is
   * lost: its partition reads nothing more), give up what is no longer this process's
   * share once its held entries are acknowledged, take what is free of its share. One
   * round at a time; a failure is reported and the next round tries again.
   */
  tick(): Promise<void> {
    this.ticking ??= this.round()
      .catch((err) => this.options.onError?.(err as Error))
      .finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async round(): Promise<void> {
    if (this.closed) return;
    const now = Date.now();
    for (const p of this.parts) {
      // Not renewed for a whole lease (Redis unreachable): it may be another's by now.
      if (p.lease && now - p.renewedAt >= this.options.leaseMs) this.lost(p, 'not renewed within the lease');
    }
    // Renewals do not wait on the heartbeat, nor on each other: on a cluster each lease is on
    // its partition's master, the members on another, and one master down stops only its own.
    const [members] = await Promise.all([
      this.leases.heartbeat().catch((err: Error) => {
        this.options.onError?.(err);
        return undefined;
      }),
      ...this.parts.map((p) => this.renew(p)),
    ]);
    if (members === undefined || this.closed) return;
    this.members = members;
    const share = new Set(assignPartitions(members.includes(this.options.owner) ? members : [...members, this.options.owner], this.parts.length).get(this.options.owner) ?? []);
    for (const p of this.parts) {
      if (!p.lease) continue;
      if (!share.has(p.index) || p.abandoned) this.giveUp(p);
      else if (p.releasing) p.releasing = false; // back in the share before it went
    }
    for (const p of this.parts) if (p.releasing && p.lease && (p.outstanding <= 0 || Date.now() >= p.releaseBy)) await this.releaseLease(p, p.abandoned ? 'its worker stopped' : 'rebalance');
    if (this.closed) return;
    await Promise.all(
      this.parts
        .filter((p) => share.has(p.index) && !p.lease && !p.abandoned)
        .map((p) => this.acquire(p).catch((err: Error) => this.options.onError?.(err))),
    );
  }

  /** Extends `p`'s lease if this process holds it; one that is no longer its own is lost. */
  private async renew(p: Partition): Promise<void> {
    const lease = p.lease;
    if (!lease) return;
    const at = Date.now();
    let renewed: boolean;
    try {
      renewed = await this.leases.renew(lease);
    } catch (err) {
      this.options.onError?.(err as Error);
      return;
    }
    if (p.lease !== lease) return;
    if (renewed) p.renewedAt = at;
    else this.lost(p, 'taken by another process or expired');
  }

  private async acquire(p: Partition): Promise<void> {
    const at = Date.now();
    const got = await this.leases.acquire(p.index);
    if (!got.acquired || this.closed) {
      if (got.acquired) await this.leases.release(got.lease).catch(() => {});
      return;
    }
    p.lease = got.lease;
    p.renewedAt = at;
    p.recover = true;
    p.releasing = false;
    p.outstanding = 0;
    this.options.onLease?.({ event: 'acquired', partition: p.index, key: p.key, token: got.lease.token, owner: this.options.owner });
    p.wake?.();
  }

  /** Stops reading `p`; its lease goes once what it holds is acknowledged (or after a lease's life at most). */
  private giveUp(p: Partition): void {
    if (p.releasing) return;
    p.releasing = true;
    p.releaseBy = Date.now() + this.options.leaseMs;
    // A worker blocked waiting for entries returns now and flushes what it holds.
    void unblock(this.commands, p.reader).catch(() => {});
  }

  private async releaseLease(p: Partition, reason: string): Promise<void> {
    const lease = p.lease;
    if (!lease) return;
    p.lease = undefined;
    p.releasing = false;
    p.recover = false;
    const released = await this.leases.release(lease).catch(() => false);
    this.options.onLease?.({ event: released ? 'released' : 'lost', partition: p.index, key: p.key, token: lease.token, owner: this.options.owner, reason });
  }

  /** The lease is gone (fenced): nothing more is read or acknowledged under it. */
  private lost(p: Partition, reason: string): void {
    const lease = p.lease;
    if (!lease) return;
    p.lease = undefined;
    p.releasing = false;
    p.recover = false;
    this.options.onLease?.({ event: 'lost', partition: p.index, key: p.key, token: lease.token, owner: this.options.owner, reason });
  }

  private part(consumer: string): Partition {
    const p = this.byConsumer.get(consumer);
    if (!p) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['partitioned-stream consumer', `${JSON.stringify(consumer)} reads no partition of ${this.key}`]);
    return p;
  }

  async read(consumer: string, count: number, blockMs: number | undefined, signal: AbortSignal): Promise<StreamMessage[]> {
    const p = this.part(consumer);
    if (!p.lease || p.releasing) {
      // Not ours (or being given up): wait for the lease, or as long as a read would block.
      await this.idle(p, blockMs, signal);
      return [];
    }
    if (p.recover) throw new RecoverFirst(`partition ${p.index} taken over: its pending entries first`);
    const first = await this.readOnce(p, count);
    if (first.entries.length > 0 || !blockMs) return first.entries;
    // Nothing new: wait for an entry after the last one (a plain XREAD delivers nothing), then read it under the lease.
    const reader = await this.reader(p);
    try {
      await reader.conn.sendCommand(['XREAD', 'COUNT', '1', 'BLOCK', String(blockMs), 'STREAMS', p.key, first.last ?? '0-0']);
    } catch (err) {
      if (err instanceof ErrorReply) throw err;
      throw new ReadAgain('the waiting connection broke');
    }
    if (!p.lease || p.releasing || p.recover || signal.aborted) return [];
    return (await this.readOnce(p, count)).entries;
  }

  /** One fenced XREADGROUP of new entries (a script: never blocks). */
  private async readOnce(p: Partition, count: number): Promise<{ entries: StreamMessage[]; last: string | undefined }> {
    const lease = p.lease!;
    let reply: RawBufferReply;
    try {
      reply = await runRaw(this.commands, READ, [p.key, this.leases.leaseKey(p.index)], [lease.value, this.group, p.consumer, String(count)]);
    } catch (err) {
      if (isFenced(err)) {
        this.lost(p, 'fenced at read');
        throw new ReadAgain('the lease was lost');
      }
      if (redisErrorIs(err, 'NOGROUP')) {
        if (await ensureGroup(this.commands, p.key, this.group, '0')) this.options.onGroupRecreated?.({ key: p.key, group: this.group, startId: '0' });
        throw new ReadAgain('the group was recreated');
      }
      // No reply: the script may have delivered entries never seen. They are pending on
      // this consumer; the recovery pass (the whole pending list, in order) takes them first.
      if (!(err instanceof ErrorReply)) p.recover = true;
      throw err;
    }
    const [read, last] = Array.isArray(reply) ? reply : [null, null];
    if (!read) return { entries: [], last: last == null ? undefined : String(last) };
    const entries = parseRawStreamReadReply(read).entries;
    if (entries.length > 0) {
      if (p.lease !== lease) {
        // Lost while the script ran (this process's view; Redis checked it held): keep them for the recovery of whoever owns it.
        return { entries: [], last: undefined };
      }
      p.outstanding += entries.length;
      this.options.onRead?.({ partition: p.index, token: lease.token, count: entries.length, first: entries[0]!.id, last: entries.at(-1)!.id, recovered: false });
    }
    return { entries, last: undefined };
  }

  /**
   * Waits until `p` is ours (acquired), `blockMs` passed (default: a short pause), or the
   * read is interrupted (interrupt: a stop, forced or not, interrupts every worker).
   */
  private async idle(p: Partition, blockMs: number | undefined, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (p.wake === done) p.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, blockMs ?? 50);
      p.wake = done;
    });
  }

  async ack(consumer: string, messages: readonly StreamMessage[]): Promise<void> {
    const p = this.part(consumer);
    try {
      if (messages.length > 0) await this.ackIds(p, messages.map((m) => m.id));
    } finally {
      this.settled(p, messages.length);
    }
  }

  /** Acknowledges under the lease; nothing when it is not ours any more. */
  private async ackIds(p: Partition, ids: readonly string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += IDS_PER_CALL) {
      const lease = p.lease;
      if (!lease) return;
      let acked: number;
      try {
        acked = Number(await ACK.run(this.commands, [p.key, this.leases.leaseKey(p.index)], [lease.value, this.group, ...ids.slice(i, i + IDS_PER_CALL)]));
      } catch (err) {
        // The group is gone (Redis restarted without persistence): so is its pending list.
        if (redisErrorIs(err, 'NOGROUP')) return;
        throw err;
      }
      if (acked < 0) {
        if (p.lease === lease) this.lost(p, 'fenced at ack');
        return;
      }
    }
  }

  /** `n` messages of `p` are done with; a partition being given up goes once nothing is held. */
  private settled(p: Partition, n: number): void {
    p.outstanding = Math.max(0, p.outstanding - n);
    if (p.releasing && p.outstanding === 0) void this.tick();
  }

  /**
   * Nothing to do: with leases, a partition's entries are taken over by its next owner as
   * a whole (resume), never reclaimed by idle time, so they need no keeping alive.
   */
  async keepAlive(): Promise<void> {}

  /**
   * A partition just taken (or a read whose reply was lost): its whole pending list,
   * whoever holds it (earlier owners' consumers, this one's), claimed to this consumer under
   * the lease, oldest first, up to `max` at a time, each counted as one more delivery.
   * Nothing while the partition is not this process's.
   */
  async resume(consumer: string, max: number, after: string | undefined): Promise<Recovered<StreamEntry>> {
    const p = this.part(consumer);
    const lease = p.lease;
    const none = { messages: [], deleted: [], more: false };
    if (!lease || !p.recover) return none;
    let pending: ReturnType<typeof parsePendingRangeReply>;
    try {
      pending = parsePendingRangeReply(await send(this.commands, xpendingRangeArgs({ key: p.key, group: this.group, start: after ? `(${after}` : '-', count: Math.min(max, IDS_PER_CALL) })));
    } catch (err) {
      if (!redisErrorIs(err, 'NOGROUP')) throw err;
      pending = [];
    }
    if (pending.length === 0) {
      if (p.lease === lease) p.recover = false;
      await this.forgetOthers(p).catch(() => {});
      return none;
    }
    const ids = pending.map((x) => x.id);
    let reply: RawBufferReply;
    try {
      reply = await runRaw(this.commands, CLAIM, [p.key, this.leases.leaseKey(p.index)], [lease.value, this.group, p.consumer, ...ids]);
    } catch (err) {
      if (!isFenced(err)) throw err;
      this.lost(p, 'fenced at takeover');
      return none;
    }
    const { entries } = parseRawEntryList(reply);
    const found = new Set(entries.map((e) => e.id));
    const missing = ids.filter((id) => !found.has(id));
    // Deleted meanwhile (trimmed): nothing to write; Redis 7 drops them itself, 6.2 needs the ack.
    if (missing.length > 0) await this.ackIds(p, missing);
    p.outstanding += entries.length;
    if (entries.length > 0) this.options.onRead?.({ partition: p.index, token: lease.token, count: entries.length, first: entries[0]!.id, last: entries.at(-1)!.id, recovered: true });
    const deliveries = new Map(pending.map((x) => [x.id, x.deliveries + 1]));
    return {
      messages: entries.map((e): StreamMessage => ({ id: e.id, body: e, deliveries: deliveries.get(e.id) ?? 1, bytes: e.bytes })),
      deleted: missing,
      more: true,
      cursor: ids.at(-1),
    };
  }

  /** After a takeover: earlier owners' consumers of the partition that hold nothing now are removed (never one holding entries). */
  private async forgetOthers(p: Partition): Promise<void> {
    const reply = await send(this.commands, ['XINFO', 'CONSUMERS', p.key, this.group]);
    for (const c of Array.isArray(reply) ? reply : []) {
      if (!Array.isArray(c)) continue;
      const name = String(c[c.indexOf('name') + 1]);
      const pending = Number(c[c.indexOf('pending') + 1]);
      if (name !== p.consumer && pending === 0) await deleteConsumerIfIdle(this.commands, { streamKey: p.key, group: this.group }, name, 0);
    }
  }

  async deadLetter(consumer: string, letters: readonly DeadLetter<StreamEntry>[]): Promise<void> {
    const p = this.part(consumer);
    try {
      const lease = p.lease;
      if (!lease) return;
      const target = { streamKey: p.key, group: this.group, dlqStream: p.dlq };
      const now = String(Date.now());
      const replies = await Promise.all(
        letters.map((l) => {
          const body = l.message.body;
          const letter =
            l.fieldsOmitted !== undefined && body instanceof RawStreamEntry
              ? { id: l.message.id, fields: {}, raw: body.raw, code: l.code, error: l.error, deliveries: l.message.deliveries }
              : { id: l.message.id, fields: body.fields, code: l.code, error: l.error, deliveries: l.message.deliveries };
          return DEAD_LETTER.run(this.commands, [p.key, p.dlq, this.leases.leaseKey(p.index)], [this.group, l.message.id, lease.value, ...deadLetterFields(target, letter, now)] as string[]);
        }),
      );
      if (replies.some((r) => Number(r) === -1) && p.lease === lease) this.lost(p, 'fenced at dead letter');
    } finally {
      this.settled(p, letters.length);
    }
  }

  async interrupt(consumer: string): Promise<void> {
    const p = this.part(consumer);
    p.wake?.();
    await unblock(this.commands, p.reader);
  }

  /**
   * The partition's worker is done. While the source runs that means it stopped for good
   * (a permanent failure, or untilEmpty / maxBatches): the partition is given up and not
   * taken again by this process, so another can read it.
   */
  async release(consumer: string): Promise<void> {
    const p = this.part(consumer);
    destroyQuietly(p.reader?.conn);
    p.reader = undefined;
    if (this.closed || p.abandoned) return;
    p.abandoned = true;
    if (p.lease) this.giveUp(p);
  }

  describe(m: StreamMessage): Record<string, string> {
    return m.body.fields;
  }

  /** Stops beating, gives up every lease still held (the runner has acknowledged what it could by now) and leaves the members. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.ticking?.catch(() => {});
    for (const p of this.parts) {
      destroyQuietly(p.reader?.conn);
      p.reader = undefined;
      p.wake?.();
    }
    if (this.commands.isReady) {
      await Promise.all(this.parts.map((p) => this.releaseLease(p, 'stopping').catch(() => {})));
      await this.leases.heartbeat(true).catch(() => {});
    }
  }

  /** The partition's own connection for blocking waits, connected. */
  private async reader(p: Partition): Promise<BlockingConnection> {
    if (!p.reader) {
      if (this.closed) throw new Error('source closed');
      p.reader = blockingConnection(this.options.redisUrl, { name: this.options.connectionName?.(p.consumer) ?? `tributary:${p.consumer}` });
      watchCommands(p.reader.conn, this.options.commandTimeoutMs ?? 0);
    }
    await openBlocking(p.reader);
    return p.reader;
  }
}

function isFenced(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('FENCED');
}

/** A script whose reply carries entries, with blob strings as Buffers (as the plain stream source reads them). */
async function runRaw(client: RedisConnection, script: RedisScript, keys: string[], args: string[]): Promise<RawBufferReply> {
  const tail = [String(keys.length), ...keys, ...args];
  try {
    return (await client.sendCommand(['EVALSHA', script.sha, ...tail], { typeMapping: BUFFERS })) as RawBufferReply;
  } catch (err) {
    if (!redisErrorIs(err, 'NOSCRIPT')) throw err;
    return (await client.sendCommand(['EVAL', script.source, ...tail], { typeMapping: BUFFERS })) as RawBufferReply;
  }
}
