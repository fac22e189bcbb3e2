/**
 * Reachability checks for `tributary up`: does a Redis answer PING, does a Postgres
 * answer SELECT 1, and creating the database named in a URL when it is missing.
 */
import { withDefaultUser } from '../postgres/pool.js';
import pg from 'pg';
import { createClient } from '@redis/client';
import { sleep } from './process.js';

/** Connect timeout for probing a server that may well be absent (keeps `up` fast). */
export const PROBE_TIMEOUT_MS = 1500;

export type ProbeResult =
  | { ok: true; version: string; pid?: number }
  | { ok: false; reason: string; code?: string };

function describe(err: unknown): { reason: string; code?: string } {
  const e = err as { code?: unknown; message?: unknown; errors?: unknown };
  // Node's net errors for "localhost" come as an AggregateError of one per address.
  const inner = Array.isArray(e.errors) && e.errors.length > 0 ? (e.errors[0] as typeof e) : undefined;
  const code = typeof e.code === 'string' ? e.code : typeof inner?.code === 'string' ? inner.code : undefined;
  const message = typeof e.message === 'string' && e.message ? e.message : typeof inner?.message === 'string' ? inner.message : String(err);
  return { reason: code && !message.includes(code) ? `${code}: ${message}` : message, code };
}

/** PINGs a Redis; on success returns its version and server PID. Never throws. */
export async function probeRedis(url: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<ProbeResult> {
  let client: ReturnType<typeof createClient> | undefined;
  try {
    client = createClient({
      url,
      disableOfflineQueue: true,
      socket: { connectTimeout: timeoutMs, reconnectStrategy: false },
    });
    client.on('error', () => undefined); // reported through the rejected promise instead
    await withTimeout(client.connect(), timeoutMs * 2, 'connect');
    const pong = await withTimeout(client.ping(), timeoutMs * 2, 'PING');
    if (pong !== 'PONG') return { ok: false, reason: `unexpected PING reply ${JSON.stringify(pong)}` };
    const info = await withTimeout(client.info('server'), timeoutMs * 2, 'INFO');
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    const pidText = /process_id:(\d+)/.exec(info)?.[1];
    return { ok: true, version, pid: pidText ? Number(pidText) : undefined };
  } catch (err) {
    return { ok: false, ...describe(err) };
  } finally {
    try {
      client?.destroy();
    } catch {
      // already closed
    }
  }
}

function pgClient(url: string, timeoutMs: number): pg.Client {
  const client = new pg.Client({
    connectionString: withDefaultUser(url),
    connectionTimeoutMillis: timeoutMs,
    application_name: 'tributary-up',
  });
  client.on('error', () => undefined); // a dying connection must not crash the process
  return client;
}

/** Runs SELECT 1 (and reads the server version); never throws. */
export async function probePostgres(url: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<ProbeResult> {
  const client = pgClient(url, timeoutMs);
  try {
    await client.connect();
    await client.query('SELECT 1');
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return { ok: true, version: rows[0]?.server_version ?? 'unknown' };
  } catch (err) {
    return { ok: false, ...describe(err) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Polls `probe` until it succeeds or `timeoutMs` passes; returns the last result. */
export async function waitUntilAnswers(probe: () => Promise<ProbeResult>, timeoutMs: number): Promise<ProbeResult> {
  const deadline = Date.now() + timeoutMs;
  let last: ProbeResult = { ok: false, reason: 'not tried' };
  for (;;) {
    last = await probe();
    if (last.ok || Date.now() >= deadline) return last;
    await sleep(200);
  }
}

/** The database a postgres:// URL names ('' when it names none). */
export function databaseName(url: string): string {
  const path = new URL(url).pathname.replace(/^\//, '');
  return decodeURIComponent(path);
}

/** The same URL with another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Creates the database named in `databaseUrl` if it does not exist, connecting to the
 * `postgres` maintenance database of the same server (or `template1` where there is no
 * `postgres` database). Returns true if it created it. Throws the driver's error when the
 * server cannot be reached or the role may not create databases.
 */
export async function ensureDatabase(databaseUrl: string, timeoutMs = 5000): Promise<boolean> {
  const name = databaseName(databaseUrl);
  if (!name) return false;
  let client = pgClient(withDatabase(databaseUrl, 'postgres'), timeoutMs);
  try {
    try {
      await client.connect();
    } catch (err) {
      if ((err as { code?: string }).code !== '3D000' || name === 'template1') throw err;
      await client.end().catch(() => undefined);
      client = pgClient(withDatabase(databaseUrl, 'template1'), timeoutMs);
      await client.connect();
    }
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount) return false;
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
      return true;
    } catch (err) {
      // 42P04 duplicate_database: another process created it just now.
      if ((err as { code?: string }).code === '42P04') return false;
      throw err;
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
