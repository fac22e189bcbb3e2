/**
 * Errors that are not outages (issue 11, item 5): the server answers, but refuses the
 * work for a reason an operator must fix — a missing or renamed table, a permission
 * taken away, a read-only server, a full disk. Retrying cannot cure them until someone
 * acts, yet the work must not be lost or dead-lettered: the runner keeps the entries
 * pending and retries with backoff, but names the real cause with its own code (once),
 * and readiness reports it, instead of calling it "postgres unavailable".
 *
 * Pure: it looks only at the driver's SQLSTATE (`err.code`).
 */
import { TributaryError, type ErrorCode } from '../errors.js';
import type { ServerName } from './contracts.js';

/** SQLSTATEs of Postgres faults that are not outages, and their codes. */
export const POSTGRES_FAULTS: Readonly<Record<string, ErrorCode>> = {
  '42P01': 'TRIB_ERR_POSTGRES_TABLE_MISSING', // undefined_table (dropped or renamed)
  '3F000': 'TRIB_ERR_POSTGRES_TABLE_MISSING', // invalid_schema_name (schema dropped or renamed)
  '42501': 'TRIB_ERR_POSTGRES_PERMISSION', // insufficient_privilege
  '25006': 'TRIB_ERR_POSTGRES_READ_ONLY', // read_only_sql_transaction (a standby, default_transaction_read_only)
  '53100': 'TRIB_ERR_POSTGRES_DISK_FULL', // disk_full
};

/** Every code faultOf can give. */
export const FAULT_CODES: ReadonlySet<ErrorCode> = new Set(Object.values(POSTGRES_FAULTS));

/**
 * The error as a coded fault when it is one (a Postgres error with one of the SQLSTATEs
 * above, from a step attributed to Postgres), else undefined. An error already coded as
 * a fault is returned as it is.
 */
export function faultOf(server: ServerName | undefined, err: unknown): TributaryError | undefined {
  if (err instanceof TributaryError) return FAULT_CODES.has(err.code) ? err : undefined;
  if (server !== 'postgres') return undefined;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  const fault = POSTGRES_FAULTS[code];
  if (!fault) return undefined;
  const message = err instanceof Error ? err.message : String(err);
  return new TributaryError(fault, [message, code], { cause: err });
}

/** Whether an error (as reported in serverDown) is a fault rather than an outage. */
export function isFault(err: unknown): err is TributaryError {
  return err instanceof TributaryError && FAULT_CODES.has(err.code);
}

/**
 * Redis refused a command for lack of memory: an `OOM command not allowed when used
 * memory > 'maxmemory'` reply (in a script too), or TRIB_ERR_REDIS_OOM.
 */
export function isOutOfMemory(err: unknown): boolean {
  if (err instanceof TributaryError) return err.code === 'TRIB_ERR_REDIS_OOM';
  const message = err instanceof Error ? err.message : typeof err === 'string' ? err : '';
  return /^(ERR Error running script[^:]*: )?OOM\b|\bOOM command not allowed\b/.test(message);
}

/** "1 dead letter", "3 dead letters". */
export function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

/**
 * A statement timeout (57014 with Postgres's "statement timeout" message; a cancel by
 * an operator is not one): the write took longer than WRITE_TIMEOUT_MS.
 */
export function isWriteTimeout(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return e?.code === '57014' && typeof e.message === 'string' && /statement timeout/i.test(e.message);
}

/**
 * A write that failed for its size, which retrying the same batch cannot cure: a
 * statement or value over a Postgres limit (54000 program_limit_exceeded, e.g. a jsonb
 * over 256 MiB), a string longer than V8 can hold (RangeError 'Invalid string length',
 * ERR_STRING_TOO_LONG), TRIB_ERR_BATCH_TOO_LARGE from a sink, or a statement timeout
 * (isWriteTimeout). The runner splits such a batch instead of retrying it.
 */
export function isTooLargeToWrite(err: unknown): boolean {
  if (err instanceof TributaryError) return err.code === 'TRIB_ERR_BATCH_TOO_LARGE';
  if (err instanceof RangeError && /Invalid string length|Invalid array length/.test(err.message)) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ERR_STRING_TOO_LONG' || code === '54000' || isWriteTimeout(err);
}
