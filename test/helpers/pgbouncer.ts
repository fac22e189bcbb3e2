/**
 * A real PgBouncer for tests: its own temporary config directory, a free loopback port,
 * transaction pool mode by default, pointed at the test Postgres; stopped by PID.
 *
 *   const bouncer = await startPgBouncer();          // in beforeAll
 *   const pool = createPgPool(bouncer.url, { max: 8 });
 *   ...
 *   await stopPgBouncer(bouncer);                     // in afterAll
 *
 * The binary is Debian's `pgbouncer` package. When it is missing and we are root with
 * apt-get, it is installed (`./run.sh test` does the same up front). PgBouncer refuses
 * to run as root, so as root it is started with `-u postgres` (or `-u nobody` when there
 * is no postgres user): the config directory is made readable for that user, and the
 * log goes to a file opened by this process.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import pg from 'pg';
import { withDefaultUser } from '../../src/postgres/pool.js';
import { freePort } from './child.js';
import { testDatabaseUrl } from './orders-pg.js';

export interface PgBouncerOptions {
  /** The Postgres PgBouncer forwards to (its host, port, database and user are used). Default: the tests' DATABASE_URL. */
  databaseUrl?: string;
  /** PgBouncer pool_mode. Default 'transaction'. */
  poolMode?: 'session' | 'transaction' | 'statement';
  /** Server connections per database/user pair (default_pool_size). Default 4. */
  defaultPoolSize?: number;
  /** Client connections PgBouncer accepts (max_client_conn). Default 200. */
  maxClientConn?: number;
  /**
   * Startup parameters PgBouncer accepts and drops (ignore_startup_parameters). Default
   * extra_float_digits and statement_timeout: createPgPool sends statement_timeout as a
   * startup parameter when given one, which PgBouncer otherwise refuses. Through
   * PgBouncer that timeout is then not applied.
   */
  ignoreStartupParameters?: readonly string[];
  /** More `[pgbouncer]` settings, written as `key = value`. */
  settings?: Readonly<Record<string, string | number>>;
  /** Milliseconds to wait for PgBouncer to accept connections. Default 10,000. */
  startTimeoutMs?: number;
}

export interface PgBouncer {
  /** The database URL through PgBouncer (same database and user as the target). */
  url: string;
  /** URL of PgBouncer's admin console (database `pgbouncer`: SHOW POOLS, SHOW STATS...). */
  adminUrl: string;
  port: number;
  pid: number;
  /** The temporary directory with pgbouncer.ini, userlist.txt and pgbouncer.log. */
  dir: string;
  poolMode: string;
  /** Runs an admin console command (e.g. 'SHOW POOLS') and returns its rows. */
  admin<T = Record<string, unknown>>(command: string): Promise<T[]>;
  /** PgBouncer's log so far. */
  log(): string;
  /** Whether the process is still running. */
  readonly alive: boolean;
}

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

const running = new Map<number, Running>();
process.once('exit', () => {
  for (const [pid] of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

const SEARCH_DIRS = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin'];

/** The pgbouncer binary on PATH or in the usual system directories, or null. */
export function findPgBouncer(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SEARCH_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, 'pgbouncer');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** The pgbouncer binary, installing Debian's package first when it is missing and we can (root with apt-get). */
export function ensurePgBouncer(): string {
  const found = findPgBouncer();
  if (found) return found;
  const apt = ['/usr/bin/apt-get', '/bin/apt-get'].find((p) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (!apt || process.getuid?.() !== 0) {
    throw new Error('pgbouncer is not installed (Debian: apt-get install -y pgbouncer), and this process cannot install it');
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => execFileSync(apt, ['install', '-y', '-q', 'pgbouncer'], { env, stdio: 'pipe', timeout: 300_000 });
  try {
    install();
  } catch {
    // The package lists may be missing or stale on a fresh machine.
    execFileSync(apt, ['update', '-q'], { env, stdio: 'pipe', timeout: 300_000 });
    install();
  }
  const installed = findPgBouncer();
  if (!installed) throw new Error('apt-get install pgbouncer succeeded but no pgbouncer binary was found');
  return installed;
}

/** The user to drop to when running as root (PgBouncer refuses root). */
function unprivilegedUser(): string {
  try {
    execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
    return 'postgres';
  } catch {
    return 'nobody';
  }
}

function iniValue(v: string | number): string {
  return String(v).replace(/[\r\n]/g, ' ');
}

/**
 * Starts PgBouncer on a free 127.0.0.1 port, forwarding every database to the target
 * Postgres with trust auth for the target's user. Resolves once it accepts connections.
 */
export async function startPgBouncer(options: PgBouncerOptions = {}): Promise<PgBouncer> {
  const binary = ensurePgBouncer();
  const target = new URL(withDefaultUser(options.databaseUrl ?? testDatabaseUrl()));
  const user = decodeURIComponent(target.username) || userInfo().username;
  const database = decodeURIComponent(target.pathname.replace(/^\//, '')) || user;
  const poolMode = options.poolMode ?? 'transaction';
  const dir = mkdtempSync(join(tmpdir(), 'tributary-pgbouncer-'));
  chmodSync(dir, 0o755); // readable by the user PgBouncer drops to
  const ini = join(dir, 'pgbouncer.ini');
  const userlist = join(dir, 'userlist.txt');
  const logPath = join(dir, 'pgbouncer.log');

  const settings: Record<string, string | number> = {
    listen_addr: '127.0.0.1',
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: userlist,
    admin_users: user,
    stats_users: user,
    pool_mode: poolMode,
    default_pool_size: options.defaultPoolSize ?? 4,
    max_client_conn: options.maxClientConn ?? 200,
    ignore_startup_parameters: (options.ignoreStartupParameters ?? ['extra_float_digits', 'statement_timeout']).join(','),
    log_connections: 0,
    log_disconnections: 0,
    ...options.settings,
  };
  writeFileSync(userlist, `"${user.replace(/"/g, '""')}" ""\n`, { mode: 0o644 });

  const asRoot = process.getuid?.() === 0;
  const runAs = asRoot ? unprivilegedUser() : null;
  const timeoutMs = options.startTimeoutMs ?? 10_000;
  // freePort can race with another process taking the port: a few tries.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const lines = [
      '[databases]',
      `* = host=${target.hostname.replace(/^\[|\]$/g, '')} port=${target.port || '5432'}`,
      '',
      '[pgbouncer]',
      `listen_port = ${port}`,
      ...Object.entries(settings).map(([k, v]) => `${k} = ${iniValue(v)}`),
      '',
    ];
    writeFileSync(ini, lines.join('\n'), { mode: 0o644 });
    const logFd = openSync(logPath, 'a', 0o644);
    const child = spawn(binary, [...(runAs ? ['-u', runAs] : []), ini], { stdio: ['ignore', logFd, logFd], cwd: dir });
    closeSync(logFd);
    const state: Running = {
      child,
      exitCode: null,
      signal: null,
      exited: new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => {
          state.exitCode = code;
          state.signal = signal;
          running.delete(child.pid ?? -1);
          resolve();
        });
        child.once('error', () => resolve());
      }),
    };
    if (child.pid === undefined) throw new Error(`cannot start ${binary}`);
    running.set(child.pid, state);
    const log = () => {
      try {
        return readFileSync(logPath, 'utf8');
      } catch {
        return '';
      }
    };
    const enc = encodeURIComponent;
    const url = `postgres://${enc(user)}@127.0.0.1:${port}/${enc(database)}`;
    const adminUrl = `postgres://${enc(user)}@127.0.0.1:${port}/pgbouncer`;
    const ready = await waitUntilAccepting(url, state, timeoutMs);
    if (ready) {
      const pid = child.pid;
      return {
        url,
        adminUrl,
        port,
        pid,
        dir,
        poolMode,
        log,
        get alive() {
          return running.has(pid);
        },
        async admin<T>(command: string): Promise<T[]> {
          const client = new pg.Client({ connectionString: adminUrl });
          await client.connect();
          try {
            return (await client.query(command)).rows as T[];
          } finally {
            await client.end();
          }
        },
      };
    }
    const text = log();
    await stopPid(child.pid);
    if (attempt < 3 && /address already in use/i.test(text)) continue;
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`pgbouncer did not accept connections within ${timeoutMs} ms (exit ${state.exitCode ?? state.signal ?? 'none'}):\n${text}`);
  }
}

/** Polls `SELECT 1` through PgBouncer until it answers (true), the process exits, or the time is up (false). */
async function waitUntilAccepting(url: string, state: Running, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  let exited = false;
  void state.exited.then(() => (exited = true));
  while (Date.now() < until && !exited) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return true;
    } catch {
      await client.end().catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

async function stopPid(pid: number): Promise<void> {
  const state = running.get(pid);
  if (!state) return;
  // SIGTERM: a fast exit up to PgBouncer 1.22; later versions wait for clients first, hence the SIGKILL fallback.
  state.child.kill('SIGTERM');
  const killed = await Promise.race([state.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
  if (!killed) {
    state.child.kill('SIGKILL');
    await state.exited;
  }
}

/** Stops the PgBouncer by its PID (SIGTERM, SIGKILL after 5 s) and removes its directory. Safe to call twice. */
export async function stopPgBouncer(bouncer: PgBouncer | undefined): Promise<void> {
  if (!bouncer) return;
  await stopPid(bouncer.pid);
  rmSync(bouncer.dir, { recursive: true, force: true });
}
