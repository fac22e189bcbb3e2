/**
 * Events from a producer that is not ours: `redis-cli --pipe`, a separate process,
 * sending XADDs written here as RESP. The fields come in another order than our
 * producer's (payload first), payloads are 100 to 250 bytes of JSON, and the
 * event_id takes one of several shapes, so the benchmarks see what an outside producer
 * sends rather than our own sample events:
 *
 * - `uuidv7`: time-ordered UUIDs (our producer's default);
 * - `uuidv4`: random UUIDs (inserts land all over the primary key's index);
 * - `sequential`: `evt-00000001`-style text, increasing;
 * - `none`: the Python original's events (event_type, payload, timestamp in seconds; no
 *   event_id, so the engine keys rows by stream entry ID; no produced_at).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, mkdtempSync, openSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { redactSecrets } from '../config/index.js';
import { TributaryError } from '../errors.js';
import { uuidv7 } from '../producer/uuidv7.js';

export const ID_SHAPES = ['uuidv7', 'uuidv4', 'sequential', 'none'] as const;
export type IdShape = (typeof ID_SHAPES)[number];

const TYPES = ['page_view', 'click', 'purchase', 'signup', 'logout'] as const;
const PAD = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(5);

function bulk(s: string): string {
  return `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
}

/** A payload of 100 to 250 bytes of JSON for event `seq`. Pure but for Math.random. */
export function externalPayload(seq: number): string {
  const head = `{"seq":${seq},"user_id":${1 + Math.floor(Math.random() * 100_000)},"amount":${(Math.random() * 100).toFixed(2)},"note":"`;
  const target = 100 + Math.floor(Math.random() * 151);
  return `${head}${PAD.slice(0, Math.max(0, target - head.length - 2))}"}`;
}

/** The event_id of event `seq` in `shape` (undefined for `none`). */
export function externalEventId(seq: number, shape: IdShape): string | undefined {
  switch (shape) {
    case 'uuidv7':
      return uuidv7();
    case 'uuidv4':
      return randomUUID();
    case 'sequential':
      return `evt-${String(seq).padStart(10, '0')}`;
    case 'none':
      return undefined;
  }
}

/** One XADD of event `seq` as RESP, fields in an outside producer's order. */
export function externalXadd(streamKey: string, seq: number, shape: IdShape, nowMs = Date.now()): string {
  const type = TYPES[seq % TYPES.length]!;
  const payload = externalPayload(seq);
  const id = externalEventId(seq, shape);
  if (id === undefined) {
    // The Python original's producer: event_type, payload, timestamp (epoch seconds).
    return `*9\r\n$4\r\nXADD\r\n${bulk(streamKey)}$1\r\n*\r\n${bulk('event_type')}${bulk(type)}${bulk('payload')}${bulk(payload)}${bulk('timestamp')}${bulk(String(nowMs / 1000))}`;
  }
  return (
    `*11\r\n$4\r\nXADD\r\n${bulk(streamKey)}$1\r\n*\r\n` +
    `${bulk('payload')}${bulk(payload)}${bulk('event_id')}${bulk(id)}${bulk('produced_at')}${bulk(String(nowMs))}${bulk('event_type')}${bulk(type)}`
  );
}

/** `redis-cli` arguments that reach `redisUrl`. */
function cliArgs(redisUrl: string): string[] {
  return ['-u', redisUrl, ...(redisUrl.startsWith('rediss://') ? ['--tls'] : [])];
}

/** What `redis-cli --pipe` reported. */
export interface PipeReport {
  replies: number;
  errors: number;
}

/** Parses the last lines of `redis-cli --pipe` ("errors: 0, replies: 1000"). Pure. */
export function parsePipeReport(output: string): PipeReport | undefined {
  const m = /errors:\s*(\d+),\s*replies:\s*(\d+)/.exec(output);
  return m ? { errors: Number(m[1]), replies: Number(m[2]) } : undefined;
}

/**
 * A `redis-cli --pipe` child writing to `redisUrl`: `write` feeds it RESP, `end` closes
 * its input and resolves with its report once every reply came back. Throws
 * TRIB_ERR_BENCH_TOOL when redis-cli is missing, fails or reports errors.
 */
export class PipeProducer {
  private readonly child;
  private output = '';
  private readonly exited: Promise<number | null>;
  private spawnError: Error | undefined;

  constructor(redisUrl: string, stdinFile?: string) {
    const fd = stdinFile === undefined ? undefined : openSync(stdinFile, 'r');
    try {
      this.child = spawn('redis-cli', [...cliArgs(redisUrl), '--pipe'], { stdio: [fd ?? 'pipe', 'pipe', 'pipe'] });
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    this.child.stdout!.on('data', (d: Buffer) => (this.output = (this.output + d.toString()).slice(-4000)));
    this.child.stderr!.on('data', (d: Buffer) => (this.output = (this.output + d.toString()).slice(-4000)));
    this.child.stdin?.on('error', () => {});
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => {
        this.spawnError = err;
        resolve(null);
      });
      this.child.once('exit', (code) => resolve(code));
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Feeds `resp`; resolves when the child's input can take more (backpressure). */
  async write(resp: string): Promise<void> {
    if (!this.child.stdin!.write(resp)) await Promise.race([once(this.child.stdin!, 'drain'), this.exited]);
  }

  async end(expectedReplies: number): Promise<PipeReport> {
    this.child.stdin?.end();
    const code = await this.exited;
    if (this.spawnError) {
      const missing = (this.spawnError as NodeJS.ErrnoException).code === 'ENOENT';
      throw new TributaryError('TRIB_ERR_BENCH_TOOL', ['redis-cli', missing ? 'not installed (apt-get install redis-tools)' : this.spawnError.message]);
    }
    const report = parsePipeReport(this.output);
    if (code !== 0 || report === undefined || report.errors > 0 || report.replies !== expectedReplies) {
      throw new TributaryError('TRIB_ERR_BENCH_TOOL', ['redis-cli --pipe', `exit ${code}, ${report ? `${report.errors} errors, ${report.replies} of ${expectedReplies} replies` : 'no report'}: ${lastLine(this.output)}`]);
    }
    return report;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

function lastLine(text: string): string {
  // redis-cli may print the URL it was given; never echo a password.
  const lines = text.trim().split('\n');
  return redactSecrets(lines[lines.length - 1] ?? '').slice(0, 300);
}

/**
 * Loads `count` events into `streamKey` with `redis-cli --pipe` reading a file written
 * beforehand (so the time is redis-cli's and Redis's alone); returns the seconds the
 * pipe took.
 */
export async function loadExternal(redisUrl: string, streamKey: string, count: number, shape: IdShape): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'tributary-external-'));
  const file = join(dir, 'load.resp');
  try {
    const out = createWriteStream(file);
    const now = Date.now();
    let chunk = '';
    for (let i = 0; i < count; i++) {
      chunk += externalXadd(streamKey, i, shape, now);
      if (chunk.length > 1 << 20 || i === count - 1) {
        if (!out.write(chunk)) await once(out, 'drain');
        chunk = '';
      }
    }
    out.end();
    await once(out, 'finish');
    const started = performance.now();
    const pipe = new PipeProducer(redisUrl, file);
    await pipe.end(count);
    return (performance.now() - started) / 1000;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
