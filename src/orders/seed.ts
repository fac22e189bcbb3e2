/**
 * Reference sample data for the orders pipeline: products, currencies and zip codes.
 * Deterministic (no randomness, no clock): the same data on every machine and run, so
 * tests, demos and benchmarks can name products and zips that exist.
 */
import { quoteIdent, type PgPool } from '../postgres/pool.js';
import type { Currency, Product, ReferenceData, ZipCode } from './types.js';

/** [category, SKU prefix, [name, USD price][]]: 8 categories × 6 products. */
const CATALOGUE: ReadonlyArray<readonly [string, string, ReadonlyArray<readonly [string, number]>]> = [
  ['Electronics', 'ELEC', [
    ['Wireless Noise-Cancelling Headphones', 249.99],
    ['4K Streaming Media Player', 49.99],
    ['Portable Bluetooth Speaker', 79.95],
    ['USB-C Fast Charger 65W', 34.99],
    ['27" IPS Monitor', 289.0],
    ['Mechanical Keyboard, Brown Switches', 119.5],
  ]],
  ['Home & Kitchen', 'HOME', [
    ['Stainless Steel French Press', 32.95],
    ['Cast Iron Skillet 12"', 44.9],
    ['Programmable Pressure Cooker 6 qt', 99.99],
    ['Bamboo Cutting Board Set', 27.49],
    ['Cotton Percale Sheet Set, Queen', 89.0],
    ['Electric Gooseneck Kettle', 69.95],
  ]],
  ['Books', 'BOOK', [
    ['Designing Data-Intensive Applications', 44.99],
    ['The Pragmatic Programmer', 39.95],
    ['A Field Guide to North American Birds', 24.99],
    ['The Joy of Cooking', 35.0],
    ['Atlas of Remote Islands', 19.99],
    ['Learning SQL, 3rd Edition', 49.99],
  ]],
  ['Sports & Outdoors', 'SPRT', [
    ['Trail Running Shoes', 129.95],
    ['Insulated Water Bottle 32 oz', 29.99],
    ['Two-Person Backpacking Tent', 229.0],
    ['Yoga Mat, 6 mm', 38.5],
    ['Adjustable Dumbbell Pair', 179.99],
    ['Down Sleeping Bag, 20°F', 199.0],
  ]],
  ['Beauty & Personal Care', 'BEAU', [
    ['Mineral Sunscreen SPF 50', 16.99],
    ['Vitamin C Serum', 24.5],
    ['Sonic Electric Toothbrush', 59.99],
    ['Argan Oil Shampoo', 14.25],
    ['Ceramic Hair Straightener', 74.99],
    ['Unscented Body Lotion', 11.49],
  ]],
  ['Toys & Games', 'TOYS', [
    ['Wooden Building Blocks, 100 pcs', 34.99],
    ['Strategy Board Game: Harbor Trade', 44.0],
    ['Remote Control Off-Road Truck', 64.95],
    ['1000-Piece Jigsaw Puzzle, Lighthouse', 17.99],
    ['Plush Sea Otter', 21.5],
    ['Beginner Chemistry Set', 39.99],
  ]],
  ['Grocery', 'GROC', [
    ['Single-Origin Coffee Beans 1 lb', 18.95],
    ['Extra Virgin Olive Oil 1 L', 21.99],
    ['Organic Rolled Oats 5 lb', 12.49],
    ['Dark Chocolate Bar 85%, 6-pack', 23.94],
    ['Japanese Green Tea, 100 bags', 15.75],
    ['Wildflower Honey 2 lb', 16.5],
  ]],
  ['Clothing', 'CLTH', [
    ['Merino Wool Crew Socks, 3-pack', 36.0],
    ['Waterproof Rain Jacket', 149.0],
    ['Organic Cotton T-Shirt', 24.0],
    ['Slim Fit Stretch Chinos', 59.5],
    ['Quilted Puffer Vest', 98.0],
    ['Leather Chelsea Boots', 189.95],
  ]],
];

/** The 48 sample products: product_id `P001`...`P048`, SKU `<CATEGORY>-<NNN>`, price in USD. */
export const SAMPLE_PRODUCTS: readonly Product[] = CATALOGUE.flatMap(([category, prefix, items], c) =>
  items.map(([name, unit_price], i) => {
    const n = c * items.length + i + 1;
    return {
      product_id: `P${String(n).padStart(3, '0')}`,
      sku: `${prefix}-${String(1000 + n * 7).padStart(4, '0')}`,
      name,
      category,
      unit_price,
    };
  }),
);

/** 10 currencies with plausible (fixed, illustrative) rates: amount × rate_to_usd = USD. */
export const SAMPLE_CURRENCIES: readonly Currency[] = [
  { code: 'USD', rate_to_usd: 1 },
  { code: 'EUR', rate_to_usd: 1.08 },
  { code: 'GBP', rate_to_usd: 1.27 },
  { code: 'JPY', rate_to_usd: 0.0067 },
  { code: 'CAD', rate_to_usd: 0.74 },
  { code: 'AUD', rate_to_usd: 0.66 },
  { code: 'CHF', rate_to_usd: 1.13 },
  { code: 'CNY', rate_to_usd: 0.14 },
  { code: 'INR', rate_to_usd: 0.012 },
  { code: 'MXN', rate_to_usd: 0.058 },
];

/**
 * [city, state, census region, first zip of the city's range, shipping zone from a
 * Kansas City warehouse]: 30 cities × 10 zips = 300 zip codes.
 */
const CITIES: ReadonlyArray<readonly [string, string, string, number, string]> = [
  ['New York', 'NY', 'Northeast', 10001, 'zone-5'],
  ['Boston', 'MA', 'Northeast', 2108, 'zone-6'],
  ['Philadelphia', 'PA', 'Northeast', 19102, 'zone-5'],
  ['Pittsburgh', 'PA', 'Northeast', 15201, 'zone-4'],
  ['Baltimore', 'MD', 'South', 21201, 'zone-5'],
  ['Washington', 'DC', 'South', 20001, 'zone-5'],
  ['Atlanta', 'GA', 'South', 30303, 'zone-4'],
  ['Miami', 'FL', 'South', 33125, 'zone-6'],
  ['Charlotte', 'NC', 'South', 28202, 'zone-5'],
  ['Nashville', 'TN', 'South', 37201, 'zone-3'],
  ['New Orleans', 'LA', 'South', 70112, 'zone-4'],
  ['Houston', 'TX', 'South', 77002, 'zone-4'],
  ['Dallas', 'TX', 'South', 75201, 'zone-3'],
  ['Austin', 'TX', 'South', 78701, 'zone-4'],
  ['Chicago', 'IL', 'Midwest', 60601, 'zone-3'],
  ['Detroit', 'MI', 'Midwest', 48201, 'zone-4'],
  ['Minneapolis', 'MN', 'Midwest', 55401, 'zone-3'],
  ['Columbus', 'OH', 'Midwest', 43201, 'zone-4'],
  ['Indianapolis', 'IN', 'Midwest', 46201, 'zone-3'],
  ['Kansas City', 'MO', 'Midwest', 64101, 'zone-1'],
  ['St. Louis', 'MO', 'Midwest', 63101, 'zone-2'],
  ['Milwaukee', 'WI', 'Midwest', 53202, 'zone-3'],
  ['Denver', 'CO', 'West', 80202, 'zone-3'],
  ['Phoenix', 'AZ', 'West', 85003, 'zone-5'],
  ['Salt Lake City', 'UT', 'West', 84101, 'zone-5'],
  ['Las Vegas', 'NV', 'West', 89101, 'zone-6'],
  ['Los Angeles', 'CA', 'West', 90012, 'zone-7'],
  ['San Francisco', 'CA', 'West', 94102, 'zone-8'],
  ['Seattle', 'WA', 'West', 98101, 'zone-8'],
  ['Portland', 'OR', 'West', 97201, 'zone-7'],
];

/** 300 US zip codes: ten consecutive five-digit zips from each city's range. */
export const SAMPLE_ZIP_CODES: readonly ZipCode[] = CITIES.flatMap(([city, state, region, first, shipping_zone]) =>
  Array.from({ length: 10 }, (_, i) => ({
    zip_code: String(first + i).padStart(5, '0'),
    city: `${city}, ${state}`,
    region,
    shipping_zone,
  })),
);

/** The reference sample data: 48 products, 10 currencies, 300 zip codes. */
export const REFERENCE_DATA: ReferenceData = {
  products: [...SAMPLE_PRODUCTS],
  currencies: [...SAMPLE_CURRENCIES],
  zipCodes: [...SAMPLE_ZIP_CODES],
};

/** Rows inserted or changed per table by seedReferenceData (0 when already up to date). */
export interface SeedResult {
  products: number;
  currencies: number;
  zipCodes: number;
}

/**
 * Upserts the reference data (default: {@link REFERENCE_DATA}) into `schema`'s
 * products, currencies and zip_codes, in ONE statement (one round trip, all or nothing):
 * each table gets its rows from a jsonb array with `INSERT ... ON CONFLICT DO UPDATE`,
 * and only rows that differ are rewritten, so seeding again changes nothing and returns
 * zeros. Rows of the tables that are not in `data` are left alone.
 */
export async function seedReferenceData(pool: PgPool, schema: string, data: ReferenceData = REFERENCE_DATA): Promise<SeedResult> {
  const s = quoteIdent(schema);
  const res = await pool.query<{ products: number; currencies: number; zip_codes: number }>(
    `WITH p AS (
       INSERT INTO ${s}.products AS t (product_id, sku, name, category, unit_price)
       SELECT product_id, sku, name, category, unit_price
       FROM jsonb_to_recordset($1::jsonb) AS x(product_id text, sku text, name text, category text, unit_price numeric)
       ON CONFLICT (product_id) DO UPDATE
         SET sku = excluded.sku, name = excluded.name, category = excluded.category, unit_price = excluded.unit_price
         WHERE (t.sku, t.name, t.category, t.unit_price)
               IS DISTINCT FROM (excluded.sku, excluded.name, excluded.category, excluded.unit_price)
       RETURNING 1
     ), c AS (
       INSERT INTO ${s}.currencies AS t (code, rate_to_usd)
       SELECT code, rate_to_usd
       FROM jsonb_to_recordset($2::jsonb) AS x(code text, rate_to_usd numeric)
       ON CONFLICT (code) DO UPDATE
         SET rate_to_usd = excluded.rate_to_usd
         WHERE t.rate_to_usd IS DISTINCT FROM excluded.rate_to_usd
       RETURNING 1
     ), z AS (
       INSERT INTO ${s}.zip_codes AS t (zip_code, city, region, shipping_zone)
       SELECT zip_code, city, region, shipping_zone
       FROM jsonb_to_recordset($3::jsonb) AS x(zip_code text, city text, region text, shipping_zone text)
       ON CONFLICT (zip_code) DO UPDATE
         SET city = excluded.city, region = excluded.region, shipping_zone = excluded.shipping_zone
         WHERE (t.city, t.region, t.shipping_zone)
               IS DISTINCT FROM (excluded.city, excluded.region, excluded.shipping_zone)
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM p)::int AS products,
            (SELECT count(*) FROM c)::int AS currencies,
            (SELECT count(*) FROM z)::int AS zip_codes`,
    [JSON.stringify(data.products), JSON.stringify(data.currencies), JSON.stringify(data.zipCodes)],
  );
  const row = res.rows[0]!;
  return { products: row.products, currencies: row.currencies, zipCodes: row.zip_codes };
}

/**
 * The reference tables as they are in Postgres (what `init-cache` snapshots into the
 * Redis lookup cache), each sorted by its key, read in one statement (one snapshot, so
 * a concurrent re-seed is seen whole or not at all). Prices and rates are numbers.
 */
export async function loadReferenceData(pool: PgPool, schema: string): Promise<ReferenceData> {
  const s = quoteIdent(schema);
  const res = await pool.query<{ products: Product[]; currencies: Currency[]; zip_codes: ZipCode[] }>(
    `SELECT (SELECT coalesce(json_agg(p ORDER BY p.product_id), '[]')
             FROM (SELECT product_id, sku, name, category, unit_price FROM ${s}.products) AS p) AS products,
            (SELECT coalesce(json_agg(c ORDER BY c.code), '[]')
             FROM (SELECT code, rate_to_usd FROM ${s}.currencies) AS c) AS currencies,
            (SELECT coalesce(json_agg(z ORDER BY z.zip_code), '[]')
             FROM (SELECT zip_code, city, region, shipping_zone FROM ${s}.zip_codes) AS z) AS zip_codes`,
  );
  const row = res.rows[0]!;
  // numeric → JSON number → JS number (prices have 2 decimals; rates are short decimals).
  return { products: row.products, currencies: row.currencies, zipCodes: row.zip_codes };
}
