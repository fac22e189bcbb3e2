import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import copyStreams from 'pg-copy-streams';
import { TributaryError } from '../../errors.js';
import { quoteIdent, withClient, type PgPool } from '../../postgres/pool.js';
import type { StagingColumns } from '../types.js';
import { STAGING_COPY_COLUMNS, stagingBatchProblem, stagingCopyChunks } from './copy-text.js';

/**
 * Loads one batch into `<schema>.orders_staging` with ONE `COPY ... FROM STDIN` (text
 * format), every row tagged with `batchId`. Returns the number of rows staged.
 *
 * - One statement in autocommit: nothing is staged if it fails, and it runs through
 *   PgBouncer in transaction mode (no session state, no prepared statements).
 * - A value the table cannot hold as given never fails the COPY: see
 *   {@link stagingCopyLine} (NUL characters and a non-finite quantity are staged with a
 *   `stage_error` and rejected as 'malformed' at promote; an order_ts that is not
 *   ISO 8601 UTC text is staged as NULL and rejected as 'bad_timestamp').
 * - An empty batch stages nothing and does not touch Postgres.
 *
 * Staging the same batch twice stages its rows twice; promote dedupes by order_id.
 *
 * @throws TributaryError TRIB_ERR_ORDERS_BAD_BATCH when the columns do not match
 *   `cols.length` or the batch id is empty; Postgres errors (connection loss, a missing
 *   table) are thrown as pg raised them, for the caller to classify and retry.
 */
export async function stageBatch(pool: PgPool, schema: string, batchId: string, cols: StagingColumns): Promise<number> {
  const problem = stagingBatchProblem(batchId, cols);
  if (problem !== null) throw new TributaryError('TRIB_ERR_ORDERS_BAD_BATCH', [JSON.stringify(batchId), problem]);
  if (cols.length === 0) return 0;

  const sql =
    `COPY ${quoteIdent(schema)}.orders_staging (${STAGING_COPY_COLUMNS.join(', ')}) ` + `FROM STDIN WITH (FORMAT text)`;
  return withClient(pool, async (client) => {
    const copy = client.query(copyStreams.from(sql));
    await pipeline(Readable.from(stagingCopyChunks(batchId, cols)), copy);
    return copy.rowCount;
  });
}
