-- The events table: one row per event, idempotent on event_id.
CREATE TABLE IF NOT EXISTS events (
  event_id    text PRIMARY KEY,
  event_type  text NOT NULL,
  payload     jsonb NOT NULL,
  stream_id   text NOT NULL,
  produced_at timestamptz,
  ingested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_ingested_at_idx ON events (ingested_at);
