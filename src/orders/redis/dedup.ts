/**
 * The dedup window: drops an order whose order_id was committed in the last
 * `windowSeconds`. Ids live in time-bucketed sets `<p>:dedup:<bucket>` (bucket =
 * floor(ms / 1000 / bucketSeconds)), so memory holds about one window of ids. An id is
 * remembered at least `windowSeconds` and at most `windowSeconds + bucketSeconds`.
 *
 * A bucket that left the window is deleted with UNLINK (`sweep`, run by every markSeen
 * and by the pipeline's timer): Redis frees a big set in a background thread. Left to
 * expire, Redis would free it in its main thread (unless `lazyfree-lazy-expire yes`),
 * blocking every client for as long as freeing a set of a whole bucket's ids takes. The
 * EXPIRE each set still gets (`windowSeconds + 2 × bucketSeconds` after its last write)
 * is only the backstop for a window nobody sweeps any more.
 *
 * Checking and marking are two steps on purpose. `filterUnseen` only reads; `markSeen`
 * runs after the batch is committed. Were the check to mark ids (the Python original's
 * `mark_seen` before processing), a crash between check and commit would leave the ids
 * marked but the orders unwritten, and their redelivery would be dropped as duplicates:
 * lost for good.
 *
 * The race this leaves: two workers holding orders with the same order_id at the same
 * time both pass the check (neither is marked yet). The dedup window is a filter that
 * saves work, not the guarantee: the orders table's primary key is the final guard, and
 * promote counts the second as a duplicate.
 *
 * Buckets are picked by this process's clock: keep machines NTP-synced (a skew of s
 * seconds moves the window's edges by s seconds for that machine's checks).
 */
import { RedisScript, send, type RedisConnection } from '../../redis/client.js';
import { orderKeys, type OrderKeys } from './keys.js';
import { checkInteger, chunks, toArray, toNumber } from './reply.js';

const CHECK = new RedisScript('orders-dedup-check');

/** Buckets past the window a sweep deletes (the EXPIRE backstop fires 2 buckets after a bucket left the window, at the earliest). */
const SWEPT_BUCKETS = 3;

/** Ids per SADD inside markSeen()'s single MULTI. */
const MARK_CHUNK = 10_000;

export interface DedupWindowOptions {
  /** The connection (required). */
  client: RedisConnection;
  /** Key prefix; buckets are `<prefix>:dedup:<bucket>` (default `orders`). */
  prefix?: string;
  /** How long a committed order_id is remembered, at least, in seconds (default 3600). */
  windowSeconds?: number;
  /**
   * Width of one bucket set in seconds (default 300). Smaller: closer to the exact window,
   * more sets to check (at most 1000 per window).
   */
  bucketSeconds?: number;
  /** Clock in ms since the epoch that picks the buckets (default `Date.now`). */
  now?: () => number;
}

const DEFAULTS = { windowSeconds: 3600, bucketSeconds: 300 };

/** The buckets a check at `nowMs` must read: every bucket that can hold an id marked less than a window ago. */
export function liveBuckets(nowMs: number, windowSeconds: number, bucketSeconds: number): number[] {
  const current = Math.floor(nowMs / 1000 / bucketSeconds);
  const oldest = Math.floor((nowMs / 1000 - windowSeconds) / bucketSeconds);
  const out: number[] = [];
  for (let b = oldest; b <= current; b++) out.push(b);
  return out;
}

/** Per id: true when it is the first occurrence of its value in `ids` and not in `seen`. */
export function keepFirstUnseen(ids: readonly string[], seen: ReadonlySet<string>): boolean[] {
  const first = new Set<string>();
  return ids.map((id) => {
    if (first.has(id)) return false;
    first.add(id);
    return !seen.has(id);
  });
}

export class DedupWindow {
  readonly keys: OrderKeys;
  readonly windowSeconds: number;
  readonly bucketSeconds: number;
  private readonly client: RedisConnection;
  private readonly now: () => number;

  constructor(options: DedupWindowOptions) {
    if (!options?.client) throw new RangeError('DedupWindow client is required');
    this.client = options.client;
    this.keys = orderKeys(options.prefix);
    this.windowSeconds = checkInteger('DedupWindow windowSeconds', options.windowSeconds ?? DEFAULTS.windowSeconds, 1);
    this.bucketSeconds = checkInteger('DedupWindow bucketSeconds', options.bucketSeconds ?? DEFAULTS.bucketSeconds, 1, this.windowSeconds);
    if (this.windowSeconds / this.bucketSeconds > 1000) {
      throw new RangeError(`DedupWindow bucketSeconds must be at least windowSeconds / 1000 (${Math.ceil(this.windowSeconds / 1000)}), got ${this.bucketSeconds}`);
    }
    this.now = options.now ?? Date.now;
  }

  /** Keys of the buckets a check reads now, oldest first. */
  liveBucketKeys(): string[] {
    return liveBuckets(this.now(), this.windowSeconds, this.bucketSeconds).map((b) => this.keys.dedup(b));
  }

  /**
   * Per id, true to keep it: not seen in the window, and the first of its value in this
   * batch (a repeat inside the batch is false). One round trip (a Lua script checking
   * every live bucket with SMISMEMBER). Marks nothing: call `markSeen` after the commit.
   */
  async filterUnseen(ids: readonly string[]): Promise<boolean[]> {
    if (ids.length === 0) return [];
    const distinct = [...new Set(ids)];
    const positions = toArray(await CHECK.run(this.client, this.liveBucketKeys(), distinct));
    const seen = new Set(positions.map((p) => distinct[toNumber(p) - 1]!));
    return keepFirstUnseen(ids, seen);
  }

  /**
   * Marks ids seen now (SADD to the current bucket and its EXPIRE, in one MULTI: one
   * round trip), and sweeps (see `sweep`). Call after the batch is committed. Returns how
   * many were new to the current bucket.
   */
  async markSeen(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const distinct = [...new Set(ids)];
    const key = this.keys.dedup(Math.floor(this.now() / 1000 / this.bucketSeconds));
    const multi = this.client.multi();
    for (const chunk of chunks(distinct, MARK_CHUNK)) multi.addCommand(['SADD', key, ...chunk]);
    multi.addCommand(['EXPIRE', key, String(this.windowSeconds + 2 * this.bucketSeconds)]);
    multi.addCommand(['UNLINK', ...this.deadBucketKeys()]);
    const replies = (await multi.exec()) as unknown as unknown[];
    return replies.slice(0, -2).reduce<number>((sum, r) => sum + toNumber(r as number), 0);
  }

  /**
   * Deletes, with UNLINK (freed off Redis's main thread), the buckets that left the
   * window lately: the SWEPT_BUCKETS buckets just older than the oldest live one. Every
   * id in them was marked more than `windowSeconds` ago. Run at least every
   * `bucketSeconds`, this deletes each bucket before its EXPIRE backstop fires. Returns
   * how many keys it deleted.
   */
  async sweep(): Promise<number> {
    return toNumber(await send(this.client, ['UNLINK', ...this.deadBucketKeys()]));
  }

  /** Keys of the buckets just past the window (the sweep's targets). */
  private deadBucketKeys(): string[] {
    const oldest = liveBuckets(this.now(), this.windowSeconds, this.bucketSeconds)[0]!;
    return Array.from({ length: SWEPT_BUCKETS }, (_, i) => this.keys.dedup(oldest - 1 - i));
  }

  /**
   * About how many ids the window holds: the sum of SCARD over the live buckets (an id
   * marked in two buckets counts twice; the oldest bucket may hold ids just past the
   * window). One round trip.
   */
  async size(): Promise<number> {
    const multi = this.client.multi();
    for (const key of this.liveBucketKeys()) multi.addCommand(['SCARD', key]);
    const replies = (await multi.execAsPipeline()) as unknown as unknown[];
    return replies.reduce<number>((sum, r) => sum + toNumber(r as number), 0);
  }
}
