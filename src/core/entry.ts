import type { ErrorCode } from '../errors.js';
import type { StreamEntry } from '../redis/commands.js';

/**
 * The stream contract: `event_type` (required), `payload` (required, JSON text),
 * `event_id` (optional; when absent the key is `<stream key>/<entry ID>`: the entry ID
 * qualified by its stream, so two streams writing to one table cannot collide),
 * `produced_at` (optional, ms since epoch).
 */
export const FIELD = {
  eventType: 'event_type',
  payload: 'payload',
  eventId: 'event_id',
  producedAt: 'produced_at',
} as const;

/** One row for the events table. `payload` is the validated JSON text, passed through unchanged. */
export interface EventRow {
  eventId: string;
  eventType: string;
  payload: string;
  streamId: string;
  producedAt: number | null;
}

export interface EntryProblem {
  code: ErrorCode;
  args: string[];
}

export type ParsedEntry = { ok: true; row: EventRow } | { ok: false; problem: EntryProblem };

// Later than this is not "ms since epoch" (year 5138); catches seconds-vs-ns mix-ups at the top end.
const MAX_PRODUCED_AT = 1e14;

/** The idempotency key of an entry that carries no event_id. */
export function defaultEventId(streamKey: string, entryId: string): string {
  return `${streamKey}/${entryId}`;
}

/** Checks an entry read from `streamKey` against the stream contract. Pure. */
export function parseEntry(entry: StreamEntry, streamKey: string): ParsedEntry {
  const f = entry.fields;
  const eventType = f[FIELD.eventType];
  if (eventType === undefined || eventType === '') {
    return bad('TRIB_ERR_ENTRY_MISSING_FIELD', entry.id, FIELD.eventType);
  }
  const payload = f[FIELD.payload];
  if (payload === undefined || payload === '') {
    return bad('TRIB_ERR_ENTRY_MISSING_FIELD', entry.id, FIELD.payload);
  }
  try {
    JSON.parse(payload);
  } catch (err) {
    return bad('TRIB_ERR_ENTRY_BAD_PAYLOAD', entry.id, (err as Error).message);
  }
  let eventId = defaultEventId(streamKey, entry.id);
  const givenId = f[FIELD.eventId];
  if (givenId !== undefined) {
    if (givenId === '' || givenId.length > 512) {
      return bad('TRIB_ERR_ENTRY_BAD_FIELD', entry.id, FIELD.eventId, 'must be 1 to 512 characters');
    }
    eventId = givenId;
  }
  let producedAt: number | null = null;
  const givenAt = f[FIELD.producedAt];
  if (givenAt !== undefined && givenAt !== '') {
    const n = Number(givenAt);
    if (!Number.isFinite(n) || n < 0 || n > MAX_PRODUCED_AT) {
      return bad('TRIB_ERR_ENTRY_BAD_FIELD', entry.id, FIELD.producedAt, `not ms since epoch: ${givenAt.slice(0, 40)}`);
    }
    producedAt = n;
  }
  return { ok: true, row: { eventId, eventType, payload, streamId: entry.id, producedAt } };
}

function bad(code: ErrorCode, ...args: string[]): ParsedEntry {
  return { ok: false, problem: { code, args } };
}
