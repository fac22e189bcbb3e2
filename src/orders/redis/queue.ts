/**
 * The orders queue: a reliable Redis list queue with per-worker processing lists, a
 * heartbeat set for finding dead workers, and a depth counter for backpressure.
 *
 * Why not BRPOP (the Python original's `queue.pop`): BRPOP *removes* the order from
 * Redis as it hands it over. A worker that crashes (or is killed, or loses its
 * connection) between the pop and the Postgres commit loses that order for good —
 * nothing in Redis remembers it. BLMOVE instead moves the order atomically into the
 * worker's own processing list, where it stays until the worker acknowledges it after
 * the commit; if the worker dies, `recover` returns the list to the queue. Delivery is
 * at-least-once; the orders table's primary key makes the effect exactly-once.
 *
 * Shape of the lists: producers LPUSH onto the left of `<p>:queue`; workers take from
 * the right (oldest first) into the left of `<p>:processing:<worker>`, so the oldest
 * order a worker holds is at the right end of its processing list.
 *
 * The depth counter `<p>:depth` = orders queued + orders taken and not yet
 * acknowledged. push INCRBYs it in the same MULTI as the LPUSH; take and recover leave it
 * alone (the orders stay uncommitted); ack DECRBYs it by exactly the number of orders it
 * removed, in the same Lua script. It can still drift from the lists when something else
 * writes them (a producer LPUSHing directly, a manual DEL or LREM, a key evicted under
 * maxmemory, a FLUSH); `resyncDepth()` recomputes it atomically from LLEN of the queue and
 * every processing list.
 */
import { RedisScript, send, type RedisConnection } from '../../redis/client.js';
import { checkWorkerName, orderKeys, type OrderKeys } from './keys.js';
import { checkInteger, checkNumber, chunks, redisNowMs, scanKeys, toArray, toNumber, toStrings } from './reply.js';

const HEARTBEAT = new RedisScript('orders-heartbeat');
const TAKE = new RedisScript('orders-take');
const ACK = new RedisScript('orders-ack');
const RECOVER = new RedisScript('orders-recover');
const FENCE = new RedisScript('orders-fence');
const DEPTH_RESYNC = new RedisScript('orders-depth-resync');

/** Orders per LPUSH inside push()'s single MULTI (keeps each command's argument count modest). */
const PUSH_CHUNK = 10_000;

export interface OrderQueueOptions {
  /**
   * The connection for every command (required). `take()` blocks it for up to `blockMs`:
   * give each worker its own connection and its own OrderQueue (the object is cheap).
   */
  client: RedisConnection;
  /** Key prefix; keys are `<prefix>:queue`, `<prefix>:processing:<worker>`, ... (default `orders`). */
  prefix?: string;
}

/** Raises a fenced worker's fence in Postgres before its list goes back to the queue (see OrderQueue.recover). */
export type FenceHook = (worker: string, epoch: number) => Promise<void>;

/** The worker was fenced (its list returned to the queue) after it took what it tried to take or acknowledge. */
export interface Fenced {
  /** The epoch the worker held. */
  epoch: number;
  /** The worker's epoch now. */
  current: number;
}

/** The FENCED error reply of the take and heartbeat scripts, parsed; undefined for any other error. */
export function fencedReply(err: unknown): Fenced | undefined {
  const m = /^FENCED worker .* holds epoch (\d+), current (\d+)/.exec(err instanceof Error ? err.message : '');
  return m ? { epoch: Number(m[1]), current: Number(m[2]) } : undefined;
}

export interface AckResult {
  /** Orders removed from the processing list (and from the depth counter). */
  acked: number;
  /**
   * Orders asked for that were no longer in the processing list: recovered to the queue
   * meanwhile (this worker was presumed dead) or acknowledged already. They will be (or
   * were) processed again; the primary key makes that a no-op.
   */
  missing: number;
  /** The depth counter after the ack. */
  depth: number;
  /** Set when the ack was refused (nothing removed): the worker was fenced after it took the batch. */
  fenced?: Fenced;
}

export interface RecoverOptions {
  /**
   * A worker whose last heartbeat is at least this old (Redis clock) is dead (required,
   * > 0). Must exceed the longest batch plus the heartbeat interval, and `blockMs` of
   * take(): a live worker judged dead has its batch processed twice (harmless for
   * Postgres thanks to the primary key, but wasted).
   */
  staleMs: number;
  /**
   * Also SCAN for processing lists whose worker has no heartbeat at all (a heartbeat set
   * deleted by hand, say). Costs one SCAN of the keyspace (default true).
   */
  scanOrphans?: boolean;
  /**
   * Called for each dead worker after its fence was raised in Redis and before its list
   * moves (the pipeline raises the fence in Postgres there, so a promote of the fenced
   * worker's batches can no longer commit). When it throws, that worker's list stays
   * where it is (the next recovery fences it again).
   */
  fence?: FenceHook;
}

export interface RecoverResult {
  /** Orders returned to the queue. */
  items: number;
  /** Dead workers cleared (heartbeat removed; their processing list returned, if any). */
  workers: number;
  /** Orders returned per recovered worker. */
  byWorker: Record<string, number>;
}

export interface WorkerState {
  worker: string;
  /** Orders in its processing list. */
  processing: number;
  /** ms since its last heartbeat (Redis clock); null when it has none (an orphan list). */
  heartbeatAgeMs: number | null;
}

export class OrderQueue {
  readonly keys: OrderKeys;
  private readonly client: RedisConnection;

  constructor(options: OrderQueueOptions) {
    if (!options?.client) throw new RangeError('OrderQueue client is required');
    this.client = options.client;
    this.keys = orderKeys(options.prefix);
  }

  /**
   * Queues orders (JSON texts; `ordersJson[0]` is taken first) and adds them to the depth
   * counter, in one MULTI: one round trip, both or neither. Returns the depth after.
   */
  async push(ordersJson: readonly string[]): Promise<number> {
    if (ordersJson.length === 0) return this.depth();
    const multi = this.client.multi();
    for (const chunk of chunks(ordersJson, PUSH_CHUNK)) multi.addCommand(['LPUSH', this.keys.queue, ...chunk]);
    multi.addCommand(['INCRBY', this.keys.depth, String(ordersJson.length)]);
    const replies = (await multi.exec()) as unknown as unknown[];
    return toNumber(replies[replies.length - 1] as number);
  }

  /**
   * Takes up to `max` orders (oldest first) into this worker's processing list and
   * returns them. Waits up to `blockMs` for the first (BLMOVE; `0`: do not wait), then
   * moves up to `max - 1` more without waiting (a Lua loop of LMOVE) — both sent in one
   * round trip — and records the worker's heartbeat. Returns [] if nothing came.
   *
   * If take (or ack) fails with a connection error, what this worker's processing list
   * holds is unknown: call `release(worker)` before taking again.
   */
  async take(worker: string, max: number, blockMs: number, epoch?: number): Promise<string[]> {
    checkWorkerName(worker);
    checkInteger('take max', max, 1);
    checkNumber('take blockMs', blockMs, 0);
    // With the worker's fencing epoch, the scripts refuse the take (a FENCED error, see
    // fencedReply) once the worker was fenced: what it holds went back to the queue.
    const fenced = epoch === undefined ? [] : [this.keys.fence];
    const at = epoch === undefined ? [] : [String(epoch)];
    const keys = [this.keys.queue, this.keys.processing(worker), this.keys.workers, ...fenced];
    if (blockMs === 0) return toStrings(await TAKE.run(this.client, keys, [worker, String(max), ...at]));
    // Heartbeat first, so a worker holding orders is always in the heartbeat set.
    const beat = HEARTBEAT.run(this.client, [this.keys.workers, ...fenced], [worker, ...at]);
    const timeout = (Math.max(blockMs, 1) / 1000).toFixed(3); // never "0": BLMOVE 0 blocks forever
    const first = send(this.client, ['BLMOVE', this.keys.queue, this.keys.processing(worker), 'RIGHT', 'LEFT', timeout]);
    const rest = max > 1 ? TAKE.run(this.client, keys, [worker, String(max - 1), ...at]) : Promise.resolve([]);
    // All three settle before this returns: the connection is free for the next command.
    const [beaten, one, more] = await Promise.allSettled([beat, first, rest]);
    for (const r of [beaten, one, more]) if (r.status === 'rejected') throw r.reason;
    const item = (one as PromiseFulfilledResult<unknown>).value;
    const taken = item === null ? [] : [String(item)];
    return taken.concat(toStrings((more as PromiseFulfilledResult<unknown>).value as string[]));
  }

  /**
   * Acknowledges committed orders: removes them from this worker's processing list and
   * subtracts them from the depth counter, atomically. `count`: the `count` oldest taken
   * orders (the usual case: the whole batch, in take order); `items`: exactly these
   * orders (each removes one equal element). Call only after the batch is committed.
   */
  async ack(worker: string, countOrItems: number | readonly string[], epoch?: number): Promise<AckResult> {
    checkWorkerName(worker);
    // With the fencing epoch the batch was taken under: refused (nothing removed) once
    // the worker was fenced since, whatever its list holds now.
    const keys = [this.keys.processing(worker), this.keys.depth, ...(epoch === undefined ? [] : [this.keys.fence])];
    const fence = epoch === undefined ? [] : [String(epoch), worker];
    let asked: number;
    let reply;
    if (typeof countOrItems === 'number') {
      asked = checkInteger('ack count', countOrItems, 0);
      reply = await ACK.run(this.client, keys, ['count', ...fence, String(asked)]);
    } else {
      asked = countOrItems.length;
      reply = await ACK.run(this.client, keys, ['items', ...fence, ...countOrItems]);
    }
    const parts = toArray(reply);
    const [acked, depth] = parts.slice(0, 2).map((v) => toNumber(v));
    if (String(parts[2]) === 'fenced') return { acked: 0, missing: asked, depth: depth!, fenced: { epoch: epoch!, current: toNumber(parts[3]) } };
    return { acked: acked!, missing: asked - acked!, depth: depth! };
  }

  /** The worker's fencing epoch (0 when it was never fenced). */
  async epoch(worker: string): Promise<number> {
    checkWorkerName(worker);
    return toNumber(await send(this.client, ['HGET', this.keys.fence, worker]));
  }

  /** Records this worker's heartbeat now (Redis clock); returns it in ms. take() does it too. */
  async heartbeat(worker: string): Promise<number> {
    checkWorkerName(worker);
    return toNumber(await HEARTBEAT.run(this.client, [this.keys.workers], [worker]));
  }

  /**
   * Beats for this worker every `intervalMs` until the returned function is called: for a
   * batch that may take longer than recover's `staleMs` (take() only beats when it takes).
   * The timer does not keep the process alive; failed beats go to `onError`.
   */
  keepAlive(worker: string, intervalMs: number, onError?: (err: Error) => void): () => void {
    checkWorkerName(worker);
    checkNumber('keepAlive intervalMs', intervalMs, 1);
    const timer = setInterval(() => {
      this.heartbeat(worker).catch((err: unknown) => onError?.(err instanceof Error ? err : new Error(String(err))));
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /**
   * Returns the processing lists of dead workers to the queue (the end take reads, so
   * they are processed next) and forgets their heartbeats, atomically per worker. Dead:
   * last heartbeat at least `staleMs` old, or (with `scanOrphans`) a processing list and
   * no heartbeat. The depth counter is unchanged: the orders are still uncommitted.
   *
   * A worker judged dead may only be stalled (a pause, a frozen process): it is fenced
   * first (its epoch raised, so its later takes and acks are refused), then `fence` runs
   * (the pipeline refuses its promotes in Postgres), and only then does its list move,
   * provided its epoch is still the one raised.
   */
  async recover(options: RecoverOptions): Promise<RecoverResult> {
    const staleMs = checkNumber('recover staleMs', options?.staleMs, 1);
    const beats = await this.heartbeats();
    const now = await redisNowMs(this.client);
    const candidates = new Set<string>();
    for (const [worker, at] of beats) if (now - at >= staleMs) candidates.add(worker);
    if (options.scanOrphans ?? true) {
      for (const worker of await this.processingWorkers()) if (!beats.has(worker)) candidates.add(worker);
    }
    const result: RecoverResult = { items: 0, workers: 0, byWorker: {} };
    for (const worker of candidates) {
      const fenced = toArray(await FENCE.run(this.client, [this.keys.workers, this.keys.fence], [worker, String(staleMs)]));
      if (String(fenced[1]) !== 'fenced') continue; // it beat since we looked
      const epoch = toNumber(fenced[0]);
      if (options.fence) {
        try {
          await options.fence(worker, epoch);
        } catch {
          continue; // fenced in Redis only (the hook reports why): its list stays, and the next recovery tries again
        }
      }
      const reply = toArray(
        await RECOVER.run(this.client, [this.keys.workers, this.keys.processing(worker), this.keys.queue, this.keys.fence], [worker, String(staleMs), String(epoch)]),
      );
      if (String(reply[1]) !== 'recovered') continue; // it beat or released its list since
      const moved = toNumber(reply[0]);
      result.items += moved;
      result.workers++;
      result.byWorker[worker] = moved;
    }
    return result;
  }

  /**
   * Returns everything this worker holds to the queue at once (whatever its heartbeat)
   * and forgets its heartbeat. For a worker that stops without committing its batch, or
   * restarts under the same name, or lost track after a connection error. Returns how
   * many orders went back.
   */
  async release(worker: string): Promise<number> {
    return (await this.releaseOwn(worker)).moved;
  }

  /**
   * release(), returning also the worker's new fencing epoch: the worker's takes and acks
   * carry it from now on (any batch it took under an older epoch is refused). The epoch
   * is raised above `floor` (the worker's fence in Postgres, when it is ahead).
   */
  async releaseOwn(worker: string, floor = 0): Promise<{ moved: number; epoch: number }> {
    checkWorkerName(worker);
    const fenced = toArray(await FENCE.run(this.client, [this.keys.workers, this.keys.fence], [worker, '0', String(floor)]));
    const epoch = toNumber(fenced[0]);
    const reply = toArray(
      await RECOVER.run(this.client, [this.keys.workers, this.keys.processing(worker), this.keys.queue, this.keys.fence], [worker, '0', String(epoch)]),
    );
    return { moved: toNumber(reply[0]), epoch };
  }

  /** The depth counter: orders queued plus taken-but-unacknowledged (0 when unset). */
  async depth(): Promise<number> {
    return toNumber(await send(this.client, ['GET', this.keys.depth]));
  }

  /**
   * Recomputes the depth counter from the lists (LLEN of the queue plus every processing
   * list, in one Lua script) and returns the values before and after. Needed only if
   * something wrote the lists behind the queue's back (see the module comment).
   */
  async resyncDepth(): Promise<{ before: number; after: number }> {
    // Every list the script reads is named in KEYS (a cluster routes by them): those SCAN
    // finds and those of the workers with a heartbeat. A worker that appears in between is
    // reported by the script, and its list added.
    const found = new Set((await this.processingWorkers()).map((w) => this.keys.processing(w)));
    for (const w of toStrings(await send(this.client, ['ZRANGE', this.keys.workers, '0', '-1']))) found.add(this.keys.processing(w));
    for (;;) {
      const reply = toArray(
        await DEPTH_RESYNC.run(this.client, [this.keys.depth, this.keys.queue, this.keys.workers, ...found], [this.keys.processingPrefix]),
      );
      if (String(reply[0]) === 'missing') {
        found.add(this.keys.processing(String(reply[1])));
        continue;
      }
      return { before: toNumber(reply[0]), after: toNumber(reply[1]) };
    }
  }

  /** Orders waiting in the queue (LLEN; excludes those being processed). */
  async length(): Promise<number> {
    return toNumber(await send(this.client, ['LLEN', this.keys.queue]));
  }

  /** Every worker known by a heartbeat or a processing list, with what it holds. */
  async workers(): Promise<WorkerState[]> {
    const beats = await this.heartbeats();
    const names = new Set([...beats.keys(), ...(await this.processingWorkers())]);
    const sorted = [...names].sort();
    const multi = this.client.multi();
    for (const w of sorted) multi.addCommand(['LLEN', this.keys.processing(w)]);
    multi.addCommand(['TIME']);
    const replies = (await multi.execAsPipeline()) as unknown as unknown[];
    const [seconds, micros] = toStrings(replies[replies.length - 1] as string[]);
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    return sorted.map((worker, i) => {
      const at = beats.get(worker);
      return { worker, processing: toNumber(replies[i] as number), heartbeatAgeMs: at === undefined ? null : Math.max(0, now - at) };
    });
  }

  /** Heartbeat set: worker → last heartbeat (ms, Redis clock). */
  private async heartbeats(): Promise<Map<string, number>> {
    const flat = toStrings(await send(this.client, ['ZRANGE', this.keys.workers, '0', '-1', 'WITHSCORES']));
    const out = new Map<string, number>();
    for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i]!, Number(flat[i + 1]));
    return out;
  }

  /** Workers that have a (non-empty) processing list, found by SCAN. */
  private async processingWorkers(): Promise<string[]> {
    const keys = await scanKeys(this.client, this.keys.processingPattern);
    return keys.map((k) => k.slice(this.keys.processingPrefix.length));
  }
}
