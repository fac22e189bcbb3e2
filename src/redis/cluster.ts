/**
 * Redis Cluster support: hash slots and tags, which URLs are clusters, and the connection
 * Tributary uses on one.
 *
 * A URL is a cluster when `INFO cluster` says `cluster_enabled:1` (detectRedisCluster) or
 * when REDIS_CLUSTER_NODES lists its nodes (registerRedisCluster). From then on
 * createRedisConnection(url) gives a ClusterConnection: node-redis's cluster client
 * (slot routing, MOVED/ASK, topology refresh) behind the few methods Tributary calls on
 * a connection. Blocking reads never go through it (a blocked command would hold the
 * node's shared connection): each reader has a connection of its own to the node owning
 * its key, which follows MOVED/ASK itself (client.ts: sendBlocking).
 *
 * Every command Tributary sends touches keys of one slot only, and every Lua script
 * declares every key it touches: keys that go together share a hash tag (keyTag).
 */
import { createCluster, type RedisClusterType } from '@redis/client';
import { TributaryError } from '../errors.js';

// ---------------------------------------------------------------- slots and tags

const CRC16_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** CRC16-CCITT (XMODEM), as Redis Cluster hashes keys. Pure. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ b) & 0xff]!;
  return crc;
}

/** The hash tag Redis hashes for `key`: the text between its first `{` and the next `}`, when not empty; else undefined. Pure. */
export function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open < 0) return undefined;
  const close = key.indexOf('}', open + 1);
  if (close < 0 || close === open + 1) return undefined;
  return key.slice(open + 1, close);
}

/** The hash slot of `key` (0..16383), as CLUSTER KEYSLOT computes it. Pure. */
export function keySlot(key: string): number {
  return crc16(Buffer.from(hashTag(key) ?? key)) % 16384;
}

/**
 * A tag for keys that must live beside `key`: `{<tag>}` when `key` has a hash tag, else
 * `{<key>}` — whose slot is `key`'s own slot (Redis hashes only the tag), so `events`
 * keeps its name and `{events}:dead` lands beside it. Undefined when no tag can give
 * `key`'s slot (a key with a `}` but no tag). Pure.
 */
export function keyTag(key: string): string | undefined {
  const tag = hashTag(key);
  if (tag !== undefined) return `{${tag}}`;
  if (key.includes('}') || key.length === 0) return undefined;
  return `{${key}}`;
}

/**
 * On a cluster, the dead-letter stream of `streamKey`: `dlqStream` itself when it is in
 * the stream's slot; the default `events:dead` (left unset) becomes `<tag>:dead` (for
 * `events`, `{events}:dead`). Any other name in another slot is refused: the dead-letter
 * script moves entries between the two in one step, which a cluster allows in one slot
 * only. Pure.
 */
export function clusterDeadLetterStream(streamKey: string, dlqStream: string, defaultDlq = 'events:dead'): string {
  if (keySlot(dlqStream) === keySlot(streamKey)) return dlqStream;
  const tag = keyTag(streamKey);
  if (dlqStream === defaultDlq && tag !== undefined) return `${tag}:dead`;
  throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [
    'DLQ_STREAM',
    `${JSON.stringify(dlqStream)} is in hash slot ${keySlot(dlqStream)} and the stream ${JSON.stringify(streamKey)} in slot ${keySlot(streamKey)}: ` +
      `on a Redis Cluster they must share a hash tag${tag === undefined ? '' : ` (e.g. ${tag}:dead)`}`,
  ]);
}

/** On a cluster, a key prefix whose keys all share one hash tag: `prefix` when it has a tag, else `{prefix}`. Pure. */
export function clusterPrefix(prefix: string): string {
  if (hashTag(prefix) !== undefined) return prefix;
  const tag = keyTag(prefix);
  if (tag === undefined) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['key prefix', `${JSON.stringify(prefix)} has a } but no hash tag; give it one, e.g. {orders}`]);
  return tag;
}

// ---------------------------------------------------------------- which URLs are clusters

/** Redis URL → the cluster's node URLs (seeds). */
const clusters = new Map<string, readonly string[]>();

/** Marks `url` as a Redis Cluster reachable through `nodes` (default: `url` itself). */
export function registerRedisCluster(url: string, nodes: readonly string[] = [url]): void {
  clusters.set(url, nodes.length > 0 ? [...nodes] : [url]);
}

/** The seed node URLs of the cluster `url` belongs to, or undefined for a single Redis (or one not detected yet). */
export function clusterNodes(url: string): readonly string[] | undefined {
  return clusters.get(url);
}

export function isClusterUrl(url: string): boolean {
  return clusters.has(url);
}

/** Parses a comma-separated node list (REDIS_CLUSTER_NODES): `redis://host:port` or bare `host:port`. */
export function parseClusterNodes(list: string): string[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => (/^rediss?:\/\//.test(s) ? s : `redis://${s}`));
}

/**
 * Asks `url`'s server whether it is a cluster node (`INFO cluster`), once per URL per
 * process, and registers it when it is. A server that cannot be asked counts as a single
 * Redis (the command that needs it reports the outage as before). `nodes` (from
 * REDIS_CLUSTER_NODES) registers without asking.
 */
export async function detectRedisCluster(url: string, nodes: readonly string[] = [], timeoutMs = 2000): Promise<boolean> {
  if (clusters.has(url)) return true;
  if (nodes.length > 0) {
    registerRedisCluster(url, nodes);
    return true;
  }
  if (checked.has(url)) return false;
  const { RespPipe } = await import('./pipe.js');
  const pipe = new RespPipe({ url, connectTimeoutMs: timeoutMs, name: 'tributary:detect' });
  try {
    const info = String(await withTimeout(pipe.command(['INFO', 'cluster']), timeoutMs));
    checked.add(url);
    if (/^cluster_enabled:1\b/m.test(info)) {
      registerRedisCluster(url, [url]);
      return true;
    }
    return false;
  } catch {
    return false;
  } finally {
    pipe.destroy();
  }
}

/** URLs asked and found single (not asked again). */
const checked = new Set<string>();

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The settings cluster mode reads and adjusts. */
interface ClusterSettings {
  redisUrl: string;
  redisClusterNodes?: string | undefined;
  streamKey: string;
  dlqStream: string;
  ordersPrefix: string;
  /** PARTITIONS: above 1, every partition has its own dead-letter stream ({<stream>:p<i>}:dead) and DLQ_STREAM is not used. */
  partitions?: number;
}

/**
 * The configuration for a cluster: REDIS_CLUSTER_NODES registers REDIS_URL as a cluster
 * reached through those nodes; on a cluster (so registered, or detected before) the
 * dead-letter stream shares the stream's slot (clusterDeadLetterStream) and the orders
 * keys one hash tag (clusterPrefix). On a single Redis, `config` as it is: no key is
 * renamed there.
 */
export function clusterConfig<C extends ClusterSettings>(config: C): C {
  if (config.redisClusterNodes) registerRedisCluster(config.redisUrl, parseClusterNodes(config.redisClusterNodes));
  if (!isClusterUrl(config.redisUrl)) return config;
  return {
    ...config,
    dlqStream: (config.partitions ?? 1) > 1 ? config.dlqStream : clusterDeadLetterStream(config.streamKey, config.dlqStream),
    ordersPrefix: clusterPrefix(config.ordersPrefix),
  };
}

// ---------------------------------------------------------------- redirections

/** A MOVED or ASK error reply: where the slot is (MOVED) or where to ask once (ASK). */
export interface Redirection {
  kind: 'MOVED' | 'ASK';
  slot: number;
  host: string;
  port: number;
}

/** Parses `MOVED <slot> <host>:<port>` / `ASK <slot> <host>:<port>`; undefined for any other error. Pure. */
export function parseRedirection(err: unknown): Redirection | undefined {
  const message = err instanceof Error ? err.message : typeof err === 'string' ? err : '';
  const m = /^(MOVED|ASK) (\d+) (.*):(\d+)$/.exec(message);
  if (!m) return undefined;
  return { kind: m[1] as 'MOVED' | 'ASK', slot: Number(m[2]), host: m[3]! || '127.0.0.1', port: Number(m[4]) };
}

/** `url` pointed at another node (same scheme, credentials and options). Pure. */
export function retargetUrl(url: string, host: string, port: number): string {
  const u = new URL(url);
  u.hostname = host.includes(':') ? `[${host}]` : host;
  u.port = String(port);
  return u.toString();
}

// ---------------------------------------------------------------- the cluster connection

/** The first key of a command (what its slot is routed by); undefined for a command without keys. Pure. */
export function commandKey(args: readonly string[]): string | undefined {
  const name = args[0]?.toUpperCase();
  switch (name) {
    case 'EVAL':
    case 'EVALSHA':
    case 'EVAL_RO':
    case 'EVALSHA_RO':
    case 'FCALL':
    case 'FCALL_RO':
      return Number(args[2]) > 0 ? args[3] : undefined;
    case 'XREAD':
    case 'XREADGROUP': {
      const i = args.findIndex((a) => a.toUpperCase() === 'STREAMS');
      return i < 0 ? undefined : args[i + 1];
    }
    case 'XGROUP':
    case 'XINFO':
    case 'OBJECT':
      return args[2];
    case 'MEMORY':
      return args[1]?.toUpperCase() === 'USAGE' ? args[2] : undefined;
    case 'INFO':
    case 'PING':
    case 'TIME':
    case 'CLIENT':
    case 'CLUSTER':
    case 'SCRIPT':
    case 'CONFIG':
    case 'PUBLISH':
    case 'DBSIZE':
    case 'COMMAND':
    case 'ECHO':
    case 'SCAN':
    case 'MULTI':
    case 'EXEC':
    case 'ASKING':
    case 'HELLO':
    case 'FUNCTION':
      return undefined;
    default:
      return args[1];
  }
}

// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- no modules, functions or scripts attached
type Cluster = RedisClusterType<{}, {}, {}, 2, {}>;

export interface ClusterConnectionOptions {
  name?: string;
  connectTimeoutMs?: number;
  failFast?: boolean;
  reconnect?: (retries: number) => number;
}

type Listener = (...args: any[]) => void; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * node-redis's cluster client behind the part of a single-node client's surface Tributary
 * uses (sendCommand, multi, watch, subscribe, connect, destroy, events), so the code that
 * takes a RedisConnection works on a cluster unchanged. Each command goes to the master
 * owning its first key's slot (MOVED and ASK followed by node-redis); a command without
 * keys goes to any master. A MULTI goes to the slot of its first keyed command (all its
 * commands share that slot). WATCH pins the connection to the watched key's master until
 * EXEC / UNWATCH.
 */
export class ClusterConnection {
  readonly cluster: Cluster;
  /** A node client WATCH pinned this connection to (its next MULTI runs there). */
  private pinned: ReturnType<Cluster['nodeClient']> extends Promise<infer C> ? C | undefined : never = undefined;
  private ready = false;

  constructor(
    readonly url: string,
    readonly nodes: readonly string[],
    private readonly options: ClusterConnectionOptions = {},
  ) {
    this.cluster = createCluster({
      rootNodes: nodes.map((u) => ({ url: u })),
      // Every node is reached with the first seed's credentials and TLS (a `url` here would
      // send every node's connection to that one address).
      defaults: {
        ...nodeCredentials(nodes[0]!),
        name: options.name,
        disableOfflineQueue: options.failFast ?? true,
        socket: {
          connectTimeout: options.connectTimeoutMs ?? 5000,
          ...(options.reconnect ? { reconnectStrategy: options.reconnect } : {}),
          ...(new URL(nodes[0]!).protocol === 'rediss:' ? { tls: true as const } : {}),
        },
      },
      minimizeConnections: true,
    }) as unknown as Cluster;
    this.cluster.on('connect', () => (this.ready = true));
    this.cluster.on('disconnect', () => (this.ready = false));
  }

  /** The name its node connections carry in CLIENT LIST. */
  get name(): string | undefined {
    return this.options.name;
  }

  get isOpen(): boolean {
    return this.cluster.isOpen;
  }

  get isReady(): boolean {
    return this.cluster.isOpen && this.ready;
  }

  async connect(): Promise<this> {
    await this.cluster.connect();
    this.ready = true;
    return this;
  }

  on(event: string, listener: Listener): this {
    // A node's connection error is the cluster's error (node-redis reports it as node-error).
    this.cluster.on(event === 'error' ? 'node-error' : event, listener);
    if (event === 'error') this.cluster.on('error', listener);
    return this;
  }

  off(event: string, listener: Listener): this {
    this.cluster.off(event === 'error' ? 'node-error' : event, listener);
    if (event === 'error') this.cluster.off('error', listener);
    return this;
  }

  once(event: string, listener: Listener): this {
    this.cluster.once(event, listener);
    return this;
  }

  async sendCommand(args: readonly string[], options?: Record<string, unknown>): Promise<unknown> {
    if (this.pinned) return this.pinned.sendCommand([...args], options);
    const name = typeof args[0] === 'string' ? args[0].toUpperCase() : '';
    if (name === 'SCAN') return this.scan(args, options);
    if ((name === 'DEL' || name === 'UNLINK' || name === 'EXISTS') && args.length > 2) return this.perSlot(name, args.slice(1));
    return this.cluster.sendCommand(commandKey(args), false, [...args], options);
  }

  /**
   * SCAN over every master, one after the other, behind one cursor: `<master>.<cursor>`
   * (`0` when the last master is done), so a caller's SCAN loop covers the cluster.
   */
  private async scan(args: readonly string[], options?: Record<string, unknown>): Promise<unknown> {
    const masters = [...this.cluster.masters].sort((a, b) => (a.host === b.host ? a.port - b.port : a.host < b.host ? -1 : 1));
    const [at, nodeCursor] = args[1] === '0' || args[1] === undefined ? [0, '0'] : String(args[1]).split('.');
    const index = Number(at);
    const master = masters[index];
    if (!master) return ['0', []];
    const reply = (await (await this.cluster.nodeClient(master)).sendCommand(['SCAN', nodeCursor ?? '0', ...args.slice(2)], options)) as [unknown, unknown[]];
    const next = String(reply[0]);
    const cursor = next !== '0' ? `${index}.${next}` : index + 1 < masters.length ? `${index + 1}.0` : '0';
    return [cursor, reply[1]];
  }

  /** DEL / UNLINK / EXISTS of keys in several slots: one command per slot, the counts summed. */
  private async perSlot(name: string, keys: readonly string[]): Promise<number> {
    const bySlot = new Map<number, string[]>();
    for (const k of keys) bySlot.set(keySlot(k), [...(bySlot.get(keySlot(k)) ?? []), k]);
    const counts = await Promise.all([...bySlot.values()].map((ks) => this.cluster.sendCommand(ks[0], false, [name, ...ks])));
    return counts.reduce<number>((sum, n) => sum + Number(n), 0);
  }

  /** Runs `args` on the master owning `key`'s slot (a command whose own first argument is not the key). */
  async sendToSlotOf(key: string, args: readonly string[]): Promise<unknown> {
    return this.cluster.sendCommand(key, false, [...args]);
  }

  /** Runs `args` on the master at `host:port` (CLIENT UNBLOCK of a reader connected there). */
  async sendToNode(host: string, port: number, args: readonly string[]): Promise<unknown> {
    const master = this.cluster.masters.find((m) => m.port === port && (m.host === host || sameLoopback(m.host, host)));
    if (!master) throw new Error(`no cluster master at ${host}:${port}`);
    return (await this.cluster.nodeClient(master)).sendCommand([...args]);
  }

  /** Runs `args` on every master (SCAN, CLIENT LIST, INFO); the replies in the masters' order. */
  async onEveryMaster<T>(fn: (client: { sendCommand(args: string[]): Promise<unknown> }, address: string) => Promise<T>): Promise<T[]> {
    return Promise.all(this.cluster.masters.map(async (m) => fn((await this.cluster.nodeClient(m)) as never, `${m.host}:${m.port}`)));
  }

  /**
   * CLIENT UNBLOCK of every connection named `name` blocked in a command, on every master
   * (a reader's own cluster client: its CLIENT ID is per node, its name is not).
   */
  async unblockByName(name: string | undefined): Promise<void> {
    if (!name) return;
    await this.onEveryMaster(async (c) => {
      const list = String(await c.sendCommand(['CLIENT', 'LIST', 'TYPE', 'normal']));
      for (const line of list.split('\n')) {
        const id = /(?:^|\s)id=(\d+)/.exec(line)?.[1];
        const n = /(?:^|\s)name=(\S*)/.exec(line)?.[1];
        const flags = /(?:^|\s)flags=(\S*)/.exec(line)?.[1] ?? '';
        if (id && n === name && flags.includes('b')) await c.sendCommand(['CLIENT', 'UNBLOCK', id]);
      }
    });
  }

  multi(): ClusterMulti {
    return new ClusterMulti(this);
  }

  async watch(key: string | string[]): Promise<string> {
    const keys = Array.isArray(key) ? key : [key];
    await this.cluster.sendCommand(keys[0], false, ['PING']); // loads the slot map when not loaded yet
    const slot = keySlot(keys[0]!);
    const master = this.cluster.slots[slot]?.master;
    if (!master) throw new Error(`no master for slot ${slot}`);
    // A connection of its own: WATCH state belongs to a connection, which a shared node client is not.
    this.pinned?.destroy();
    const client = (await this.cluster.nodeClient(master)).duplicate();
    client.on('error', () => {});
    await client.connect();
    this.pinned = client as never;
    return String(await client.sendCommand(['WATCH', ...keys]));
  }

  async unwatch(): Promise<string> {
    const pinned = this.pinned;
    this.pinned = undefined;
    if (!pinned) return 'OK';
    try {
      return String(await pinned.sendCommand(['UNWATCH']));
    } finally {
      pinned.destroy();
    }
  }

  /** Takes the WATCH-pinned client (for EXEC), leaving the connection unpinned. */
  takePinned(): { multi(): { addCommand(args: string[]): unknown; exec(): Promise<unknown> }; destroy(): void } | undefined {
    const p = this.pinned;
    this.pinned = undefined;
    return p as never;
  }

  async subscribe(channel: string, listener: (message: string, channel: string) => void): Promise<void> {
    await this.cluster.subscribe(channel, listener);
  }

  async unsubscribe(channel?: string): Promise<void> {
    await this.cluster.unsubscribe(channel);
  }

  async ping(): Promise<string> {
    return String(await this.cluster.sendCommand(undefined, true, ['PING']));
  }

  async info(section?: string): Promise<string> {
    return String(await this.cluster.sendCommand(undefined, true, section ? ['INFO', section] : ['INFO']));
  }

  async del(keys: string | string[]): Promise<number> {
    const list = Array.isArray(keys) ? keys : [keys];
    let n = 0;
    // One DEL per key: keys of different slots cannot share a command.
    for (const k of list) n += Number(await this.cluster.sendCommand(k, false, ['DEL', k]));
    return n;
  }

  async keys(pattern: string): Promise<string[]> {
    const per = await this.onEveryMaster(async (c) => (await c.sendCommand(['KEYS', pattern])) as string[]);
    return per.flat();
  }

  duplicate(overrides?: { name?: string }): ClusterConnection {
    return new ClusterConnection(this.url, this.nodes, { ...this.options, ...(overrides?.name ? { name: overrides.name } : {}) });
  }

  async close(): Promise<void> {
    this.pinned?.destroy();
    this.pinned = undefined;
    if (this.cluster.isOpen) await this.cluster.close();
  }

  async quit(): Promise<void> {
    await this.close();
  }

  destroy(): void {
    this.pinned?.destroy();
    this.pinned = undefined;
    if (this.cluster.isOpen) this.cluster.destroy();
  }
}

/** The credentials and TLS of a node URL, as node-redis client options. */
function nodeCredentials(url: string): { username?: string; password?: string } {
  const u = new URL(url);
  return {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
  };
}

function sameLoopback(a: string, b: string): boolean {
  const loop = (h: string) => h === 'localhost' || h === '127.0.0.1' || h === '::1';
  return loop(a) && loop(b);
}

/** MULTI/EXEC (or a plain pipeline) on a cluster: every command in the slot of the first keyed one. */
export class ClusterMulti {
  private readonly commands: string[][] = [];

  constructor(private readonly conn: ClusterConnection) {}

  addCommand(args: readonly string[]): this {
    this.commands.push([...args]);
    return this;
  }

  async exec(): Promise<unknown[]> {
    const pinned = this.conn.takePinned();
    if (pinned) {
      try {
        const m = pinned.multi();
        for (const c of this.commands) m.addCommand(c);
        return (await m.exec()) as unknown[];
      } finally {
        pinned.destroy();
      }
    }
    return this.run(false);
  }

  async execAsPipeline(): Promise<unknown[]> {
    return this.run(true);
  }

  private async run(pipeline: boolean): Promise<unknown[]> {
    if (this.commands.length === 0) return [];
    const firstKey = this.commands.map(commandKey).find((k) => k !== undefined);
    const m = this.conn.cluster.multi(firstKey);
    for (const c of this.commands) m.addCommand(firstKey, false, c);
    return (pipeline ? await m.execAsPipeline() : await m.exec()) as unknown[];
  }
}

export function isClusterConnection(c: unknown): boolean {
  return c instanceof ClusterConnection;
}

/** `c` as a ClusterConnection when it is one (a connection createRedisConnection made for a cluster URL). */
export function asCluster(c: unknown): ClusterConnection | undefined {
  return c instanceof ClusterConnection ? c : undefined;
}
