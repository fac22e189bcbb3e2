import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import copyStreams from 'pg-copy-streams';
import type { EventRow } from '../core/entry.js';
import { quoteIdent, type PgPool } from '../postgres/pool.js';

/**
 * COPY ... FROM STDIN in text format: one line per row, columns separated by tabs,
 * `\N` for NULL, and backslash, tab, newline and carriage return escaped. Pure.
 */
export function copyTextField(value: string | null): string {
  if (value === null) return '\\N';
  return value.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}

export function copyTextLine(values: ReadonlyArray<string | null>): string {
  return `${values.map(copyTextField).join('\t')}\n`;
}

/** The columns the engine writes (ingested_at takes its default). */
export const COPY_COLUMNS = ['event_id', 'event_type', 'payload', 'stream_id', 'produced_at'] as const;

export function eventCopyLine(row: EventRow): string {
  return copyTextLine([row.eventId, row.eventType, row.payload, row.streamId, row.producedAt === null ? null : new Date(row.producedAt).toISOString()]);
}

/** The rows as COPY text in chunks of about `chunkBytes` (built before timing). */
export function copyChunks(rows: readonly EventRow[], chunkBytes = 1 << 20): Buffer[] {
  const chunks: Buffer[] = [];
  let parts: string[] = [];
  let size = 0;
  for (const row of rows) {
    const line = eventCopyLine(row);
    parts.push(line);
    size += line.length;
    if (size >= chunkBytes) {
      chunks.push(Buffer.from(parts.join(''), 'utf8'));
      parts = [];
      size = 0;
    }
  }
  if (parts.length) chunks.push(Buffer.from(parts.join(''), 'utf8'));
  return chunks;
}

/** One COPY of the chunks into schema.table on one connection; resolves when it has committed (autocommit). */
export async function copyInto(pool: PgPool, schema: string, table: string, chunks: readonly Buffer[]): Promise<number> {
  const client = await pool.connect();
  try {
    const stream = client.query(
      copyStreams.from(`COPY ${quoteIdent(schema)}.${quoteIdent(table)} (${COPY_COLUMNS.join(', ')}) FROM STDIN WITH (FORMAT text)`),
    );
    await pipeline(Readable.from(chunks), stream);
    return stream.rowCount;
  } finally {
    client.release();
  }
}
