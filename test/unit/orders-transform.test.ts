import { describe, expect, it } from 'vitest';
import { sampleLookup, sampleOrders, summarizeRounds } from '../../src/bench/orders-transform.js';
import { MAX_FIELD_LENGTH, normaliseTimestamp, parseOrder, parseOrders, roundHalfAwayFromZero, transformBatch } from '../../src/orders/transform.js';
import { POLARS_ROWS_UP_TO, transformBatchPolars } from '../../src/bench/orders-transform-polars.js';
import type { LookupResult, Order } from '../../src/orders/types.js';
import { malformedOrderId } from '../../src/orders/pg/promote.js';

const good = {
  order_id: 'o-1',
  customer_id: 'c-1',
  product_id: 'P0001',
  quantity: 3,
  currency: 'EUR',
  zip_code: '02134',
  order_timestamp: '2026-11-22T17:01:45.571Z',
};
const json = (v: unknown) => JSON.stringify(v);
const errorOf = (raw: string) => {
  const r = parseOrder(raw);
  return 'error' in r ? r.error : null;
};

describe('parseOrders', () => {
  it('caps string lengths: a 3 kB order_id (past the btree entry limit) is malformed with a clear error, and its row keeps no order_id', () => {
    const base = { order_id: 'o-1', customer_id: 'c', product_id: 'P001', quantity: 1, currency: 'USD', zip_code: '10001', order_timestamp: 0 };
    const long = 'x'.repeat(3000);
    const raw = JSON.stringify({ ...base, order_id: long });
    expect(parseOrder(raw)).toEqual({ error: 'order_id: longer than 128 characters (3000)' });
    expect(malformedOrderId(raw)).toBeNull();
    for (const field of ['customer_id', 'product_id', 'zip_code', 'currency'] as const) {
      const max = MAX_FIELD_LENGTH[field];
      expect(parseOrder(JSON.stringify({ ...base, [field]: 'a'.repeat(max) }))).not.toHaveProperty('error');
      expect(parseOrder(JSON.stringify({ ...base, [field]: 'a'.repeat(max + 1) }))).toEqual({ error: `${field}: longer than ${max} characters (${max + 1})` });
    }
    expect(MAX_FIELD_LENGTH.currency).toBe(16);
  });

  it('keeps well-formed orders, in order, with only the Order fields', () => {
    const second = { ...good, order_id: 'o-2', order_timestamp: 1795366905571, extra: 'dropped' };
    const { orders, malformed } = parseOrders([json(good), json(second)]);
    expect(malformed).toEqual([]);
    expect(orders).toEqual([good, { ...good, order_id: 'o-2', order_timestamp: 1795366905571 }]);
    expect(Object.keys(orders[1]!)).not.toContain('extra');
  });

  it('refuses text that is not JSON', () => {
    expect(errorOf('{"order_id":')).toMatch(/^invalid JSON: /);
    expect(errorOf('')).toMatch(/^invalid JSON: /);
  });

  it('refuses JSON that is not an object', () => {
    expect(errorOf('null')).toBe('expected a JSON object, got null');
    expect(errorOf('[1,2]')).toBe('expected a JSON object, got an array');
    expect(errorOf('42')).toBe('expected a JSON object, got number 42');
    expect(errorOf('"order"')).toBe('expected a JSON object, got string "order"');
  });

  it.each(['order_id', 'customer_id', 'product_id', 'currency', 'zip_code'])('refuses a %s that is missing, empty or not a string', (field) => {
    expect(errorOf(json({ ...good, [field]: undefined }))).toBe(`${field}: expected a non-empty string, got nothing`);
    expect(errorOf(json({ ...good, [field]: '' }))).toBe(`${field}: expected a non-empty string, got string ""`);
    expect(errorOf(json({ ...good, [field]: null }))).toBe(`${field}: expected a non-empty string, got null`);
    expect(errorOf(json({ ...good, [field]: 2134 }))).toBe(`${field}: expected a non-empty string, got number 2134`);
    expect(errorOf(json({ ...good, [field]: { a: 1 } }))).toBe(`${field}: expected a non-empty string, got an object`);
  });

  it('refuses a quantity that is not an integer number, numeric strings included', () => {
    expect(errorOf(json({ ...good, quantity: 2.5 }))).toBe('quantity: expected an integer, got number 2.5');
    expect(errorOf(json({ ...good, quantity: '3' }))).toBe('quantity: expected an integer, got string "3"');
    expect(errorOf(json({ ...good, quantity: null }))).toBe('quantity: expected an integer, got null');
    expect(errorOf(json({ ...good, quantity: undefined }))).toBe('quantity: expected an integer, got nothing');
    expect(errorOf(json({ ...good, quantity: true }))).toBe('quantity: expected an integer, got boolean true');
    expect(errorOf('{"order_id":"o","customer_id":"c","product_id":"p","quantity":1e300,"currency":"EUR","zip_code":"1","order_timestamp":1}')).toBe(
      'quantity: expected an integer, got number 1e+300',
    );
  });

  it('lets zero and negative quantities through (promote rejects them with their reason)', () => {
    expect(parseOrders([json({ ...good, quantity: 0 }), json({ ...good, quantity: -2 })]).orders.map((o) => o.quantity)).toEqual([0, -2]);
  });

  it('refuses an order_timestamp that is neither a string nor a number, and leaves judging its value to the transform', () => {
    expect(errorOf(json({ ...good, order_timestamp: null }))).toBe('order_timestamp: expected a string or a number, got null');
    expect(errorOf(json({ ...good, order_timestamp: undefined }))).toBe('order_timestamp: expected a string or a number, got nothing');
    expect(errorOf(json({ ...good, order_timestamp: false }))).toBe('order_timestamp: expected a string or a number, got boolean false');
    expect(errorOf(json({ ...good, order_timestamp: ['2026'] }))).toBe('order_timestamp: expected a string or a number, got an array');
    expect(errorOf(json({ ...good, order_timestamp: 'not a time' }))).toBeNull();
  });

  it('names every problem of an order, and keeps the raw text of malformed items', () => {
    const raw = json({ order_id: 'o', quantity: '1' });
    const { orders, malformed } = parseOrders([raw, json(good), 'nope']);
    expect(orders).toHaveLength(1);
    expect(malformed).toHaveLength(2);
    expect(malformed[0]).toEqual({
      raw,
      error: [
        'customer_id: expected a non-empty string, got nothing',
        'product_id: expected a non-empty string, got nothing',
        'currency: expected a non-empty string, got nothing',
        'zip_code: expected a non-empty string, got nothing',
        'quantity: expected an integer, got string "1"',
        'order_timestamp: expected a string or a number, got nothing',
      ].join('; '),
    });
    expect(malformed[1]!.raw).toBe('nope');
    expect(malformed[1]!.error).toMatch(/^invalid JSON/);
  });

  it('shortens long values in errors', () => {
    expect(errorOf(json({ ...good, quantity: 'x'.repeat(100) }))).toBe(`quantity: expected an integer, got string "${'x'.repeat(36)}...`);
  });
});

describe('normaliseTimestamp', () => {
  it.each<[string | number, string | null]>([
    ['2026-11-22T17:01:45.571Z', '2026-11-22T17:01:45.571Z'],
    ['2026-11-22T17:01:45Z', '2026-11-22T17:01:45.000Z'],
    ['2026-11-22T17:01:45.5Z', '2026-11-22T17:01:45.500Z'],
    ['2026-11-22T17:01:45.999999999Z', '2026-11-22T17:01:45.999Z'], // truncated, not rounded
    ['2026-11-22T17:01:45+05:30', '2026-11-22T11:31:45.000Z'],
    ['2026-11-22T17:01:45.25-0800', '2026-11-23T01:01:45.250Z'],
    ['2026-11-22T00:30:00+01:00', '2026-11-21T23:30:00.000Z'],
    ['2026-11-22T17:01:45.571234', '2026-11-22T17:01:45.571Z'], // no offset: UTC
    ['2026-11-22 17:01:45.571234', '2026-11-22T17:01:45.571Z'],
    ['2024-02-29T12:00:00Z', '2024-02-29T12:00:00.000Z'],
    [1795366905571, '2026-11-22T17:01:45.571Z'],
    ['1795366905571', '2026-11-22T17:01:45.571Z'],
    [946684800000, '2000-01-01T00:00:00.000Z'],
    ['2100-12-31T23:59:59.999Z', '2100-12-31T23:59:59.999Z'],
    // refused
    ['2000-01-01T00:30:00+01:00', null], // 1999 in UTC
    ['1999-12-31T23:59:59.999Z', null],
    ['2101-01-01T00:00:00Z', null],
    [4133980800000, null], // 2101-01-01
    [0, null],
    [-1, null],
    [1795366905571.5, null], // a fraction of a ms is refused, not truncated
    [1e21, null],
    ['1795366905571.5', null],
    ['+1795366905571', null],
    ['2026-02-30T10:00:00Z', null],
    ['2025-02-29T10:00:00Z', null],
    ['2026-13-01T10:00:00Z', null],
    ['2026-00-10T10:00:00Z', null],
    ['2026-11-22T24:00:00Z', null],
    ['2026-11-22T10:60:00Z', null],
    ['2026-11-22T10:00:60Z', null], // no leap second
    ['2026-11-22T10:00:00+24:00', null],
    ['2026-11-22T10:00:00.1234567890Z', null], // at most 9 fraction digits
    ['2026-11-22T10:00', null],
    ['2026-11-22', null],
    ['2026-11-22t10:00:00z', null],
    [' 2026-11-22T10:00:00Z', null],
    ['٢٠٢٦-11-22T10:00:00Z', null],
    ['Sun, 22 Nov 2026 10:00:00 GMT', null],
    ['', null],
    ['garbage', null],
  ])('%j → %j', (input, expected) => {
    expect(normaliseTimestamp(input)).toBe(expected);
  });
});

describe('roundHalfAwayFromZero', () => {
  it('rounds ties away from zero and never gives -0', () => {
    expect([0.5, 1.5, 2.5, -0.5, -2.5, 2.4999, -2.4999].map(roundHalfAwayFromZero)).toEqual([1, 2, 3, -1, -3, 2, -2]);
    expect(Object.is(roundHalfAwayFromZero(-0.3), 0)).toBe(true);
  });
});

function lookupOf(parts: { products?: Array<[string, number]>; currencies?: Array<[string, number]>; zips?: string[] }): LookupResult {
  return {
    version: 7,
    products: new Map((parts.products ?? []).map(([id, price]) => [id, { product_id: id, sku: `S-${id}`, name: id, category: `cat-${id}`, unit_price: price }])),
    currencies: new Map((parts.currencies ?? []).map(([code, rate]) => [code, { code, rate_to_usd: rate }])),
    zipCodes: new Map((parts.zips ?? []).map((z) => [z, { zip_code: z, city: `city-${z}`, region: `region-${z}`, shipping_zone: `zone-${z}` }])),
  };
}

const order = (o: Partial<Order>): Order => ({ ...good, ...o });

describe('transformBatch', () => {
  const lookup = lookupOf({
    products: [
      ['P1', 19.99],
      ['P2', 0.1],
      ['P3', 0.01],
      ['P4', 1234.56],
    ],
    currencies: [
      ['USD', 1],
      ['EUR', 1.08],
      ['JPY', 0.0067],
      ['TWO', 2],
      ['ZERO', 0],
    ],
    zips: ['02134'],
  });

  it('passes the order fields through and attaches category, shipping zone and region', () => {
    const cols = transformBatch([order({ product_id: 'P1', currency: 'USD' })], lookup);
    expect(cols).toEqual({
      length: 1,
      order_id: ['o-1'],
      customer_id: ['c-1'],
      product_id: ['P1'],
      quantity: [3],
      currency: ['USD'],
      zip_code: ['02134'],
      order_ts: ['2026-11-22T17:01:45.571Z'],
      category: ['cat-P1'],
      unit_price: [19.99],
      line_total: [59.97],
      rate_to_usd: [1],
      total_usd: [59.97],
      shipping_zone: ['zone-02134'],
      region: ['region-02134'],
    });
  });

  it('computes totals in integer cents: no float drift', () => {
    const cols = transformBatch(
      [
        order({ product_id: 'P2', quantity: 3, currency: 'USD' }), // 0.1 × 3 is 0.30000000000000004 in floats
        order({ product_id: 'P4', quantity: 7, currency: 'USD' }),
        order({ product_id: 'P1', quantity: 1_000_000, currency: 'USD' }),
      ],
      lookup,
    );
    expect(cols.total_usd).toEqual([0.3, 8641.92, 19_990_000]);
    expect(cols.line_total).toEqual([0.3, 8641.92, 19_990_000]);
  });

  it('converts the USD amount into the order currency (÷ rate_to_usd), rounded to cents once', () => {
    const cols = transformBatch(
      [
        order({ product_id: 'P1', quantity: 3, currency: 'EUR' }), // 5997 / 1.08 = 5552.77… cents
        order({ product_id: 'P1', quantity: 3, currency: 'JPY' }), // 5997 / 0.0067 = 895074.62… cents
        order({ product_id: 'P3', quantity: 1, currency: 'TWO' }), // 0.5 cents: a tie, away from zero
        order({ product_id: 'P3', quantity: -1, currency: 'TWO' }),
      ],
      lookup,
    );
    expect(cols.total_usd).toEqual([59.97, 59.97, 0.01, -0.01]);
    expect(cols.line_total).toEqual([55.53, 8950.75, 0.01, -0.01]);
    expect(cols.rate_to_usd).toEqual([1.08, 0.0067, 2, 2]);
  });

  it('gives 0, never -0, for a zero quantity or a rounded-away negative amount', () => {
    const cols = transformBatch([order({ product_id: 'P1', quantity: 0 }), order({ product_id: 'P3', quantity: -1, currency: 'USD' })], lookup);
    expect(Object.is(cols.total_usd[0], 0)).toBe(true);
    expect(Object.is(cols.line_total[0], 0)).toBe(true);
    expect(cols.total_usd[1]).toBe(-0.01);
  });

  it('gives nulls for lookup misses (and unusable rates), and keeps what can still be computed', () => {
    const cols = transformBatch(
      [
        order({ product_id: 'nope', currency: 'EUR' }),
        order({ product_id: 'P1', currency: 'XXX' }),
        order({ product_id: 'P1', currency: 'ZERO' }),
        order({ product_id: 'P1', currency: 'USD', zip_code: '99999' }),
      ],
      lookup,
    );
    expect(cols.category).toEqual([null, 'cat-P1', 'cat-P1', 'cat-P1']);
    expect(cols.unit_price).toEqual([null, 19.99, 19.99, 19.99]);
    expect(cols.total_usd).toEqual([null, 59.97, 59.97, 59.97]);
    expect(cols.rate_to_usd).toEqual([1.08, null, null, 1]); // a zero rate is no rate
    expect(cols.line_total).toEqual([null, null, null, 59.97]);
    expect(cols.shipping_zone).toEqual(['zone-02134', 'zone-02134', 'zone-02134', null]);
    expect(cols.region).toEqual(['region-02134', 'region-02134', 'region-02134', null]);
  });

  it('normalises timestamps per row, null when refused', () => {
    const cols = transformBatch(
      [order({ order_timestamp: '2026-11-22T17:01:45+05:30' }), order({ order_timestamp: 1795366905571 }), order({ order_timestamp: 'soon' })],
      lookup,
    );
    expect(cols.order_ts).toEqual(['2026-11-22T11:31:45.000Z', '2026-11-22T17:01:45.571Z', null]);
  });

  it('handles an empty batch', () => {
    const cols = transformBatch([], lookup);
    expect(cols.length).toBe(0);
    expect(cols.order_ts).toEqual([]);
  });
});

describe('transformBatchPolars (nodejs-polars)', () => {
  it('gives exactly the columns transformBatch gives, on 5,000 random orders with misses, odd quantities and bad timestamps', () => {
    const lookup = sampleLookup();
    const orders = sampleOrders(5000, { seed: 1, missRate: 0.1, badTimestampRate: 0.1, oddQuantities: true });
    const ts = transformBatch(orders, lookup);
    expect(ts.order_ts.filter((t) => t === null).length).toBeGreaterThan(300);
    expect(ts.category.filter((t) => t === null).length).toBeGreaterThan(100);
    expect(ts.line_total.filter((t) => t === null).length).toBeGreaterThan(200);
    expect(transformBatchPolars(orders, lookup)).toStrictEqual(ts); // in and out of Polars as columns
  });

  it(`gives the same in batches of up to ${POLARS_ROWS_UP_TO} orders (in and out of Polars as rows)`, () => {
    const lookup = sampleLookup();
    const orders = sampleOrders(5000, { seed: 2, missRate: 0.1, badTimestampRate: 0.1, oddQuantities: true });
    for (let i = 0; i < orders.length; i += POLARS_ROWS_UP_TO) {
      const batch = orders.slice(i, i + POLARS_ROWS_UP_TO);
      expect(transformBatchPolars(batch, lookup)).toStrictEqual(transformBatch(batch, lookup));
    }
  });

  it('agrees on the edge cases: bad rates, ties, -0, every timestamp form', () => {
    const lookup = lookupOf({
      products: [
        ['P1', 19.99],
        ['P3', 0.01],
        ['FREE', 0],
      ],
      currencies: [
        ['TWO', 2],
        ['ZERO', 0],
        ['NEG', -1],
        ['INF', Infinity],
      ],
      zips: ['1'],
    });
    const timestamps: Array<string | number> = [
      '2026-11-22T17:01:45.999999999Z',
      '2026-11-22 17:01:45.571234',
      '2026-11-22T17:01:45.25-0800',
      '2026-11-22T00:30:00+01:00',
      '2100-12-31T23:59:59.999Z',
      '2024-02-29T12:00:00Z',
      '2025-02-29T12:00:00Z',
      '2026-11-22T10:00:60Z',
      '2000-01-01T00:30:00+01:00',
      '1795366905571',
      1795366905571,
      1795366905571.5,
      1e21,
      4133980800000,
      946684800000,
      '',
      '+1795366905571',
      '٢٠٢٦-11-22T10:00:00Z',
    ];
    const orders: Order[] = [];
    let i = 0;
    for (const product_id of ['P1', 'P3', 'FREE', 'none']) {
      for (const currency of ['TWO', 'ZERO', 'NEG', 'INF', 'none']) {
        for (const quantity of [-3, -1, 0, 1, 3]) {
          orders.push(order({ order_id: `o${i}`, product_id, currency, quantity, zip_code: i % 2 ? '1' : '2', order_timestamp: timestamps[i % timestamps.length]! }));
          i++;
        }
      }
    }
    expect(transformBatchPolars(orders, lookup)).toStrictEqual(transformBatch(orders, lookup));
    expect(transformBatchPolars([], lookup)).toStrictEqual(transformBatch([], lookup));
    expect(transformBatchPolars(orders, lookupOf({}))).toStrictEqual(transformBatch(orders, lookupOf({})));
  });
});

describe('orders-transform bench helpers', () => {
  it('generates the same orders for the same seed', () => {
    expect(sampleOrders(50, { seed: 3 })).toEqual(sampleOrders(50, { seed: 3 }));
    expect(sampleOrders(50, { seed: 3 })).not.toEqual(sampleOrders(50, { seed: 4 }));
  });

  it('summarises rounds as orders/s (median, min, max) and ms per batch', () => {
    expect(summarizeRounds([2, 1, 4], 1000, 10)).toEqual({ medianOrdersPerSec: 500, minOrdersPerSec: 250, maxOrdersPerSec: 1000, medianBatchMs: 200 });
  });
});
