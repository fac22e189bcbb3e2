import pl from 'nodejs-polars';
import { EARLIEST_ORDER_MS, END_ORDER_MS, EPOCH_MS_PATTERN, ISO_TIMESTAMP_PATTERN } from '../orders/transform.js';
import type { LookupResult, Order, StagingColumns } from '../orders/types.js';

/**
 * The orders transform in nodejs-polars, as the Python original did it: orders into a
 * DataFrame, left joins on the lookup tables, computed columns, and back to the plain
 * arrays COPY needs. Same contract and same output as transformBatch in
 * src/orders/transform.ts (the unit test checks they are identical, row order included).
 * It exists only for the measurement that chose between them (./orders-transform.ts):
 * the pipeline does not load it, and nodejs-polars is a devDependency.
 */

const { col, lit, when } = pl;

/** A real column of 100s, sent in with the orders: see centsToUnits. (`lit(100)`, even one made into a column by withColumns, is folded back into a scalar.) */
const HUNDRED = '__hundred';

const OUTPUT = ['order_ts', 'category', 'unit_price', 'line_total', 'rate_to_usd', 'total_usd', 'shipping_zone', 'region'] as const;

/** The lookup tables' columns and types; 'key' joins on the order column `on`. */
const LOOKUP_SCHEMAS = {
  products: { on: 'product_id', columns: { key: pl.Utf8, category: pl.Utf8, unit_price: pl.Float64 } },
  currencies: { on: 'currency', columns: { key: pl.Utf8, rate_to_usd: pl.Float64 } },
  zips: { on: 'zip_code', columns: { key: pl.Utf8, shipping_zone: pl.Utf8, region: pl.Utf8 } },
} as const;
type LookupName = keyof typeof LOOKUP_SCHEMAS;

/**
 * Batches up to this many orders go into and out of Polars as rows (pl.readRecords,
 * toRecords: one native call each), larger ones as columns (a Series per column): every
 * nodejs-polars wrapper object costs about half a millisecond, which dominates small
 * batches, while rows cost more per order. Chosen by measurement on this machine.
 */
export const POLARS_ROWS_UP_TO = 1000;

/** -0 → 0. (Polars simplifies `x + 0` away, so the TypeScript's `+ 0` is a comparison here.) */
function noNegativeZero(x: pl.Expr): pl.Expr {
  return when(x.eq(0)).then(lit(0)).otherwise(x);
}

/** round half away from zero, as roundHalfAwayFromZero in src/orders/transform.ts, op for op. */
function roundHalfAway(x: pl.Expr): pl.Expr {
  const r = x.abs().add(0.5).floor();
  return noNegativeZero(when(x.lt(0)).then(r.mul(-1)).otherwise(r));
}

/**
 * cents → units. Not `.div(100)`: Polars divides by a scalar as a multiplication by its
 * reciprocal, which is not correctly rounded (1999 × 0.01 = 19.990000000000002); a
 * column ÷ column division is, as in JavaScript.
 */
function centsToUnits(cents: pl.Expr): pl.Expr {
  return cents.div(col(HUNDRED));
}

/**
 * The computed columns, stage by stage (each stage reads only columns of earlier ones):
 * order_timestamp text → order_ts by the rules of normaliseTimestamp, and the money model
 * of src/orders/transform.ts op for op. Built once: every nodejs-polars expression object is costly.
 */
function buildStages(): pl.Expr[][] {
  const ts = col('order_timestamp');
  const part = (group: number) => ts.str.extract(ISO_TIMESTAMP_PATTERN, group);
  const rate = col('rate_to_usd');
  const tsMs = col('ts_ms');
  return [
    [
      ts.str.contains(EPOCH_MS_PATTERN).alias('ts_is_epoch'),
      part(1).alias('ts_date'),
      part(2).alias('ts_time'),
      part(3).fillNull(lit('0')).alias('ts_fraction'),
      part(4).fillNull(lit('+0000')).str.replace('Z', '+0000', true).str.replace(':', '', true).alias('ts_offset'),
      roundHalfAway(col('unit_price').mul(100)).alias('price_cents'),
      // A rate that is not a positive finite number is no rate.
      when(rate.gt(0).and(rate.isFinite())).then(rate).otherwise(lit(null)).alias('rate_to_usd'),
    ],
    [
      // One canonical form for strptime: 'T', a fraction, a ±hhmm offset (none or Z → +0000).
      // Null unless the text matched the pattern (date and time are then present).
      pl.concatString([col('ts_date'), lit('T'), col('ts_time'), lit('.'), col('ts_fraction'), col('ts_offset')], '', false).alias('ts_canonical'),
      noNegativeZero(col('quantity').mul(col('price_cents'))).alias('total_cents'),
    ],
    [
      when(col('ts_is_epoch'))
        .then(ts.cast(pl.Int64))
        // strptime yields µs (fractions past µs dropped); the cast to ms truncates, as the TS does.
        .otherwise(col('ts_canonical').str.strptime(pl.Datetime('ms'), '%Y-%m-%dT%H:%M:%S%.f%z').cast(pl.Datetime('ms')).cast(pl.Int64))
        .alias('ts_ms'),
      centsToUnits(col('total_cents')).alias('total_usd'),
      col('total_cents').div(rate).alias('line_cents_exact'),
    ],
    [
      when(tsMs.gtEq(EARLIEST_ORDER_MS).and(tsMs.lt(END_ORDER_MS)))
        .then(tsMs.cast(pl.Datetime('ms')).dt.strftime('%Y-%m-%dT%H:%M:%S%.3fZ'))
        .otherwise(lit(null))
        .alias('order_ts'),
      roundHalfAway(col('line_cents_exact')).alias('line_cents'),
    ],
    [centsToUnits(col('line_cents')).alias('line_total')],
  ];
}

interface Plan {
  stages: pl.Expr[][];
  output: pl.Expr[];
  lookupCasts: Record<LookupName, pl.Expr[]>;
  joinKeys: Record<LookupName, { left: pl.Expr; right: pl.Expr }>;
}
let planned: Plan | undefined;
/**
 * Every expression the transform uses, built on the first call and reused: each
 * nodejs-polars expression object costs about half a millisecond to make (the library
 * wraps each one in a large object of closures), which dominated small batches. A column
 * name given as a string is made into such an object on every call, so none is.
 */
function plan(): Plan {
  const casts = (name: LookupName) => Object.entries(LOOKUP_SCHEMAS[name].columns).map(([n, type]) => col(n).cast(type));
  const keys = (name: LookupName) => ({ left: col(LOOKUP_SCHEMAS[name].on), right: col('key') });
  planned ??= {
    stages: buildStages(),
    output: OUTPUT.map((name) => col(name)),
    lookupCasts: { products: casts('products'), currencies: casts('currencies'), zips: casts('zips') },
    joinKeys: { products: keys('products'), currencies: keys('currencies'), zips: keys('zips') },
  };
  return planned;
}

/** The lookup maps as three small lazy frames (rows in one native call each), with the types the stages expect. */
function lookupFrames(lookup: LookupResult, casts: Record<LookupName, pl.Expr[]>): Record<LookupName, pl.LazyDataFrame> {
  const frame = (name: LookupName, rows: object[]) =>
    (rows.length > 0 ? pl.readRecords(rows) : pl.DataFrame(Object.keys(LOOKUP_SCHEMAS[name].columns).map((n) => pl.Series(n, [], pl.Utf8))))
      .lazy()
      .select(...casts[name]);
  return {
    products: frame(
      'products',
      [...lookup.products.values()].map((p) => ({ key: p.product_id, category: p.category, unit_price: p.unit_price })),
    ),
    currencies: frame(
      'currencies',
      [...lookup.currencies.values()].map((c) => ({ key: c.code, rate_to_usd: c.rate_to_usd })),
    ),
    zips: frame(
      'zips',
      [...lookup.zipCodes.values()].map((z) => ({ key: z.zip_code, shipping_zone: z.shipping_zone, region: z.region })),
    ),
  };
}

/** The Polars twin of transformBatch. Pure (no I/O); loads nodejs-polars. */
export function transformBatchPolars(orders: readonly Order[], lookup: LookupResult): StagingColumns {
  const n = orders.length;
  const orderId = new Array<string>(n);
  const customerId = new Array<string>(n);
  const productId = new Array<string>(n);
  const quantity = new Array<number>(n);
  const currency = new Array<string>(n);
  const zipCode = new Array<string>(n);
  const ts = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const o = orders[i]!;
    orderId[i] = o.order_id;
    customerId[i] = o.customer_id;
    productId[i] = o.product_id;
    quantity[i] = o.quantity;
    currency[i] = o.currency;
    zipCode[i] = o.zip_code;
    // One dtype per column: a number becomes its text ('1.5' and '1e+21' then match neither pattern).
    ts[i] = String(o.order_timestamp);
  }
  // Only what the transform reads goes into the frame; the ids pass through as they are.
  let input: pl.DataFrame;
  const rows = n > 0 && n <= POLARS_ROWS_UP_TO;
  if (rows) {
    const records = new Array<object>(n);
    for (let i = 0; i < n; i++) {
      records[i] = { product_id: productId[i], quantity: quantity[i], currency: currency[i], zip_code: zipCode[i], order_timestamp: ts[i], [HUNDRED]: 100 };
    }
    input = pl.readRecords(records);
  } else {
    input = pl.DataFrame([
      pl.Series('product_id', productId, pl.Utf8),
      pl.Series('quantity', quantity, pl.Float64),
      pl.Series('currency', currency, pl.Utf8),
      pl.Series('zip_code', zipCode, pl.Utf8),
      pl.Series('order_timestamp', ts, pl.Utf8),
      pl.Series(HUNDRED, new Float64Array(n).fill(100), pl.Float64),
    ]);
  }
  const { stages, output, lookupCasts, joinKeys } = plan();
  const frames = lookupFrames(lookup, lookupCasts);
  let query = input.lazy();
  for (const name of ['products', 'currencies', 'zips'] as const) {
    // leftOn/rightOn take expressions at run time (the typings say names only).
    const options = { leftOn: joinKeys[name].left, rightOn: joinKeys[name].right, how: 'left' };
    query = query.join(frames[name], options as unknown as { leftOn: string; rightOn: string; how: 'left' });
  }
  for (const stage of stages) query = query.withColumns(...stage);
  const out = query.select(...output).collectSync();
  // A left join on unique keys keeps the left rows, in order (observed in nodejs-polars
  // 0.24, which has no option to ask for it; the unit test would catch a change): the
  // pass-through columns are the arrays built above, not read back.
  if (out.height !== n) throw new Error(`polars transform: ${out.height} rows out of ${n} in`);
  const result: StagingColumns = {
    length: n,
    order_id: orderId,
    customer_id: customerId,
    product_id: productId,
    quantity,
    currency,
    zip_code: zipCode,
    order_ts: [],
    category: [],
    unit_price: [],
    line_total: [],
    rate_to_usd: [],
    total_usd: [],
    shipping_zone: [],
    region: [],
  };
  if (rows) {
    const records = out.toRecords() as Array<Record<(typeof OUTPUT)[number], never>>;
    for (const name of OUTPUT) result[name] = new Array(n);
    for (let i = 0; i < n; i++) {
      const r = records[i]!;
      for (const name of OUTPUT) result[name][i] = r[name];
    }
  } else {
    for (const name of OUTPUT) result[name] = out.getColumn(name).toArray() as never[];
  }
  return result;
}
