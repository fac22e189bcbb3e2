import { ClientOfflineError } from '@redis/client';
import { sleep } from '../core/backoff.js';
import { ReadAgain, type DeadLetter, type Message, type Recovered, type Source } from '../core/contracts.js';
import { TributaryError } from '../errors.js';
import { fencedReply, OrderQueue, type FenceHook, type Fenced, type RecoverResult } from '../orders/redis/queue.js';
import { watchCommands } from '../redis/watchdog.js';
import { blockingConnection, connectChecked, destroyQuietly, openBlocking, send, unblock, untilReady, type BlockingConnection, type RedisConnection } from '../redis/client.js';

export interface RedisListSourceOptions {
  /** Redis URL: each consumer gets its own connection from it (a take blocks it). */
  redisUrl: string;
  /** The connection for non-blocking commands (shared; not closed by the source). */
  commands: RedisConnection;
  /** Key prefix of the queue: `<prefix>:queue`, `<prefix>:processing:<consumer>`, ... (required). */
  prefix: string;
  /** A consumer whose heartbeat is this old is dead: its processing list goes back to the queue (ms). */
  staleMs: number;
  /** Called after dead consumers' lists went back to the queue (the pipeline drops what they had half done). */
  onRecovered?: (result: RecoverResult) => Promise<void>;
  /** Look for processing lists with no heartbeat at all (one SCAN) every this many recoveries (default 12). */
  scanOrphansEvery?: number;
  /** Names the consumers' connections in CLIENT LIST (default `tributary:<consumer>`). */
  connectionName?: (consumer: string) => string;
  /** Connection timeout of the consumers' connections, ms (default 5000). */
  connectTimeoutMs?: number;
  /**
   * Raises a stale consumer's fence where its batches are written (Postgres), after it
   * was fenced in Redis and before its list goes back to the queue (OrderQueue.recover).
   */
  fence?: FenceHook;
  /** Each consumer's taking connection reconnects when a command gets no reply within this (plus its block time), ms (see watchCommands; default none). */
  commandTimeoutMs?: number;
  /** A take or an ack of a consumer was refused: it was fenced (its list went back to the queue) since it took the batch. */
  onFenced?: (event: FencedEvent) => void;
}

/** A consumer's take or ack refused because it was fenced. */
export interface FencedEvent extends Fenced {
  consumer: string;
  step: 'take' | 'ack';
  /** Items of the refused ack (0 for a take). */
  items: number;
}

/** An item taken from the list; its ID (`<take>.<position>`) is made only when asked for. */
class ListMessage implements Message<string> {
  deliveries = 1;

  constructor(
    readonly body: string,
    private readonly take: number,
    private readonly index: number,
    /** The consumer's fencing epoch when it took the item. */
    readonly epoch: number,
  ) {}

  get id(): string {
    return `${this.take}.${this.index}`;
  }

  get bytes(): number {
    return this.body.length;
  }
}

/** The fencing epoch a list item was taken under (undefined for a message of another source). */
export function fenceEpochOf(message: Message<unknown> | undefined): number | undefined {
  return message instanceof ListMessage ? message.epoch : undefined;
}

interface Reader extends BlockingConnection {
  queue: OrderQueue;
  seq: number;
  /** Items taken and not yet acknowledged. */
  outstanding: number;
  /**
   * Something failed for this consumer since its list was last known clean: a take (it
   * may have moved items into the list unseen), a heartbeat (another process may have
   * returned the list to the queue as dead) or an ack (its reply may be lost). Until the
   * consumer holds nothing and its list has gone back to the queue, acks remove items by
   * value, never the oldest N by count (which could pop another batch's items).
   */
  suspect: boolean;
}

/**
 * A reliable Redis list queue as a runner source (see OrderQueue): a read moves items
 * with BLMOVE into the consumer's own processing list, where they stay until the sink
 * committed; the ack removes them (oldest first: batches of one consumer are acknowledged
 * in the order they were taken). Keep-alive is the consumer's heartbeat; recovery moves
 * the lists of consumers whose heartbeat went stale back to the queue. Items carry no
 * delivery count: a list does not keep one.
 */
export class RedisListSource implements Source<string> {
  readonly server = 'redis' as const;
  readonly queue: OrderQueue;
  private readonly readers = new Map<string, Reader>();
  /** Each consumer's fencing epoch, adopted when it last returned its own list to the queue. */
  private readonly epochs = new Map<string, number>();
  /** Per consumer: its fence where batches are written (Postgres), when a write was refused by it. */
  private readonly floors = new Map<string, number>();
  private recoveries = 0;
  private closed = false;

  constructor(private readonly options: RedisListSourceOptions) {
    if (!options?.redisUrl || !options.commands || !options.prefix) {
      throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['redis-list source', 'redisUrl, commands and prefix are required']);
    }
    this.queue = new OrderQueue({ client: options.commands, prefix: options.prefix });
  }

  /** Connects the command connection; credentials Redis refuses fail at once (TRIB_ERR_REDIS_AUTH). */
  async start(): Promise<void> {
    const commands = this.options.commands;
    if (!commands.isOpen) await connectChecked(commands, this.options.redisUrl);
    await send(commands, ['PING']);
  }

  async read(consumer: string, count: number, blockMs: number | undefined, signal: AbortSignal): Promise<Message<string>[]> {
    const r = await this.reader(consumer);
    if (r.suspect || !this.epochs.has(consumer)) {
      // The list may hold items nobody saw (a failed take), or the consumer was fenced:
      // take nothing more until the consumer holds nothing, then return the whole list to
      // the queue and adopt the new fencing epoch.
      if (r.outstanding > 0) {
        await sleep(100, signal);
        throw new ReadAgain('waiting for held batches before returning the processing list to the queue');
      }
      this.epochs.set(consumer, (await r.queue.releaseOwn(consumer, this.floors.get(consumer) ?? 0)).epoch);
      r.suspect = false;
    }
    const epoch = this.epochs.get(consumer)!;
    let items: string[];
    try {
      items = await r.queue.take(consumer, count, blockMs ?? 0, epoch);
    } catch (err) {
      r.suspect = true;
      const fenced = fencedReply(err);
      if (fenced) {
        // Stalled past staleMs, this consumer's list went back to the queue: start afresh.
        this.options.onFenced?.({ consumer, step: 'take', items: 0, ...fenced });
        throw new ReadAgain('the consumer was fenced: returning its processing list to the queue');
      }
      if (err instanceof ClientOfflineError) {
        // Reconnecting: the read its break failed reported it; wait rather than report again.
        await untilReady(r.conn, 1000, signal);
        throw new ReadAgain('the reader is reconnecting');
      }
      throw err;
    }
    r.outstanding += items.length;
    const seq = ++r.seq;
    const out = new Array<Message<string>>(items.length);
    for (let i = 0; i < items.length; i++) out[i] = new ListMessage(items[i]!, seq, i, epoch);
    return out;
  }

  /**
   * Removes the batch from the consumer's processing list: the oldest N items (batches of
   * one consumer are acknowledged in take order), or, once anything failed for it (see
   * Reader.suspect), the batch's items by value.
   */
  async ack(consumer: string, messages: readonly Message<string>[]): Promise<void> {
    const r = this.readers.get(consumer);
    const epoch = fenceEpochOf(messages[0]);
    const floor = this.floors.get(consumer);
    if (epoch !== undefined && floor !== undefined && epoch <= floor) {
      // Refused where it was written: never removed here. Normally another worker took
      // these orders when this one was fenced; if Redis forgot the fence meanwhile they
      // are still in this consumer's list, and its release returns them to the queue.
      if (r) r.suspect = true;
      this.options.onFenced?.({ consumer, step: 'ack', items: messages.length, epoch, current: floor });
      this.settled(consumer, messages.length);
      return;
    }
    let fenced: Fenced | undefined;
    try {
      const result = r && !r.suspect ? await this.queue.ack(consumer, messages.length, epoch) : await this.queue.ack(consumer, messages.map((m) => m.body), epoch);
      fenced = result.fenced;
    } catch (err) {
      if (r) r.suspect = true;
      throw err;
    }
    if (fenced) {
      // Refused for good: the batch's items went back to the queue when the consumer was
      // fenced (another worker takes them); its list may hold newer items it took since.
      if (r) r.suspect = true;
      this.options.onFenced?.({ consumer, step: 'ack', items: messages.length, ...fenced });
    }
    this.settled(consumer, messages.length);
  }

  /**
   * A write of this consumer was refused by its fence where batches are written (at
   * `current`): its batches taken at or below that epoch are not acknowledged, and its
   * next epoch is raised above it.
   */
  fencedDownstream(consumer: string, current: number): void {
    this.floors.set(consumer, Math.max(current, this.floors.get(consumer) ?? 0));
    const r = this.readers.get(consumer);
    if (r) r.suspect = true;
  }

  private settled(consumer: string, n: number): void {
    const r = this.readers.get(consumer);
    if (r) r.outstanding = Math.max(0, r.outstanding - n);
  }

  async keepAlive(consumer: string): Promise<void> {
    try {
      await this.queue.heartbeat(consumer);
    } catch (err) {
      // Past staleMs without a heartbeat, another process may return our list to the queue.
      const r = this.readers.get(consumer);
      if (r) r.suspect = true;
      throw err;
    }
  }

  /** What an earlier run under this name left in its processing list goes back to the queue. */
  async resume(consumer: string): Promise<Recovered<string>> {
    this.epochs.set(consumer, (await this.queue.releaseOwn(consumer)).epoch);
    return { messages: [], deleted: [], more: false };
  }

  /** Dead consumers' processing lists go back to the queue (nothing is processed here). */
  async reclaim(_consumer: string, _max: number, minIdleMs: number): Promise<Recovered<string>> {
    const every = this.options.scanOrphansEvery ?? 12;
    const scanOrphans = this.recoveries++ % Math.max(1, every) === 0;
    const result = await this.queue.recover({ staleMs: Math.max(minIdleMs, this.options.staleMs), scanOrphans, fence: this.options.fence });
    if (result.workers > 0) await this.options.onRecovered?.(result);
    return { messages: [], deleted: [], more: false, cursor: '0-0' };
  }

  /** Rejected items go to `<prefix>:dead` (with the reason) and leave the processing list. */
  async deadLetter(consumer: string, letters: readonly DeadLetter<string>[]): Promise<void> {
    if (letters.length === 0) return;
    const dead = `${this.queue.keys.queue.slice(0, -':queue'.length)}:dead`;
    await send(this.options.commands, ['LPUSH', dead, ...letters.map((l) => JSON.stringify({ item: l.message.body, code: l.code, error: l.error, at: Date.now() }))]);
    const acked = await this.queue.ack(
      consumer,
      letters.map((l) => l.message.body),
      fenceEpochOf(letters[0]!.message),
    );
    if (acked.fenced) {
      const r = this.readers.get(consumer);
      if (r) r.suspect = true;
      this.options.onFenced?.({ consumer, step: 'ack', items: letters.length, ...acked.fenced });
    }
    this.settled(consumer, letters.length);
  }

  async interrupt(consumer: string): Promise<void> {
    await unblock(this.options.commands, this.readers.get(consumer));
  }

  /** The consumer stopped: forget its heartbeat (its list is empty after a graceful stop), close its connection. */
  async release(consumer: string): Promise<void> {
    const r = this.readers.get(consumer);
    this.readers.delete(consumer);
    destroyQuietly(r?.conn);
  }

  /** Forgets the heartbeats of consumers that stopped with nothing held. */
  async forget(consumers: readonly string[]): Promise<void> {
    await Promise.all(consumers.map((c) => this.queue.release(c).catch(() => 0)));
  }

  describe(m: Message<string>): Record<string, string> {
    return { item: m.body };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.readers.values()) destroyQuietly(r.conn);
    this.readers.clear();
  }

  private async reader(consumer: string): Promise<Reader> {
    let r = this.readers.get(consumer);
    if (!r) {
      if (this.closed) throw new Error('source closed');
      const b = blockingConnection(this.options.redisUrl, {
        name: this.options.connectionName?.(consumer) ?? `tributary:${consumer}`,
        connectTimeoutMs: this.options.connectTimeoutMs,
      });
      watchCommands(b.conn, this.options.commandTimeoutMs ?? 0);
      r = Object.assign(b, { queue: new OrderQueue({ client: b.conn, prefix: this.options.prefix }), seq: 0, outstanding: 0, suspect: false });
      this.readers.set(consumer, r);
    }
    await openBlocking(r);
    return r;
  }
}
