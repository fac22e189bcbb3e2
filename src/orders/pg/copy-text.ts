/**
 * COPY ... FROM STDIN (FORMAT text) encoding for the orders staging table. Pure.
 *
 * Text format: one line per row, columns separated by a tab, `\N` for NULL, and inside a
 * value a backslash, tab, newline and carriage return escaped as `\\`, `\t`, `\n`, `\r`.
 * Everything else (quotes, unicode) passes through as UTF-8.
 *
 * One value Postgres text cannot hold is U+0000. A staged row is never allowed to fail
 * the COPY of its whole batch, so such a value is staged with each NUL replaced by
 * U+FFFD and the row carries a `stage_error`; promote rejects it as 'malformed'.
 */
import type { StagingColumns } from '../types.js';



const NEEDS_ESCAPE = /[\\\t\n\r]/;
/** What a text value needs looked at for: an escape, or a NUL. */
const SPECIAL = /[\\\t\n\r\0]/;
const ESCAPABLE = /[\\\t\n\r]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * One value as a COPY text field: null → `\N`; backslash, tab, newline and carriage
 * return escaped. The value must not contain U+0000 (see {@link stagingCopyLine}).
 */
export function copyTextField(value: string | null): string {
  if (value === null) return '\\N';
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPABLE, (c) => ESCAPES[c]!) : value;
}

/** A number as a COPY text field for a numeric column: NaN and ±Infinity become NULL. */
export function copyNumberField(value: number | null): string {
  return value === null || !Number.isFinite(value) ? '\\N' : String(value);
}

/**
 * `YYYY-MM-DDThh:mm:ss[.f{1,6}]Z`: what the transform's normalised timestamps look like,
 * and text Postgres reads as the same instant whatever the session's DateStyle or TimeZone.
 */
const UTC_ISO = /^\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-5]\d(?:\.\d{1,6})?Z$/;

/** Two or four ASCII digits at `at` as a number (the pattern has checked they are digits). */
function digits(text: string, at: number, count: 2 | 4): number {
  let n = 0;
  for (let i = at; i < at + count; i++) n = n * 10 + text.charCodeAt(i) - 48;
  return n;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/**
 * The timestamp if it is ISO 8601 UTC text naming a real instant (no 30 February, no
 * hour 24, no leap second, year ≥ 1), else null. Pure.
 */
export function utcTimestampOrNull(value: string | null): string | null {
  if (value === null || !UTC_ISO.test(value)) return null;
  const year = digits(value, 0, 4);
  const month = digits(value, 5, 2);
  const day = digits(value, 8, 2);
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  return digits(value, 11, 2) > 23 ? null : value;
}

const TEXT_COLUMNS = ['order_id', 'customer_id', 'product_id', 'currency', 'zip_code', 'category', 'shipping_zone', 'region'] as const;

/**
 * Row i of the batch as one COPY text line (with its trailing newline), in
 * {@link STAGING_COPY_COLUMNS} order. Values the staging table cannot hold as given are
 * made stageable and explained in `stage_error`, so promote rejects the row as
 * 'malformed' instead of the COPY failing:
 * - a text value containing U+0000 is staged with U+FFFD in its place;
 * - a quantity that is not a finite number is staged as NULL.
 * Non-finite enrichment numbers are staged as NULL (a lookup miss: promote fills them
 * from the reference tables), and an order_ts that is not ISO 8601 UTC text as NULL
 * (promote rejects it as 'bad_timestamp').
 *
 * `batchIdField` is the batch id already encoded with {@link copyTextField}.
 */
export function stagingCopyLine(batchIdField: string, cols: StagingColumns, i: number): string {
  let problems: string[] | undefined;
  const text = (column: (typeof TEXT_COLUMNS)[number]): string => {
    const value = (cols[column][i] ?? null) as string | null;
    if (value === null) return '\\N';
    if (!SPECIAL.test(value)) return value; // the common case: nothing to escape
    if (value.includes('\0')) {
      (problems ??= []).push(`${column} contains NUL characters (staged as U+FFFD)`);
      return copyTextField(value.replaceAll('\0', '\uFFFD'));
    }
    return copyTextField(value);
  };
  const orderId = text('order_id');
  const customerId = text('customer_id');
  const productId = text('product_id');
  const currency = text('currency');
  const zipCode = text('zip_code');
  const category = text('category');
  const shippingZone = text('shipping_zone');
  const region = text('region');
  const quantity = cols.quantity[i] ?? null;
  if (quantity === null || !Number.isFinite(quantity)) (problems ??= []).push(`quantity is not a finite number (${String(quantity)})`);
  return (
    `${batchIdField}\t${orderId}\t${customerId}\t${productId}\t${copyNumberField(quantity)}\t${currency}\t${zipCode}\t` +
    `${copyTextField(utcTimestampOrNull(cols.order_ts[i] ?? null))}\t${category}\t` +
    `${copyNumberField(cols.unit_price[i] ?? null)}\t${copyNumberField(cols.line_total[i] ?? null)}\t` +
    `${copyNumberField(cols.rate_to_usd[i] ?? null)}\t${copyNumberField(cols.total_usd[i] ?? null)}\t` +
    `${shippingZone}\t${region}\t${problems ? copyTextField(problems.join('; ')) : '\\N'}\n`
  );
}

/** The column arrays of StagingColumns (every field but `length`). */
export const STAGING_ARRAYS = [
  'order_id',
  'customer_id',
  'product_id',
  'quantity',
  'currency',
  'zip_code',
  'order_ts',
  'category',
  'unit_price',
  'line_total',
  'rate_to_usd',
  'total_usd',
  'shipping_zone',
  'region',
] as const satisfies ReadonlyArray<Exclude<keyof StagingColumns, 'length'>>;

/** The staging table's columns, in the order a COPY line carries them. */
export const STAGING_COPY_COLUMNS = ['batch_id', ...STAGING_ARRAYS, 'stage_error'] as const;

/**
 * Why the batch cannot be staged at all, or null when it can: a batch id that is empty
 * or contains U+0000, a length that is not a non-negative integer, or a column array
 * whose length differs from `length`. Pure.
 */
export function stagingBatchProblem(batchId: string, cols: StagingColumns): string | null {
  if (typeof batchId !== 'string' || batchId.length === 0) return 'the batch id is empty';
  if (batchId.includes('\0')) return 'the batch id contains NUL characters';
  if (!Number.isSafeInteger(cols.length) || cols.length < 0) return `length ${String(cols.length)} is not a non-negative integer`;
  for (const column of STAGING_ARRAYS) {
    const values = cols[column] as unknown;
    if (!Array.isArray(values)) return `column ${column} is not an array`;
    if (values.length !== cols.length) return `column ${column} has ${values.length} values, length is ${cols.length}`;
  }
  return null;
}

/**
 * The batch as COPY text, in chunks of about `chunkBytes` characters (COPY streams them;
 * a big batch is never one giant string). Call {@link stagingBatchProblem} first.
 */
export function* stagingCopyChunks(batchId: string, cols: StagingColumns, chunkBytes = 256 * 1024): Generator<string> {
  const batchIdField = copyTextField(batchId);
  let chunk = '';
  for (let i = 0; i < cols.length; i++) {
    chunk += stagingCopyLine(batchIdField, cols, i);
    if (chunk.length >= chunkBytes) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk.length > 0) yield chunk;
}
