-- Retrying dead letters (`tributary dlq retry`). A retry claims its row first
-- (retried_at, set only while NULL), then re-adds the entry to the stream, then
-- records the new entry ID (retried_as). A row whose retried_at is set is never
-- re-added blindly, so a crash between the steps cannot add a second copy:
--   retried_at NULL                 not retried
--   retried_at set, retried_as set  retried as that stream entry
--   retried_at set, retried_as NULL a retry in progress, or interrupted by a crash
--                                   (completed by a later retry only when the
--                                   dead-letter stream entry proves it was not re-added)
ALTER TABLE dead_letter_queue
  ADD COLUMN IF NOT EXISTS retried_at timestamptz,
  ADD COLUMN IF NOT EXISTS retried_as text;
