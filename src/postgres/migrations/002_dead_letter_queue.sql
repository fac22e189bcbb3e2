-- Dead letters: the entry as received, why it failed, how often it was delivered.
-- stream_key and group_name say where it came from; the unique index makes
-- dead-lettering idempotent when a crash makes the engine repeat it.
CREATE TABLE IF NOT EXISTS dead_letter_queue (
  id          bigserial PRIMARY KEY,
  stream_key  text,
  group_name  text,
  stream_id   text,
  event_id    text,
  event_type  text,
  fields      jsonb NOT NULL,
  error_code  text NOT NULL,
  error       text NOT NULL,
  deliveries  int NOT NULL,
  failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS dead_letter_queue_entry_idx
  ON dead_letter_queue (stream_key, group_name, stream_id);
CREATE INDEX IF NOT EXISTS dead_letter_queue_failed_at_idx ON dead_letter_queue (failed_at);
