import type { Command } from 'commander';
import { kebab, resolveConfig, type ResolveConfigOptions } from '../config/index.js';
import { configSchema, ORDERS_SETTINGS, SECRET_SETTINGS, SETTINGS, SHARED_SETTINGS, type ConfigKey, type TributaryConfig } from '../config/schema.js';

const ORDERS_ONLY = new Set<ConfigKey>(ORDERS_SETTINGS);
/** A secret is never a flag: a command line shows in `ps`. */
const NO_FLAG = new Set<ConfigKey>(SECRET_SETTINGS);

/**
 * Adds a flag for every setting of the command's pipeline (`--stream-key`,
 * `--num-workers`, ...): 'events' (the default) takes every setting but the orders
 * pipeline's; 'orders' takes the shared ones (servers, consumer name, log level) and its own.
 */
export function withConfigOptions(command: Command, pipeline: 'events' | 'orders' = 'events'): Command {
  const keys =
    pipeline === 'orders' ? [...SHARED_SETTINGS, ...ORDERS_SETTINGS] : (Object.keys(SETTINGS) as ConfigKey[]).filter((k) => !ORDERS_ONLY.has(k) && !NO_FLAG.has(k));
  const defaults = settingDefaults();
  for (const key of keys) {
    const shown = defaults[key] === undefined ? '' : ` (default: ${defaults[key]})`;
    command.option(`--${kebab(key)} <value>`, `${SETTINGS[key].doc} [${SETTINGS[key].env}]${shown}`);
  }
  return command;
}

/** Settings whose doc already says what happens when unset (the servers `up` found, the host name). */
const DEFAULT_IN_DOC = new Set<ConfigKey>(['redisUrl', 'databaseUrl', 'consumerName']);

/**
 * The defaults shown in `--help`, from the schema itself (so they cannot drift), as
 * commander would show them; not set as commander defaults, which would override the
 * environment and `.env`.
 */
export function settingDefaults(): Partial<Record<ConfigKey, string>> {
  const parsed = configSchema.safeParse({});
  if (!parsed.success) return {};
  const out: Partial<Record<ConfigKey, string>> = {};
  for (const [key, value] of Object.entries(parsed.data) as [ConfigKey, unknown][]) {
    if (value !== undefined && !DEFAULT_IN_DOC.has(key)) out[key] = typeof value === 'string' ? JSON.stringify(value) : String(value);
  }
  return out;
}

/** The configuration for a command: its flags over env, .env, `tributary up` state and defaults. */
export function configFrom(opts: Record<string, unknown>, extra: ResolveConfigOptions = {}): TributaryConfig {
  const overrides: Partial<Record<ConfigKey, unknown>> = {};
  for (const key of Object.keys(SETTINGS) as ConfigKey[]) if (opts[key] !== undefined) overrides[key] = opts[key];
  return resolveConfig({ ...extra, overrides: { ...overrides, ...extra.overrides } });
}
