/**
 * A throwaway Redis Cluster on this machine, from the system's `redis-server` and
 * `redis-cli`: 3 masters (and replicas when asked) on free loopback ports, each with
 * `cluster-enabled yes` and its own directory under one temporary directory, joined by
 * `redis-cli --cluster create`, ready once every node reports `cluster_state:ok` and
 * they agree on the slots' masters. Stopped by PID, and its directory removed.
 *
 * Used by `tributary bench drain --cluster` and by the tests (test/helpers/redis-cluster.ts):
 *
 *   const cluster = await startRedisCluster({ replicas: 1 });
 *   try { ... cluster.url ... } finally { await cluster.stop(); }
 *
 * No persistence (no RDB, no AOF): a node that dies comes back empty.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface RedisClusterOptions {
  /** Masters (default 3; Redis needs at least 3). */
  masters?: number;
  /** Replicas per master (default 0). */
  replicas?: number;
  /** Milliseconds to wait for `cluster_state:ok` on every node (default 20,000). */
  startTimeoutMs?: number;
}

export interface RedisClusterNode {
  port: number;
  pid: number;
  url: string;
}

export interface RedisClusterHandle {
  /** Every node, masters first (as given to `redis-cli --cluster create`). */
  nodes: RedisClusterNode[];
  /** The first node's URL (any node works as a seed). */
  url: string;
  /** All node URLs, comma-separated (what REDIS_CLUSTER_NODES takes). */
  nodesList: string;
  /** Runs redis-cli against the node on `port` (default: the first) and returns its output. */
  cli(args: readonly string[], port?: number): Promise<string>;
  /** The port of the master owning `key`'s hash slot. */
  masterOf(key: string): Promise<number>;
  /** Stops every node (SIGKILL by PID) and removes the directory. Safe to call twice. */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** A free loopback port whose cluster bus port (+10000) is free as well. */
async function clusterPort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 35000);
    if (taken.has(port) || taken.has(port + 10000)) continue;
    if ((await isFree(port)) && (await isFree(port + 10000))) {
      taken.add(port);
      taken.add(port + 10000);
      return port;
    }
  }
  throw new Error('no free port pair for a cluster node');
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const masters = options.masters ?? 3;
  const replicas = options.replicas ?? 0;
  const count = masters * (1 + replicas);
  const dir = mkdtempSync(join(tmpdir(), 'tributary-cluster-'));
  const taken = new Set<number>();
  const nodes: (RedisClusterNode & { child: ChildProcess })[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(
      nodes.map(
        (n) =>
          new Promise<void>((resolve) => {
            if (n.child.exitCode !== null || n.child.signalCode !== null) return resolve();
            n.child.once('exit', () => resolve());
            try {
              process.kill(n.pid, 'SIGKILL');
            } catch {
              resolve();
            }
          }),
      ),
    );
    for (const n of nodes) children.delete(n.child);
    rmSync(dir, { recursive: true, force: true });
  };
  const cli = async (args: readonly string[], port = nodes[0]!.port) => (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args])).stdout;
  try {
    for (let i = 0; i < count; i++) {
      const port = await clusterPort(taken);
      const nodeDir = join(dir, String(port));
      mkdirSync(nodeDir);
      // prettier-ignore
      const child = spawn('redis-server', [
        '--port', String(port), '--bind', '127.0.0.1', '--dir', nodeDir,
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000',
        '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', join(nodeDir, 'redis.log'),
      ], { stdio: 'ignore' });
      children.add(child);
      if (child.pid === undefined) throw new Error('redis-server did not start (is it installed?)');
      nodes.push({ port, pid: child.pid, url: `redis://127.0.0.1:${port}`, child });
    }
    // Every node answers PING before the cluster is created.
    for (const n of nodes) {
      for (let i = 0; ; i++) {
        if ((await cli(['PING'], n.port).catch(() => '')).trim() === 'PONG') break;
        if (i > 100) throw new Error(`cluster node ${n.port} did not answer PING`);
        await sleep(50);
      }
    }
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes']);
    const deadline = Date.now() + (options.startTimeoutMs ?? 20_000);
    for (const n of nodes) {
      while (!/cluster_state:ok/.test(await cli(['CLUSTER', 'INFO'], n.port).catch(() => ''))) {
        if (Date.now() > deadline) throw new Error(`cluster node ${n.port} not in cluster_state:ok`);
        await sleep(100);
      }
    }
    // Every node agrees on the masters of all slots (a replica's view converges last).
    while (!(await slotsAgree(nodes.map((n) => n.port), cli))) {
      if (Date.now() > deadline) throw new Error('cluster nodes disagree on slot owners');
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    nodes: nodes.map(({ port, pid, url }) => ({ port, pid, url })),
    url: nodes[0]!.url,
    nodesList: nodes.map((n) => n.url).join(','),
    cli,
    async masterOf(key: string) {
      const slot = Number((await cli(['CLUSTER', 'KEYSLOT', key])).trim());
      // CLUSTER NODES: <id> <host:port@bus> <flags> <master> <ping> <pong> <epoch> <state> <slot ranges...>
      for (const line of (await cli(['CLUSTER', 'NODES'])).split('\n')) {
        const f = line.trim().split(' ');
        if (!f[2]?.includes('master')) continue;
        for (const range of f.slice(8)) {
          if (range.startsWith('[')) continue; // a slot being migrated or imported
          const [from, to = from] = range.split('-').map(Number);
          if (from! <= slot && slot <= to!) return Number(f[1]!.split('@')[0]!.split(':')[1]);
        }
      }
      throw new Error(`no master found for slot ${slot}`);
    },
    stop,
  };
}

async function slotsAgree(ports: number[], cli: (args: readonly string[], port?: number) => Promise<string>): Promise<boolean> {
  const views = await Promise.all(ports.map((p) => cli(['CLUSTER', 'SHARDS'], p).catch(() => '')));
  const masters = (v: string) => v.split('\n').filter((l) => l.trim() === 'master').length;
  return views.every((v) => v !== '' && masters(v) === masters(views[0]!));
}

/**
 * CPU seconds one Redis server has used so far (INFO cpu: used_cpu_user + used_cpu_sys),
 * asked on a connection of its own to that node alone (not routed by a cluster client);
 * null when it cannot be asked.
 */
export async function nodeCpuSecs(url: string): Promise<number | null> {
  const { RespPipe } = await import('../redis/pipe.js');
  const pipe = new RespPipe({ url, name: 'tributary:bench-cpu', connectTimeoutMs: 2000 });
  try {
    const info = String(await pipe.command(['INFO', 'cpu']));
    const user = /used_cpu_user:([\d.]+)/.exec(info)?.[1];
    const sys = /used_cpu_sys:([\d.]+)/.exec(info)?.[1];
    return user === undefined || sys === undefined ? null : Number(user) + Number(sys);
  } catch {
    return null;
  } finally {
    pipe.destroy();
  }
}
