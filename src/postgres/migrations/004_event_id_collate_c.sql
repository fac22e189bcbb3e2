-- event_id is an opaque key (a UUID, or <stream>/<entry ID>), never sorted for people:
-- compare it byte by byte ("C") rather than by the database's linguistic collation.
-- Every insert walks the primary key's btree comparing event_ids; with "C" each
-- comparison is a memcmp instead of a strcoll. Measured on the COPY path: Postgres
-- backend CPU 7.7 -> 6.7 us per row (uuidv7 keys, 1,000-row batches).
-- Only the index is rebuilt; the rows are not rewritten (same type, same bytes).
ALTER TABLE events ALTER COLUMN event_id TYPE text COLLATE "C";
