-- Orders pipeline: fencing of stalled workers, and one reject row per rejected item.

-- A worker judged dead (its heartbeat stale) may only be stalled. Before its processing
-- list goes back to the queue, the recoverer records the worker's new fencing epoch here
-- (under the promote lock, exclusively); a promote carrying an older epoch is refused
-- and its staged rows dropped, so two workers never promote the same orders.
-- `prefix` is the Redis key prefix of the queue the worker takes from.
CREATE TABLE orders_fences (
  prefix     text NOT NULL,
  worker     text NOT NULL,
  epoch      bigint NOT NULL,
  fenced_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (prefix, worker)
);

-- A redelivered batch (a worker stalled or killed after its promote committed) must not
-- add a second reject row: each reject carries the md5 of what was rejected (the raw
-- item for a malformed one, the order's own staged fields otherwise), unique with its
-- reason. A corrected resend differs, so it gets a row of its own. Rows written before
-- this migration keep a null key (never a conflict).
ALTER TABLE orders_rejected ADD COLUMN reject_key text;
CREATE UNIQUE INDEX orders_rejected_reject_key ON orders_rejected (reject_key, reason);
