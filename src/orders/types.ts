/**
 * The orders pipeline's shared shapes. Each part (Redis queue/dedup/cache, transform,
 * Postgres staging/promote) codes against these, so they can be built and tested alone.
 *
 * Flow of one batch:
 *   queue (LPUSH / BLMOVE into a per-worker processing list)
 *   → parse (malformed JSON → rejected 'malformed')
 *   → dedup window (order_id seen in the last hour → dropped, counted)
 *   → lookup cache (one round trip, one consistent cache version)
 *   → columnar transform (StagingColumns)
 *   → COPY into the UNLOGGED staging table (one COPY per batch, tagged with batch_id)
 *   → validate and promote (valid → orders, invalid → orders_rejected with reason; one transaction)
 *   → ack (remove from the processing list), mark order_ids seen in the dedup window,
 *     add to the revenue window, publish the completion signal.
 */

/** One order as producers put it on the queue (JSON text). */
export interface Order {
  order_id: string;
  customer_id: string;
  product_id: string;
  quantity: number;
  /** ISO 4217 code, e.g. 'EUR'. */
  currency: string;
  zip_code: string;
  /** ISO 8601 text or ms since epoch; normalised by the transform. */
  order_timestamp: string | number;
}

export interface Product {
  product_id: string;
  sku: string;
  name: string;
  category: string;
  /** Price in USD. */
  unit_price: number;
}

export interface Currency {
  code: string;
  /** Multiply an amount in this currency by this to get USD. */
  rate_to_usd: number;
}

export interface ZipCode {
  zip_code: string;
  city: string;
  region: string;
  shipping_zone: string;
}

/** The reference tables as loaded from Postgres (what `init-cache` snapshots into Redis). */
export interface ReferenceData {
  products: Product[];
  currencies: Currency[];
  zipCodes: ZipCode[];
}

/**
 * What the lookup cache returns for one batch: the entries for the keys asked for, all
 * from one cache version. A key the cache does not know is absent from the map.
 */
export interface LookupResult {
  version: number;
  products: Map<string, Product>;
  currencies: Map<string, Currency>;
  zipCodes: Map<string, ZipCode>;
}

/**
 * One batch in columnar form, ready for COPY into staging. Index i of every array is
 * order i. Lookup misses are null (the promote step turns them into reject reasons).
 */
export interface StagingColumns {
  length: number;
  order_id: string[];
  customer_id: string[];
  product_id: string[];
  quantity: number[];
  currency: string[];
  zip_code: string[];
  /** Normalised to ISO 8601 UTC text; null when unparseable. */
  order_ts: (string | null)[];
  category: (string | null)[];
  unit_price: (number | null)[];
  /** quantity × unit_price (USD list price). */
  line_total: (number | null)[];
  rate_to_usd: (number | null)[];
  /** line_total in USD, rounded to cents. */
  total_usd: (number | null)[];
  shipping_zone: (string | null)[];
  region: (string | null)[];
}

/** Why a staged order was not promoted. Stored in orders_rejected.reason. */
export const REJECT_REASONS = [
  'malformed',
  'unknown_product',
  'unknown_currency',
  'unknown_zip',
  'non_positive_quantity',
  'bad_timestamp',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export interface PromoteResult {
  /** Rows newly inserted into `orders`. */
  promoted: number;
  /** Valid rows whose order_id was already in `orders`, and rejected items already in `orders_rejected` with that reason (idempotent no-ops). */
  duplicates: number;
  /** Rows moved to `orders_rejected`, by reason. */
  rejected: Partial<Record<RejectReason, number>>;
  /** Staging rows consumed (deleted). */
  staged: number;
  /** The order_ids of the rejected rows (set only when some were rejected): they are not marked seen in the dedup window. */
  rejectedIds?: string[];
  /**
   * Set when the promote was refused because the worker was fenced after it took the
   * batch (its list went back to the queue as stale): nothing was promoted, the batch's
   * staged rows were dropped.
   */
  fenced?: { epoch: number; current: number };
}
