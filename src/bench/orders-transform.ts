import { performance } from 'node:perf_hooks';
import { isDeepStrictEqual } from 'node:util';
import { mulberry32 } from '../orders/generate.js';
import { transformBatch } from '../orders/transform.js';
import type { Currency, LookupResult, Order, Product, StagingColumns, ZipCode } from '../orders/types.js';
import { hostMachine } from './machine.js';
import { buildResult, defaultResultsDir, writeResult, type OrdersTransformFigures, type ResultOf, type TransformTiming } from './result.js';

/**
 * The measurement that chose the orders transform: plain TypeScript (transformBatch) against
 * nodejs-polars (transformBatchPolars), on the same generated batches, conversion to and
 * from the DataFrame included. No servers. nodejs-polars is a devDependency and is loaded
 * here with import(), so nothing else depends on it.
 *
 * Run: npm run bench:orders-transform  (scripts/bench-orders-transform.mjs)
 */


const CATEGORIES = ['Electronics', 'Books', 'Home', 'Garden', 'Toys', 'Sports', 'Beauty', 'Grocery'];
const RATES: Array<[string, number]> = [
  ['USD', 1],
  ['EUR', 1.08],
  ['GBP', 1.27],
  ['JPY', 0.0067],
  ['CAD', 0.74],
  ['AUD', 0.66],
  ['CHF', 1.13],
  ['INR', 0.012],
  ['BRL', 0.2],
  ['MXN', 0.058],
];
const ZONES = ['zone-1', 'zone-2', 'zone-3', 'zone-4', 'zone-5'];
const REGIONS = ['Northeast', 'Southeast', 'Midwest', 'Southwest', 'West'];

/** Reference data like the original's cache (20 products, 10 currencies, 50 zip codes), as one LookupResult. */
export function sampleLookup(): LookupResult {
  const products = new Map<string, Product>();
  for (let i = 1; i <= 20; i++) {
    const id = `P${String(i).padStart(4, '0')}`;
    // Prices with cents that are not exact in binary (x.99, x.05, ...).
    const unit_price = Number((((i * 37) % 500) + ((i * 13) % 100) / 100 + 0.05).toFixed(2));
    products.set(id, { product_id: id, sku: `SKU-${id}`, name: `Product ${i}`, category: CATEGORIES[i % CATEGORIES.length]!, unit_price });
  }
  const currencies = new Map<string, Currency>(RATES.map(([code, rate_to_usd]) => [code, { code, rate_to_usd }]));
  const zipCodes = new Map<string, ZipCode>();
  for (let i = 0; i < 50; i++) {
    const zip = String(1000 + i * 1931).padStart(5, '0');
    zipCodes.set(zip, { zip_code: zip, city: `City ${i}`, region: REGIONS[i % REGIONS.length]!, shipping_zone: ZONES[i % ZONES.length]! });
  }
  return { version: 1, products, currencies, zipCodes };
}

export interface SampleOrderOptions {
  seed?: number;
  /** Share of orders whose product, currency or zip code the lookup does not know. Default 0.02. */
  missRate?: number;
  /** Share of orders with a timestamp the transform refuses. Default 0.01. */
  badTimestampRate?: number;
  /** Also zero and negative quantities (for tests). Default false. */
  oddQuantities?: boolean;
}

const BAD_TIMESTAMPS: Array<string | number> = [
  'garbage',
  '',
  '2026-02-30T10:00:00Z',
  '2026-13-01T10:00:00Z',
  '2026-11-22T24:00:00Z',
  '2026-11-22T10:00:60Z',
  '2026-11-22',
  '2026-11-22T10:00Z',
  '2026-11-22T10:00:00+24:00',
  '1999-12-31T23:59:59.999Z',
  '2101-01-01T00:00:00Z',
  '2000-01-01T00:30:00+01:00',
  '٢٠٢٦-11-22T10:00:00Z',
  '2026-11-22T10:00:00.1234567890Z',
  ' 2026-11-22T10:00:00Z',
  '1700000000000.5',
  '+1700000000000',
  '99999999999999999',
  1700000000000.5,
  -1,
  0,
  1e21,
  4133980800000,
];

const pad = (v: number, n = 2) => String(v).padStart(n, '0');

function goodTimestamp(rand: () => number): string | number {
  const ms = Date.UTC(2026, 0, 1) + Math.floor(rand() * 365 * 86_400_000);
  const iso = new Date(ms).toISOString();
  const form = rand();
  if (form < 0.35) return iso;
  if (form < 0.5) return ms;
  if (form < 0.55) return String(ms);
  if (form < 0.75) {
    // Python's isoformat of a naive UTC datetime: microseconds, no offset ('T' or a space).
    return `${iso.slice(0, 10)}${rand() < 0.5 ? 'T' : ' '}${iso.slice(11, 23)}${pad(Math.floor(rand() * 1000), 3)}`;
  }
  // A local wall time with its offset, seconds only or with a fraction.
  const minutes = (Math.floor(rand() * 57) - 28) * 30; // -14:00 … +14:00 in half hours
  const local = new Date(ms + minutes * 60_000).toISOString();
  const sign = minutes < 0 ? '-' : '+';
  const off = `${pad(Math.floor(Math.abs(minutes) / 60))}${rand() < 0.7 ? ':' : ''}${pad(Math.abs(minutes) % 60)}`;
  const fraction = rand() < 0.5 ? '' : `.${String(Math.floor(rand() * 1e6)).padStart(6, '0').slice(0, 1 + Math.floor(rand() * 6))}`;
  return `${local.slice(0, 19)}${fraction}${sign}${off}`;
}

/** `n` orders over sampleLookup()'s keys, with the given share of misses and bad timestamps. Deterministic. */
export function sampleOrders(n: number, options: SampleOrderOptions = {}): Order[] {
  const rand = mulberry32(options.seed ?? 1);
  const missRate = options.missRate ?? 0.02;
  const badRate = options.badTimestampRate ?? 0.01;
  const lookup = sampleLookup();
  const productIds = [...lookup.products.keys()];
  const codes = [...lookup.currencies.keys()];
  const zips = [...lookup.zipCodes.keys()];
  const pick = <T>(list: readonly T[]) => list[Math.floor(rand() * list.length)]!;
  const orders = new Array<Order>(n);
  for (let i = 0; i < n; i++) {
    const miss = rand() < missRate ? Math.floor(rand() * 3) : -1;
    let quantity = 1 + Math.floor(rand() * 10);
    if (options.oddQuantities && rand() < 0.05) quantity = Math.floor(rand() * 2_000_001) - 1_000_000;
    orders[i] = {
      order_id: `ord-${options.seed ?? 1}-${i}`,
      customer_id: `cust-${Math.floor(rand() * 5000)}`,
      product_id: miss === 0 ? 'P9999' : pick(productIds),
      quantity,
      currency: miss === 1 ? 'XXX' : pick(codes),
      zip_code: miss === 2 ? '99999' : pick(zips),
      order_timestamp: rand() < badRate ? pick(BAD_TIMESTAMPS) : goodTimestamp(rand),
    };
  }
  return orders;
}

export type TransformFn = (orders: readonly Order[], lookup: LookupResult) => StagingColumns;

/** Loads the Polars implementation (and so nodejs-polars), with its version. */
export async function loadPolarsTransform(): Promise<{ transform: TransformFn; version: string }> {
  try {
    const [{ transformBatchPolars }, pl] = await Promise.all([import('./orders-transform-polars.js'), import('nodejs-polars')]);
    return { transform: transformBatchPolars, version: String(pl.default.version) };
  } catch (err) {
    throw new Error(`nodejs-polars could not be loaded (it is a devDependency: npm ci without --omit=dev): ${(err as Error).message}`);
  }
}

export interface TransformBenchOptions {
  /** Batch sizes to time. Default [100, 500, 1000, 5000, 10000]. */
  batchSizes?: number[];
  /** Timed rounds per implementation and batch size; the median is reported. Default 7. */
  rounds?: number;
  /** Untimed rounds first, per implementation and batch size. Default 2. */
  warmupRounds?: number;
  /** Orders per round, rounded up to a whole number of batches. Default 50,000. */
  ordersPerRound?: number;
  /** Seed of the generated orders. Default 1. */
  seed?: number;
  /** Where the result file goes. Default bench/results (BENCH_RESULTS_DIR overrides). */
  resultsDir?: string;
  /** Write the result file. Default true. */
  write?: boolean;
  /** Called after each batch size is done. */
  onPoint?: (point: OrdersTransformFigures['points'][number]) => void;
}

export type TransformBenchResult = ResultOf<'orders-transform', OrdersTransformFigures>;

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Seconds to transform every batch once. */
function timeRound(fn: TransformFn, batches: readonly Order[][], lookup: LookupResult): number {
  const start = performance.now();
  let rows = 0;
  for (const batch of batches) rows += fn(batch, lookup).length;
  const secs = (performance.now() - start) / 1000;
  if (rows !== batches.reduce((sum, b) => sum + b.length, 0)) throw new Error('transform lost rows');
  return secs;
}

/** Timings of both implementations, per batch size (pure arithmetic). */
export function summarizeRounds(secs: readonly number[], orders: number, batches: number): TransformTiming {
  const rates = secs.map((s) => orders / s);
  return {
    medianOrdersPerSec: Math.round(median(rates)),
    minOrdersPerSec: Math.round(Math.min(...rates)),
    maxOrdersPerSec: Math.round(Math.max(...rates)),
    medianBatchMs: Number(((median(secs) * 1000) / batches).toFixed(4)),
  };
}

/**
 * Times transformBatch and transformBatchPolars on the same batches: warm-up rounds, then
 * `rounds` timed rounds of `ordersPerRound` orders each, the two implementations
 * alternating (which goes first swaps every round, so drift in the machine's load falls
 * on both). Checks first that both give identical columns. Writes
 * bench/results/orders-transform-<timestamp>.json unless `write` is false.
 */
export async function runTransformBench(options: TransformBenchOptions = {}): Promise<{ result: TransformBenchResult; path: string | null }> {
  const batchSizes = options.batchSizes ?? [100, 500, 1000, 5000, 10000];
  const rounds = options.rounds ?? 7;
  const warmupRounds = options.warmupRounds ?? 2;
  const ordersPerRoundWanted = options.ordersPerRound ?? 50_000;
  const seed = options.seed ?? 1;
  for (const b of batchSizes) if (!Number.isInteger(b) || b < 1) throw new Error(`batchSizes: ${b} is not a positive integer`);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`rounds: ${rounds} is not a positive integer`);
  if (!Number.isInteger(warmupRounds) || warmupRounds < 0) throw new Error(`warmupRounds: ${warmupRounds} is not a non-negative integer`);
  if (!Number.isInteger(ordersPerRoundWanted) || ordersPerRoundWanted < 1) throw new Error(`ordersPerRound: ${ordersPerRoundWanted} is not a positive integer`);

  const started = new Date();
  const machine = hostMachine();
  const polars = await loadPolarsTransform();
  const lookup = sampleLookup();
  const impls: Array<[name: 'typescript' | 'polars', fn: TransformFn]> = [
    ['typescript', transformBatch],
    ['polars', polars.transform],
  ];
  const points: OrdersTransformFigures['points'] = [];
  for (const batchSize of batchSizes) {
    const count = Math.ceil(ordersPerRoundWanted / batchSize);
    const orders = sampleOrders(count * batchSize, { seed });
    const batches: Order[][] = [];
    for (let i = 0; i < count; i++) batches.push(orders.slice(i * batchSize, (i + 1) * batchSize));
    if (!isDeepStrictEqual(transformBatch(batches[0]!, lookup), polars.transform(batches[0]!, lookup))) {
      throw new Error(`the two transforms disagree on a batch of ${batchSize}`);
    }
    const secs: Record<'typescript' | 'polars', number[]> = { typescript: [], polars: [] };
    for (let r = 0; r < warmupRounds + rounds; r++) {
      const order = r % 2 === 0 ? impls : [...impls].reverse();
      for (const [name, fn] of order) {
        const s = timeRound(fn, batches, lookup);
        if (r >= warmupRounds) secs[name].push(s);
      }
    }
    const typescript = summarizeRounds(secs.typescript, orders.length, count);
    const pol = summarizeRounds(secs.polars, orders.length, count);
    const point = {
      batchSize,
      ordersPerRound: orders.length,
      typescript,
      polars: pol,
      typescriptSpeedup: Number((typescript.medianOrdersPerSec / pol.medianOrdersPerSec).toFixed(2)),
    };
    points.push(point);
    options.onPoint?.(point);
  }
  const faster: OrdersTransformFigures['faster'] = points.every((p) => p.typescriptSpeedup > 1) ? 'typescript' : points.every((p) => p.typescriptSpeedup < 1) ? 'polars' : 'mixed';
  const result = buildResult('orders-transform', {
    at: started,
    machine,
    settings: {
      batchSizes,
      rounds,
      warmupRounds,
      ordersPerRound: ordersPerRoundWanted,
      seed,
      missRate: 0.02,
      badTimestampRate: 0.01,
      lookup: { products: lookup.products.size, currencies: lookup.currencies.size, zipCodes: lookup.zipCodes.size },
      nodejsPolars: polars.version,
    },
    figures: { points, faster },
    wallSecs: (Date.now() - started.getTime()) / 1000,
  });
  const path = options.write === false ? null : writeResult(options.resultsDir ?? defaultResultsDir(), result);
  return { result, path };
}
