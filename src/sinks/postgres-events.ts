import type { BatchContext, Message, Rejected, Sink, WriteResult } from '../core/contracts.js';
import { parseEntry, RawEventRecord, type EventRow, type RawEventRow } from '../core/entry.js';
import { isTributaryError, TributaryError, type ErrorCode } from '../errors.js';
import { CopyFrame, copyIn } from '../postgres/copy-in.js';
import { isRowContentError, quoteIdent, withClient, type PgPool } from '../postgres/pool.js';
import { halves, isolateByHalving } from './isolate.js';
import { rejection, type EventRowBody } from '../stages/validate-event.js';

export interface RejectedRow {
  row: EventRow;
  /** SQLSTATE Postgres gave for this row alone (empty when the sink refused it before sending). */
  sqlState: string;
  message: string;
  /** TRIB_ERR_ENTRY_TOO_LARGE when the row is refused for its size; otherwise TRIB_ERR_ENTRY_REJECTED. */
  code?: ErrorCode;
}

/**
 * Most characters of one statement's JSON parameter (the statement path). V8 cannot hold
 * a string over ~512 Mi characters (2^29 - 24) and Postgres refuses a jsonb over 256 MiB:
 * a batch whose text would be larger is split before it is built, and one row larger
 * than this alone is rejected (TRIB_ERR_ENTRY_TOO_LARGE).
 */
export const STATEMENT_MAX_CHARS = 128 * 1024 * 1024;

/** Characters of a row in encodeRows' text, at most (JSON.stringify escapes may add more for the short fields: counted at 6 per character). Pure. */
export function encodedLength(r: EventRow): number {
  return 48 + r.payload.length + 6 * (r.eventId.length + r.eventType.length) + r.streamId.length + 24;
}

export interface SinkWriteResult {
  /** Rows newly inserted. */
  inserted: number;
  /** Rows already present (a redelivery): skipped by ON CONFLICT DO NOTHING. */
  duplicates: number;
  /** Rows Postgres refused for their content, isolated by splitting the batch. */
  rejected: RejectedRow[];
  /** Statements sent (1 unless the batch had to be split). */
  statements: number;
}

/**
 * Writes batches of events in one statement each: the rows travel as a single JSON
 * array parameter (no bind-parameter limit, whatever the batch size) and are expanded
 * server-side by jsonb_array_elements; ON CONFLICT (event_id) DO NOTHING makes a
 * redelivered entry a no-op. Autocommit: the statement is its own transaction, so
 * when `write` resolves the rows are durable.
 *
 * When Postgres refuses the batch for a row's content, the batch is split in halves
 * until the refused rows are alone; those are returned as rejected, the rest written.
 * Any other error (connection lost, server down) is thrown: nothing is half-known,
 * because a retry of the whole batch is idempotent.
 */
export class PostgresEventsSink {
  private readonly sql: string;
  private readonly copyFrame: CopyFrame;
  /**
   * COPY buffers whose batch has been written, for the next batches. Reusing them keeps
   * a drain from allocating its whole volume again as fresh external memory, which
   * made V8 run full collections (a fifth of the engine's CPU in a 300k-event drain).
   */
  private readonly spare: Buffer[] = [];
  private spareBytes = 0;

  constructor(
    private readonly pool: PgPool,
    schema = 'public',
    table = 'events',
    /** The statement path's budget, characters of JSON per statement (default STATEMENT_MAX_CHARS). */
    private readonly statementMaxChars = STATEMENT_MAX_CHARS,
  ) {
    const t = `${quoteIdent(schema)}.${quoteIdent(table)}`;
    this.sql =
      `INSERT INTO ${t} (event_id, event_type, payload, stream_id, produced_at) ` +
      // jsonb_array_elements, not jsonb_to_recordset: a JSON null payload must stay the
      // jsonb value null, not become SQL NULL.
      `SELECT e->>'i', e->>'t', e->'p', e->>'s', to_timestamp((e->>'a')::double precision / 1000.0) ` +
      `FROM jsonb_array_elements($1::jsonb) AS e ` +
      `ON CONFLICT (event_id) DO NOTHING`;
    this.copyFrame = new CopyFrame(`COPY ${t} (event_id, event_type, payload, stream_id, produced_at) FROM STDIN WITH (FORMAT binary)`);
  }

  /**
   * The fast path for entries read for the first time: one binary COPY of the raw bytes
   * (no JSON parsing or re-encoding here; Postgres checks every payload as it parses it
   * into jsonb). Autocommit: when it resolves the rows are durable.
   *
   * COPY has no ON CONFLICT, so it is all or nothing: it resolves `null`, writing
   * nothing, when Postgres refused the batch for its content — a bad row, or an
   * event_id already stored (a redelivery), or a deadlock with a concurrent batch over
   * the same event_ids. The caller then takes `write`, which skips duplicates and
   * isolates bad rows. Any other error (connection lost, server down) is thrown.
   */
  async copy(rows: readonly RawEventRow[]): Promise<number | null> {
    if (rows.length === 0) return 0;
    // The COPY statement, the rows and CopyDone in one buffer, sent in one write (copy-in.ts).
    const size = this.copyFrame.size(copyBinarySize(rows));
    let backing = this.spare.pop();
    if (backing !== undefined) this.spareBytes -= backing.length;
    // A quarter more than needed, so the next batch, a little larger, still fits.
    if (backing === undefined || backing.length < size) backing = Buffer.allocUnsafeSlow(size + (size >> 2));
    const start = this.copyFrame.dataStart;
    const message = this.copyFrame.frame(backing, encodeCopyBinaryInto(rows, backing, start) - start);
    return withClient(this.pool, async (client) => {
      try {
        const copied = await copyIn(client, message);
        // Written and acknowledged: the buffer can carry the next batch. Only then: after an
        // error the socket may still hold it, and we do not reuse it.
        if (this.spareBytes + backing.length <= MAX_SPARE_BYTES) {
          this.spare.push(backing);
          this.spareBytes += backing.length;
        }
        return copied;
      } catch (err) {
        if (isRowContentError(err) || (err as { code?: unknown }).code === DEADLOCK_DETECTED) return null;
        throw err;
      }
    });
  }

  async write(rows: readonly EventRow[]): Promise<SinkWriteResult> {
    if (rows.length === 0) return { inserted: 0, duplicates: 0, rejected: [], statements: 0 };
    return isolateByHalving<readonly EventRow[], SinkWriteResult>(rows, 'batch', {
      attempt: async (part) => {
        // Never a string V8 cannot hold, nor a jsonb Postgres refuses: split first.
        let chars = 2;
        for (let i = 0; i < part.length; i++) chars += encodedLength(part[i]!) + 1;
        if (chars > this.statementMaxChars) {
          throw new TributaryError('TRIB_ERR_BATCH_TOO_LARGE', [`${part.length} rows make about ${chars} characters of statement, over ${this.statementMaxChars}`]);
        }
        const res = await this.pool.query(this.sql, [encodeRows(part)]);
        const inserted = res.rowCount ?? 0;
        return { inserted, duplicates: part.length - inserted, rejected: [], statements: 1 };
      },
      isContentError: (err) => isRowContentError(err) || isTributaryError(err, 'TRIB_ERR_BATCH_TOO_LARGE'),
      size: (part) => part.length,
      split: (part) => halves(part),
      alone: async (part, _path, err) => {
        if (isTributaryError(err, 'TRIB_ERR_BATCH_TOO_LARGE')) {
          return { inserted: 0, duplicates: 0, rejected: [{ row: part[0]!, sqlState: '', message: err.message, code: 'TRIB_ERR_ENTRY_TOO_LARGE' }], statements: 0 };
        }
        const e = err as { code: string; message: string };
        // 54000 (program_limit_exceeded): the row alone is over a Postgres limit (a jsonb over 256 MiB).
        const code: ErrorCode = e.code === '54000' ? 'TRIB_ERR_ENTRY_TOO_LARGE' : 'TRIB_ERR_ENTRY_REJECTED';
        return { inserted: 0, duplicates: 0, rejected: [{ row: part[0]!, sqlState: e.code, message: e.message, code }], statements: 1 };
      },
      combine: (a, b) => ({
        inserted: a.inserted + b.inserted,
        duplicates: a.duplicates + b.duplicates,
        rejected: [...a.rejected, ...b.rejected],
        statements: a.statements + b.statements + 1,
      }),
    });
  }
}

/** Where one batch's write stands between attempts: set once Postgres refused its COPY. */
interface Fallback {
  rows: EventRow[];
  rejected: Rejected[];
}

/**
 * The events table as a runner sink. A batch read for the first time (every row the
 * bytes Redis sent) goes by one binary COPY; if Postgres refuses it for its content (a
 * bad row, an event_id already stored, a deadlock), the batch drops to the statement
 * path once: parsed as text (bad JSON gets its own error, as on any other path), then
 * written with ON CONFLICT DO NOTHING and bad rows isolated by halving. Redeliveries go
 * straight to the statement path. Idempotent: a retried batch adds no row.
 */
export class EventsTableSink implements Sink<EventRowBody> {
  readonly server = 'postgres' as const;
  /** Any part of a batch can be written on its own (the runner splits a batch too large to write). */
  readonly splittable = true;

  constructor(
    readonly table: PostgresEventsSink,
    private readonly streamKey: string,
  ) {}

  async write(batch: Message<EventRowBody>[], ctx: BatchContext): Promise<WriteResult> {
    let statements = (ctx.state.statements as number | undefined) ?? 0;
    let fallback = ctx.state.fallback as Fallback | undefined;
    if (fallback === undefined) {
      const raw = allRaw(batch);
      if (raw !== null) {
        ctx.state.statements = ++statements;
        const copied = await this.table.copy(raw);
        if (copied !== null) return { written: copied, duplicates: raw.length - copied, rejected: [], statements };
        fallback = { rows: [], rejected: [] };
        for (const row of raw) {
          const parsed = parseEntry(row.entry, this.streamKey);
          if (parsed.ok) fallback.rows.push(parsed.row);
          else fallback.rejected.push(rejection(row.entry.id, parsed.problem));
        }
      } else {
        fallback = { rows: batch.map((m) => m.body as EventRow), rejected: [] };
      }
      ctx.state.fallback = fallback;
    }
    const written = await this.table.write(fallback.rows);
    const rejected = [...fallback.rejected];
    for (const r of written.rejected) {
      const err =
        r.code === 'TRIB_ERR_ENTRY_TOO_LARGE'
          ? new TributaryError('TRIB_ERR_ENTRY_TOO_LARGE', [r.row.streamId, r.sqlState ? `[${r.sqlState}] ${r.message}` : r.message])
          : new TributaryError('TRIB_ERR_ENTRY_REJECTED', [r.row.streamId, r.sqlState, r.message]);
      rejected.push({ id: r.row.streamId, code: err.code, error: err.message });
    }
    return { written: written.inserted, duplicates: written.duplicates, rejected, statements: statements + written.statements };
  }
}

/** The batch's rows when every one is raw (first reads), else null. */
function allRaw(batch: readonly Message<EventRowBody>[]): RawEventRow[] | null {
  const rows = new Array<RawEventRow>(batch.length);
  for (let i = 0; i < batch.length; i++) {
    const body = batch[i]!.body;
    // A RawEventRecord holds byte ranges (its payload getter would make a view to test).
    if (!(body instanceof RawEventRecord) && !Buffer.isBuffer(body.payload)) return null;
    rows[i] = body as RawEventRow;
  }
  return rows;
}

/** The batch as one JSON array; payloads (already validated JSON) are embedded as-is. */
export function encodeRows(rows: readonly EventRow[]): string {
  const parts = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    parts[i] =
      `{"i":${JSON.stringify(r.eventId)},"t":${JSON.stringify(r.eventType)},"p":${r.payload},` +
      `"s":${JSON.stringify(r.streamId)},"a":${r.producedAt === null ? 'null' : r.producedAt}}`;
  }
  return `[${parts.join(',')}]`;
}

const DEADLOCK_DETECTED = '40P01';
/** Kept for reuse at most (one per concurrent writer is what a steady drain needs). */
const MAX_SPARE_BYTES = 16 * 1024 * 1024;

// COPY BINARY framing: signature, flags (none), header extension length (0); trailer -1.
const COPY_HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
const FIELDS_PER_ROW = 5;
// timestamptz travels as microseconds since 2000-01-01T00:00:00Z.
const PG_EPOCH_MS = 946_684_800_000;
const TWO_32 = 4_294_967_296;

/**
 * The rows in COPY BINARY format, in one buffer: per row the field count, then each
 * field as a length and its bytes (jsonb: version byte 1 then the JSON text; a NULL
 * produced_at: length -1). Values that are Buffers are copied as they came from Redis.
 */
export function encodeCopyBinary(rows: readonly RawEventRow[]): Buffer {
  const out = Buffer.allocUnsafe(copyBinarySize(rows));
  encodeCopyBinaryInto(rows, out);
  return out;
}

/** The bytes encodeCopyBinary needs for `rows`. Pure. */
export function copyBinarySize(rows: readonly RawEventRow[]): number {
  let size = COPY_HEADER.length + 2;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    // Per row: field count, five lengths, the jsonb version byte, and the values.
    size += 2 + 20 + 1 + Buffer.byteLength(r.streamId, 'latin1') + (r.producedAt === null ? 0 : 8);
    if (r instanceof RawEventRecord) {
      size += (r.idSrc === undefined ? Buffer.byteLength(r.idText, 'utf8') : r.idEnd - r.idStart) + (r.typeEnd - r.typeStart) + (r.payEnd - r.payStart);
    } else {
      size += byteLength(r.eventId) + r.eventType.length + r.payload.length;
    }
  }
  return size;
}

/** Encodes `rows` into `out` (at least copyBinarySize bytes from `at`) from offset `at`; returns the offset after the last byte. */
export function encodeCopyBinaryInto(rows: readonly RawEventRow[], out: Buffer, at = 0): number {
  let o = at + COPY_HEADER.copy(out, at);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    out[o] = 0;
    out[o + 1] = FIELDS_PER_ROW;
    o += 2;
    if (r instanceof RawEventRecord) {
      // The hot path: ranges of the bytes Redis sent, copied without a view per value.
      if (r.idSrc === undefined) {
        const n = out.write(r.idText, o + 4, 'utf8');
        o = putLength(out, o, n) + n;
      } else {
        o = putRange(out, o, r.idSrc, r.idStart, r.idEnd, 0);
      }
      o = putRange(out, o, r.typeSrc, r.typeStart, r.typeEnd, 0);
      o = putRange(out, o, r.paySrc, r.payStart, r.payEnd, 1);
    } else {
      if (typeof r.eventId === 'string') {
        const n = out.write(r.eventId, o + 4, 'utf8');
        o = putLength(out, o, n) + n;
      } else {
        o = putRange(out, o, r.eventId, 0, r.eventId.length, 0);
      }
      o = putRange(out, o, r.eventType, 0, r.eventType.length, 0);
      o = putRange(out, o, r.payload, 0, r.payload.length, 1);
    }
    // An entry ID is ASCII digits and a dash: one byte per character.
    const sid = r.streamId;
    o = putLength(out, o, sid.length);
    for (let k = 0; k < sid.length; k++) out[o++] = sid.charCodeAt(k);
    if (r.producedAt === null) {
      o = putLength(out, o, -1);
    } else {
      o = putLength(out, o, 8);
      const ms = r.producedAt - PG_EPOCH_MS;
      const us = Math.round(ms * 1000);
      if (Number.isSafeInteger(us)) {
        const hi = Math.floor(us / TWO_32);
        o = putLength(out, o, hi);
        o = putLength(out, o, us - hi * TWO_32);
      } else {
        // Past 2^53 µs (after the year 2255) a double cannot count microseconds: whole ms stay exact.
        o = out.writeBigInt64BE(Number.isInteger(ms) ? BigInt(ms) * 1000n : BigInt(us), o);
      }
    }
  }
  out[o] = 0xff;
  out[o + 1] = 0xff;
  return o + 2;
}

/** Four bytes big-endian at `o` (an int32, or the low 32 bits of a larger number); the offset after. */
function putLength(out: Buffer, o: number, n: number): number {
  out[o] = n >>> 24;
  out[o + 1] = n >>> 16;
  out[o + 2] = n >>> 8;
  out[o + 3] = n;
  return o + 4;
}

/**
 * A field: its length (plus `prefix` bytes: the jsonb version 1 when 1) and the bytes
 * src[start, end). Short values are copied byte by byte: cheaper than a native copy call.
 */
function putRange(out: Buffer, o: number, src: Buffer, start: number, end: number, prefix: 0 | 1): number {
  const n = end - start;
  o = putLength(out, o, n + prefix);
  if (prefix === 1) out[o++] = 1;
  if (n <= 24) {
    for (let i = start; i < end; i++) out[o++] = src[i]!;
    return o;
  }
  return o + src.copy(out, o, start, end);
}

function byteLength(value: Buffer | string): number {
  return typeof value === 'string' ? Buffer.byteLength(value, 'utf8') : value.length;
}
