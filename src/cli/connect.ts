/**
 * The connections of the CLI's operating commands (dlq, pending, claim, consumers,
 * trim, tail, replay, monitor). A command must not hang when a server is down: node-redis
 * retries its first connection forever and pg waits on its pool, so each server is
 * given CONNECT_TIMEOUT_MS to answer and is otherwise reported with a coded error
 * (TRIB_ERR_REDIS_UNAVAILABLE, TRIB_ERR_POSTGRES_UNAVAILABLE) naming the redacted URL;
 * the CLI prints it and exits 2.
 *
 * Redis connections fail fast: a command sent while disconnected fails at once instead
 * of waiting in a queue for a reconnect that may never come, and a connection lost
 * mid-command is reported as TRIB_ERR_REDIS_UNAVAILABLE as well.
 *
 * Commands that handle SIGINT/SIGTERM install their handlers only once these return:
 * while connecting, a signal ends the process the default way, at once.
 */
import { ClientClosedError, ClientOfflineError, ConnectionTimeoutError, SocketClosedUnexpectedlyError, SocketTimeoutError } from '@redis/client';
import { redactUrl } from '../config/index.js';
import type { TributaryConfig } from '../config/schema.js';
import { isTributaryError, TributaryError } from '../errors.js';
import { createPgPool, postgresRefusal, type PgPool, type PgPoolOptions } from '../postgres/pool.js';
import { connectChecked, createRedisConnection, destroyQuietly, type RedisConnection } from '../redis/client.js';

/** How long a server has to answer when a command starts (ms). */
export const CONNECT_TIMEOUT_MS = 5000;

const seconds = (ms: number) => `${Number((ms / 1000).toFixed(1))} s`;

function reason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  // AggregateError (every address of a host refused) has an empty message: use its parts.
  const message = err.message || (err instanceof AggregateError ? err.errors.map((e: unknown) => reason(e)).join('; ') : err.name);
  return typeof code === 'string' && !message.includes(code) ? `${message} [${code}]` : message;
}

export interface OpenRedisOptions {
  /** Shown in CLIENT LIST as `tributary:<name>`. */
  name: string;
  /** Give up after this long (default CONNECT_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Aborting stops the attempt (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * A connected, fail-fast Redis connection, or TRIB_ERR_REDIS_UNAVAILABLE (with the last
 * connection error) when Redis does not answer within the timeout.
 */
export async function openRedis(config: Pick<TributaryConfig, 'redisUrl'>, options: OpenRedisOptions): Promise<RedisConnection> {
  const timeoutMs = options.timeoutMs ?? CONNECT_TIMEOUT_MS;
  let lastError: unknown;
  let refused: ((err: unknown) => void) | undefined;
  const redis = createRedisConnection(config.redisUrl, {
    name: `tributary:${options.name}`,
    failFast: true,
    connectTimeoutMs: timeoutMs,
    onError: (err) => {
      lastError = err;
      // Nothing listens on the port, or the host name does not resolve: no answer will
      // come by waiting, and a one-shot command says so at once (a host that does not
      // answer at all still gets the whole timeout).
      const code = (err as { code?: unknown }).code;
      if (code === 'ECONNREFUSED' || code === 'ENOTFOUND') refused?.(err);
    },
  });
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    options.signal?.throwIfAborted();
    await Promise.race([
      // Credentials Redis refuses fail at once (TRIB_ERR_REDIS_AUTH), not after the timeout.
      connectChecked(redis, config.redisUrl),
      new Promise<never>((_, reject) => {
        refused = (err) => reject(new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`cannot connect to ${redactUrl(config.redisUrl)}: ${reason(err)}`], { cause: err }));
        timer = setTimeout(() => {
          const why = lastError === undefined ? 'no answer' : reason(lastError);
          reject(new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`no connection to ${redactUrl(config.redisUrl)} within ${seconds(timeoutMs)} (${why})`]));
        }, timeoutMs);
        onAbort = () => reject(options.signal!.reason);
        options.signal?.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
    return redis;
  } catch (err) {
    destroyQuietly(redis);
    if (isTributaryError(err) || options.signal?.aborted) throw err;
    throw new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`cannot connect to ${redactUrl(config.redisUrl)}: ${reason(err)}`], { cause: err });
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Checks Postgres once (SELECT 1): TRIB_ERR_POSTGRES_DATABASE_MISSING or
 * TRIB_ERR_POSTGRES_AUTH when it refuses the URL's database, role or password;
 * TRIB_ERR_POSTGRES_UNAVAILABLE when it cannot be reached or does not answer within the
 * timeout.
 */
export async function checkPostgres(pool: PgPool, databaseUrl: string, timeoutMs = CONNECT_TIMEOUT_MS): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      pool.query('SELECT 1'),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${seconds(timeoutMs)}`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    throw postgresRefusal(err, databaseUrl) ?? new TributaryError('TRIB_ERR_POSTGRES_UNAVAILABLE', [`cannot query ${redactUrl(databaseUrl)}: ${reason(err)}`], { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/** node-redis errors that mean the connection is gone (not a command's own error reply). */
export function isRedisConnectionLost(err: unknown): boolean {
  return (
    err instanceof ClientOfflineError ||
    err instanceof ClientClosedError ||
    err instanceof SocketClosedUnexpectedlyError ||
    err instanceof ConnectionTimeoutError ||
    err instanceof SocketTimeoutError
  );
}

/** A lost Redis connection as TRIB_ERR_REDIS_UNAVAILABLE; any other error as it is. */
export function redisLostAsCoded(err: unknown, redisUrl: string): unknown {
  if (!isRedisConnectionLost(err)) return err;
  return new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`lost the connection to ${redactUrl(redisUrl)}: ${reason(err)}`], { cause: err });
}

/** Connects to Redis (see openRedis), runs `fn`, disconnects. */
export async function withRedis<T>(config: TributaryConfig, name: string, fn: (redis: RedisConnection) => Promise<T>): Promise<T> {
  const redis = await openRedis(config, { name });
  try {
    return await fn(redis);
  } catch (err) {
    throw redisLostAsCoded(err, config.redisUrl);
  } finally {
    destroyQuietly(redis);
  }
}

export interface Connections {
  redis: RedisConnection;
  pool: PgPool;
  close(): Promise<void>;
}

/**
 * Both servers, checked at the same time: a connected Redis (openRedis) and a pg pool
 * that has answered SELECT 1 (checkPostgres). The first failure is thrown at once and
 * the other attempt is abandoned.
 */
export async function openConnections(
  config: TributaryConfig,
  name: string,
  poolOptions: Omit<PgPoolOptions, 'applicationName'> = {},
): Promise<Connections> {
  const pool = createPgPool(config.databaseUrl, { max: 2, queryTimeoutMs: config.pgQueryTimeoutMs, ...poolOptions, applicationName: `tributary:${name}` });
  const abandon = new AbortController();
  const redisOpening = openRedis(config, { name, signal: abandon.signal });
  try {
    const [redis] = await Promise.all([redisOpening, checkPostgres(pool, config.databaseUrl)]);
    return {
      redis,
      pool,
      async close() {
        destroyQuietly(redis);
        await pool.end().catch(() => {});
      },
    };
  } catch (err) {
    abandon.abort(new Error('abandoned'));
    redisOpening.then(destroyQuietly, () => {});
    // Not awaited: a connection attempt still in progress may take until its own timeout.
    void pool.end().catch(() => {});
    throw err;
  }
}

/** Opens both servers (see openConnections), runs `fn`, closes them. */
export async function withConnections<T>(
  config: TributaryConfig,
  name: string,
  poolOptions: Omit<PgPoolOptions, 'applicationName'>,
  fn: (conn: Connections) => Promise<T>,
): Promise<T> {
  const conn = await openConnections(config, name, poolOptions);
  try {
    return await fn(conn);
  } catch (err) {
    throw redisLostAsCoded(err, config.redisUrl);
  } finally {
    await conn.close();
  }
}
