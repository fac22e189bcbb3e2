/**
 * Small process helpers for `tributary up` / `down`: run a command, find one on PATH,
 * pick a free loopback port, tell whether a PID is alive, stop a PID.
 */
import { spawn, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join, relative, resolve, sep } from 'node:path';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Run as this user (only when we are root). */
  uid?: number;
  gid?: number;
  /** Put the child in its own session, so a server it forks outlives us and our terminal. */
  detached?: boolean;
  /** Kill the command after this long (default 120 s). */
  timeoutMs?: number;
}

/**
 * Runs a command to completion and collects its output. Resolves on exit even when a
 * daemon it forked still holds the output pipes (it stops waiting for them shortly after).
 * Rejects only when the command cannot be spawned.
 */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const spawnOptions: SpawnOptions = {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: options.detached ?? false,
    };
    if (options.uid !== undefined) spawnOptions.uid = options.uid;
    if (options.gid !== undefined) spawnOptions.gid = options.gid;
    let child;
    try {
      child = spawn(command, args, spawnOptions);
    } catch (err) {
      reject(err);
      return;
    }
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    let done = false;
    let exitTimer: NodeJS.Timeout | undefined;
    const killTimer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (done) return;
      done = true;
      clearTimeout(killTimer);
      if (exitTimer) clearTimeout(exitTimer);
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve({ code, signal, stdout, stderr });
    };
    child.once('error', (err) => {
      if (done) return;
      done = true;
      clearTimeout(killTimer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      exitTimer = setTimeout(() => finish(code, signal), 500);
    });
    child.once('close', (code, signal) => finish(code, signal));
  });
}

/** The absolute path of an executable on PATH, or undefined. */
export function findOnPath(name: string, path: string | undefined = process.env.PATH): string | undefined {
  for (const dir of (path ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Whether a TCP port is free on 127.0.0.1 (port 0: any port; resolves to the port bound). */
function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/** A free port on 127.0.0.1: `preferred` if it is free, else one the kernel picks. */
export async function freeLoopbackPort(preferred?: number): Promise<number> {
  if (preferred !== undefined && preferred > 0) {
    const port = await tryListen(preferred);
    if (port !== undefined) return port;
  }
  const port = await tryListen(0);
  if (port === undefined) throw new Error('no free TCP port on 127.0.0.1');
  return port;
}

/** Whether a process exists and is not a zombie (an exited child nobody reaped yet). */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // Linux: "pid (comm) S ..."; state Z is a zombie, X dead.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc (macOS): kill(0) is all we have
  }
}

/** The command line of a live process ('' when it cannot be read). */
export async function processCommand(pid: number): Promise<string> {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    try {
      const result = await run('ps', ['-o', 'command=', '-p', String(pid)], { timeoutMs: 5000 });
      return result.stdout.trim();
    } catch {
      return '';
    }
  }
}

/**
 * Live processes whose working directory is `dir` (Linux, via /proc); undefined where
 * that cannot be told. PostgreSQL's server processes all run in their data directory.
 */
export function processesInDirectory(dir: string): number[] | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  const target = resolve(dir);
  const found: number[] = [];
  for (const name of entries) {
    try {
      if (readlinkSync(`/proc/${name}/cwd`) === target && isAlive(Number(name))) found.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

/** `path` relative to the working directory when inside it, else as is (for messages). */
export function shortPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !rel.startsWith(sep) ? rel : path;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `pid` is gone; true if it went within `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Stops a process by PID: each signal in turn, waiting `graceMs` after each, then SIGKILL.
 * Returns true when it is gone. Callers check first that the PID is one we started.
 */
export async function stopPid(
  pid: number,
  signals: readonly NodeJS.Signals[] = ['SIGTERM'],
  graceMs = 10_000,
): Promise<boolean> {
  for (const sig of signals) {
    if (!isAlive(pid)) return true;
    signal(pid, sig);
    if (await waitForExit(pid, graceMs)) return true;
  }
  if (!isAlive(pid)) return true;
  signal(pid, 'SIGKILL');
  return waitForExit(pid, 5000);
}

/** The last `lines` lines of a text file ('' if it cannot be read). */
export function tail(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Whether we are root (POSIX); servers that refuse root are run as another user then. */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}
