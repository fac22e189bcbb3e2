import type { ErrorCode } from '../errors.js';
import type { RawStreamEntry, StreamEntry } from '../redis/commands.js';

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

/** `value` is the payload as JSON.parse made it (checked once, kept for stages that map it). */
export type ParsedEntry = { ok: true; row: EventRow; value: unknown } | { ok: false; problem: EntryProblem };

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
  let value: unknown;
  try {
    value = JSON.parse(payload);
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
  return { ok: true, row: { eventId, eventType, payload, streamId: entry.id, producedAt }, value };
}

function bad(code: ErrorCode, ...args: string[]): ParsedEntry {
  return { ok: false, problem: { code, args } };
}

/**
 * One row for the events table as the bytes Redis sent (the COPY fast path). The
 * payload is not checked as JSON here: Postgres checks it while parsing it into jsonb,
 * and a batch it refuses is written again through parseEntry and the statement path.
 */
export interface RawEventRow {
  entry: RawStreamEntry;
  /** The given event_id bytes, or the default key as text. */
  eventId: Buffer | string;
  eventType: Buffer;
  payload: Buffer;
  streamId: string;
  producedAt: number | null;
}

/**
 * A RawEventRow that is also the pipeline message carrying it (`body` is itself): the
 * validate stage hands it on without allocating a wrapper per entry.
 */
export class RawEventRecord implements RawEventRow {
  deliveries = 1;

  constructor(
    readonly entry: RawStreamEntry,
    readonly eventId: Buffer | string,
    readonly eventType: Buffer,
    readonly payload: Buffer,
    readonly streamId: string,
    readonly producedAt: number | null,
  ) {}

  get id(): string {
    return this.streamId;
  }

  get body(): this {
    return this;
  }

  get bytes(): number {
    return this.entry.bytes;
  }
}

export type ParsedRawEntry = { ok: true; row: RawEventRecord } | { ok: false; problem: EntryProblem };

const NAMES = {
  eventType: Buffer.from(FIELD.eventType),
  payload: Buffer.from(FIELD.payload),
  eventId: Buffer.from(FIELD.eventId),
  producedAt: Buffer.from(FIELD.producedAt),
};

function isName(b: Buffer, name: Buffer): boolean {
  if (b.length !== name.length) return false;
  for (let i = 0; i < b.length; i++) if (b[i] !== name[i]) return false;
  return true;
}

/**
 * parseEntry on the raw bytes, with the same rules and the same problems, except that
 * the payload's JSON is left for Postgres to check (see RawEventRow). A repeated field
 * keeps its last value, as in parseEntry. Pure.
 */
export function parseRawEntry(entry: RawStreamEntry, streamKey: string): ParsedRawEntry {
  let eventType: Buffer | undefined;
  let payload: Buffer | undefined;
  let givenId: Buffer | undefined;
  let givenAt: Buffer | undefined;
  const raw = entry.raw;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    // The four names have four different lengths: one byte compare picks the candidate.
    if (isName(name, NAMES.payload)) payload = value;
    else if (isName(name, NAMES.eventType)) eventType = value;
    else if (isName(name, NAMES.eventId)) givenId = value;
    else if (isName(name, NAMES.producedAt)) givenAt = value;
  }
  if (eventType === undefined || eventType.length === 0) {
    return badRaw('TRIB_ERR_ENTRY_MISSING_FIELD', entry.id, FIELD.eventType);
  }
  if (payload === undefined || payload.length === 0) {
    return badRaw('TRIB_ERR_ENTRY_MISSING_FIELD', entry.id, FIELD.payload);
  }
  let eventId: Buffer | string = defaultEventId(streamKey, entry.id);
  if (givenId !== undefined) {
    // More than 512 bytes may still be 512 characters or fewer: count them as parseEntry does.
    if (givenId.length === 0 || (givenId.length > 512 && givenId.toString().length > 512)) {
      return badRaw('TRIB_ERR_ENTRY_BAD_FIELD', entry.id, FIELD.eventId, 'must be 1 to 512 characters');
    }
    eventId = givenId;
  }
  let producedAt: number | null = null;
  if (givenAt !== undefined && givenAt.length > 0) {
    const text = givenAt.toString();
    const n = Number(text);
    if (!Number.isFinite(n) || n < 0 || n > MAX_PRODUCED_AT) {
      return badRaw('TRIB_ERR_ENTRY_BAD_FIELD', entry.id, FIELD.producedAt, `not ms since epoch: ${text.slice(0, 40)}`);
    }
    producedAt = n;
  }
  return { ok: true, row: new RawEventRecord(entry, eventId, eventType, payload, entry.id, producedAt) };
}

function badRaw(code: ErrorCode, ...args: string[]): ParsedRawEntry {
  return { ok: false, problem: { code, args } };
}
