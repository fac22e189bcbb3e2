/**
 * Helpers for the fault-injection integration tests: engine child processes (`tributary
 * start` from dist/), a background producer that knows exactly which event IDs it
 * produced, and the end-of-test "exactly once" audit.
 *
 * Every child is registered; `killChildren()` (call it in afterEach) SIGKILLs the ones
 * still alive, by PID, and a process 'exit' hook does the same if the test runner dies.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@redis/client';
import { destroyQuietly } from '../../src/redis/client.js';
import { expect } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import type { Producer } from '../../src/producer/producer.js';
import { sampleEvent } from '../../src/producer/sample.js';
import type { TestEnv } from './env.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = resolve(REPO, 'dist/cli/main.js');

/** What a one-shot CLI command did. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `tributary <args>` to its end; rejects (after SIGKILL) when it takes longer than timeoutMs. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tributary ${args.join(' ')} did not finish in ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` before these tests`);
}

const children = new Set<EngineProcess>();
const redisServers = new Set<RedisServerProcess>();

process.once('exit', () => {
  for (const c of children) if (c.alive) c.kill('SIGKILL');
  for (const r of redisServers) r.killNow();
});

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

/** One `tributary start` child process. */
export class EngineProcess {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly label: string;
  readonly exited: Promise<ExitInfo>;
  private log = '';
  private exit: ExitInfo | undefined;
  private readonly watchers: Array<() => void> = [];

  /** `args`: the CLI command to run (default `start`; e.g. `['orders', 'process']`); `script`: another program to run instead of the CLI (an example). */
  constructor(env: NodeJS.ProcessEnv, label: string, args: readonly string[] = ['start'], script: string = CLI) {
    this.label = label;
    this.proc = spawn(process.execPath, [script, ...args], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    if (this.proc.pid === undefined) throw new Error(`could not spawn engine ${label}`);
    this.pid = this.proc.pid;
    children.add(this);
    const onData = (chunk: Buffer) => {
      this.log += chunk.toString('utf8');
      for (const w of this.watchers.splice(0)) w();
    };
    this.proc.stdout!.on('data', onData);
    this.proc.stderr!.on('data', onData);
    this.exited = new Promise((resolveExit) => {
      this.proc.once('exit', (code, signal) => {
        this.exit = { code, signal, at: Date.now() };
        children.delete(this);
        for (const w of this.watchers.splice(0)) w();
        resolveExit(this.exit);
      });
    });
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  get output(): string {
    return this.log;
  }

  /** Sends a signal to this child's PID (no-op once it has exited). */
  kill(signal: NodeJS.Signals): void {
    if (!this.alive) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // already gone
    }
  }

  /** Waits until the output matches, failing early if the process exits first. */
  async waitForLog(pattern: string | RegExp, timeoutMs = 20_000): Promise<void> {
    const matches = () => (typeof pattern === 'string' ? this.log.includes(pattern) : pattern.test(this.log));
    const until = Date.now() + timeoutMs;
    while (!matches()) {
      if (!this.alive) throw new Error(`engine ${this.label} exited (${JSON.stringify(this.exit)}) before logging ${pattern}:\n${this.log}`);
      const left = until - Date.now();
      if (left <= 0) throw new Error(`engine ${this.label}: timed out after ${timeoutMs} ms waiting for ${pattern}:\n${this.log}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 250));
        this.watchers.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Resolves with the exit, or with undefined if it is still running after `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<ExitInfo | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), timeoutMs)));
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL and wait for the exit. */
  async killHard(): Promise<ExitInfo> {
    this.kill('SIGKILL');
    return this.exited;
  }
}

/** Spawns `node dist/cli/main.js start` with the test's env plus `extra`, and waits for "engine started". */
export async function startEngine(env: TestEnv, extra: Record<string, string> = {}, label = 'engine'): Promise<EngineProcess> {
  assertBuilt();
  const child = new EngineProcess({ ...env.childEnv, NO_COLOR: '1', ...extra }, label);
  await child.waitForLog('engine started', 30_000);
  return child;
}

/**
 * Freezes `engine` (SIGSTOP) at a moment when `holding()` (e.g. its pending entries) is
 * at least `atLeast`: tries up to `attempts` times (fewer once `settle()` is true),
 * resuming it (SIGCONT) briefly between tries, then settles for any non-zero count
 * (3 more tries). Returns the count seen while frozen; the process is left stopped
 * (SIGKILL it, or SIGCONT).
 */
export async function freezeHolding(
  engine: EngineProcess,
  holding: () => Promise<number>,
  options: { atLeast?: number; attempts?: number; waitMs?: number; settle?: () => boolean } = {},
): Promise<number> {
  const atLeast = options.atLeast ?? 1;
  const attempts = options.attempts ?? 40;
  let seen = 0;
  for (let attempt = 0; ; attempt++) {
    // No point waiting for a big batch once the flow has stopped.
    if (options.settle?.()) attempt = Math.max(attempt, attempts);
    const want = attempt < attempts ? atLeast : 1;
    const until = Date.now() + (options.waitMs ?? 500);
    while ((await holding()) < want && Date.now() < until) await sleep(1);
    engine.kill('SIGSTOP');
    seen = await holding();
    if (seen >= want || attempt >= attempts + 2) return seen;
    engine.kill('SIGCONT');
    await sleep(5 + Math.floor(Math.random() * 30));
  }
}

/** SIGKILLs (by PID) every engine child still alive, and waits for them. */
export async function killChildren(): Promise<void> {
  const alive = [...children];
  for (const c of alive) c.kill('SIGKILL');
  await Promise.all(alive.map((c) => c.exited));
}

/** A port nothing listens on (bound to 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export interface BackgroundProduce {
  /** Every event ID produced (all of them, in order, known up front). */
  ids: string[];
  /** How many have been acknowledged by Redis so far. */
  readonly done: number;
  /** Batches that failed and were sent again (same event IDs). */
  readonly retries: number;
  /** Resolves when every event has been acknowledged by Redis. */
  finished: Promise<void>;
  /** Stop early (the promise still resolves). */
  stop(): void;
}

/**
 * Produces `count` sample events with IDs `<prefix>-<n>` in batches (one pipelined
 * round trip each), paced to `rate` events/s when given. A failed batch (server down,
 * connection killed) is sent again with the same event IDs: a partly applied batch
 * then leaves repeated stream entries, which the engine must write only once.
 */
export function produceInBackground(
  producer: Producer,
  count: number,
  options: { prefix: string; batch?: number; rate?: number; retry?: boolean },
): BackgroundProduce {
  const batch = options.batch ?? 500;
  const ids = Array.from({ length: count }, (_, i) => `${options.prefix}-${String(i).padStart(6, '0')}`);
  let done = 0;
  let retries = 0;
  let stopped = false;
  const finished = (async () => {
    const started = performance.now();
    while (done < count && !stopped) {
      const events = ids.slice(done, done + batch).map((eventId) => ({ ...sampleEvent(), eventId }));
      for (;;) {
        try {
          await producer.produceBatch(events);
          break;
        } catch (err) {
          if (!options.retry || stopped) throw err;
          retries++;
          await sleep(100);
        }
      }
      done += events.length;
      if (options.rate) {
        const wait = started + (done / options.rate) * 1000 - performance.now();
        if (wait > 0) await sleep(wait);
      }
    }
  })();
  // Awaited by the test; a failure after the test has already failed must not be unhandled.
  finished.catch(() => {});
  return {
    ids,
    get done() {
      return done;
    },
    get retries() {
      return retries;
    },
    finished,
    stop: () => {
      stopped = true;
    },
  };
}

export interface Audit {
  rows: number;
  distinct: number;
  /** Produced IDs with no row. */
  missing: string[];
  /** Rows whose event_id was never produced. */
  unexpected: number;
  deadLetterRows: number;
}

/** What Postgres holds for this test, compared with the produced IDs. */
export async function audit(env: TestEnv, ids: readonly string[]): Promise<Audit> {
  const s = quoteIdent(env.config.pgSchema);
  const counts = await env.pool.query<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM ${s}.events`);
  const missing = await env.pool.query<{ id: string }>(
    `SELECT p.id FROM unnest($1::text[]) AS p(id) WHERE NOT EXISTS (SELECT 1 FROM ${s}.events e WHERE e.event_id = p.id) ORDER BY p.id LIMIT 20`,
    [ids],
  );
  const unexpected = await env.pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM ${s}.events e LEFT JOIN unnest($1::text[]) AS p(id) ON p.id = e.event_id WHERE p.id IS NULL`,
    [ids],
  );
  const dead = await env.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.dead_letter_queue`);
  return {
    rows: Number(counts.rows[0]!.n),
    distinct: Number(counts.rows[0]!.d),
    missing: missing.rows.map((r) => r.id),
    unexpected: Number(unexpected.rows[0]!.n),
    deadLetterRows: Number(dead.rows[0]!.n),
  };
}

/** Row count of <schema>.events (0 while the table does not exist yet). */
export async function eventRows(env: TestEnv): Promise<number> {
  try {
    const r = await env.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(env.config.pgSchema)}.events`);
    return Number(r.rows[0]!.n);
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') return 0;
    throw err;
  }
}

/** XPENDING summary: total and per consumer (zero when the group does not exist yet). */
export async function pendingSummary(env: TestEnv): Promise<{ total: number; byConsumer: Map<string, number> }> {
  const byConsumer = new Map<string, number>();
  let reply: unknown[];
  try {
    reply = (await env.redis.sendCommand(['XPENDING', env.config.streamKey, env.config.group])) as unknown[];
  } catch (err) {
    // No group yet (no engine got that far): nothing can be pending.
    if (err instanceof Error && err.message.startsWith('NOGROUP')) return { total: 0, byConsumer };
    throw err;
  }
  if (Array.isArray(reply[3])) for (const row of reply[3] as [string, string][]) byConsumer.set(String(row[0]), Number(row[1]));
  return { total: Number(reply[0] ?? 0), byConsumer };
}

/** Entries pending for the consumers of one engine process (`<consumerName>-N`, `<consumerName>-reclaim`). */
export function pendingOfProcess(summary: { byConsumer: Map<string, number> }, consumerName: string): number {
  let n = 0;
  for (const [c, k] of summary.byConsumer) if (c.startsWith(`${consumerName}-`)) n += k;
  return n;
}

/**
 * A private redis-server child on a loopback port (never the system one): AOF with
 * `appendfsync always`, so whatever it acknowledged survives a stop and restart on the
 * same port and directory.
 */
export class RedisServerProcess {
  readonly url: string;
  private proc: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private log = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {
    this.url = `redis://127.0.0.1:${port}`;
  }

  static async start(port: number, dir: string): Promise<RedisServerProcess> {
    const server = new RedisServerProcess(port, dir);
    await server.restart();
    return server;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get output(): string {
    return this.log;
  }

  /** Starts redis-server (again) on the same port and directory and waits for PING. */
  async restart(): Promise<void> {
    if (this.proc) throw new Error('redis-server already running');
    const proc = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always',
        '--dir', this.dir, '--daemonize', 'no', '--protected-mode', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = proc;
    redisServers.add(this);
    proc.stdout!.on('data', (c: Buffer) => (this.log += c.toString('utf8')));
    proc.stderr!.on('data', (c: Buffer) => (this.log += c.toString('utf8')));
    this.exited = new Promise((r) =>
      proc.once('exit', () => {
        if (this.proc === proc) this.proc = undefined;
        r();
      }),
    );
    const until = Date.now() + 10_000;
    for (;;) {
      if (this.proc !== proc) throw new Error(`redis-server on ${this.port} exited at start:\n${this.log}`);
      const client = createClient({ url: this.url, socket: { reconnectStrategy: false, connectTimeout: 500 } });
      client.on('error', () => {});
      try {
        await client.connect();
        if ((await client.ping()) === 'PONG') return;
      } catch {
        // not up yet (or still loading the AOF)
      } finally {
        destroyQuietly(client);
      }
      if (Date.now() > until) throw new Error(`redis-server on ${this.port} not answering:\n${this.log}`);
      await sleep(50);
    }
  }

  /** SIGTERM by PID (redis fsyncs the AOF and exits); SIGKILL if it lingers. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc?.pid) return;
    process.kill(proc.pid, 'SIGTERM');
    const timer = setTimeout(() => this.killNow(), 10_000);
    await this.exited;
    clearTimeout(timer);
    redisServers.delete(this);
  }

  killNow(): void {
    const pid = this.proc?.pid;
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/**
 * The end-of-test audit: every produced event has exactly one row, no row was never
 * produced, no dead letters (table or stream), nothing pending in the group.
 */
export async function expectExactlyOnce(env: TestEnv, ids: readonly string[]): Promise<void> {
  const a = await audit(env, ids);
  expect(a.missing, 'produced events with no row').toEqual([]);
  expect(a.unexpected, 'rows that were never produced').toBe(0);
  expect(a.rows).toBe(ids.length);
  expect(a.distinct).toBe(ids.length);
  expect(a.deadLetterRows, 'dead_letter_queue rows').toBe(0);
  expect(Number(await env.redis.sendCommand(['XLEN', env.config.dlqStream])), 'dead-letter stream length').toBe(0);
  expect((await pendingSummary(env)).total, 'XPENDING of the group').toBe(0);
}
