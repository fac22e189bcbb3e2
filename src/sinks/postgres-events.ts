import type { EventRow } from '../core/entry.js';
import { isRowContentError, quoteIdent, type PgPool } from '../postgres/pool.js';

export interface RejectedRow {
  row: EventRow;
  /** SQLSTATE Postgres gave for this row alone. */
  sqlState: string;
  message: string;
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

  constructor(
    private readonly pool: PgPool,
    schema = 'public',
    table = 'events',
  ) {
    const t = `${quoteIdent(schema)}.${quoteIdent(table)}`;
    this.sql =
      `INSERT INTO ${t} (event_id, event_type, payload, stream_id, produced_at) ` +
      // jsonb_array_elements, not jsonb_to_recordset: a JSON null payload must stay the
      // jsonb value null, not become SQL NULL.
      `SELECT e->>'i', e->>'t', e->'p', e->>'s', to_timestamp((e->>'a')::double precision / 1000.0) ` +
      `FROM jsonb_array_elements($1::jsonb) AS e ` +
      `ON CONFLICT (event_id) DO NOTHING`;
  }

  async write(rows: readonly EventRow[]): Promise<SinkWriteResult> {
    const result: SinkWriteResult = { inserted: 0, duplicates: 0, rejected: [], statements: 0 };
    if (rows.length > 0) await this.writeOrSplit(rows, result);
    return result;
  }

  private async writeOrSplit(rows: readonly EventRow[], result: SinkWriteResult): Promise<void> {
    try {
      result.statements++;
      const res = await this.pool.query(this.sql, [encodeRows(rows)]);
      const inserted = res.rowCount ?? 0;
      result.inserted += inserted;
      result.duplicates += rows.length - inserted;
    } catch (err) {
      if (!isRowContentError(err)) throw err;
      if (rows.length === 1) {
        const e = err as { code: string; message: string };
        result.rejected.push({ row: rows[0]!, sqlState: e.code, message: e.message });
        return;
      }
      const mid = Math.ceil(rows.length / 2);
      await this.writeOrSplit(rows.slice(0, mid), result);
      await this.writeOrSplit(rows.slice(mid), result);
    }
  }
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
