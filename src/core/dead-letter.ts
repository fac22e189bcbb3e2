import { ERRORS, type ErrorCode } from '../errors.js';
import { RedisScript, type RedisConnection } from '../redis/client.js';
import type { StreamEntry } from '../redis/commands.js';
import { quoteIdent, type PgPool } from '../postgres/pool.js';

/** An entry on its way to the dead letters, with the coded reason. */
export interface DeadLetter {
  entry: StreamEntry;
  code: ErrorCode;
  error: string;
  deliveries: number;
}

export interface DeadLetterTarget {
  streamKey: string;
  group: string;
  dlqStream: string;
}

/** jsonb and text columns refuse NUL; keep it visible as the escape text `\u0000`. */
function pgSafe(s: string): string {
  return s.includes('\u0000') ? s.replace(/\u0000/g, '\\u0000') : s;
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
export class DeadLetterWriter {
  private readonly script = new RedisScript('dead-letter');
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

  /** Records the dead letters in Postgres (idempotent). Throws on a server error. */
  async record(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const rows = letters.map((l) => ({
      stream_id: l.entry.id,
      event_id: pgSafe(l.entry.fields.event_id ?? l.entry.id),
      event_type: l.entry.fields.event_type === undefined ? null : pgSafe(l.entry.fields.event_type),
      fields: pgSafeFields(l.entry.fields),
      error_code: l.code,
      error: pgSafe(l.error),
      deliveries: l.deliveries,
    }));
    await this.pool.query(this.sql, [this.target.streamKey, this.target.group, JSON.stringify(rows)]);
  }

  /**
   * Acknowledges each entry and appends it to the dead-letter stream, atomically per
   * entry (pipelined). Returns how many were newly dead-lettered in Redis.
   */
  async moveInRedis(letters: readonly DeadLetter[]): Promise<number> {
    const now = String(Date.now());
    const replies = await Promise.all(
      letters.map((l) => {
        const args = [this.target.group, l.entry.id];
        for (const [k, v] of Object.entries(l.entry.fields)) args.push(k, v);
        args.push(
          'dlq_source_stream', this.target.streamKey,
          'dlq_source_id', l.entry.id,
          'dlq_group', this.target.group,
          'dlq_error_code', l.code,
          'dlq_error', l.error,
          'dlq_deliveries', String(l.deliveries),
          'dlq_failed_at', now,
        );
        return this.script.run(this.redis, [this.target.streamKey, this.target.dlqStream], args);
      }),
    );
    return replies.filter((r) => r !== null).length;
  }
}

export function describeCode(code: ErrorCode): string {
  return ERRORS[code].description;
}
