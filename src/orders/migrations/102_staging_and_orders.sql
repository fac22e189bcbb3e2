-- Orders pipeline: the staging table COPY loads, the durable orders table, and the
-- rejects.

-- One row per staged order, tagged with its batch. UNLOGGED: no WAL, so COPY is cheap;
-- a crash empties it, which loses nothing because queue items are acknowledged only
-- after promote has committed. Column types are lenient on purpose (nullable, numeric
-- quantity): a bad value must become a reject at promote, never a failed COPY of the
-- whole batch.
CREATE UNLOGGED TABLE orders_staging (
  batch_id       text NOT NULL,
  order_id       text,
  customer_id    text,
  product_id     text,
  quantity       numeric,
  currency       text,
  zip_code       text,
  order_ts       timestamptz,          -- null: missing or not a valid time
  category       text,                 -- enrichment from the lookup cache; null on a miss
  unit_price     numeric,
  line_total     numeric,              -- in the order's currency
  rate_to_usd    numeric,
  total_usd      numeric,
  shipping_zone  text,
  region         text,
  stage_error    text,                 -- set by the stager when the row could not be staged as given
  staged_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_staging_batch_id ON orders_staging (batch_id);

-- Promoted orders: one row per order_id, whatever was redelivered or staged twice.
CREATE TABLE orders (
  order_id       text PRIMARY KEY,
  customer_id    text NOT NULL,
  product_id     text NOT NULL,
  quantity       integer NOT NULL CHECK (quantity > 0),
  currency       text NOT NULL,
  zip_code       text NOT NULL,
  order_ts       timestamptz NOT NULL,
  category       text NOT NULL,
  unit_price     numeric(12,2) NOT NULL,   -- USD list price
  line_total     numeric NOT NULL,         -- what the customer pays, in the order's currency
  rate_to_usd    numeric NOT NULL,
  total_usd      numeric NOT NULL,         -- quantity × unit_price
  shipping_zone  text NOT NULL,
  region         text NOT NULL,
  batch_id       text NOT NULL,
  staged_at      timestamptz NOT NULL,
  promoted_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_order_ts ON orders (order_ts);

-- Every reject is kept (no key on order_id: the same order may be rejected twice, or
-- rejected once and promoted later), with the raw columns as staged.
CREATE TABLE orders_rejected (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_id     text,
  batch_id     text NOT NULL,
  customer_id  text,
  product_id   text,
  quantity     numeric,
  currency     text,
  zip_code     text,
  order_ts     timestamptz,
  raw          text,                   -- the queue item as received, for 'malformed' items that never parsed
  reason       text NOT NULL CHECK (reason IN ('malformed', 'unknown_product', 'unknown_currency',
                                               'unknown_zip', 'non_positive_quantity', 'bad_timestamp')),
  detail       text,                   -- every problem found, '; '-separated
  staged_at    timestamptz,
  rejected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_rejected_order_id ON orders_rejected (order_id);
CREATE INDEX orders_rejected_reason ON orders_rejected (reason, rejected_at);
