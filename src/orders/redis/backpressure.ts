/**
 * Backpressure for producers: wait while the orders queue's depth counter (queued plus
 * in-processing orders) is at or above a limit, then push. The limit is soft: each
 * producer checks then pushes a whole batch, so the depth can overshoot by up to
 * (producers × batch size − 1). Waiting polls the counter (one GET per `pollMs`).
 */
import { sleep } from '../../core/backoff.js';
import { TributaryError } from '../../errors.js';
import type { OrderQueue } from './queue.js';
import { checkInteger, checkNumber } from './reply.js';

export interface BackpressureOptions {
  /** How often a waiting producer re-reads the depth, ms (default 100). */
  pollMs?: number;
}

export interface WaitForRoomOptions {
  /** Stops the wait: it then rejects with TRIB_ERR_ORDERS_BACKPRESSURE_ABORTED. */
  signal?: AbortSignal;
  /** Overrides the instance's poll interval for this wait, ms. */
  pollMs?: number;
  /** Gives up after this long, rejecting with TRIB_ERR_WAIT_TIMEOUT (default: wait as long as it takes). */
  timeoutMs?: number;
}

export interface BackpressureStats {
  /** True while at least one producer is waiting for room. */
  engaged: boolean;
  /** Waits that found the queue full (each waited at least one poll). */
  engagements: number;
  /** Total time producers spent waiting, ms. */
  waitedMs: number;
  /** The depth last read. */
  lastDepth: number | null;
}

export class Backpressure {
  private readonly pollMs: number;
  private waiting = 0;
  private engagements = 0;
  private waitedMs = 0;
  private lastDepth: number | null = null;

  constructor(
    readonly queue: OrderQueue,
    options: BackpressureOptions = {},
  ) {
    this.pollMs = checkNumber('Backpressure pollMs', options.pollMs ?? 100, 1);
  }

  /** True while a producer is held back (the depth was at or above its limit). */
  get isEngaged(): boolean {
    return this.waiting > 0;
  }

  stats(): BackpressureStats {
    return { engaged: this.isEngaged, engagements: this.engagements, waitedMs: this.waitedMs, lastDepth: this.lastDepth };
  }

  /** Resolves, with the ms waited (0 when there was room at once), once depth < maxDepth. */
  async waitForRoom(maxDepth: number, options: WaitForRoomOptions = {}): Promise<number> {
    checkInteger('waitForRoom maxDepth', maxDepth, 1);
    const pollMs = checkNumber('waitForRoom pollMs', options.pollMs ?? this.pollMs, 1);
    const { signal, timeoutMs } = options;
    if (timeoutMs !== undefined) checkNumber('waitForRoom timeoutMs', timeoutMs, 0);
    const aborted = (depth: number | string) =>
      new TributaryError('TRIB_ERR_ORDERS_BACKPRESSURE_ABORTED', [this.queue.keys.queue, depth, maxDepth], { cause: signal?.reason });
    if (signal?.aborted) throw aborted('not read');
    let depth = (this.lastDepth = await this.queue.depth());
    if (depth < maxDepth) return 0;
    const t0 = performance.now();
    this.waiting++;
    this.engagements++;
    try {
      for (;;) {
        const elapsed = performance.now() - t0;
        if (timeoutMs !== undefined && elapsed >= timeoutMs) {
          throw new TributaryError('TRIB_ERR_WAIT_TIMEOUT', [timeoutMs, `room in ${this.queue.keys.queue} (depth ${depth}, limit ${maxDepth})`]);
        }
        await sleep(timeoutMs === undefined ? pollMs : Math.min(pollMs, timeoutMs - elapsed), signal);
        if (signal?.aborted) throw aborted(depth);
        depth = this.lastDepth = await this.queue.depth();
        if (depth < maxDepth) return performance.now() - t0;
      }
    } finally {
      this.waiting--;
      this.waitedMs += performance.now() - t0;
    }
  }

  /** Waits for room, then pushes the batch. Returns the ms waited and the depth after the push. */
  async push(batch: readonly string[], maxDepth: number, options: WaitForRoomOptions = {}): Promise<{ waitedMs: number; depth: number }> {
    const waitedMs = await this.waitForRoom(maxDepth, options);
    const depth = (this.lastDepth = await this.queue.push(batch));
    return { waitedMs, depth };
  }
}

/**
 * For producers: waits until the queue's depth is below `maxDepth`, then pushes `batch`.
 * Returns how long it waited, ms. Pass `backpressure` to record the wait in its stats.
 */
export async function pushWithBackpressure(
  queue: OrderQueue,
  batch: readonly string[],
  maxDepth: number,
  options: WaitForRoomOptions & { backpressure?: Backpressure } = {},
): Promise<number> {
  if (options.backpressure && options.backpressure.queue !== queue) throw new RangeError('pushWithBackpressure backpressure must watch the same queue');
  const bp = options.backpressure ?? new Backpressure(queue);
  return (await bp.push(batch, maxDepth, options)).waitedMs;
}
