/**
 * A TCP proxy for network-fault tests, placed between a client (the engine, a pipeline)
 * and a server (Redis, Postgres) on loopback. Modes:
 *
 * - `pass`: bytes flow both ways;
 * - `latency(ms)`: each chunk is delivered `ms` later, both ways (order kept);
 * - `reset()`: every open connection is reset (RST, `resetAndDestroy`), now; new ones pass;
 * - `blackhole()`: connections are accepted and kept, and every byte is dropped both ways
 *   (nothing is answered, nothing is closed: what a client sees when a firewall or a
 *   dead route swallows its packets); `pass()` ends it for new bytes, but what was
 *   dropped stays lost, so a connection used meanwhile is out of step for good and only
 *   a client that gives up on it recovers.
 *
 * Every socket it opens is closed by `close()`.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export type ProxyMode = { kind: 'pass' } | { kind: 'latency'; ms: number } | { kind: 'blackhole' };

interface Pair {
  client: Socket;
  server: Socket;
}

export class TcpProxy {
  private mode: ProxyMode = { kind: 'pass' };
  private readonly pairs = new Set<Pair>();
  /** Connections accepted since start (a reconnect shows here). */
  accepted = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly target: { host: string; port: number },
  ) {}

  /** Listens on a free loopback port, forwarding to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createServer({ noDelay: true }, (client) => proxy!.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy has no port');
    proxy = new TcpProxy(server, address.port, target);
    return proxy;
  }

  /** A URL like `url` with its host and port replaced by the proxy's. */
  urlFor(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Open connections. */
  get connections(): number {
    return this.pairs.size;
  }

  pass(): void {
    this.mode = { kind: 'pass' };
  }

  latency(ms: number): void {
    this.mode = { kind: 'latency', ms };
  }

  blackhole(): void {
    this.mode = { kind: 'blackhole' };
  }

  /** Resets (RST) every open connection now; the mode stays as it is. */
  reset(): void {
    for (const p of [...this.pairs]) this.drop(p);
  }

  async close(): Promise<void> {
    this.reset();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    this.accepted++;
    const server = createConnection({ host: this.target.host, port: this.target.port, noDelay: true });
    const pair: Pair = { client, server };
    this.pairs.add(pair);
    this.forward(client, server);
    this.forward(server, client);
    const end = () => this.drop(pair);
    for (const s of [client, server]) {
      s.on('error', end);
      s.on('close', end);
    }
  }

  /** Copies from → to in the mode current when each chunk arrives. */
  private forward(from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      const mode = this.mode;
      if (mode.kind === 'blackhole') return;
      if (mode.kind === 'latency') {
        // Paused meanwhile, so chunks keep their order.
        from.pause();
        setTimeout(() => {
          if (!to.destroyed) to.write(chunk);
          if (!from.destroyed) from.resume();
        }, mode.ms);
        return;
      }
      if (!to.destroyed) to.write(chunk);
    });
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    for (const s of [pair.client, pair.server]) {
      if (s.destroyed) continue;
      if (typeof s.resetAndDestroy === 'function' && !s.connecting) s.resetAndDestroy();
      else s.destroy();
    }
  }
}
