/**
 * The connection a stream consumer reads from: one blocking XREADGROUP at a time.
 *
 * On a single Redis it is a bare socket of our own (`StreamReader`): the reply is walked
 * as it arrives (ReplyScanner) and decoded once whole, straight into packed entries
 * (stream-reply.ts), with no per-field objects. node-redis's general decoder spent more
 * of the engine's CPU on these replies than anything else we do per entry.
 *
 * On a Redis Cluster it stays a node-redis cluster client (`ClusterGroupReader`), which
 * follows MOVED and ASK to the node owning the key, as every other command does there.
 */
import type net from 'node:net';
import { ClientOfflineError, ErrorReply, RESP_TYPES } from '@redis/client';
import { TributaryError } from '../errors.js';
import { blockingConnection, destroyQuietly, openBlocking, send, unblock, untilReady, type BlockingConnection, type RedisConnection } from './client.js';
import { clusterNodes } from './cluster.js';
import { parseRawStreamReadReply, type RawBufferReply } from './commands.js';
import { connectSocket, encodeCommand, handshakeCommands, handshakeRefused, parseRedisUrl, parseReply, RespError, type RedisUrl, type RespReply } from './pipe.js';
import { decodeStreamRead, ReplyScanner, type StreamReadResult } from './stream-reply.js';
import { watchCommands } from './watchdog.js';

export interface GroupReaderOptions {
  /** Redis URL (a cluster's: see clusterNodes). */
  url: string;
  /** CLIENT SETNAME: how CLIENT LIST (and, on a cluster, CLIENT UNBLOCK) finds it. */
  name: string;
  /** A read gets no reply within its block time plus this: the connection is dropped and the read fails as lost (0: never). */
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
}

/**
 * One consumer's reading connection. `read` throws a server's refusal as a RespError or
 * node-redis ErrorReply (NOGROUP: nothing was delivered); any other error means the
 * reply was lost (Redis may have delivered entries that never arrived).
 */
export interface GroupReader {
  /** Connects if it is not connected. */
  open(): Promise<void>;
  /** XREADGROUP (or XREAD) of one stream, as `args`; `blockMs` its BLOCK (0: none). */
  read(args: readonly string[], blockMs: number, signal: AbortSignal): Promise<StreamReadResult>;
  /** Releases a read blocked on this connection (CLIENT UNBLOCK sent on `commands`); a no-op when either is down. */
  unblock(commands: RedisConnection): Promise<void>;
  /** Drops the connection; a read in flight fails. It can be opened again. */
  destroy(): void;
}

/** The reader for `url`: our own socket on a single Redis, node-redis's cluster client on a cluster. */
export function groupReader(options: GroupReaderOptions): GroupReader {
  return clusterNodes(options.url) ? new ClusterGroupReader(options) : new StreamReader(options);
}

/** Whether `err` is Redis refusing the command (it ran, or did not, but nothing is lost). */
export function isServerRefusal(err: unknown): boolean {
  return err instanceof RespError || err instanceof ErrorReply;
}

/** A request waiting for its reply. */
interface Request {
  /** Generic replies still expected (the hand-shake), or -1 for the stream read. */
  count: number;
  replies: RespReply[];
  resolve: (value: RespReply[] | StreamReadResult) => void;
  reject: (err: Error) => void;
}

const INITIAL_BUFFER = 64 * 1024;
/** The longest delay setTimeout takes (longer ones fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A single-node reading connection of its own (see the file's comment). It does not
 * reconnect by itself: a read after a break connects again (the runner's backoff paces
 * that while Redis is down).
 */
export class StreamReader implements GroupReader {
  /** CLIENT ID of the current connection (CLIENT UNBLOCK needs it; a reconnect changes it). */
  id: string | undefined;
  private socket: net.Socket | undefined;
  private connecting: Promise<void> | undefined;
  private request: Request | undefined;
  private readonly url: RedisUrl;
  /** Bytes received and not yet consumed: buf[0, len). */
  private buf = Buffer.allocUnsafeSlow(INITIAL_BUFFER);
  private len = 0;
  private readonly scanner = new ReplyScanner();
  /** The last reply's size: the next buffer is made that large from the start. */
  private lastSize = INITIAL_BUFFER;
  /** Counts destroy() calls: a connect that a destroy overtook closes its socket. */
  private generation = 0;
  /** The last socket error, said when the connection closes under a read. */
  private cause: string | undefined;

  constructor(private readonly options: GroupReaderOptions) {
    this.url = parseRedisUrl(options.url);
  }

  get isOpen(): boolean {
    return this.socket !== undefined;
  }

  open(): Promise<void> {
    // Connecting (the socket may be there, its hand-shake not answered yet): wait for it.
    if (this.connecting) return this.connecting;
    if (this.socket) return Promise.resolve();
    this.connecting = this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connect(): Promise<void> {
    const generation = this.generation;
    const socket = await connectSocket(this.url, this.options.connectTimeoutMs ?? 5000);
    if (generation !== this.generation) {
      // Destroyed while it connected (the source closed): this socket must not live on.
      socket.destroy();
      throw lost('the connection was closed while it opened');
    }
    this.len = 0;
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', (err) => (this.cause = err.message)); // 'close' follows, and fails what is in flight
    socket.on('close', () => this.onClose(socket));
    this.socket = socket;
    // The hand-shake and CLIENT ID in one write.
    const hello = [...handshakeCommands(this.url, this.options.name), ['CLIENT', 'ID']];
    let replies: RespReply[];
    try {
      replies = (await this.send(hello.map(encodeCommand).join(''), hello.length, 0)) as RespReply[];
    } catch (err) {
      this.destroy();
      throw err;
    }
    const refused = replies.find((r): r is RespError => r instanceof RespError);
    if (refused) {
      this.destroy();
      throw handshakeRefused(this.url, refused);
    }
    if (generation !== this.generation || this.socket !== socket) throw lost('the connection was closed while it opened');
    this.id = String(replies.at(-1));
  }

  async read(args: readonly string[], blockMs: number): Promise<StreamReadResult> {
    await this.open();
    return (await this.send(encodeCommand(args), -1, blockMs)) as StreamReadResult;
  }

  async unblock(commands: RedisConnection): Promise<void> {
    if (this.socket && this.id && commands.isReady) await send(commands, ['CLIENT', 'UNBLOCK', this.id]);
  }

  destroy(): void {
    this.generation++;
    if (this.socket) this.fail(this.socket, lost('the connection was closed'));
  }

  /** Writes `encoded` and waits for its reply (`count` generic replies, or -1: one stream read). */
  private send(encoded: string, count: number, blockMs: number): Promise<RespReply[] | StreamReadResult> {
    const socket = this.socket;
    if (!socket) return Promise.reject(lost('the connection is closed'));
    if (this.request) return Promise.reject(new Error('StreamReader: one command at a time'));
    return new Promise((resolve, reject) => {
      const limit = this.options.commandTimeoutMs ?? 0;
      let timer: NodeJS.Timeout | undefined;
      if (limit > 0 && Number.isFinite(blockMs)) {
        timer = setTimeout(
          () => {
            // No reply in time: the socket is dropped, which fails this read as lost.
            this.fail(socket, lost(`no reply from Redis within ${blockMs + limit} ms (REDIS_COMMAND_TIMEOUT_MS ${limit} plus the block time): reconnecting`));
          },
          // A timer longer than 2^31 - 1 ms would fire at once.
          Math.min(blockMs + limit, MAX_TIMER_MS),
        );
      }
      const done = () => {
        if (timer) clearTimeout(timer);
        this.request = undefined;
      };
      this.request = {
        count,
        replies: [],
        resolve: (v) => (done(), resolve(v)),
        reject: (e) => (done(), reject(e)),
      };
      this.scanner.reset(0);
      socket.write(encoded);
    });
  }

  private onData(socket: net.Socket, chunk: Buffer): void {
    if (socket !== this.socket) return;
    try {
      const req = this.request;
      if (!req) throw lost('Redis sent bytes nobody asked for');
      if (req.count >= 0) return this.onGeneric(req, chunk);
      if (this.len === 0 && this.scanner.scan(chunk, chunk.length) && this.scanner.pos === chunk.length) {
        // The whole reply in one chunk: decoded where it lies, no copy.
        return this.complete(req, chunk, chunk.length);
      }
      this.append(chunk);
      // The scan resumes where it stopped (in the chunk, now at the same offset in buf).
      if (this.scanner.scan(this.buf, this.len)) {
        const end = this.scanner.pos;
        if (end !== this.len) throw lost(`${this.len - end} bytes after the reply`);
        this.len = 0;
        if (end * 2 < this.buf.length) {
          // A reply much smaller than the buffer (sized for a bigger one): copied out, so
          // its entries do not keep the whole buffer alive, which stays for the next reply.
          const exact = Buffer.allocUnsafeSlow(end);
          this.buf.copy(exact, 0, 0, end);
          return this.complete(req, exact, end);
        }
        const whole = this.buf;
        // The entries keep views of this buffer: the next reply gets a new one.
        this.lastSize = Math.max(INITIAL_BUFFER, end);
        this.buf = Buffer.allocUnsafeSlow(this.lastSize);
        this.complete(req, whole, end);
      }
    } catch (err) {
      this.fail(socket, err instanceof Error ? err : new Error(String(err)));
    }
  }

  private complete(req: Request, buf: Buffer, end: number): void {
    const result = decodeStreamRead(buf, 0, end);
    if (result instanceof RespError) req.reject(result);
    else req.resolve(result);
  }

  /** The hand-shake's replies: few and short, parsed from the start as bytes arrive. */
  private onGeneric(req: Request, chunk: Buffer): void {
    this.append(chunk);
    let pos = 0;
    while (req.replies.length < req.count) {
      const parsed = parseReply(this.buf.subarray(0, this.len), pos);
      if (parsed === undefined) break;
      req.replies.push(parsed.value);
      pos = parsed.next;
    }
    if (req.replies.length < req.count) {
      req.replies.length = 0;
      return;
    }
    if (pos !== this.len) throw lost(`${this.len - pos} bytes after the reply`);
    this.len = 0;
    req.resolve(req.replies);
  }

  private append(chunk: Buffer): void {
    if (this.len + chunk.length > this.buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.len + chunk.length));
      this.buf.copy(grown, 0, 0, this.len);
      this.buf = grown;
    }
    this.len += chunk.copy(this.buf, this.len);
  }

  /** Drops `socket` and fails the request in flight with `err`. */
  private fail(socket: net.Socket, err: Error): void {
    const req = this.request;
    this.request = undefined;
    socket.destroy();
    this.onClose(socket);
    req?.reject(err);
  }

  private onClose(socket: net.Socket): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    this.id = undefined;
    this.len = 0;
    const req = this.request;
    this.request = undefined;
    req?.reject(lost(`the connection closed before the reply${this.cause ? ` (${this.cause})` : ''}`));
    this.cause = undefined;
  }
}

/** A read whose reply was lost: Redis may have run it. */
function lost(why: string): TributaryError {
  return new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`${why} (the read may have delivered entries: they are claimed back)`]);
}

/** Blob strings as Buffers. */
const BUFFERS = { [RESP_TYPES.BLOB_STRING]: Buffer } as const;

/** The cluster reader: a node-redis cluster client of its own, pinned to the key's node (client.ts). */
class ClusterGroupReader implements GroupReader {
  private readonly b: BlockingConnection;

  constructor(options: GroupReaderOptions) {
    this.b = blockingConnection(options.url, { name: options.name });
    // A stalled read fails as a lost connection (no-op on a cluster connection for now: see watchCommands).
    watchCommands(this.b.conn, options.commandTimeoutMs ?? 0);
  }

  open(): Promise<void> {
    return openBlocking(this.b);
  }

  async read(args: readonly string[], _blockMs: number, signal: AbortSignal): Promise<StreamReadResult> {
    await this.open();
    try {
      return parseRawStreamReadReply((await this.b.conn.sendCommand([...args], { typeMapping: BUFFERS })) as RawBufferReply);
    } catch (err) {
      // Reconnecting: wait for it (its break was reported already) rather than fail at once again.
      if (err instanceof ClientOfflineError) await untilReady(this.b.conn, 1000, signal);
      throw err;
    }
  }

  unblock(commands: RedisConnection): Promise<void> {
    return unblock(commands, this.b);
  }

  destroy(): void {
    destroyQuietly(this.b.conn);
  }
}
