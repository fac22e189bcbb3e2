import type { LookupResult, Order, StagingColumns } from './types.js';

/**
 * The orders pipeline's parse and columnar transform: queue text → Order → StagingColumns.
 * Pure functions, no I/O.
 *
 * The transform is plain TypeScript, one pass over the batch. The Python original used
 * Polars; a nodejs-polars twin with identical output (src/bench/orders-transform-polars.ts)
 * was measured against it (`npm run bench:orders-transform`, results in
 * bench/results/orders-transform-*.json): at batches of 100 to 10,000 orders TypeScript was
 * 2.3× to 25× faster, conversion to and from the DataFrame included (COPY needs plain
 * arrays), and still 1.7× faster at 100,000. Every call into nodejs-polars has a fixed cost
 * of milliseconds, and moving the data across costs more than the arithmetic it saves.
 */

/** One queue item that is not an order, with why. */
export interface MalformedOrder {
  raw: string;
  error: string;
}

export interface ParsedOrders {
  orders: Order[];
  malformed: MalformedOrder[];
}

const STRING_FIELDS = ['order_id', 'customer_id', 'product_id', 'currency', 'zip_code'] as const;

/**
 * Longest accepted value (UTF-16 code units) of each string field. Postgres refuses an
 * index entry over ~2.7 kB (SQLSTATE 54000), and order_id, product_id, currency and
 * zip_code are indexed or joined on: an order past these caps is 'malformed' at parse
 * instead of failing its whole batch's promote.
 */
export const MAX_FIELD_LENGTH: Readonly<Record<(typeof STRING_FIELDS)[number], number>> = {
  order_id: 128,
  customer_id: 128,
  product_id: 128,
  currency: 16,
  zip_code: 128,
};

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  const text = JSON.stringify(value);
  return `${typeof value} ${text.length > 40 ? `${text.slice(0, 37)}...` : text}`;
}

/**
 * One queue item → an Order, or the reasons it is not one (every field checked, problems
 * joined with '; '). Rules, with nothing coerced:
 * - the item is JSON text of an object;
 * - order_id, customer_id, product_id, currency, zip_code are non-empty strings (a zip code
 *   sent as a JSON number is refused: its leading zeros may already be lost) no longer
 *   than MAX_FIELD_LENGTH (currency 16, the others 128);
 * - quantity is a JSON number that is a safe integer. A numeric string ("3") is refused,
 *   not converted. Zero and negative quantities pass: the promote step rejects them as
 *   'non_positive_quantity', keeping the order with its reason;
 * - order_timestamp is a string or a number. Whether it is a valid time is the
 *   transform's call (null → 'bad_timestamp' at promote), not the parser's.
 * Fields not in Order are dropped.
 */
export function parseOrder(raw: string): Order | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    return { error: `invalid JSON: ${(err as Error).message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { error: `expected a JSON object, got ${describe(value)}` };
  }
  const obj = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const field of STRING_FIELDS) {
    const v = obj[field];
    if (typeof v !== 'string' || v.length === 0) problems.push(`${field}: expected a non-empty string, got ${describe(v)}`);
    else if (v.length > MAX_FIELD_LENGTH[field]) problems.push(`${field}: longer than ${MAX_FIELD_LENGTH[field]} characters (${v.length})`);
  }
  const quantity = obj.quantity;
  if (typeof quantity !== 'number' || !Number.isSafeInteger(quantity)) {
    problems.push(`quantity: expected an integer, got ${describe(quantity)}`);
  }
  const ts = obj.order_timestamp;
  if (typeof ts !== 'string' && typeof ts !== 'number') {
    problems.push(`order_timestamp: expected a string or a number, got ${describe(ts)}`);
  }
  if (problems.length > 0) return { error: problems.join('; ') };
  return {
    order_id: obj.order_id as string,
    customer_id: obj.customer_id as string,
    product_id: obj.product_id as string,
    quantity: quantity as number,
    currency: obj.currency as string,
    zip_code: obj.zip_code as string,
    order_timestamp: ts as string | number,
  };
}

/** Queue items → orders, and the malformed ones with their error (in queue order). Pure. */
export function parseOrders(raw: readonly string[]): ParsedOrders {
  const orders: Order[] = [];
  const malformed: MalformedOrder[] = [];
  for (const item of raw) {
    const parsed = parseOrder(item);
    if ('error' in parsed) malformed.push({ raw: item, error: parsed.error });
    else orders.push(parsed);
  }
  return { orders, malformed };
}

/** Round half away from zero to an integer, never giving -0. */
export function roundHalfAwayFromZero(x: number): number {
  const r = Math.floor(Math.abs(x) + 0.5);
  return x < 0 && r !== 0 ? -r : r;
}

/** The earliest instant an order may carry: 2000-01-01T00:00:00.000Z. */
export const EARLIEST_ORDER_MS = Date.UTC(2000, 0, 1);
/** One past the latest instant an order may carry: 2101-01-01T00:00:00.000Z (years 2000–2100). */
export const END_ORDER_MS = Date.UTC(2101, 0, 1);

/**
 * ISO 8601 timestamps the transform accepts (shared with the Polars implementation, so it
 * is written for both JS and Rust regex: [0-9], never \d, which is Unicode in Rust).
 * Groups: 1 date, 2 time, 3 fraction digits, 4 offset.
 */
export const ISO_TIMESTAMP_PATTERN =
  '^([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]((?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])(?:\\.([0-9]{1,9}))?(Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?$';
/** Milliseconds since the epoch as text: an optional minus and 1 to 15 digits. */
export const EPOCH_MS_PATTERN = '^-?[0-9]{1,15}$';

const ISO_TIMESTAMP = new RegExp(ISO_TIMESTAMP_PATTERN);
const EPOCH_MS = new RegExp(EPOCH_MS_PATTERN);

function inRange(ms: number): boolean {
  return ms >= EARLIEST_ORDER_MS && ms < END_ORDER_MS;
}

function isoToMs(text: string): number | null {
  const m = ISO_TIMESTAMP.exec(text);
  if (!m) return null;
  const date = m[1]!;
  const time = m[2]!;
  const year = Number(date.slice(0, 4));
  const month = Number(date.slice(5, 7));
  const day = Number(date.slice(8, 10));
  const fraction = m[3];
  const millis = fraction === undefined ? 0 : Number(fraction.slice(0, 3).padEnd(3, '0')); // truncated, not rounded
  const wall = Date.UTC(year, month - 1, day, Number(time.slice(0, 2)), Number(time.slice(3, 5)), Number(time.slice(6, 8)), millis);
  // Date.UTC rolls 2026-02-30 over into March, and reads years 0–99 as 1900–1999: refuse both.
  const check = new Date(wall);
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) return null;
  const offset = m[4];
  if (offset === undefined || offset === 'Z') return wall;
  const digits = offset.replace(':', '');
  const minutes = Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5));
  return offset[0] === '+' ? wall - minutes * 60_000 : wall + minutes * 60_000;
}

/**
 * An order_timestamp → ISO 8601 UTC with milliseconds (`2026-11-22T17:01:45.571Z`), or null.
 * Accepted:
 * - a number: ms since the epoch, an integer (a fraction is refused, not truncated);
 * - text of an optional minus and 1–15 digits: the same;
 * - ISO 8601 text `YYYY-MM-DD[T| ]hh:mm:ss[.fraction][offset]`: seconds required; the
 *   fraction has 1–9 digits and is truncated to ms; the offset is `Z`, `±hh:mm` or `±hhmm`;
 *   no offset means UTC (what Python's `datetime.utcnow().isoformat()` produces). The date
 *   must exist (no 30 February), hours 00–23, no leap second.
 * Null when nothing above matches, or when the instant is before 2000 or after 2100 (UTC).
 */
export function normaliseTimestamp(value: string | number): string | null {
  let ms: number | null;
  if (typeof value === 'number') ms = Number.isInteger(value) ? value : null;
  else if (EPOCH_MS.test(value)) ms = Number(value);
  else ms = isoToMs(value);
  return ms !== null && inRange(ms) ? new Date(ms).toISOString() : null;
}

/**
 * A batch of orders → StagingColumns, in one pass. Pure. Ids, quantity, currency and zip
 * code pass through; category, shipping_zone and region are attached from the lookup;
 * order_ts is order_timestamp normalised by {@link normaliseTimestamp}.
 *
 * Money model
 * - `Product.unit_price` is the product's list price in USD.
 * - The customer pays in the order's `currency`. `Currency.rate_to_usd` converts an amount
 *   in that currency to USD (amount × rate = USD), so the amount the customer pays is the
 *   USD amount ÷ rate.
 * - All amounts go through integer cents so no float drift accumulates:
 *     price_cents     = round(unit_price × 100)
 *     total_usd_cents = quantity × price_cents                (exact integer)
 *     line_cents      = round(total_usd_cents ÷ rate_to_usd)  (one rounding, from exact cents)
 *     total_usd       = total_usd_cents / 100                 (USD)
 *     line_total      = line_cents / 100                      (the order's currency)
 *   `round` is half away from zero (as Postgres rounds numeric). The guarantee holds while
 *   |quantity × price_cents| < 2^53 (about 90 trillion USD).
 * - Misses: no product → category, unit_price, total_usd and line_total are null. No
 *   currency, or a rate that is not a positive finite number (bad reference data, treated
 *   as no rate) → rate_to_usd and line_total are null; total_usd still holds the USD
 *   amount, which needs only the product. So line_total is null exactly when unit_price or
 *   rate_to_usd is. No zip code → shipping_zone and region are null. The promote step turns
 *   these nulls into reject reasons ('unknown_product', 'unknown_currency', 'unknown_zip').
 */
export function transformBatch(orders: readonly Order[], lookup: LookupResult): StagingColumns {
  const n = orders.length;
  const cols: StagingColumns = {
    length: n,
    order_id: new Array<string>(n),
    customer_id: new Array<string>(n),
    product_id: new Array<string>(n),
    quantity: new Array<number>(n),
    currency: new Array<string>(n),
    zip_code: new Array<string>(n),
    order_ts: new Array<string | null>(n),
    category: new Array<string | null>(n),
    unit_price: new Array<number | null>(n),
    line_total: new Array<number | null>(n),
    rate_to_usd: new Array<number | null>(n),
    total_usd: new Array<number | null>(n),
    shipping_zone: new Array<string | null>(n),
    region: new Array<string | null>(n),
  };
  const { products, currencies, zipCodes } = lookup;
  for (let i = 0; i < n; i++) {
    const o = orders[i]!;
    cols.order_id[i] = o.order_id;
    cols.customer_id[i] = o.customer_id;
    cols.product_id[i] = o.product_id;
    cols.quantity[i] = o.quantity;
    cols.currency[i] = o.currency;
    cols.zip_code[i] = o.zip_code;
    cols.order_ts[i] = normaliseTimestamp(o.order_timestamp);

    const product = products.get(o.product_id);
    const found = currencies.get(o.currency)?.rate_to_usd;
    const rate = found !== undefined && found > 0 && found < Infinity ? found : null;
    cols.rate_to_usd[i] = rate;
    if (product === undefined) {
      cols.category[i] = null;
      cols.unit_price[i] = null;
      cols.total_usd[i] = null;
      cols.line_total[i] = null;
    } else {
      cols.category[i] = product.category;
      cols.unit_price[i] = product.unit_price;
      const totalCents = o.quantity * roundHalfAwayFromZero(product.unit_price * 100) + 0; // + 0: a negative quantity of a free product is 0, not -0
      cols.total_usd[i] = totalCents / 100;
      cols.line_total[i] = rate === null ? null : roundHalfAwayFromZero(totalCents / rate) / 100;
    }

    const zip = zipCodes.get(o.zip_code);
    cols.shipping_zone[i] = zip?.shipping_zone ?? null;
    cols.region[i] = zip?.region ?? null;
  }
  return cols;
}
