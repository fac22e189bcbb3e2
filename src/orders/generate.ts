/**
 * Sample orders for the orders pipeline: realistic JSON texts as producers would LPUSH
 * them, a share of exact duplicates (an earlier order sent again: what the dedup window
 * must drop) and a small share of invalid ones (so every reject reason is exercised),
 * and a producer loop that pushes them in batches while honouring backpressure.
 * The library never prints: progress goes to callbacks.
 */
import { randomBytes } from 'node:crypto';
import { sleep } from '../core/backoff.js';
import { Backpressure } from './redis/backpressure.js';
import type { OrderQueue } from './redis/queue.js';
import { REFERENCE_DATA } from './seed.js';
import { REJECT_REASONS, type ReferenceData } from './types.js';

/** The invalid kinds the generator makes: one per reject reason. */
export const INVALID_KINDS = REJECT_REASONS;
export type InvalidKind = (typeof INVALID_KINDS)[number];

export interface OrderGeneratorOptions {
  /** Share of orders that repeat an earlier order exactly (same order_id), 0–1 (default 0). */
  duplicates?: number;
  /** Share of orders that are invalid (spread evenly over {@link INVALID_KINDS}), 0–1 (default 0). */
  invalid?: number;
  /** Reference data orders name (default: the sample REFERENCE_DATA, as seeded). */
  reference?: ReferenceData;
  /** Every order_timestamp is this one instant (ms): a burst (default: now, minus up to 5 s, per order). */
  fixedTimestampMs?: number;
  /** Seed of the pseudo-random choices (default: random). Same seed and options: same orders. */
  seed?: number;
  /** order_ids are `<idPrefix>-<n>` (default `ord-<8 random hex>`, unique per generator). */
  idPrefix?: string;
  /** Clock for order timestamps, ms (default Date.now). */
  now?: () => number;
}

/** What a generator has made so far. */
export interface GeneratedCounts {
  /** Every order text made (duplicates and invalid ones included). */
  total: number;
  /** Exact repeats of an earlier order. */
  duplicates: number;
  /** Invalid orders, by kind. */
  invalid: Partial<Record<InvalidKind, number>>;
  invalidTotal: number;
}

/** A small fast PRNG (mulberry32): deterministic for a seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Currencies weighted as a shop sees them: USD about half, the rest evenly. */
function currencyWheel(codes: readonly string[]): string[] {
  const wheel: string[] = [];
  for (const code of codes) {
    const weight = code === 'USD' ? Math.max(1, codes.length - 1) : 1;
    for (let i = 0; i < weight; i++) wheel.push(code);
  }
  return wheel;
}

function checkShare(name: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new RangeError(`OrderGenerator ${name} must be a number in [0, 1], got ${String(value)}`);
  }
  return value;
}

/** How many recent orders a duplicate is picked from. */
const RECENT = 1024;

/**
 * Makes order JSON texts: `{"order_id","customer_id","product_id","quantity","currency",
 * "zip_code","order_timestamp"}` naming products, currencies and zip codes of the
 * reference data, quantities 1–5, timestamps ISO 8601 UTC. Cheap: one template string
 * per order.
 */
export class OrderGenerator {
  readonly idPrefix: string;
  private readonly random: () => number;
  private readonly duplicates: number;
  private readonly invalid: number;
  private readonly products: string[];
  private readonly currencies: string[];
  private readonly zips: string[];
  private readonly fixedTs: string | undefined;
  private readonly now: () => number;
  private readonly recent: string[] = [];
  private seq = 0;
  private readonly made: GeneratedCounts = { total: 0, duplicates: 0, invalid: {}, invalidTotal: 0 };

  constructor(options: OrderGeneratorOptions = {}) {
    this.duplicates = checkShare('duplicates', options.duplicates ?? 0);
    this.invalid = checkShare('invalid', options.invalid ?? 0);
    if (this.duplicates + this.invalid > 1) throw new RangeError('OrderGenerator duplicates + invalid must not exceed 1');
    const ref = options.reference ?? REFERENCE_DATA;
    if (ref.products.length === 0 || ref.currencies.length === 0 || ref.zipCodes.length === 0) {
      throw new RangeError('OrderGenerator reference data needs at least one product, currency and zip code');
    }
    this.products = ref.products.map((p) => p.product_id);
    this.currencies = currencyWheel(ref.currencies.map((c) => c.code));
    this.zips = ref.zipCodes.map((z) => z.zip_code);
    this.random = mulberry32(options.seed ?? randomBytes(4).readUInt32LE(0));
    this.idPrefix = options.idPrefix ?? `ord-${randomBytes(4).toString('hex')}`;
    this.fixedTs = options.fixedTimestampMs === undefined ? undefined : new Date(options.fixedTimestampMs).toISOString();
    this.now = options.now ?? Date.now;
  }

  /** What was made so far. */
  counts(): GeneratedCounts {
    return { ...this.made, invalid: { ...this.made.invalid } };
  }

  /** `n` order texts. */
  batch(n: number): string[] {
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = this.next();
    return out;
  }

  /** One order text. */
  next(): string {
    this.made.total++;
    const r = this.random();
    if (r < this.duplicates && this.recent.length > 0) {
      this.made.duplicates++;
      return this.recent[Math.floor(this.random() * this.recent.length)]!;
    }
    const invalid = r >= this.duplicates && r < this.duplicates + this.invalid;
    const kind = invalid ? INVALID_KINDS[Math.floor(this.random() * INVALID_KINDS.length)]! : null;
    const text = this.order(kind);
    if (kind !== null) {
      this.made.invalid[kind] = (this.made.invalid[kind] ?? 0) + 1;
      this.made.invalidTotal++;
    }
    if (this.recent.length < RECENT) this.recent.push(text);
    else this.recent[this.seq % RECENT] = text;
    return text;
  }

  private order(kind: InvalidKind | null): string {
    const rnd = this.random;
    const id = `${this.idPrefix}-${++this.seq}`;
    const customer = `cust-${1 + Math.floor(rnd() * 50_000)}`;
    let product = this.products[Math.floor(rnd() * this.products.length)]!;
    let currency = this.currencies[Math.floor(rnd() * this.currencies.length)]!;
    let zip = this.zips[Math.floor(rnd() * this.zips.length)]!;
    // Mostly 1, sometimes up to 5.
    let quantity = rnd() < 0.6 ? 1 : 2 + Math.floor(rnd() * 4);
    let ts = `"${this.fixedTs ?? new Date(this.now() - Math.floor(rnd() * 5000)).toISOString()}"`;
    switch (kind) {
      case 'unknown_product':
        product = 'P-DISCONTINUED';
        break;
      case 'unknown_currency':
        currency = 'XYZ';
        break;
      case 'unknown_zip':
        zip = '00000';
        break;
      case 'non_positive_quantity':
        quantity = rnd() < 0.5 ? 0 : -1;
        break;
      case 'bad_timestamp':
        ts = '"yesterday at noon"';
        break;
      case 'malformed':
        // Truncated in transit: not JSON at all.
        return `{"order_id":"${id}","customer_id":"${customer}","product_id":"${product}","quantity":`;
      default:
        break;
    }
    return `{"order_id":"${id}","customer_id":"${customer}","product_id":"${product}","quantity":${quantity},"currency":"${currency}","zip_code":"${zip}","order_timestamp":${ts}}`;
  }
}

export interface ProduceOrdersOptions {
  /** Orders to push. */
  count: number;
  /** Orders per push (one MULTI of LPUSH + INCRBY; default 1000). */
  batchSize?: number;
  /**
   * Wait before each push while the queue's depth (queued + in processing) is at or above
   * this (backpressure). Undefined: never wait.
   */
  maxQueueDepth?: number;
  /**
   * Pace to this many orders/s, as `tributary produce --rate` does: batches of at most
   * `rate` orders, each followed by a wait until `pushed / rate` seconds have passed since
   * the start (the last one too), so `count` orders take `count / rate` seconds. Default:
   * as fast as the queue takes them.
   */
  rate?: number;
  /** Records the waits (default: a new Backpressure on `queue`). */
  backpressure?: Backpressure;
  /** Stops early: resolves with what was pushed so far (a wait in progress ends at once). */
  signal?: AbortSignal;
  /** After each push: orders pushed so far, the depth after the push, and the ms this push waited for room. */
  onProgress?: (progress: { pushed: number; depth: number; waitedMs: number }) => void;
}

export interface ProduceOrdersResult {
  pushed: number;
  elapsedMs: number;
  /** Pushes that found the queue at or above maxQueueDepth and waited. */
  waits: number;
  /** Total time spent waiting for room, ms. */
  waitedMs: number;
  /** The highest depth seen after a push. */
  maxDepth: number;
  /** True when the signal stopped it before `count`. */
  aborted: boolean;
}

/**
 * Pushes `count` orders from `generator` onto `queue` in batches: before each, waits
 * while the depth is at or above `maxQueueDepth` (polling it), then pushes (LPUSH and the
 * depth counter in one MULTI). The limit is soft: a batch is pushed whole once there is
 * room, so the depth may pass the limit by up to one batch per producer.
 */
export async function produceOrders(queue: OrderQueue, generator: OrderGenerator, options: ProduceOrdersOptions): Promise<ProduceOrdersResult> {
  const { count, maxQueueDepth, rate, signal } = options;
  if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`produceOrders count must be a non-negative integer, got ${String(count)}`);
  const requestedBatch = options.batchSize ?? 1000;
  if (!Number.isSafeInteger(requestedBatch) || requestedBatch < 1) throw new RangeError(`produceOrders batchSize must be a positive integer, got ${String(requestedBatch)}`);
  if (rate !== undefined && !(rate > 0)) throw new RangeError(`produceOrders rate must be positive, got ${String(rate)}`);
  // Paced: at most one second's worth per push, as `produce --rate`.
  const batchSize = rate === undefined ? requestedBatch : Math.max(1, Math.min(requestedBatch, Math.floor(rate)));
  const bp = options.backpressure ?? new Backpressure(queue);
  const started = performance.now();
  let pushed = 0;
  let waits = 0;
  let waitedMs = 0;
  let maxDepth = 0;
  let aborted = false;
  while (pushed < count) {
    if (signal?.aborted) {
      aborted = true;
      break;
    }
    const batch = generator.batch(Math.min(batchSize, count - pushed));
    let waited = 0;
    let depth: number;
    if (maxQueueDepth === undefined) {
      depth = await queue.push(batch);
    } else {
      try {
        ({ waitedMs: waited, depth } = await bp.push(batch, maxQueueDepth, signal ? { signal } : {}));
      } catch (err) {
        if (signal?.aborted) {
          aborted = true;
          break;
        }
        throw err;
      }
    }
    if (waited > 0) {
      waits++;
      waitedMs += waited;
    }
    pushed += batch.length;
    maxDepth = Math.max(maxDepth, depth);
    options.onProgress?.({ pushed, depth, waitedMs: waited });
    if (rate !== undefined) {
      const due = started + (pushed / rate) * 1000 - performance.now();
      if (due > 0) await sleep(due, signal);
    }
  }
  return { pushed, elapsedMs: performance.now() - started, waits, waitedMs, maxDepth, aborted };
}
