import net from 'node:net';
import tls from 'node:tls';
import { TributaryError } from '../errors.js';
import { isRedisAuthError } from './client.js';
import { clusterNodes, parseRedirection, retargetUrl } from './cluster.js';
import { writeUuidv7 } from '../producer/uuidv7.js';

/**
 * A reply as RESP2 gives it: bulk and simple strings decoded as UTF-8, integers as
 * numbers, nil as null, arrays nested. An error reply is a RespError value in place
 * (one failed command in a pipeline does not fail its neighbours).
 */
export type RespReply = string | number | null | RespError | RespReply[];

/** An error reply from Redis (`-ERR ...`, `-WRONGTYPE ...`), returned in its command's place. */
export class RespError extends Error {
  override readonly name = 'RespError';
}

export interface RespPipeOptions {
  /** `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS. */
  url: string;
  /** CLIENT SETNAME on connect (default none). */
  name?: string;
  /** Give up connecting after this long (default 5000 ms). */
  connectTimeoutMs?: number;
}

/** One socket and the replies it still owes, in order. */
interface Conn {
  socket: net.Socket;
  waiting: Waiting[];
  /** Bytes of a reply not complete yet. */
  pending: Buffer | undefined;
  /** Replaced (its node no longer owns the slot): closed once it owes nothing. */
  retired: boolean;
}

interface Waiting {
  /** Replies still expected. */
  count: number;
  replies: RespReply[];
  resolve: (replies: RespReply[]) => void;
  reject: (err: Error) => void;
}

const CRLF = 0x0d;

/** `$<bytes>\r\n<value>\r\n`: one RESP2 bulk string. */
export function bulk(value: string): string {
  return `$${Buffer.byteLength(value)}\r\n${value}\r\n`;
}

/** A whole command as RESP2 text. */
export function encodeCommand(args: readonly string[]): string {
  let out = `*${args.length}\r\n`;
  for (const a of args) out += bulk(a);
  return out;
}

/**
 * Builds RESP commands straight into one Buffer: no intermediate strings for the
 * framing, no rope of thousands of pieces to flatten before the socket write.
 */
export class RespWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(capacity = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  /** Text that is known to be ASCII (command names, framing built once). */
  ascii(text: string): this {
    this.ensure(text.length);
    this.pos += this.buf.write(text, this.pos, 'latin1');
    return this;
  }

  /** A bulk string: `$<bytes>\r\n<value>\r\n`. */
  bulk(value: string): this {
    const n = Buffer.byteLength(value);
    this.ensure(n + 16);
    const b = this.buf;
    let p = this.pos;
    b[p++] = 0x24; // $
    p = writeDigits(b, p, n);
    b[p++] = 0x0d;
    b[p++] = 0x0a;
    p += b.write(value, p, 'utf8');
    b[p++] = 0x0d;
    b[p++] = 0x0a;
    this.pos = p;
    return this;
  }

  /**
   * Bytes encoded once and reused (framing of every command): short ones copied byte by
   * byte, which beats a native write call per piece.
   */
  bytes(piece: Buffer): this {
    const n = piece.length;
    this.ensure(n);
    const b = this.buf;
    let p = this.pos;
    if (n <= 64) for (let i = 0; i < n; i++) b[p++] = piece[i]!;
    else p += piece.copy(b, p);
    this.pos = p;
    return this;
  }

  /** A bulk string of a non-negative safe integer's digits, written without a string. */
  intBulk(n: number): this {
    this.ensure(32);
    const b = this.buf;
    const digits = digitCount(n);
    let p = this.pos;
    b[p++] = 0x24; // $
    p = writeDigits(b, p, digits);
    b[p++] = 0x0d;
    b[p++] = 0x0a;
    p = writeDigits(b, p, n);
    b[p++] = 0x0d;
    b[p++] = 0x0a;
    this.pos = p;
    return this;
  }

  /** A bulk string of a fresh UUIDv7 (see producer/uuidv7.ts), written without a string. */
  uuidv7(): this {
    this.ensure(43);
    const b = this.buf;
    let p = this.pos;
    b[p++] = 0x24; // $36
    b[p++] = 0x33;
    b[p++] = 0x36;
    b[p++] = 0x0d;
    b[p++] = 0x0a;
    p = writeUuidv7(b, p);
    b[p++] = 0x0d;
    b[p++] = 0x0a;
    this.pos = p;
    return this;
  }

  get length(): number {
    return this.pos;
  }

  /** The bytes written so far (the writer must not be used after). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  private ensure(more: number): void {
    if (this.pos + more <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + more));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
}

/** Decimal digits of a non-negative integer. */
function digitCount(n: number): number {
  let digits = 1;
  for (let m = n; m >= 10; m = Math.floor(m / 10)) digits++;
  return digits;
}

/** The digits of a non-negative safe integer at `p`; the offset after them. */
function writeDigits(b: Buffer, p: number, n: number): number {
  if (n < 10) {
    b[p] = 0x30 + n;
    return p + 1;
  }
  const digits = digitCount(n);
  for (let i = p + digits - 1; i >= p; i--) {
    b[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  return p + digits;
}

/**
 * A bare Redis connection for writing many commands in one go: the caller hands over
 * commands already encoded as one RESP string, they leave in one socket write, and
 * their replies come back in order. This is what lets `produceBatch` send a thousand
 * XADDs for the cost of one string build and one write, with no per-command objects,
 * promises or queue entries (node-redis spends more on those than Redis spends on the
 * XADDs).
 *
 * It does not reconnect on its own or retry: when the connection breaks, every
 * command in flight fails with TRIB_ERR_REDIS_UNAVAILABLE (some of them may have run),
 * and the next call connects again.
 */
export class RespPipe {
  private conn: Conn | undefined;
  private connecting: Promise<Conn> | undefined;
  private closed = false;
  private readonly inFlight = new Set<Promise<RespReply[]>>();
  /** Where commands go: the URL, or on a Redis Cluster the node MOVED last named. */
  private url: string;

  constructor(private readonly options: RespPipeOptions) {
    parseRedisUrl(options.url); // a bad URL fails here, not at the first command
    this.url = clusterNodes(options.url)?.[0] ?? options.url;
  }

  /** Connects now (otherwise the first command does). */
  async connect(): Promise<void> {
    if (!this.conn) await this.connectOnce();
  }

  /** One command. */
  async command(args: readonly string[]): Promise<RespReply> {
    const [reply] = await this.pipeline(encodeCommand(args), 1);
    return reply!;
  }

  /**
   * `count` commands, already encoded back to back in `encoded`; their replies in order.
   * On a Redis Cluster, commands refused with MOVED are sent again to the node it names
   * (which later commands then go to), and those refused with ASK (a slot being migrated)
   * are sent to the node it names once, each after ASKING. Neither ran where it was
   * refused, so nothing runs twice.
   */
  async pipeline(encoded: string | Buffer, count: number): Promise<RespReply[]> {
    const replies = await this.send(encoded, count);
    for (let i = 0; i < replies.length; i++) {
      const r = replies[i];
      if (r instanceof RespError && (r.message.startsWith('MOVED ') || r.message.startsWith('ASK '))) return this.redirect(encoded, replies, 0);
    }
    return replies;
  }

  private async send(encoded: string | Buffer, count: number): Promise<RespReply[]> {
    if (this.closed) throw new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', ['connection closed']);
    if (count === 0) return [];
    const call = (async () => {
      const conn = this.conn ?? (await this.connectOnce());
      return this.enqueue(conn, encoded, count);
    })();
    this.inFlight.add(call);
    try {
      return await call;
    } finally {
      this.inFlight.delete(call);
    }
  }

  /** Sends again the commands of `encoded` whose replies are redirections; the replies merged. */
  private async redirect(encoded: string | Buffer, replies: RespReply[], depth: number): Promise<RespReply[]> {
    const frames = splitCommands(typeof encoded === 'string' ? Buffer.from(encoded) : encoded);
    const moved: number[] = [];
    const asked = new Map<string, number[]>();
    for (let i = 0; i < replies.length; i++) {
      const r = replies[i];
      const to = r instanceof RespError ? parseRedirection(r.message) : undefined;
      if (!to) continue;
      if (to.kind === 'MOVED') {
        moved.push(i);
        this.moveTo(to.host, to.port);
      } else {
        const target = `${to.host}:${to.port}`;
        asked.set(target, [...(asked.get(target) ?? []), i]);
      }
    }
    const out = [...replies];
    if (moved.length > 0) {
      const again = await this.send(Buffer.concat(moved.map((i) => frames[i]!)), moved.length);
      moved.forEach((i, k) => (out[i] = again[k]!));
    }
    for (const [target, indexes] of asked) {
      const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
      const once = new RespPipe({ ...this.options, url: retargetUrl(this.url, host, port) });
      try {
        const asking = Buffer.from(encodeCommand(['ASKING']));
        const again = await once.send(Buffer.concat(indexes.flatMap((i) => [asking, frames[i]!])), indexes.length * 2);
        indexes.forEach((i, k) => (out[i] = again[k * 2 + 1]!));
      } finally {
        once.destroy();
      }
    }
    const still = out.some((r) => r instanceof RespError && (r.message.startsWith('MOVED ') || r.message.startsWith('ASK ')));
    if (still && depth < 16) return this.redirect(encoded, out, depth + 1);
    return out;
  }

  /** Points later commands at `host:port`; the current socket closes once it owes no reply. */
  private moveTo(host: string, port: number): void {
    const url = retargetUrl(this.url, host, port);
    if (url === this.url) return;
    this.url = url;
    const old = this.conn;
    this.conn = undefined;
    if (old) {
      old.retired = true;
      if (old.waiting.length === 0) old.socket.end();
    }
  }

  /** Takes no new commands, waits for those already given (connecting included), then closes. Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    this.conn?.socket.end();
    this.conn = undefined;
  }

  /** Drops the connection now; commands in flight fail. */
  destroy(): void {
    this.closed = true;
    this.conn?.socket.destroy();
  }

  private enqueue(conn: Conn, encoded: string | Buffer, count: number): Promise<RespReply[]> {
    return new Promise<RespReply[]>((resolve, reject) => {
      conn.waiting.push({ count, replies: [], resolve, reject });
      conn.socket.write(encoded);
    });
  }

  private connectOnce(): Promise<Conn> {
    this.connecting ??= this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async open(): Promise<Conn> {
    const url = parseRedisUrl(this.url);
    const socket = await connectSocket(url, this.options.connectTimeoutMs ?? 5000);
    const conn: Conn = { socket, waiting: [], pending: undefined, retired: false };
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('error', () => {}); // 'close' follows, and fails what is in flight
    socket.on('close', () => this.onClose(conn));
    // The hand-shake goes first, as one pipeline: AUTH, SELECT, CLIENT SETNAME.
    const hello = handshakeCommands(url, this.options.name);
    if (hello.length > 0) {
      const replies = await this.enqueue(conn, hello.map(encodeCommand).join(''), hello.length).catch((err: Error) => {
        socket.destroy();
        throw err;
      });
      const refused = replies.find((r): r is RespError => r instanceof RespError);
      if (refused) {
        socket.destroy();
        throw handshakeRefused(url, refused);
      }
    }
    this.conn = conn;
    return conn;
  }

  private onClose(conn: Conn): void {
    if (this.conn === conn) this.conn = undefined;
    conn.pending = undefined;
    const err = new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', ['connection closed with commands in flight; some of them may have run']);
    for (const w of conn.waiting.splice(0)) w.reject(err);
  }

  private onData(conn: Conn, chunk: Buffer): void {
    let buf = conn.pending ? Buffer.concat([conn.pending, chunk]) : chunk;
    let pos = 0;
    const waiting = conn.waiting;
    while (pos < buf.length && waiting.length > 0) {
      const parsed = parseReply(buf, pos);
      if (parsed === undefined) break; // incomplete: wait for more bytes
      pos = parsed.next;
      const w = waiting[0]!;
      w.replies.push(parsed.value);
      if (--w.count === 0) {
        waiting.shift();
        w.resolve(w.replies);
      }
    }
    buf = buf.subarray(pos);
    conn.pending = buf.length > 0 ? buf : undefined;
    if (conn.retired && waiting.length === 0) conn.socket.end();
  }
}

/**
 * A connected socket to the server of `url` (TLS for rediss://), no-delay and keep-alive
 * set; TRIB_ERR_REDIS_UNAVAILABLE when it cannot connect within `timeoutMs`.
 */
export async function connectSocket(url: RedisUrl, timeoutMs: number): Promise<net.Socket> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = url.tls
      ? tls.connect({ host: url.host, port: url.port, servername: net.isIP(url.host) ? undefined : url.host })
      : net.connect({ host: url.host, port: url.port });
    const fail = (err: Error) => {
      s.destroy();
      reject(new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`${url.host}:${url.port}: ${err.message}`], { cause: err }));
    };
    s.setTimeout(timeoutMs, () => fail(new Error(`no connection after ${timeoutMs} ms`)));
    s.once('error', fail);
    s.once(url.tls ? 'secureConnect' : 'connect', () => {
      s.setTimeout(0);
      s.off('error', fail);
      resolve(s);
    });
  });
  socket.setNoDelay(true);
  // Probes after 5 s idle, as node-redis does: a connection dropped silently (no RST) is
  // found in minutes, not after the kernel's default two hours.
  socket.setKeepAlive(true, 5000);
  return socket;
}

/** The commands a new connection sends first: AUTH, SELECT, CLIENT SETNAME, as the URL and name ask. Pure. */
export function handshakeCommands(url: RedisUrl, name: string | undefined): string[][] {
  const hello: string[][] = [];
  if (url.password !== undefined) hello.push(url.username ? ['AUTH', url.username, url.password] : ['AUTH', url.password]);
  if (url.db !== 0) hello.push(['SELECT', String(url.db)]);
  if (name) hello.push(['CLIENT', 'SETNAME', name]);
  return hello;
}

/** A hand-shake reply Redis refused, as an error: refused credentials are a wrong setting (not retried). */
export function handshakeRefused(url: RedisUrl, refused: RespError): TributaryError {
  if (isRedisAuthError(refused)) return new TributaryError('TRIB_ERR_REDIS_AUTH', [`${url.host}:${url.port}`, refused.message]);
  return new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`${url.host}:${url.port}: ${refused.message}`]);
}

/**
 * The commands of a RESP buffer of commands (arrays of bulk strings, as encodeCommand
 * and RespWriter write them), each as its own slice. Pure.
 */
export function splitCommands(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  const line = (at: number) => {
    const eol = buf.indexOf(CRLF, at);
    if (eol < 0) throw new RangeError('truncated RESP command');
    return { value: Number(buf.toString('latin1', at + 1, eol)), next: eol + 2 };
  };
  while (pos < buf.length) {
    const start = pos;
    const head = line(pos);
    pos = head.next;
    for (let i = 0; i < head.value; i++) {
      const len = line(pos);
      pos = len.next + len.value + 2;
    }
    out.push(buf.subarray(start, pos));
  }
  return out;
}

/**
 * One RESP2 reply from `buf` at `pos`, or undefined when the bytes end before it does.
 * Pure.
 */
export function parseReply(buf: Buffer, pos: number): { value: RespReply; next: number } | undefined {
  const eol = buf.indexOf(CRLF, pos);
  if (eol < 0 || eol + 1 >= buf.length) return undefined;
  const type = buf[pos];
  const line = buf.toString('utf8', pos + 1, eol);
  const after = eol + 2;
  switch (type) {
    case 0x2b: // +
      return { value: line, next: after };
    case 0x2d: // -
      return { value: new RespError(line), next: after };
    case 0x3a: // :
      return { value: Number(line), next: after };
    case 0x24: {
      // $
      const len = Number(line);
      if (len < 0) return { value: null, next: after };
      if (after + len + 2 > buf.length) return undefined;
      return { value: buf.toString('utf8', after, after + len), next: after + len + 2 };
    }
    case 0x2a: {
      // *
      const n = Number(line);
      if (n < 0) return { value: null, next: after };
      const items: RespReply[] = [];
      let next = after;
      for (let i = 0; i < n; i++) {
        const item = parseReply(buf, next);
        if (item === undefined) return undefined;
        items.push(item.value);
        next = item.next;
      }
      return { value: items, next };
    }
    default:
      throw new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`unexpected reply type ${JSON.stringify(String.fromCharCode(type ?? 0))}`]);
  }
}

export interface RedisUrl {
  tls: boolean;
  host: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
}

/** The parts of a `redis://` / `rediss://` URL. Pure. */
export function parseRedisUrl(url: string): RedisUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['Redis URL', `not a URL: ${url}`]);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['Redis URL', `must start with redis:// or rediss://: ${url}`]);
  }
  const dbText = u.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['Redis URL', `bad database number: ${dbText}`]);
  return {
    tls: u.protocol === 'rediss:',
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db,
  };
}
