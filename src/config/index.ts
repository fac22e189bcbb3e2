import { clusterConfig } from '../redis/cluster.js';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { TributaryError } from '../errors.js';
import { configSchema, SECRET_SETTINGS, SETTINGS, type ConfigKey, type TributaryConfig } from './schema.js';

export { configSchema, SETTINGS, type ConfigKey, type TributaryConfig } from './schema.js';

/** Where `tributary up` keeps project-local servers and its state file. */
export function tributaryHome(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.TRIBUTARY_HOME ?? join(process.cwd(), '.tributary'));
}

/** The file `tributary up` writes: which servers it chose, so later commands use them. */
export function servicesStatePath(env: NodeJS.ProcessEnv = process.env): string {
  return join(tributaryHome(env), 'services.json');
}

export interface ServicesState {
  redis?: { url: string; managed: boolean; pid?: number; dataDir?: string; port?: number };
  postgres?: { url: string; managed: boolean; pid?: number; dataDir?: string; port?: number };
}

export function readServicesState(env: NodeJS.ProcessEnv = process.env): ServicesState {
  return readJsonState<ServicesState>(servicesStatePath(env));
}

/** A small JSON state file under `.tributary/`; missing or unreadable is an empty object. */
export function readJsonState<T extends object>(path: string): T {
  if (!existsSync(path)) return {} as T;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return {} as T;
  }
}

/** Reads a dotenv file into a plain object; a missing file is an empty object. */
export function readEnvFile(path: string): Record<string, string> {
  if (!existsSync(path)) return {};
  try {
    return parseEnv(readFileSync(path, 'utf8')) as Record<string, string>;
  } catch (err) {
    throw new TributaryError('TRIB_ERR_CONFIG_ENV_FILE', [path, (err as Error).message], { cause: err });
  }
}

export interface ResolveConfigOptions {
  /** Values from CLI flags or library callers; highest precedence. `undefined` means unset. */
  overrides?: Partial<Record<ConfigKey, unknown>>;
  /** Environment; defaults to `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** dotenv file to read under the environment; defaults to `./.env`. `false` disables. */
  envFile?: string | false;
  /** Use the servers recorded by `tributary up` when no URL is given (default true). */
  useServicesState?: boolean;
}

/**
 * Resolves the configuration, in one place: flag, then environment, then `.env`,
 * then the servers `tributary up` chose, then the default. Values are coerced and
 * validated once; a bad value throws TRIB_ERR_CONFIG_INVALID naming the setting.
 */
export function resolveConfig(options: ResolveConfigOptions = {}): TributaryConfig {
  const env = options.env ?? process.env;
  const fileEnv = options.envFile === false ? {} : readEnvFile(options.envFile ?? join(process.cwd(), '.env'));
  const state = options.useServicesState === false ? {} : readServicesState(env);

  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(SETTINGS) as ConfigKey[]) {
    const name = SETTINGS[key].env;
    const value = options.overrides?.[key] ?? nonEmpty(env[name]) ?? nonEmpty(fileEnv[name]);
    if (value !== undefined) raw[key] = value;
  }
  if (raw.redisUrl === undefined && state.redis?.url) raw.redisUrl = state.redis.url;
  if (raw.databaseUrl === undefined && state.postgres?.url) raw.databaseUrl = state.postgres.url;

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path[0] as ConfigKey | undefined;
    const name = key && SETTINGS[key] ? `${SETTINGS[key].env} (--${kebab(key)})` : String(key ?? '?');
    // A secret's value is never echoed, not even masked in part.
    const secret = key !== undefined && (SECRET_SETTINGS as readonly string[]).includes(key);
    const given = key !== undefined && raw[key] !== undefined && !secret ? ` (got ${redactSecrets(JSON.stringify(raw[key]))})` : '';
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [name, redactSecrets(issue.message + given)]);
  }
  // On a Redis Cluster: keys that go together share a hash slot (src/redis/cluster.ts).
  return clusterConfig(parsed.data);
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Query parameters (and libpq keywords) whose value is a secret: password, sslpassword, passwd, pwd, secret, token. */
const SECRET_PARAM = /^(?:ssl)?pass(?:word|wd)?$|^pwd$|secret|token/i;

/**
 * A URL with its secrets masked, for printing: the password of its user info and every
 * secret query parameter (`?password=`, `?sslpassword=`). A URL that does not parse is
 * masked by pattern (whatever sits between `scheme://user:` and the last `@`, and every
 * `password=` value), never returned whole.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const name of [...u.searchParams.keys()]) if (SECRET_PARAM.test(name)) u.searchParams.set(name, '***');
    return u.toString().replace(/%2A%2A%2A/g, '***');
  } catch {
    return redactByPattern(url);
  }
}

function redactByPattern(text: string): string {
  return text
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/?#@"']*:)[^\s"']*@/gi, '$1***@')
    .replace(/(\b(?:ssl)?pass(?:word|wd)?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&;#"',)]+)/gi, '$1***');
}

/**
 * Any text (an error message, a setting's value) with the secrets of every URL in it
 * masked (see redactUrl), and `password=...` pairs (libpq keyword strings) too.
 */
export function redactSecrets(text: string): string {
  // A URL with nothing to mask is left exactly as written (redactUrl would normalise it).
  return redactByPattern(text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi, (url) => (hasSecret(url) ? redactUrl(url) : url)));
}

function hasSecret(url: string): boolean {
  try {
    const u = new URL(url);
    return u.password !== '' || [...u.searchParams.keys()].some((name) => SECRET_PARAM.test(name));
  } catch {
    return redactByPattern(url) !== url;
  }
}
