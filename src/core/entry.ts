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
 * validate stage hands it on without allocating a wrapper per entry. Its values are
 * ranges of the bytes Redis sent (`*Src[*Start, *End)`, all in the reply's one buffer
 * when the entry is packed): no Buffer view per value unless asked for.
 */
export class RawEventRecord implements RawEventRow {
  deliveries = 1;

  constructor(
    readonly entry: RawStreamEntry,
    /** The event_id's bytes, or undefined when the entry gave none (then `idText`). */
    readonly idSrc: Buffer | undefined,
    readonly idStart: number,
    readonly idEnd: number,
    /** The default event_id (`<key>/<entry ID>`) when the entry gave none. */
    readonly idText: string,
    readonly typeSrc: Buffer,
    readonly typeStart: number,
    readonly typeEnd: number,
    readonly paySrc: Buffer,
    readonly payStart: number,
    readonly payEnd: number,
    readonly streamId: string,
    readonly producedAt: number | null,
  ) {}

  get eventId(): Buffer | string {
    return this.idSrc === undefined ? this.idText : this.idSrc.subarray(this.idStart, this.idEnd);
  }

  get eventType(): Buffer {
    return this.typeSrc.subarray(this.typeStart, this.typeEnd);
  }

  get payload(): Buffer {
    return this.paySrc.subarray(this.payStart, this.payEnd);
  }

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

/** Whether buf[start, end) holds the bytes of `name`. */
function isNameAt(buf: Buffer, start: number, end: number, name: Buffer): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (buf[start + i] !== name[i]) return false;
  return true;
}

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
  // Each value found: its buffer and [start, end) there (-1: not found).
  let typeSrc: Buffer | undefined, typeStart = -1, typeEnd = -1;
  let paySrc: Buffer | undefined, payStart = -1, payEnd = -1;
  let idSrc: Buffer | undefined, idStart = -1, idEnd = -1;
  let atSrc: Buffer | undefined, atStart = -1, atEnd = -1;
  const buf = entry.packedBuf;
  if (buf !== undefined && entry.packedOffsets !== undefined) {
    // Packed (stream-reply.ts): names compared in place, values kept as offsets.
    const o = entry.packedOffsets;
    const last = entry.packedFirst + 2 * (entry.packedCount - (entry.packedCount % 2));
    for (let at = entry.packedFirst; at < last; at += 4) {
      const start = o[at]!;
      const end = o[at + 1]!;
      // The four names have four different lengths: one byte compare picks the candidate.
      if (isNameAt(buf, start, end, NAMES.payload)) (paySrc = buf), (payStart = o[at + 2]!), (payEnd = o[at + 3]!);
      else if (isNameAt(buf, start, end, NAMES.eventType)) (typeSrc = buf), (typeStart = o[at + 2]!), (typeEnd = o[at + 3]!);
      else if (isNameAt(buf, start, end, NAMES.eventId)) (idSrc = buf), (idStart = o[at + 2]!), (idEnd = o[at + 3]!);
      else if (isNameAt(buf, start, end, NAMES.producedAt)) (atSrc = buf), (atStart = o[at + 2]!), (atEnd = o[at + 3]!);
    }
  } else {
    const raw = entry.raw;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!;
      const value = raw[i + 1]!;
      if (isName(name, NAMES.payload)) (paySrc = value), (payStart = 0), (payEnd = value.length);
      else if (isName(name, NAMES.eventType)) (typeSrc = value), (typeStart = 0), (typeEnd = value.length);
      else if (isName(name, NAMES.eventId)) (idSrc = value), (idStart = 0), (idEnd = value.length);
      else if (isName(name, NAMES.producedAt)) (atSrc = value), (atStart = 0), (atEnd = value.length);
    }
  }
  if (typeSrc === undefined || typeEnd === typeStart) {
    return badRaw('TRIB_ERR_ENTRY_MISSING_FIELD', entry.id, FIELD.eventType);
  }
  if (paySrc === undefined || payEnd === payStart) {
    return badRaw('TRIB_ERR_ENTRY_MISSING_FIELD', entry.id, FIELD.payload);
  }
  let idText = '';
  if (idSrc === undefined) {
    idText = defaultEventId(streamKey, entry.id);
  } else {
    const n = idEnd - idStart;
    // More than 512 bytes may still be 512 characters or fewer: count them as parseEntry does.
    if (n === 0 || (n > 512 && idSrc.toString('utf8', idStart, idEnd).length > 512)) {
      return badRaw('TRIB_ERR_ENTRY_BAD_FIELD', entry.id, FIELD.eventId, 'must be 1 to 512 characters');
    }
  }
  let producedAt: number | null = null;
  if (atSrc !== undefined && atEnd > atStart) {
    // Whole milliseconds (what producers write) read from the bytes; anything else as text.
    let n = wholeNumberAt(atSrc, atStart, atEnd);
    if (n < 0) {
      const text = atSrc.toString('utf8', atStart, atEnd);
      n = Number(text);
      if (!Number.isFinite(n) || n < 0 || n > MAX_PRODUCED_AT) {
        return badRaw('TRIB_ERR_ENTRY_BAD_FIELD', entry.id, FIELD.producedAt, `not ms since epoch: ${text.slice(0, 40)}`);
      }
    }
    producedAt = n;
  }
  return {
    ok: true,
    row: new RawEventRecord(entry, idSrc, idStart, idEnd, idText, typeSrc, typeStart, typeEnd, paySrc, payStart, payEnd, entry.id, producedAt),
  };
}

/** The digits of buf[start, end) as a number when they are 1 to 15 digits and at most MAX_PRODUCED_AT; -1 otherwise. Pure. */
function wholeNumberAt(buf: Buffer, start: number, end: number): number {
  if (end - start > 15) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n <= MAX_PRODUCED_AT ? n : -1;
}

function badRaw(code: ErrorCode, ...args: string[]): ParsedRawEntry {
  return { ok: false, problem: { code, args } };
}
