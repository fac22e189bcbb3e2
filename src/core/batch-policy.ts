/**
 * The batch policy: a pure rule that says when a worker's buffered entries must be
 * flushed, and why. Flush at `maxCount` entries, or `periodMs` after the first entry
 * arrived, whichever first — and as soon as the worker has caught up (a read returned
 * fewer entries than asked), so latency stays low when traffic is light.
 */
/**
 * Why a batch was flushed. `capacity`: the process's in-flight cap was reached, so the
 * worker flushes what it has rather than wait; `shutdown`: a graceful stop.
 */
export type FlushReason = 'size' | 'bytes' | 'time' | 'caught_up' | 'capacity' | 'shutdown';

export interface BatchPolicyOptions {
  /** Flush when this many entries are buffered. */
  maxCount: number;
  /** Flush when the buffered entries hold this many bytes of field data (default: no limit). */
  maxBytes?: number;
  /** Flush when the oldest buffered entry has waited this long (ms). */
  periodMs: number;
  /** Flush when a read returned fewer entries than asked for (default true). */
  flushWhenCaughtUp?: boolean;
}

export interface BatchState {
  /** Entries buffered now. */
  count: number;
  /** Bytes of field data buffered now (when a byte limit is set). */
  bytes?: number;
  /** When the first buffered entry arrived (ms), or undefined when empty. */
  firstAt: number | undefined;
  /** Entries the last read returned, and how many it asked for. */
  lastRead?: { got: number; asked: number };
}

export class BatchPolicy {
  readonly maxCount: number;
  readonly maxBytes: number;
  readonly periodMs: number;
  readonly flushWhenCaughtUp: boolean;

  constructor(options: BatchPolicyOptions) {
    if (!Number.isInteger(options.maxCount) || options.maxCount < 1) {
      throw new RangeError(`BatchPolicy maxCount must be a positive integer, got ${options.maxCount}`);
    }
    if (!Number.isFinite(options.periodMs) || options.periodMs <= 0) {
      throw new RangeError(`BatchPolicy periodMs must be a positive number, got ${options.periodMs}`);
    }
    if (options.maxBytes !== undefined && (!Number.isFinite(options.maxBytes) || options.maxBytes < 1)) {
      throw new RangeError(`BatchPolicy maxBytes must be a positive number, got ${options.maxBytes}`);
    }
    this.maxCount = options.maxCount;
    this.maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    this.periodMs = options.periodMs;
    this.flushWhenCaughtUp = options.flushWhenCaughtUp ?? true;
  }

  /** Why the batch must be flushed now, or null to keep filling it. */
  check(state: BatchState, now: number): FlushReason | null {
    if (state.count === 0) return null;
    if (state.count >= this.maxCount) return 'size';
    if ((state.bytes ?? 0) >= this.maxBytes) return 'bytes';
    if (state.firstAt !== undefined && now - state.firstAt >= this.periodMs) return 'time';
    if (this.flushWhenCaughtUp && state.lastRead && state.lastRead.got < state.lastRead.asked) return 'caught_up';
    return null;
  }

  /** How long the next read may block: the rest of the period when entries are buffered. */
  blockFor(state: BatchState, now: number, idleBlockMs: number): number {
    if (state.count === 0 || state.firstAt === undefined) return idleBlockMs;
    return Math.max(0, Math.min(idleBlockMs, this.periodMs - (now - state.firstAt)));
  }

  /** How many entries the next read should ask for. */
  nextReadCount(state: BatchState, readCount: number): number {
    return Math.max(0, Math.min(readCount, this.maxCount - state.count));
  }
}

/** Bytes of field data in an entry (UTF-16 length: a close, cheap measure). */
export function entrySize(fields: Record<string, string>): number {
  let n = 0;
  for (const k in fields) n += k.length + fields[k]!.length;
  return n;
}

/**
 * The size of the entries being read, learned from the reads themselves (Redis has no
 * byte-limited read: XREADGROUP and BLMOVE take a count). Rises at once to a read's
 * average when that is larger (a switch to large entries shrinks the very next read),
 * falls slowly (a mix of small and large entries is not read as if all were small).
 * Shared by a runner's workers.
 */
export class EntrySizeEstimate {
  private avg: number | undefined;

  /** Bytes per entry, or undefined before the first read that returned something. */
  get value(): number | undefined {
    return this.avg;
  }

  /** A read returned `count` entries holding `bytes` bytes. */
  observe(count: number, bytes: number): void {
    if (!(count > 0) || !(bytes >= 0)) return;
    const a = Math.max(1, bytes / count);
    this.avg = this.avg === undefined || a >= this.avg ? a : this.avg * 0.75 + a * 0.25;
  }
}

/**
 * How many entries to ask for so that they likely fit in `byteRoom` bytes: `wanted`
 * (what the count rules allow) cut to byteRoom / the estimated entry size. Before
 * anything is known of the entries' size, one: the first read measures them. An empty
 * batch always asks for at least one (an entry larger than the whole budget is read,
 * and processed, alone); a batch already holding entries may get 0: flush it first.
 * Pure.
 */
export function readCountFor(wanted: number, byteRoom: number, estimate: number | undefined, batchEmpty: boolean): number {
  if (wanted <= 0) return 0;
  const least = batchEmpty ? 1 : 0;
  if (estimate === undefined) return batchEmpty ? 1 : 0;
  if (!Number.isFinite(byteRoom)) return wanted;
  const fits = Math.floor(Math.max(0, byteRoom) / Math.max(1, estimate));
  return Math.max(least, Math.min(wanted, fits));
}

/**
 * How many of `items` (in order) go into the next batch so it holds at most `maxBytes`:
 * the longest prefix within the budget, and never fewer than one (an entry larger than
 * the budget goes alone). Pure.
 */
export function prefixWithin(items: readonly { readonly bytes: number }[], maxBytes: number): number {
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    total += items[i]!.bytes;
    if (total > maxBytes) return Math.max(1, i);
  }
  return items.length;
}
