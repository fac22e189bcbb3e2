import type { Command } from 'commander';
import { kebab, resolveConfig, type ResolveConfigOptions } from '../config/index.js';
import { SETTINGS, type ConfigKey, type TributaryConfig } from '../config/schema.js';

/** Adds a flag for every setting (`--stream-key`, `--num-workers`, ...) to a command. */
export function withConfigOptions(command: Command): Command {
  for (const key of Object.keys(SETTINGS) as ConfigKey[]) {
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
