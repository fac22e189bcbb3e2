/**
 * A project-local Redis under `.tributary/redis/`: `redis-server` from PATH, AOF on,
 * daemonized, bound to 127.0.0.1 on a free port, with its pidfile and log beside its data.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tributaryHome } from '../config/index.js';
import { TributaryError } from '../errors.js';
import { findOnPath, freeLoopbackPort, isAlive, isRoot, processCommand, run, stopPid, tail } from './process.js';
import { probeRedis, waitUntilAnswers } from './probe.js';
import { readLocalServers, updateLocalServers } from './state.js';

export interface LocalServer {
  url: string;
  pid: number;
  port: number;
  dataDir: string;
  version: string;
  /** True when this call started it; false when it was already running. */
  started: boolean;
}

export interface LocalRedisPaths {
  dataDir: string;
  pidFile: string;
  logFile: string;
}

export function localRedisPaths(env: NodeJS.ProcessEnv): LocalRedisPaths {
  const dataDir = join(tributaryHome(env), 'redis');
  return { dataDir, pidFile: join(dataDir, 'redis.pid'), logFile: join(dataDir, 'redis.log') };
}

function readPid(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

const urlFor = (port: number): string => `redis://127.0.0.1:${port}`;

/**
 * The project-local Redis if one is running from our data directory: its pidfile names
 * a live process that answers on the port we recorded and reports that same PID.
 */
export async function findRunningLocalRedis(env: NodeJS.ProcessEnv): Promise<LocalServer | undefined> {
  const paths = localRedisPaths(env);
  const pid = readPid(paths.pidFile);
  const port = readLocalServers(env).redis?.port;
  if (pid === undefined || port === undefined || !isAlive(pid)) return undefined;
  const probe = await probeRedis(urlFor(port));
  if (!probe.ok || probe.pid !== pid) return undefined;
  return { url: urlFor(port), pid, port, dataDir: paths.dataDir, version: probe.version, started: false };
}

async function locateRedisServer(env: NodeJS.ProcessEnv, progress: (m: string) => void): Promise<string> {
  const path = env.PATH ?? process.env.PATH;
  const found = findOnPath('redis-server', path) ?? findOnPath('redis-server', '/usr/local/bin:/usr/bin:/usr/sbin');
  if (found) return found;

  const debian = existsSync('/etc/debian_version') && findOnPath('apt-get', '/usr/bin:/bin');
  if (debian && isRoot()) {
    progress('redis: redis-server is not installed; installing it with apt-get install -y redis-server');
    const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = (): Promise<{ code: number | null; stderr: string }> =>
      run('apt-get', ['install', '-y', '--no-install-recommends', 'redis-server'], { env: aptEnv, timeoutMs: 600_000 });
    let result = await install();
    if (result.code !== 0) {
      // A fresh machine may have no package lists yet.
      await run('apt-get', ['update'], { env: aptEnv, timeoutMs: 600_000 });
      result = await install();
    }
    const installed = findOnPath('redis-server', path) ?? findOnPath('redis-server', '/usr/bin:/usr/sbin:/usr/local/bin');
    if (result.code === 0 && installed) return installed;
    throw new TributaryError('TRIB_ERR_SERVICES_REDIS_MISSING', [
      `apt-get install -y redis-server failed: ${result.stderr.trim().split('\n').slice(-3).join(' ')}`,
    ]);
  }
  const how = debian
    ? 'install it with `sudo apt-get install -y redis-server`'
    : process.platform === 'darwin'
      ? 'install it with `brew install redis`'
      : 'install Redis (the redis-server binary) with your package manager';
  throw new TributaryError('TRIB_ERR_SERVICES_REDIS_MISSING', [
    `${how}, or set REDIS_URL to a Redis you already run`,
  ]);
}

/** Starts the project-local Redis (or returns the one already running). */
export async function startLocalRedis(
  env: NodeJS.ProcessEnv,
  progress: (m: string) => void,
  timeoutMs: number,
): Promise<LocalServer> {
  const running = await findRunningLocalRedis(env);
  if (running) return running;

  const paths = localRedisPaths(env);
  const binary = await locateRedisServer(env, progress);
  mkdirSync(paths.dataDir, { recursive: true });

  // A live process still named in the pidfile that does not answer: not ours to fight.
  const stalePid = readPid(paths.pidFile);
  if (stalePid !== undefined && isAlive(stalePid) && (await processCommand(stalePid)).includes('redis-server')) {
    throw new TributaryError('TRIB_ERR_SERVICES_START', [
      'the project-local Redis',
      `redis-server pid ${stalePid} (from ${paths.pidFile}) is running but does not answer; stop it with \`tributary down\``,
    ]);
  }

  const port = await freeLoopbackPort(readLocalServers(env).redis?.port);
  updateLocalServers({ redis: { port } }, env);
  const args = [
    '--bind', '127.0.0.1',
    '--port', String(port),
    '--protected-mode', 'yes',
    '--dir', paths.dataDir,
    '--appendonly', 'yes',
    '--appendfsync', 'everysec',
    '--daemonize', 'yes',
    '--pidfile', paths.pidFile,
    '--logfile', paths.logFile,
  ];
  const result = await run(binary, args, { cwd: paths.dataDir, detached: true, timeoutMs: 30_000 });
  if (result.code !== 0) {
    const why = (result.stderr || result.stdout).trim() || tail(paths.logFile) || `exit code ${result.code}`;
    throw new TributaryError('TRIB_ERR_SERVICES_START', ['the project-local Redis', why]);
  }
  const url = urlFor(port);
  const answer = await waitUntilAnswers(() => probeRedis(url), timeoutMs);
  if (!answer.ok) {
    throw new TributaryError('TRIB_ERR_SERVICES_START', [
      'the project-local Redis',
      `it did not answer PING on ${url} within ${timeoutMs} ms (${answer.reason}); log ${paths.logFile}:\n${tail(paths.logFile)}`,
    ]);
  }
  const pid = answer.pid ?? readPid(paths.pidFile);
  if (pid === undefined) {
    throw new TributaryError('TRIB_ERR_SERVICES_START', ['the project-local Redis', 'it answered but reported no process_id']);
  }
  return { url, pid, port, dataDir: paths.dataDir, version: answer.version, started: true };
}

/**
 * Stops the project-local Redis, if running: the PID from its pidfile (or `knownPid`,
 * from the state file), only after checking it is a redis-server on our port (from
 * local.json, else `knownPort`).
 * Returns the PIDs stopped.
 */
export async function stopLocalRedis(env: NodeJS.ProcessEnv, knownPid?: number, knownPort?: number): Promise<number[]> {
  const paths = localRedisPaths(env);
  const port = readLocalServers(env).redis?.port ?? knownPort;
  const candidates = [...new Set([readPid(paths.pidFile), knownPid].filter((p): p is number => p !== undefined))];
  const stopped: number[] = [];
  for (const pid of candidates) {
    if (!isAlive(pid) || port === undefined) continue;
    // Ours only if it is a redis-server listening on the port we gave it (its process
    // title is "redis-server 127.0.0.1:<port>"); a reused PID or the system Redis is not.
    const probe = await probeRedis(urlFor(port));
    const answersAsPid = probe.ok && probe.pid === pid;
    const command = await processCommand(pid);
    const titled = command.includes('redis-server') && command.includes(`:${port}`);
    if (!answersAsPid && !titled) continue;
    // SIGTERM: Redis flushes the AOF and exits.
    if (!(await stopPid(pid, ['SIGTERM'], 15_000))) {
      throw new TributaryError('TRIB_ERR_SERVICES_STOP', ['the project-local Redis', `pid ${pid} is still running after SIGKILL`]);
    }
    stopped.push(pid);
  }
  return stopped;
}
