/**
 * Start-up helpers of the orders pipeline: the staging VACUUM, the reference data (or a
 * coded error saying how to load it), and a Redis connection that fails fast.
 */
import { redactUrl } from '../config/index.js';
import { asError } from '../core/retry.js';
import { isTributaryError, TributaryError } from '../errors.js';
import { quoteIdent, type PgPool } from '../postgres/pool.js';
import { connectChecked, destroyQuietly, type RedisConnection } from '../redis/client.js';
import { loadReferenceData } from './seed.js';
import type { ReferenceData } from './types.js';

/**
 * VACUUM of the staging table (not FULL: it takes no lock that blocks COPY or promote), so
 * the space of promoted rows is reused instead of piling up. One statement, fine through
 * PgBouncer.
 */
export async function vacuumStaging(pool: PgPool, schema: string): Promise<void> {
  await pool.query(`VACUUM ${quoteIdent(schema)}.orders_staging`);
}

/**
 * The reference tables (loadReferenceData), or TRIB_ERR_ORDERS_NO_REFERENCE_DATA when the
 * schema has no orders tables or one of them is empty.
 */
export async function loadReferenceDataOrFail(pool: PgPool, schema: string): Promise<ReferenceData> {
  let data: ReferenceData;
  try {
    data = await loadReferenceData(pool, schema);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === '42P01' || code === '3F000') throw new TributaryError('TRIB_ERR_ORDERS_NO_REFERENCE_DATA', [schema, 'no tables'], { cause: err });
    throw err;
  }
  const empty = (['products', 'currencies', 'zipCodes'] as const).filter((t) => data[t].length === 0);
  if (empty.length > 0) throw new TributaryError('TRIB_ERR_ORDERS_NO_REFERENCE_DATA', [schema, `${empty.join(', ')} empty`]);
  return data;
}

/** Connects a Redis connection, or TRIB_ERR_REDIS_UNAVAILABLE when it does not within `timeoutMs`. */
export async function connectRedis(conn: RedisConnection, url: string, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let last: unknown;
  const onError = (err: unknown) => (last = err);
  conn.on('error', onError);
  try {
    await Promise.race([
      // Credentials Redis refuses fail at once (TRIB_ERR_REDIS_AUTH), not after the timeout.
      connectChecked(conn, url),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`no connection to ${redactUrl(url)} within ${timeoutMs} ms${last ? ` (${asError(last).message})` : ''}`])),
          timeoutMs,
        );
      }),
    ]);
  } catch (err) {
    destroyQuietly(conn);
    if (isTributaryError(err)) throw err;
    throw new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`cannot connect to ${redactUrl(url)}: ${asError(err).message}`], { cause: err });
  } finally {
    clearTimeout(timer);
    conn.off('error', onError);
  }
}
