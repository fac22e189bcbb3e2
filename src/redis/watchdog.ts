/**
 * A Redis connection that gets no reply stays silent for as long as the kernel keeps
 * retransmitting into a black hole (a firewall dropping packets, a dead route, a frozen
 * server): node-redis has no per-command limit that frees the connection (its command
 * timeout only rejects the one command, and its socket timeout counts the bytes we keep
 * writing as activity). The watchdog gives every command `timeoutMs` (plus the block
 * time of a blocking read: BLMOVE, XREADGROUP BLOCK) to be answered; past that, it
 * reports the stall and reconnects the client: everything waiting on the dead socket
 * fails as a lost connection, and the pipeline retries it.
 */
import type { RedisConnection } from './client.js';
import { ClusterConnection } from './cluster.js';

/** Default of REDIS_COMMAND_TIMEOUT_MS: far above any command the pipelines send, far below the kernel's ~15 min. */
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 30_000;

/** How long a blocking command may legitimately wait, ms (0 for any other command). Pure. */
export function blockingMs(args: readonly (string | Buffer)[]): number {
  const name = String(args[0] ?? '').toUpperCase();
  if (name === 'BLMOVE' || name === 'BRPOPLPUSH' || name === 'BLPOP' || name === 'BRPOP') {
    const seconds = Number(String(args.at(-1)));
    return Number.isFinite(seconds) ? (seconds === 0 ? Infinity : seconds * 1000) : 0;
  }
  if (name === 'XREADGROUP' || name === 'XREAD') {
    const i = args.findIndex((a) => String(a).toUpperCase() === 'BLOCK');
    if (i < 0) return 0;
    const ms = Number(String(args[i + 1]));
    return Number.isFinite(ms) ? (ms === 0 ? Infinity : ms) : 0;
  }
  return 0;
}

/**
 * Watches every command `client` (a single-node connection) sends (node-redis routes its command methods, scripts
 * and `sendCommand` through the instance's sendCommand; MULTI/EXEC bypasses it and is
 * freed with the socket when another command on the client stalls). `onStall` gets the
 * error before the client reconnects. No-op for timeoutMs <= 0.
 */
export function watchCommands(client: RedisConnection, timeoutMs: number, onStall?: (err: Error) => void): void {
  // A cluster connection is many node connections under node-redis's cluster client,
  // which reconnects and re-routes by itself: not watched here (yet).
  if (!(timeoutMs > 0) || (client as unknown) instanceof ClusterConnection) return;
  const original = client.sendCommand.bind(client) as (...a: unknown[]) => Promise<unknown>;
  let reconnecting = false;
  const stall = (limit: number, what: string) => {
    if (reconnecting || !client.isOpen) return;
    reconnecting = true;
    const err = new Error(`no reply from Redis within ${limit} ms (REDIS_COMMAND_TIMEOUT_MS) ${what}: reconnecting`);
    onStall?.(err);
    // destroy() fails what waits on the socket; connect() makes a new one (node-redis
    // retries it with the client's reconnect strategy). A client its owner closed is not
    // open any more, and is left alone.
    const wasReady = client.isReady;
    client.destroy();
    const connect = () => {
      if (!client.isOpen) client.connect().catch(() => {});
    };
    if (wasReady) connect();
    else {
      // node-redis's own connect loop is still waiting on the handshake: let it unwind
      // (it emits 'reconnecting' before it sees the client closed), or two loops would
      // race over one socket.
      const timer = setTimeout(go, 6000);
      timer.unref();
      function go() {
        clearTimeout(timer);
        client.off('reconnecting', go);
        setImmediate(connect);
      }
      client.once('reconnecting', go);
    }
  };
  // A connection whose handshake (HELLO, CLIENT SETNAME, ...) gets no reply never becomes
  // ready, and with the offline queue off every command fails at once without reaching
  // the timers below: give the handshake the same limit.
  let handshake: NodeJS.Timeout | undefined;
  client.on('connect', () => {
    // A new socket: its own stalls count again.
    reconnecting = false;
    clearTimeout(handshake);
    handshake = setTimeout(() => {
      if (client.isOpen && !client.isReady) stall(timeoutMs, 'to its handshake');
    }, timeoutMs);
    handshake.unref();
  });
  client.on('ready', () => clearTimeout(handshake));
  client.on('end', () => clearTimeout(handshake));
  (client as unknown as { sendCommand: (...a: unknown[]) => Promise<unknown> }).sendCommand = (...a: unknown[]) => {
    const args = a[0] as readonly (string | Buffer)[];
    const limit = timeoutMs + blockingMs(args);
    const reply = original(...a);
    if (!Number.isFinite(limit)) return reply;
    // A timer longer than 2^31 - 1 ms would fire at once.
    const timer = setTimeout(() => stall(limit, `to ${String(args[0])}`), Math.min(limit, 2 ** 31 - 1));
    timer.unref();
    return reply.finally(() => clearTimeout(timer));
  };
}
