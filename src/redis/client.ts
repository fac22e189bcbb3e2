import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient, type RedisClientType } from '@redis/client';
import { redactUrl } from '../config/index.js';
import { backoffDelay } from '../core/backoff.js';
import { TributaryError } from '../errors.js';
import { redisErrorIs, type RawReply } from './commands.js';
import { asCluster, ClusterConnection, clusterNodes, isClusterConnection, registerRedisCluster } from './cluster.js';

// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- no modules, functions or scripts attached
export type RedisConnection = RedisClientType<{}, {}, {}, 2, {}>;

export interface RedisConnectionOptions {
  /** Shown in CLIENT LIST, e.g. `tributary:worker:host-1`. */
  name?: string;
  /** Fail commands at once while disconnected instead of queueing them (default true). */
  failFast?: boolean;
  /** Called on connection errors; node-redis would otherwise throw them as unhandled. */
  onError?: (err: Error) => void;
  connectTimeoutMs?: number;
}

/**
 * Creates a node-redis client (redis:// or rediss:// — TLS comes from the URL) that
 * reconnects forever with capped, jittered backoff. It is not connected yet.
 */
export function createRedisConnection(url: string, options: RedisConnectionOptions = {}): RedisConnection {
  const nodes = clusterNodes(url);
  if (nodes) {
    // A Redis Cluster (cluster.ts): node-redis's cluster client behind the same surface.
    const cluster = new ClusterConnection(url, nodes, {
      name: options.name,
      failFast: options.failFast,
      connectTimeoutMs: options.connectTimeoutMs,
      reconnect: (retries: number) => backoffDelay(retries, { baseMs: 100, maxMs: 5000 }),
    });
    cluster.on('error', (err: Error) => options.onError?.(err));
    return cluster as unknown as RedisConnection;
  }
  const clientOptions = {
    url,
    name: options.name,
    disableOfflineQueue: options.failFast ?? true,
    socket: {
      connectTimeout: options.connectTimeoutMs ?? 5000,
      reconnectStrategy: (retries: number) => backoffDelay(retries, { baseMs: 100, maxMs: 5000 }),
    },
  };
  // node-redis builds a client class with every command method for each new options
  // object (~20 ms each); duplicate() reuses the class built once.
  template ??= createClient();
  const client = template.duplicate(clientOptions) as RedisConnection;
  client.on('error', (err: Error) => options.onError?.(err));
  return client;
}

/** Never connected: only the source of the client class (see createRedisConnection). */
let template: RedisConnection | undefined;

/**
 * Redis refused the connection's credentials (AUTH in the handshake): WRONGPASS, NOAUTH,
 * or a password given to a server that has none. Reconnecting cannot fix it.
 */
export function isRedisAuthError(err: unknown): boolean {
  const message = err instanceof Error ? err.message : '';
  return /^(WRONGPASS|NOAUTH)\b/.test(message) || /^ERR (AUTH\b|invalid password|Client sent AUTH)/i.test(message);
}

/** A refused login as TRIB_ERR_REDIS_AUTH naming the redacted URL; undefined for any other error. */
export function redisRefusal(err: unknown, url: string): TributaryError | undefined {
  if (!isRedisAuthError(err)) return undefined;
  return new TributaryError('TRIB_ERR_REDIS_AUTH', [redactUrl(url), (err as Error).message], { cause: err });
}

/**
 * Connects `client`. node-redis retries a refused login forever (as it does an outage), so
 * a handshake Redis refuses for its credentials instead rejects at once with
 * TRIB_ERR_REDIS_AUTH, and the client is destroyed (its reconnecting stops). An outage
 * is left to the client's own reconnecting, as before.
 */
export async function connectChecked(client: RedisConnection, url: string): Promise<void> {
  let onError: ((err: Error) => void) | undefined;
  const refused = new Promise<never>((_, reject) => {
    onError = (err: Error) => {
      const refusal = redisRefusal(err, url);
      if (refusal) reject(refusal);
    };
    client.on('error', onError);
  });
  try {
    await Promise.race([client.connect(), refused]);
    if (!isClusterConnection(client) && (await isClusterNode(client))) {
      // A single-node connection to a cluster node would meet MOVED on most keys, for ever.
      registerRedisCluster(url);
      destroyQuietly(client);
      throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [
        'REDIS_URL',
        `${redactUrl(url)} is a Redis Cluster node, and this connection was built for a single Redis: ` +
          'call detectRedisCluster(url) before building the pipeline (the CLI does), or set REDIS_CLUSTER_NODES',
      ]);
    }
  } catch (err) {
    const refusal = err instanceof TributaryError ? err : redisRefusal(err, url);
    if (refusal) {
      destroyQuietly(client);
      throw refusal;
    }
    throw err;
  } finally {
    client.off('error', onError!);
  }
}

/** Whether the server is a cluster node (INFO cluster); false when it cannot say (INFO disabled). */
async function isClusterNode(client: RedisConnection): Promise<boolean> {
  const info = await send(client, ['INFO', 'cluster']).catch(() => '');
  return /^cluster_enabled:1\b/m.test(String(info));
}

/** Drops the connection at once (pending commands fail); a no-op if already closed. */
export function destroyQuietly(client: RedisConnection | undefined): void {
  if (client?.isOpen) client.destroy();
}

/** Sends a raw command and returns the raw RESP2 reply. */
export async function send(client: RedisConnection, args: string[]): Promise<RawReply> {
  return (await client.sendCommand(args)) as RawReply;
}

/** A Lua script from src/redis/scripts, run by EVALSHA with a fallback to EVAL. */
export class RedisScript {
  readonly source: string;
  readonly sha: string;

  constructor(readonly name: string) {
    const dir = join(dirname(fileURLToPath(import.meta.url)), 'scripts');
    this.source = readFileSync(join(dir, `${name}.lua`), 'utf8');
    this.sha = createHash('sha1').update(this.source).digest('hex');
  }

  async run(client: RedisConnection, keys: string[], args: string[]): Promise<RawReply> {
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await send(client, ['EVALSHA', this.sha, ...tail]);
    } catch (err) {
      if (!redisErrorIs(err, 'NOSCRIPT')) throw err;
      return send(client, ['EVAL', this.source, ...tail]);
    }
  }
}

/** Creates the consumer group at the end of the stream (MKSTREAM); an existing group is fine. */
export async function ensureGroup(client: RedisConnection, key: string, group: string, startId = '$'): Promise<boolean> {
  try {
    await send(client, ['XGROUP', 'CREATE', key, group, startId, 'MKSTREAM']);
    return true;
  } catch (err) {
    if (redisErrorIs(err, 'BUSYGROUP')) return false;
    throw err;
  }
}

/** Resolves when `client` is ready again, after `maxMs`, or on `signal`; leaves no listener behind. */
export function untilReady(client: RedisConnection, maxMs: number, signal: AbortSignal): Promise<void> {
  if (client.isReady || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off('ready', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, maxMs);
    client.on('ready', done);
    signal.addEventListener('abort', done);
  });
}

/** A connection for blocking reads, with its CLIENT ID kept current (CLIENT UNBLOCK needs it; it changes on reconnect). */
export interface BlockingConnection {
  conn: RedisConnection;
  id: string | undefined;
}

/**
 * A blocking-read connection, not connected yet (`openBlocking` connects it). On a Redis
 * Cluster it is a cluster client of its own (cluster.ts), never the shared one: a blocked
 * command holds its node connection, which every other command to that node would
 * otherwise wait behind. It connects only to the node owning the key it reads, and
 * follows MOVED/ASK there (a resharded slot) as node-redis does for any command.
 */
export function blockingConnection(url: string, options: RedisConnectionOptions = {}): BlockingConnection {
  // A break fails the read in progress, which its caller reports: no listener of its own needed.
  const conn = createRedisConnection(url, { onError: () => {}, ...options });
  const b: BlockingConnection = { conn, id: undefined };
  if (isClusterConnection(conn)) return b; // no single CLIENT ID: unblock finds it by name
  conn.on('ready', () => {
    send(conn, ['CLIENT', 'ID']).then(
      (id) => (b.id = String(id)),
      () => {},
    );
  });
  return b;
}

/** Connects a blocking-read connection if it is not open (a closed one, or a first use). */
export async function openBlocking(b: BlockingConnection): Promise<void> {
  if (b.conn.isOpen) return;
  await b.conn.connect();
  if (!isClusterConnection(b.conn)) b.id = String(await send(b.conn, ['CLIENT', 'ID']));
}

/** Releases a blocked read of `b` (CLIENT UNBLOCK from another connection); a no-op when either is down. */
export async function unblock(commands: RedisConnection, b: BlockingConnection | undefined): Promise<void> {
  if (!b || !b.conn.isOpen) return;
  const reader = asCluster(b.conn);
  if (reader) {
    // On a cluster the reader's connection is found by its name on every master.
    const cluster = asCluster(commands);
    if (cluster?.isReady) await cluster.unblockByName(reader.name);
    return;
  }
  if (b.id && commands.isReady) await send(commands, ['CLIENT', 'UNBLOCK', b.id]);
}
