import { ERRORS, type ErrorCode } from '../errors.js';
import type { DeadLetter as RunnerDeadLetter, DeadLetterStore, Message } from '../core/contracts.js';
import type { RedisConnection } from '../redis/client.js';
import { moveToDeadLetterStream, type DeadLetterTarget } from '../redis/dead-letter-stream.js';
import type { StreamEntry } from '../redis/commands.js';
import { defaultEventId } from '../core/entry.js';
import { isRowContentError, quoteIdent, type PgPool } from '../postgres/pool.js';

/** An entry on its way to the dead letters, with the coded reason. */
export interface DeadLetter {
  entry: StreamEntry;
  code: ErrorCode;
  error: string;
  deliveries: number;
}

export type { DeadLetterTarget };

/**
 * Text Postgres will store: jsonb and text refuse NUL (kept visible as the escape text
 * `\u0000`) and lone UTF-16 surrogates (V8 puts them in JSON.parse messages about an
 * emoji, for one; replaced by U+FFFD).
 */
export function pgSafe(s: string): string {
  const wellFormed = s.toWellFormed();
  return wellFormed.includes('\u0000') ? wellFormed.replace(/\u0000/g, '\\u0000') : wellFormed;
}

function pgSafeFields(fields: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) out[pgSafe(k)] = pgSafe(v);
  return out;
}

/**
 * Writes dead letters to the `dead_letter_queue` table and the dead-letter stream.
 * Order and idempotency: the table insert is keyed on (stream, group, entry ID) with
 * ON CONFLICT DO NOTHING; then one Lua script per entry acknowledges it and appends
 * to the dead-letter stream atomically, only if it was still pending. A crash at any
 * point repeats the work without a second row or a second stream entry.
 */
/** The key of the placeholder `fields` of a dead letter Postgres refused to store. */
export const UNSTORED = '_tributary';


export class DeadLetterWriter {
  private readonly sql: string;

  constructor(
    private readonly pool: PgPool,
    private readonly redis: RedisConnection,
    private readonly target: DeadLetterTarget,
    schema = 'public',
  ) {
    this.sql =
      `INSERT INTO ${quoteIdent(schema)}.dead_letter_queue ` +
      `(stream_key, group_name, stream_id, event_id, event_type, fields, error_code, error, deliveries) ` +
      `SELECT $1, $2, r.stream_id, r.event_id, r.event_type, r.fields, r.error_code, r.error, r.deliveries ` +
      `FROM jsonb_to_recordset($3::jsonb) AS r(stream_id text, event_id text, event_type text, fields jsonb, ` +
      `error_code text, error text, deliveries int) ` +
      `ON CONFLICT (stream_key, group_name, stream_id) DO NOTHING`;
  }

  /**
   * Records the dead letters in Postgres (idempotent) and returns how many rows were
   * new. Throws on a server error. If
   * Postgres refuses a dead letter's own content (a value too large, say), the rows are
   * stored without their fields — the dead-letter stream keeps those — rather than
   * retried forever: a dead letter must never block the pipeline.
   */
  async record(letters: readonly DeadLetter[]): Promise<number> {
    if (letters.length === 0) return 0;
    try {
      return await this.insert(letters);
    } catch (err) {
      if (!isRowContentError(err)) throw err;
      const reason = `fields not storable in Postgres ([${(err as { code: string }).code}] ${(err as Error).message}); see the dead-letter stream`;
      return await this.insert(letters, reason);
    }
  }

  /** Inserts the rows; returns how many were new (the rest were recorded before). */
  private async insert(letters: readonly DeadLetter[], unstorable?: string): Promise<number> {
    const short = (v: string | undefined) => (v === undefined ? null : pgSafe(unstorable ? v.slice(0, 512) : v));
    const rows = letters.map((l) => ({
      stream_id: l.entry.id,
      // The key the engine uses for it, so a retried dead letter stays idempotent.
      event_id: short(l.entry.fields.event_id ?? defaultEventId(this.target.streamKey, l.entry.id)),
      event_type: short(l.entry.fields.event_type),
      fields: unstorable ? { [UNSTORED]: pgSafe(unstorable) } : pgSafeFields(l.entry.fields),
      error_code: l.code,
      error: pgSafe(l.error),
      deliveries: l.deliveries,
    }));
    const res = await this.pool.query(this.sql, [this.target.streamKey, this.target.group, JSON.stringify(rows)]);
    return res.rowCount ?? 0;
  }

  /**
   * Acknowledges each entry and appends it to the dead-letter stream, atomically per
   * entry (pipelined). Returns how many were newly dead-lettered in Redis.
   */
  moveInRedis(letters: readonly DeadLetter[]): Promise<number> {
    return moveToDeadLetterStream(
      this.redis,
      this.target,
      letters.map((l) => ({ id: l.entry.id, fields: l.entry.fields, code: l.code, error: l.error, deliveries: l.deliveries })),
    );
  }
}

/**
 * The runner's dead-letter store for stream pipelines: the `dead_letter_queue` table
 * (idempotent on stream, group and entry ID). The source then moves the entries to the
 * dead-letter stream, which acknowledges them.
 */
export class PostgresDeadLetterStore implements DeadLetterStore {
  readonly server = 'postgres' as const;
  private readonly writer: DeadLetterWriter;

  constructor(pool: PgPool, redis: RedisConnection, target: DeadLetterTarget, schema = 'public') {
    this.writer = new DeadLetterWriter(pool, redis, target, schema);
  }

  async record(letters: readonly RunnerDeadLetter[], describe: (m: Message<unknown>) => Record<string, string>): Promise<void> {
    await this.writer.record(
      letters.map((l) => ({
        // A message too large to decode is recorded without its fields (the dead-letter stream keeps its bytes).
        entry: { id: l.message.id, fields: l.fieldsOmitted !== undefined ? { [UNSTORED]: `${l.fieldsOmitted}; see the dead-letter stream` } : describe(l.message) },
        code: l.code,
        error: l.error,
        deliveries: l.message.deliveries,
      })),
    );
  }
}

export function describeCode(code: ErrorCode): string {
  return ERRORS[code].description;
}
