/**
 * Files `tributary up` keeps under the Tributary home (`.tributary/`):
 *
 * - `services.json`: the servers chosen (ServicesState), read by resolveConfig.
 * - `local.json`: facts about the project-local servers that outlive `down`: the
 *   generated Postgres password and the ports last used (so URLs stay stable).
 *
 * Both are written atomically (temp file + rename) with mode 0600: they hold a password.
 */
import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonState, readServicesState, servicesStatePath, tributaryHome, type ServicesState } from '../config/index.js';

export { readServicesState, type ServicesState };

export interface LocalServersFile {
  redis?: { port?: number };
  postgres?: { port?: number; password?: string };
}

function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/** Creates the Tributary home if missing and returns its path. */
export function ensureHome(env: NodeJS.ProcessEnv): string {
  const home = tributaryHome(env);
  mkdirSync(home, { recursive: true });
  return home;
}

/** Writes the state file; an empty state removes it. */
export function writeServicesState(state: ServicesState, env: NodeJS.ProcessEnv): void {
  const path = servicesStatePath(env);
  if (!state.redis && !state.postgres) {
    rmSync(path, { force: true });
    return;
  }
  ensureHome(env);
  writeJsonAtomic(path, state);
}

function localPath(env: NodeJS.ProcessEnv): string {
  return join(tributaryHome(env), 'local.json');
}

export function readLocalServers(env: NodeJS.ProcessEnv): LocalServersFile {
  return readJsonState<LocalServersFile>(localPath(env));
}

/** Merges `patch` into local.json, service by service. */
export function updateLocalServers(patch: LocalServersFile, env: NodeJS.ProcessEnv): void {
  const current = readLocalServers(env);
  const next: LocalServersFile = {
    redis: { ...current.redis, ...patch.redis },
    postgres: { ...current.postgres, ...patch.postgres },
  };
  ensureHome(env);
  writeJsonAtomic(localPath(env), next);
}
