import { describe, expect, it } from 'vitest';
import { formatOrdersBench, ordersBenchSection } from '../../src/bench/orders-report.js';
import type { OrdersBenchFigures, ResultOf } from '../../src/bench/result.js';
import { formatReasons, parseShare, pipelineOptions } from '../../src/cli/commands/orders.js';
import { parsePositiveInt } from '../../src/cli/commands/produce.js';
import { resolveConfig } from '../../src/config/index.js';
import { isTributaryError } from '../../src/errors.js';
import { revenueEntries } from '../../src/orders/batch.js';
import { INVALID_KINDS, OrderGenerator } from '../../src/orders/generate.js';
import { OrdersPipeline } from '../../src/pipelines/orders.js';
import { formatOrdersStats, type OrdersStats } from '../../src/orders/stats.js';
import { parseOrders } from '../../src/orders/transform.js';
import { stagingColumns } from '../helpers/orders-pg.js';

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (isTributaryError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'no error';
};

describe('OrderGenerator', () => {
  it('is deterministic for a seed, and makes valid JSON orders of the reference data', () => {
    const a = new OrderGenerator({ seed: 42, idPrefix: 'x' }).batch(500);
    const b = new OrderGenerator({ seed: 42, idPrefix: 'x', now: () => 0 }).batch(500);
    expect(a.map((t) => JSON.parse(t).order_id)).toEqual(b.map((t) => JSON.parse(t).order_id));
    const { orders, malformed } = parseOrders(a);
    expect(malformed).toEqual([]);
    expect(new Set(orders.map((o) => o.order_id)).size).toBe(500);
    for (const o of orders) {
      expect(o.product_id).toMatch(/^P0\d\d$/);
      expect(o.quantity).toBeGreaterThanOrEqual(1);
      expect(o.quantity).toBeLessThanOrEqual(5);
      expect(Date.parse(String(o.order_timestamp))).not.toBeNaN();
    }
  });

  it('makes the shares of duplicates (exact repeats) and invalid orders asked for, every invalid kind', () => {
    const g = new OrderGenerator({ seed: 1, duplicates: 0.1, invalid: 0.06 });
    const texts = g.batch(20_000);
    const c = g.counts();
    expect(c.total).toBe(20_000);
    expect(c.duplicates / 20_000).toBeCloseTo(0.1, 1);
    expect(c.invalidTotal / 20_000).toBeCloseTo(0.06, 1);
    expect(Object.keys(c.invalid).sort()).toEqual([...INVALID_KINDS].sort());
    expect(new Set(texts).size).toBe(20_000 - c.duplicates);
    // Malformed texts (and repeats of them) are the ones that do not parse.
    const truncated = texts.filter((t) => !t.endsWith('}')).length;
    expect(truncated).toBeGreaterThanOrEqual(c.invalid.malformed!);
    expect(parseOrders(texts).malformed.length).toBe(truncated);
  });

  it('--burst: one timestamp for every order; bad shares are refused', () => {
    const at = Date.UTC(2026, 10, 22, 12);
    const ts = new Set(new OrderGenerator({ fixedTimestampMs: at }).batch(100).map((t) => JSON.parse(t).order_timestamp));
    expect([...ts]).toEqual(['2026-11-22T12:00:00.000Z']);
    expect(() => new OrderGenerator({ duplicates: 1.5 })).toThrow(/duplicates must be a number in \[0, 1\]/);
    expect(() => new OrderGenerator({ duplicates: 0.6, invalid: 0.6 })).toThrow(/must not exceed 1/);
  });
});

describe('revenueEntries', () => {
  it('keeps the orders the cache found valid, with their time and USD total', () => {
    const cols = stagingColumns([
      { order_id: 'a', order_ts: '2026-11-22T10:00:00.000Z', quantity: 2 },
      { order_id: 'no-product', unit_price: null, category: null },
      { order_id: 'no-zip', shipping_zone: null },
      { order_id: 'zero', quantity: 0 },
      { order_id: 'no-time', order_ts: null },
      { order_id: 'no-rate', rate_to_usd: null },
    ]);
    expect(revenueEntries(cols)).toEqual([{ orderId: 'a', timestampMs: Date.UTC(2026, 10, 22, 10), totalUsd: 499.98 }]);
  });
});

describe('OrdersPipeline options', () => {
  it.each([
    [{ workers: -1 }, /OrdersPipeline workers: must be an integer in \[0, 1000\]/],
    [{ batchSize: 0 }, /OrdersPipeline batchSize/],
    [{ blockMs: 1000, staleMs: 2000 }, /OrdersPipeline staleMs: must be an integer in \[3000, 2147483647\]/],
    // Node fires a timer longer than 2^31-1 ms after 1 ms.
    ...(['blockMs', 'staleMs', 'recoverIntervalMs', 'vacuumIntervalMs', 'viewRefreshMinIntervalMs', 'retryBaseMs', 'retryMaxMs', 'connectTimeoutMs'] as const).map(
      (name): [Record<string, number>, RegExp] => [{ [name]: 2 ** 31 }, new RegExp(`OrdersPipeline ${name}: must be an integer in \\[\\d+, 2147483647\\]`)],
    ),
    [{ workerPrefix: 'a b' }, /OrdersPipeline workerPrefix/],
    [{ databaseUrl: undefined }, /OrdersPipeline databaseUrl/],
  ])('%j → TRIB_ERR_CONFIG_INVALID naming the option', (bad, message) => {
    const options = { redisUrl: 'redis://127.0.0.1:6379', databaseUrl: 'postgres://127.0.0.1/x', ...bad };
    const code = codeOf(() => new OrdersPipeline(options));
    expect(code).toMatch(/^TRIB_ERR_CONFIG_INVALID: /);
    expect(code).toMatch(message);
  });

  it('the CLI maps the settings onto the pipeline', () => {
    const config = resolveConfig({ envFile: false, useServicesState: false, overrides: { ordersWorkers: 3, ordersBatchSize: 700, revenueWindowMin: 5, cacheTtlS: 60, consumerName: 'host' } });
    expect(pipelineOptions(config)).toMatchObject({
      workers: 3,
      batchSize: 700,
      revenueWindowMs: 300_000,
      cacheTtlMs: 60_000,
      schema: 'orders',
      prefix: 'orders',
      dedupWindowSeconds: 3600,
      // The consumer name, the pid and a random run token (unique per pipeline).
      workerPrefix: expect.stringMatching(new RegExp(`^host-${process.pid}-[0-9a-f]{6}$`)),
    });
  });
});

describe('parsePositiveInt (orders generate --count, ...)', () => {
  it('refuses integers past 2^53 with the coded error (1e16 is an integer, but not a safe one)', () => {
    expect(parsePositiveInt('--count', '9007199254740991')).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of ['1e16', '9007199254740992', '0', '1.5', 'many']) {
      expect(codeOf(() => parsePositiveInt('--count', bad))).toBe(`TRIB_ERR_CONFIG_INVALID: invalid setting --count: must be a positive integer (got ${JSON.stringify(bad)})`);
    }
  });
});

describe('orders settings', () => {
  it.each([
    [{ ordersStaleMs: 2000, ordersBlockMs: 1000 }, /ORDERS_STALE_MS \(--orders-stale-ms\): must be at least 1000 and at least three times ORDERS_BLOCK_MS/],
    [{ dedupBucketS: 7200 }, /DEDUP_BUCKET_S \(--dedup-bucket-s\): must not exceed DEDUP_WINDOW_S/],
    [{ dedupWindowS: 100_000, dedupBucketS: 10 }, /DEDUP_BUCKET_S .*at most 1000 buckets/],
    [{ ordersSchema: 'Orders' }, /ORDERS_SCHEMA \(--orders-schema\): must be a lower-case SQL identifier/],
    [{ maxQueueDepth: 0 }, /MAX_QUEUE_DEPTH \(--max-queue-depth\)/],
  ])('%j is refused', (overrides, message) => {
    expect(codeOf(() => resolveConfig({ envFile: false, useServicesState: false, overrides }))).toMatch(message);
  });
});

describe('CLI helpers', () => {
  it('parseShare and formatReasons', () => {
    expect(parseShare('--duplicates', '0.05')).toBe(0.05);
    expect(codeOf(() => parseShare('--duplicates', 'lots'))).toMatch(/TRIB_ERR_CONFIG_INVALID: invalid setting --duplicates: must be a number from 0 to 1 \(got "lots"\)/);
    expect(codeOf(() => parseShare('--invalid', ''))).toMatch(/TRIB_ERR_CONFIG_INVALID/);
    expect(formatReasons({ unknown_zip: 3, malformed: 2 })).toBe('2 malformed, 3 unknown_zip');
    expect(formatReasons({})).toBe('none');
  });
});

function sampleStats(over: Partial<OrdersStats> = {}): OrdersStats {
  return {
    version: 1,
    takenAt: '2026-11-22T18:00:00.000Z',
    prefix: 'orders',
    schema: 'orders',
    redis: {
      prefix: 'orders',
      queue: { length: 120_000, depth: 125_000, processing: 5000, workers: [{ worker: 'vm-1-1', processing: 5000, heartbeatAgeMs: 300 }] },
      dedup: { size: 9500, windowSeconds: 3600, bucketSeconds: 300, buckets: 13 },
      cache: { version: 3, publishedAt: Date.parse('2026-11-22T17:59:00.000Z'), sizes: { products: 48, currencies: 10, zipCodes: 300 }, ttlMs: 3_600_000, expired: false },
      revenue: { orders: 9000, revenueUsd: 1234567.891, fromMs: 0, scanned: 9000, exact: true, windowMs: 900_000 },
    },
    backpressure: { maxQueueDepth: 100_000, engaged: true },
    pipeline: { batches: 4, taken: 20_000, promoted: 18_000, duplicates: 1000, pgDuplicates: 20, rejected: 980, lastBatchAt: Date.parse('2026-11-22T17:59:58.000Z'), flushReasons: { size: 3, caught_up: 1, time: 0 } },
    throughput: { ordersPerSec: 1234.5, windowSecs: 55 },
    postgres: {
      staging: 0,
      orders: 18_000,
      rejected: { unknown_zip: 500, malformed: 480 },
      rejectedTotal: 980,
      products: 48,
      currencies: 10,
      zipCodes: 300,
      views: [
        { view: 'sales_hourly', rows: 8, populated: true, sizeBytes: 32768, lastRefreshedAt: new Date('2026-11-22T17:59:59.000Z'), lastRefreshMs: 15, refreshes: 3 },
        { view: 'product_performance_daily', rows: 48, populated: true, sizeBytes: 32768, lastRefreshedAt: null, lastRefreshMs: null, refreshes: 0 },
      ],
    },
    ...over,
  };
}

describe('formatOrdersStats', () => {
  it('shows every part, backpressure when engaged, and reasons', () => {
    const text = formatOrdersStats(sampleStats());
    for (const line of [
      'ORDERS PIPELINE',
      '  Flushed by:         size 3, caught_up 1',
      '  Waiting:            120,000',
      '  In processing:      5,000 (1 worker)',
      '    - vm-1-1: 5,000 held, heartbeat 300 ms ago',
      '  Depth (backpressure): 125,000 / MAX_QUEUE_DEPTH 100,000  ENGAGED: producers wait',
      'Dedup window: 9,500 order_ids (3600 s, 13 buckets of 300 s)',
      'Lookup cache: version 3, 48 products, 10 currencies, 300 zip codes, published 60.0 s ago, expires in 60 min',
      'Revenue (last 15 min): $1,234,567.89 from 9,000 orders',
      '  Throughput:         1,235 orders/s (last 55 s)',
      '  Last batch:         2.0 s ago',
      '    unknown_zip: 500',
      '    sales_hourly: 8 rows, 32 kB, refreshed 1.0 s ago (15 ms, 3 refreshes)',
      '    product_performance_daily: 48 rows, 32 kB, never refreshed',
    ]) {
      expect(text).toContain(line);
    }
  });

  it('a schema not migrated and a cache never published are said plainly', () => {
    const base = sampleStats();
    const text = formatOrdersStats({
      ...base,
      redis: { ...base.redis, cache: { version: null, publishedAt: null, sizes: null, ttlMs: null, expired: false } },
      postgres: null,
      postgresError: 'schema orders is not migrated (run: tributary orders init-cache --all)',
    });
    expect(text).toContain('Lookup cache: not initialised (run: tributary orders init-cache)');
    expect(text).toContain('Postgres (schema orders): schema orders is not migrated');
  });
});

function sampleResult(): ResultOf<'orders', OrdersBenchFigures> {
  const stage = (stage: OrdersBenchFigures['stages'][number]['stage'], orders: number, secs: number) => ({
    stage,
    orders,
    secs,
    ordersPerSec: Math.round(orders / secs),
    cpuSecs: { node: 1, postgres: 2, redis: 0.5 },
    hostBusyPct: 90,
  });
  return {
    bench: 'orders',
    version: 1,
    at: '2026-11-22T18:00:00.000Z',
    machine: { cores: 2, cpu: 'x', memoryGiB: 24, node: 'v20.20.2', redis: '7.0.15', postgres: '15.20 (Debian)', loadAvg1: 0.8 },
    settings: { total: 1_000_000, workers: 4, batchSize: 5000 },
    figures: {
      orders: { total: 1_000_000, duplicatesGenerated: 50_000, invalidGenerated: 10_000, promoted: 940_000, duplicatesDropped: 45_000, pgDuplicates: 5000, rejected: { unknown_zip: 10_000 }, rejectedTotal: 10_000, inOrders: 940_000, inRejected: 10_000, stagingLeft: 0, queueLeft: 0 },
      stages: [stage('ingest', 1_000_000, 2), stage('promote', 950_000, 10)],
      summary: { ingestion: 500_000, processing: 120_000, staging: 160_000, promotion: 95_000, overall: 30_000 },
      targets: { ingestion: 250_000, processing: 100_000, staging: 150_000, promotion: 100_000 },
      processingSecs: 8.3,
      overallSecs: 33.3,
      views: [{ view: 'sales_hourly', rows: 100, ms: 250 }],
      pipeline: { orders: 1_000_000, workers: 4, batchSize: 5000, secs: 25, ordersPerSec: 40_000, promoted: 940_000, duplicatesDropped: 45_000, pgDuplicates: 5000, rejected: 10_000, retries: 0, cpuSecs: { node: 12, postgres: 30 } },
    },
  };
}

describe('orders benchmark text', () => {
  it('the CLI table says which targets are met', () => {
    const text = formatOrdersBench(sampleResult(), 'bench/results/orders-x.json');
    expect(text).toMatch(/^ingest +1,000,000 +2\.00 +500,000  1\.0 \/ 2\.0 \/ 0\.5 +90%$/m);
    expect(text).toMatch(/ingestion +500,000 +target 250,000 +met/);
    expect(text).toMatch(/promotion +95,000 +target 100,000 +NOT met \(95%\)/);
    expect(text).toContain('End to end (OrdersPipeline, 4 workers × 5,000, all stages overlapping): 40,000 orders/s');
    expect(text).toContain('result: bench/results/orders-x.json');
  });

  it('the README section lists every orders result and the latest one’s stages; nothing without results', () => {
    expect(ordersBenchSection([{ file: 'drain-x.json', result: { bench: 'drain' } }], 'bench/results')).toEqual([]);
    const lines = ordersBenchSection([{ file: 'orders-a.json', result: sampleResult() }], 'bench/results');
    expect(lines.join('\n')).toContain('| [orders-a.json](bench/results/orders-a.json) | 1,000,000 | 4 × 5,000 | 500,000 | 120,000 | 160,000 | 95,000 | 30,000 | 40,000 |');
    expect(lines.join('\n')).toContain('| promote | 950,000 | 10.00 | 95,000 | 1.0 / 2.0 / 0.5 | 90% |');
  });
});
