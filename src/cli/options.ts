import type { Command } from 'commander';
import { kebab, resolveConfig, type ResolveConfigOptions } from '../config/index.js';
import { ORDERS_SETTINGS, SETTINGS, SHARED_SETTINGS, type ConfigKey, type TributaryConfig } from '../config/schema.js';

const ORDERS_ONLY = new Set<ConfigKey>(ORDERS_SETTINGS);

/**
 * Adds a flag for every setting of the command's pipeline (`--stream-key`,
 * `--num-workers`, ...): 'events' (the default) takes every setting but the orders
 * pipeline's; 'orders' takes the shared ones (servers, consumer name, log level) and its own.
 */
export function withConfigOptions(command: Command, pipeline: 'events' | 'orders' = 'events'): Command {
  const keys =
    pipeline === 'orders' ? [...SHARED_SETTINGS, ...ORDERS_SETTINGS] : (Object.keys(SETTINGS) as ConfigKey[]).filter((k) => !ORDERS_ONLY.has(k));
  for (const key of keys) {
    command.option(`--${kebab(key)} <value>`, `${SETTINGS[key].doc} [${SETTINGS[key].env}]`);
  }
  return command;
}

/** The configuration for a command: its flags over env, .env, `tributary up` state and defaults. */
export function configFrom(opts: Record<string, unknown>, extra: ResolveConfigOptions = {}): TributaryConfig {
  const overrides: Partial<Record<ConfigKey, unknown>> = {};
  for (const key of Object.keys(SETTINGS) as ConfigKey[]) if (opts[key] !== undefined) overrides[key] = opts[key];
  return resolveConfig({ ...extra, overrides: { ...overrides, ...extra.overrides } });
}
