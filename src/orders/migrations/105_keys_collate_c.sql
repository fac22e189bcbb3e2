-- Order ids and batch ids are opaque keys, never sorted for people: compare them byte by
-- byte ("C") rather than by the database's collation. Every promote walks the orders
-- primary key for each row (ON CONFLICT), sorts the batch by order_id (DISTINCT ON),
-- and finds its staged rows by batch_id; with "C" each comparison is a memcmp and sorts
-- use abbreviated keys, instead of strcoll calls (the events table did the same: 004).
-- Only the indexes are rebuilt; the rows are not rewritten (same type, same bytes).
ALTER TABLE orders ALTER COLUMN order_id TYPE text COLLATE "C";
ALTER TABLE orders_staging ALTER COLUMN batch_id TYPE text COLLATE "C";
ALTER TABLE orders_staging ALTER COLUMN order_id TYPE text COLLATE "C";
