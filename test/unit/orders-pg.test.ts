import { describe, expect, it } from 'vitest';
import {
  copyNumberField,
  copyTextField,
  STAGING_COPY_COLUMNS,
  stagingBatchProblem,
  stagingCopyChunks,
  stagingCopyLine,
  utcTimestampOrNull,
} from '../../src/orders/pg/copy-text.js';
import { malformedOrderId, promoteResult } from '../../src/orders/pg/promote.js';
import { REFERENCE_DATA } from '../../src/orders/seed.js';
import type { StagingColumns } from '../../src/orders/types.js';

function columns(n: number, overrides: Partial<StagingColumns> = {}): StagingColumns {
  const fill = <T>(v: T) => Array.from({ length: n }, () => v);
  return {
    length: n,
    order_id: Array.from({ length: n }, (_, i) => `o${i}`),
    customer_id: fill('C1'),
    product_id: fill('P001'),
    quantity: fill(2),
    currency: fill('EUR'),
    zip_code: fill('02108'),
    order_ts: fill<string | null>('2026-11-22T10:15:00.000Z'),
    category: fill<string | null>('Electronics'),
    unit_price: fill<number | null>(249.99),
    line_total: fill<number | null>(462.94),
    rate_to_usd: fill<number | null>(1.08),
    total_usd: fill<number | null>(499.98),
    shipping_zone: fill<string | null>('zone-6'),
    region: fill<string | null>('Northeast'),
    ...overrides,
  };
}

describe('COPY text encoding', () => {
  it('escapes backslash, tab, newline and carriage return, and writes NULL as \\N', () => {
    expect(copyTextField(null)).toBe('\\N');
    expect(copyTextField('')).toBe('');
    expect(copyTextField('plain text, "quotes", \'single\', café 🚀')).toBe('plain text, "quotes", \'single\', café 🚀');
    expect(copyTextField('a\tb\nc\rd\\e')).toBe('a\\tb\\nc\\rd\\\\e');
    expect(copyTextField('\\N')).toBe('\\\\N');
    expect(copyTextField('ends with \\')).toBe('ends with \\\\');
  });

  it('writes finite numbers as they print and non-finite ones as NULL', () => {
    expect(copyNumberField(3)).toBe('3');
    expect(copyNumberField(-0.0067)).toBe('-0.0067');
    expect(copyNumberField(1e21)).toBe('1e+21');
    expect(copyNumberField(null)).toBe('\\N');
    expect(copyNumberField(Number.NaN)).toBe('\\N');
    expect(copyNumberField(Number.POSITIVE_INFINITY)).toBe('\\N');
  });

  it('keeps only ISO 8601 UTC timestamps that name a real instant', () => {
    expect(utcTimestampOrNull('2026-11-22T10:15:00.000Z')).toBe('2026-11-22T10:15:00.000Z');
    expect(utcTimestampOrNull('2026-11-22T10:15:00Z')).toBe('2026-11-22T10:15:00Z');
    expect(utcTimestampOrNull('2024-02-29T23:59:59.999999Z')).toBe('2024-02-29T23:59:59.999999Z');
    expect(utcTimestampOrNull('0001-01-01T00:00:00Z')).toBe('0001-01-01T00:00:00Z');
    for (const bad of [
      '2023-02-29T00:00:00Z',
      '2026-04-31T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-00-10T00:00:00Z',
      '2026-01-00T00:00:00Z',
      '2026-01-01T24:00:00Z',
      '2026-01-01T23:60:00Z',
      '2026-01-01T23:59:60Z',
      '0000-01-01T00:00:00Z',
      '2026-01-01T00:00:00',
      '2026-01-01T00:00:00+01:00',
      '2026-01-01 00:00:00Z',
      '2026-01-01T00:00:00.1234567Z',
      'yesterday',
      '',
    ]) {
      expect(utcTimestampOrNull(bad), bad).toBeNull();
    }
    expect(utcTimestampOrNull(null)).toBeNull();
  });

  it('encodes one staging row per line, in STAGING_COPY_COLUMNS order', () => {
    const line = stagingCopyLine(copyTextField('batch-1'), columns(1), 0);
    expect(line.endsWith('\n')).toBe(true);
    const fields = line.slice(0, -1).split('\t');
    expect(fields).toHaveLength(STAGING_COPY_COLUMNS.length);
    expect(Object.fromEntries(STAGING_COPY_COLUMNS.map((c, i) => [c, fields[i]]))).toEqual({
      batch_id: 'batch-1',
      order_id: 'o0',
      customer_id: 'C1',
      product_id: 'P001',
      quantity: '2',
      currency: 'EUR',
      zip_code: '02108',
      order_ts: '2026-11-22T10:15:00.000Z',
      category: 'Electronics',
      unit_price: '249.99',
      line_total: '462.94',
      rate_to_usd: '1.08',
      total_usd: '499.98',
      shipping_zone: 'zone-6',
      region: 'Northeast',
      stage_error: '\\N',
    });
  });

  it('stages what the table cannot hold as given, with a stage_error', () => {
    const cols = columns(1, {
      order_id: ['x\u0000y'],
      region: ['a\u0000\tb'],
      quantity: [Number.NaN],
      order_ts: ['2026-02-30T00:00:00Z'],
      unit_price: [Number.POSITIVE_INFINITY],
    });
    const fields = stagingCopyLine('b', cols, 0).slice(0, -1).split('\t');
    const row = Object.fromEntries(STAGING_COPY_COLUMNS.map((c, i) => [c, fields[i]]));
    expect(row).toMatchObject({
      order_id: 'x\uFFFDy',
      region: 'a\uFFFD\\tb',
      quantity: '\\N',
      order_ts: '\\N',
      unit_price: '\\N',
      stage_error:
        'order_id contains NUL characters (staged as U+FFFD); region contains NUL characters (staged as U+FFFD); quantity is not a finite number (NaN)',
    });
  });

  it('splits a batch into chunks of whole lines', () => {
    const cols = columns(1000);
    const chunks = [...stagingCopyChunks('b', cols, 4096)];
    expect(chunks.length).toBeGreaterThan(10);
    for (const c of chunks) expect(c.endsWith('\n')).toBe(true);
    const lines = chunks.join('').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(1000);
    expect(lines[999]!.split('\t')[1]).toBe('o999');
    expect([...stagingCopyChunks('b', columns(0))]).toEqual([]);
  });

  it('names what makes a batch unstageable', () => {
    expect(stagingBatchProblem('b', columns(3))).toBeNull();
    expect(stagingBatchProblem('', columns(3))).toBe('the batch id is empty');
    expect(stagingBatchProblem('a\u0000', columns(3))).toBe('the batch id contains NUL characters');
    expect(stagingBatchProblem('b', { ...columns(3), length: 4 })).toBe('column order_id has 3 values, length is 4');
    expect(stagingBatchProblem('b', { ...columns(3), length: -1 })).toBe('length -1 is not a non-negative integer');
    expect(stagingBatchProblem('b', columns(3, { total_usd: [1, 2] }))).toBe('column total_usd has 2 values, length is 3');
  });
});

describe('promote helpers', () => {
  it('builds PromoteResult: duplicates are valid rows not inserted; reasons in REJECT_REASONS order, zeros left out', () => {
    expect(
      promoteResult({ staged: 10, valid: 7, promoted: 5, rejected: { bad_timestamp: 1, unknown_zip: 2, malformed: 0 } }),
    ).toEqual({ promoted: 5, duplicates: 2, rejected: { unknown_zip: 2, bad_timestamp: 1 }, staged: 10 });
    expect(Object.keys(promoteResult({ staged: 3, valid: 0, promoted: 0, rejected: { bad_timestamp: 1, malformed: 2 } }).rejected)).toEqual([
      'malformed',
      'bad_timestamp',
    ]);
  });

  it('finds the order_id a malformed item still names', () => {
    expect(malformedOrderId('{"order_id":"o1","quantity":"x"}')).toBe('o1');
    expect(malformedOrderId('{"order_id":7}')).toBeNull();
    expect(malformedOrderId('{"order_id":""}')).toBeNull();
    expect(malformedOrderId('["order_id"]')).toBeNull();
    expect(malformedOrderId('not json')).toBeNull();
  });
});

describe('reference sample data', () => {
  it('has unique keys and well-formed values', () => {
    const { products, currencies, zipCodes } = REFERENCE_DATA;
    expect(new Set(products.map((p) => p.product_id)).size).toBe(products.length);
    expect(new Set(products.map((p) => p.sku)).size).toBe(products.length);
    expect(new Set(products.map((p) => p.category)).size).toBe(8);
    for (const p of products) {
      expect(p.product_id).toMatch(/^P\d{3}$/);
      expect(Math.round(p.unit_price * 100) / 100).toBe(p.unit_price);
      expect(p.unit_price).toBeGreaterThan(0);
    }
    expect(new Set(currencies.map((c) => c.code)).size).toBe(currencies.length);
    expect(currencies.find((c) => c.code === 'USD')?.rate_to_usd).toBe(1);
    for (const c of currencies) expect(c.rate_to_usd).toBeGreaterThan(0);
    expect(new Set(zipCodes.map((z) => z.zip_code)).size).toBe(zipCodes.length);
    for (const z of zipCodes) expect(z.zip_code).toMatch(/^\d{5}$/);
    expect(zipCodes.find((z) => z.zip_code === '02108')).toEqual({ zip_code: '02108', city: 'Boston, MA', region: 'Northeast', shipping_zone: 'zone-6' });
  });
});
