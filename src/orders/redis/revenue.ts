/**
 * The revenue window: recent orders in a sorted set `<p>:window`, scored by order time
 * (ms), member `<order_id>:<total in cents>` (unique per order, so re-adding a redelivered
 * order changes nothing). Every `add` trims what fell out of the window and renews the
 * key's expiry, so the set never holds more than one window of orders and vanishes when
 * orders stop.
 *
 * Cost of `summary(lastMs)`: ZCOUNT (O(log N)) for the order count, exact; and ZRANGE
 * BYSCORE of the members in range (O(log N + M), M members sent to us) for the revenue.
 * M is bounded by `maxScan`: past it, the revenue is extrapolated from the members read
 * (the oldest `maxScan` of the range) and the summary says `exact: false`.
 * The window is by order time: orders older than the window when added are skipped.
 */
import { send, type RedisConnection } from '../../redis/client.js';
import { orderKeys, type OrderKeys } from './keys.js';
import { checkInteger, chunks, toNumber, toStrings } from './reply.js';

/** Members per ZADD inside add()'s single MULTI. */
const ADD_CHUNK = 5_000;

export interface RevenueWindowOptions {
  /** The connection (required). */
  client: RedisConnection;
  /** Key prefix; the set is `<prefix>:window` (default `orders`). */
  prefix?: string;
  /** Window length, ms (default 900,000: 15 minutes). */
  windowMs?: number;
  /** The most members one summary() reads to sum revenue (default 100,000); past it the sum is extrapolated. */
  maxScan?: number;
  /** Clock, ms since the epoch (default `Date.now`). */
  now?: () => number;
}

const DEFAULTS = { windowMs: 900_000, maxScan: 100_000 };

export interface RevenueEntry {
  orderId: string;
  /** Order time, ms since the epoch. */
  timestampMs: number;
  /** Order total in USD (rounded to cents). */
  totalUsd: number;
}

export interface RevenueAddResult {
  /** Orders new to the window. */
  added: number;
  /** Entries not added: older than the window, or without a finite time or total. */
  skipped: number;
  /** Members trimmed because they fell out of the window. */
  trimmed: number;
}

export interface RevenueSummary {
  /** Orders in range (exact). */
  orders: number;
  /** Their revenue in USD (extrapolated when `exact` is false). */
  revenueUsd: number;
  /** Range start (ms since epoch, inclusive); the range runs to the newest order. */
  fromMs: number;
  /** Members read to sum the revenue. */
  scanned: number;
  /** False when more than `maxScan` orders were in range. */
  exact: boolean;
}

/** USD → whole cents, immune to binary fractions (10.005 × 100 is 1000.4999…: it rounds to 1001). */
export function toCents(usd: number): number {
  return Math.round(Number((usd * 100).toPrecision(12)));
}

/** Parses `<order_id>:<cents>` members and sums their cents (a member without cents counts 0). */
export function sumMemberCents(members: readonly string[]): number {
  let cents = 0;
  for (const m of members) {
    const v = Number(m.slice(m.lastIndexOf(':') + 1));
    if (Number.isFinite(v)) cents += v;
  }
  return cents;
}

export class RevenueWindow {
  readonly keys: OrderKeys;
  readonly windowMs: number;
  private readonly maxScan: number;
  private readonly client: RedisConnection;
  private readonly now: () => number;

  constructor(options: RevenueWindowOptions) {
    if (!options?.client) throw new RangeError('RevenueWindow client is required');
    this.client = options.client;
    this.keys = orderKeys(options.prefix);
    this.windowMs = checkInteger('RevenueWindow windowMs', options.windowMs ?? DEFAULTS.windowMs, 1);
    this.maxScan = checkInteger('RevenueWindow maxScan', options.maxScan ?? DEFAULTS.maxScan, 1);
    this.now = options.now ?? Date.now;
  }

  /** Adds orders, trims those out of the window and renews the expiry: one MULTI, one round trip. */
  async add(entries: readonly RevenueEntry[]): Promise<RevenueAddResult> {
    const cutoff = this.now() - this.windowMs;
    const args: string[] = [];
    let skipped = 0;
    for (const e of entries) {
      if (!Number.isFinite(e.timestampMs) || !Number.isFinite(e.totalUsd) || e.timestampMs < cutoff) {
        skipped++;
        continue;
      }
      args.push(String(e.timestampMs), `${e.orderId}:${toCents(e.totalUsd)}`);
    }
    if (args.length === 0) return { added: 0, skipped, trimmed: 0 };
    const multi = this.client.multi();
    for (const chunk of chunks(args, ADD_CHUNK * 2)) multi.addCommand(['ZADD', this.keys.window, ...chunk]);
    multi.addCommand(['ZREMRANGEBYSCORE', this.keys.window, '-inf', `(${cutoff}`]);
    multi.addCommand(['PEXPIRE', this.keys.window, String(this.windowMs)]);
    const replies = (await multi.exec()) as unknown as number[];
    const added = replies.slice(0, -2).reduce((sum, r) => sum + toNumber(r), 0);
    return { added, skipped, trimmed: toNumber(replies[replies.length - 2]) };
  }

  /** Orders and revenue of the last `lastMs` ms (default and at most the window); one round trip. */
  async summary(lastMs: number = this.windowMs): Promise<RevenueSummary> {
    checkInteger('summary lastMs', lastMs, 1);
    const fromMs = this.now() - Math.min(lastMs, this.windowMs);
    const multi = this.client.multi();
    multi.addCommand(['ZCOUNT', this.keys.window, String(fromMs), '+inf']);
    multi.addCommand(['ZRANGE', this.keys.window, String(fromMs), '+inf', 'BYSCORE', 'LIMIT', '0', String(this.maxScan)]);
    const [count, members] = (await multi.execAsPipeline()) as unknown as [number, string[]];
    const orders = toNumber(count);
    const read = toStrings(members);
    const cents = sumMemberCents(read);
    const exact = read.length >= orders;
    const revenueCents = exact || read.length === 0 ? cents : (cents * orders) / read.length;
    return { orders, revenueUsd: Math.round(revenueCents) / 100, fromMs, scanned: read.length, exact };
  }

  /** Members in the window now (ZCARD), trimmed or not. */
  async size(): Promise<number> {
    return toNumber(await send(this.client, ['ZCARD', this.keys.window]));
  }
}
