-- Orders pipeline, reference tables: what the Redis lookup cache snapshots and what
-- promote validates against (Postgres is authoritative; the cache is an optimisation).
-- Orders migrations are numbered from 101 so that they can share a schema's
-- tributary_migrations table with the events migrations (001, 002, ...).

CREATE TABLE products (
  product_id  text PRIMARY KEY,
  sku         text NOT NULL UNIQUE,
  name        text NOT NULL,
  category    text NOT NULL,
  unit_price  numeric(12,2) NOT NULL CHECK (unit_price >= 0)   -- list price in USD
);

CREATE TABLE currencies (
  code         text PRIMARY KEY,                                -- ISO 4217, e.g. 'EUR'
  rate_to_usd  numeric NOT NULL CHECK (rate_to_usd > 0)         -- amount × rate = USD
);

CREATE TABLE zip_codes (
  zip_code       text PRIMARY KEY,
  city           text NOT NULL,
  region         text NOT NULL,
  shipping_zone  text NOT NULL
);
