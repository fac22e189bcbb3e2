import { userInfo } from 'node:os';
import pg from 'pg';
import { redactUrl } from '../config/index.js';
import { TributaryError } from '../errors.js';

export type PgPool = pg.Pool;

/**
 * Default of PgPoolOptions.queryTimeoutMs (PG_QUERY_TIMEOUT_MS): above the 30 s write
 * statement timeout, a COPY of a big batch, a view refresh or a migration on a loaded
 * server; far below the ~15 min a kernel retransmits into a black hole before it gives up.
 */
export const DEFAULT_PG_QUERY_TIMEOUT_MS = 120_000;

export interface PgPoolOptions {
  max?: number;
  /** statement_timeout for every connection (ms). */
  statementTimeoutMs?: number;
  /**
   * A query (a COPY included) with no reply from the server within this long drops its
   * connection (the query fails as a lost connection: retried, the server reported down),
   * so a black-holed or half-dead server cannot stall a pipeline until the kernel gives
   * up on the socket. Must exceed the longest legitimate statement (statement_timeout
   * cancels a write server-side first). 0: no limit. Default DEFAULT_PG_QUERY_TIMEOUT_MS.
   */
  queryTimeoutMs?: number;
  applicationName?: string;
  onError?: (err: Error) => void;
}

/**
 * A pg pool. Idle clients that die (server restart, pg_terminate_backend) emit
 * 'error' on the pool; it is routed to onError instead of crashing the process.
 */
export function createPgPool(databaseUrl: string, options: PgPoolOptions = {}): PgPool {
  const pool = new pg.Pool({
    connectionString: withDefaultUser(databaseUrl),
    max: options.max ?? 10,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs,
    application_name: options.applicationName ?? 'tributary',
    keepAlive: true,
    Client: DurableClient as unknown as typeof pg.Client,
    // Passed by the pool to each client it makes (DurableClient reads it).
    queryTimeoutMs: options.queryTimeoutMs ?? DEFAULT_PG_QUERY_TIMEOUT_MS,
  } as pg.PoolConfig);
  pool.on('error', (err) => options.onError?.(err));
  pool.on('connect', (client) => {
    // Nagle off: a batch write is one small request waiting on one reply.
    (client as unknown as { connection?: { stream?: { setNoDelay?: (v: boolean) => void } } }).connection?.stream?.setNoDelay?.(true);
  });
  return pool;
}

/**
 * A client whose session commits synchronously, whatever the server, database or role
 * says: with synchronous_commit = off (or local) a commit returns, and the entries are
 * acknowledged, before the WAL reached disk, and a crash loses acknowledged events. Set
 * once connected, before the pool hands the client out (not the `options` startup
 * parameter: PgBouncer refuses it). Through PgBouncer's transaction pooling a session
 * setting does not follow the client: set it on the role or the server there.
 */
class DurableClient extends pg.Client {
  private readonly queryTimeoutMs: number;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(config?: string | (pg.ClientConfig & { queryTimeoutMs?: number })) {
    super(config);
    this.queryTimeoutMs = typeof config === 'object' ? (config.queryTimeoutMs ?? 0) : 0;
    // A backend that dies at any moment of this client's life (between connecting and
    // the SET, while checked out, as it is handed out) makes it emit 'error'; pg-pool
    // listens only while the client is idle, and an unheard 'error' would crash the
    // process. The query in progress fails on its own, and the pool drops the client.
    this.on('error', () => {});
    this.on('end', () => clearTimeout(this.watchdog));
  }

  /**
   * Every query is watched: with no ReadyForQuery from the server within
   * queryTimeoutMs, the socket is destroyed. pg's own query_timeout only fails the
   * query and leaves the client waiting on the dead socket (and pool.end() waiting on
   * it, until the kernel gives up); destroying fails everything queued on it as a lost
   * connection, and the pool drops the client.
   */
  override query(...args: unknown[]): any {
    this.arm();
    return (super.query as (...a: unknown[]) => unknown).apply(this, args);
  }

  private arm(): void {
    if (this.queryTimeoutMs <= 0 || this.watchdog) return;
    this.watchdog = setTimeout(() => this.expire(), this.queryTimeoutMs);
    this.watchdog.unref();
  }

  /** A reply completed (ReadyForQuery): the next query queued, if any, gets a full timeout. */
  private replied(): void {
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    if (this.busy()) this.arm();
  }

  private busy(): boolean {
    const self = this as unknown as { _activeQuery?: unknown; _queryQueue?: unknown[]; _sentQueryQueue?: unknown[] };
    return Boolean(self._activeQuery) || (self._queryQueue?.length ?? 0) > 0 || (self._sentQueryQueue?.length ?? 0) > 0;
  }

  private expire(): void {
    this.watchdog = undefined;
    if (!this.busy()) return;
    const stream = (this as unknown as { connection?: { stream?: { destroy(err?: Error): void } } }).connection?.stream;
    stream?.destroy(new Error(`no reply from Postgres within ${this.queryTimeoutMs} ms (PG_QUERY_TIMEOUT_MS): connection dropped`));
  }

  // pg-pool calls connect(callback); a direct user may await connect().
  override connect(callback?: (...args: any[]) => void): any {
    const ready = super.connect().then(async () => {
      (this as unknown as { connection: NodeJS.EventEmitter }).connection.on('readyForQuery', () => this.replied());
      await this.query('SET synchronous_commit = on');
      return this;
    });
    if (!callback) return ready;
    ready.then(
      (client) => callback(null, client),
      (err: Error) => callback(err),
    );
  }
}

/**
 * The URL with a user name: pg falls back to $USER when the URL names none (and an
 * empty user from the URL beats its `user` option), and CI shells, cron and
 * containers may not set $USER. Name the OS user, as libpq does. URLs without a
 * host (sockets) or that do not parse are returned as given.
 */
export function withDefaultUser(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    if (url.username || !url.hostname) return databaseUrl;
    url.username = encodeURIComponent(process.env.PGUSER || process.env.USER || userInfo().username);
    return url.toString();
  } catch {
    return databaseUrl;
  }
}

/**
 * Runs fn on one pooled client. A backend that dies meanwhile does not become an
 * uncaught 'error' on the client (pools not made by createPgPool listen only while it is
 * idle), and a client whose connection broke is destroyed, not returned to the pool.
 */
export async function withClient<T>(pool: PgPool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  const onError = () => {};
  client.on('error', onError);
  let broken: Error | undefined;
  try {
    return await fn(client);
  } catch (err) {
    if (isConnectionError(err)) broken = err as Error;
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * SQLSTATE classes that mean "this row's content is wrong": data exceptions (22),
 * integrity violations (23), program limits such as a too-large value (54).
 * Anything else (connection loss, shutdown, missing table) is retried, never dead-lettered.
 */
export function isRowContentError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string' || code.length !== 5) return false;
  return code.startsWith('22') || code.startsWith('23') || code.startsWith('54');
}

/**
 * The connection is gone or the server is going away: SQLSTATE class 08 (connection
 * exception), 57P01-57P05 (shutdown, crash, cannot connect now), or an error with no
 * SQLSTATE at all (a socket error, 'Connection terminated unexpectedly').
 */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string' || code.length !== 5 || !/^[0-9A-Z]{5}$/.test(code)) return true;
  return code.startsWith('08') || /^57P0[1-5]$/.test(code);
}

/**
 * A connection Postgres refused for a wrong setting — the database does not exist
 * (3D000), the role does not exist or has no pg_hba.conf entry (28000), the password is
 * wrong (28P01) — as a non-retryable coded error naming the redacted URL; undefined for
 * anything else (an outage, a refused or unreachable host, a query's own error). Waiting
 * cannot fix a wrong setting, so callers fail with it instead of retrying.
 */
export function postgresRefusal(err: unknown, databaseUrl: string): TributaryError | undefined {
  const code = (err as { code?: unknown })?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === '3D000') {
    let name = '?';
    try {
      name = decodeURIComponent(new URL(databaseUrl).pathname.replace(/^\//, '')) || '?';
    } catch {
      // an unparsable URL: the server's message names the database anyway
    }
    return new TributaryError('TRIB_ERR_POSTGRES_DATABASE_MISSING', [JSON.stringify(name), redactUrl(databaseUrl)], { cause: err });
  }
  if (code === '28000' || code === '28P01') return new TributaryError('TRIB_ERR_POSTGRES_AUTH', [redactUrl(databaseUrl), message, code], { cause: err });
  return undefined;
}
