/**
 * The ingest bench (`tributary bench ingest`): HTTP clients post requests of N sample
 * events (default 500) over keep-alive connections to the ingest API for a duration,
 * while the engine drains the stream into Postgres at the same time. Reported: accepted
 * events/s over the load, request latency p50/p99, the statuses (429s under
 * backpressure), and that every accepted event reached Postgres once.
 *
 * Processes: the server is `tributary serve` and the engine `tributary start`, each a
 * child (as `tributary` runs them), the clients this process; or with `inEngine`, one
 * child `tributary start --http-port` serving the ingest API next to its engine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { sleep } from '../core/backoff.js';
import type { TributaryConfig } from '../config/schema.js';
import { defaultCliPath, CLI_NODE_FLAGS } from './drain.js';
import { countRows, sampleEvents, waitForRows } from './load.js';
import { CpuMeter, processCpuSecs } from './machine.js';
import { ratePerSec, summarizeLatencies, type LatencySummary } from './stats.js';
import { configEnv, openWorkspace } from './workspace.js';

export interface IngestBenchOptions {
  config: TributaryConfig;
  /** Seconds of load (after a 2-second warm-up that is not counted). */
  seconds: number;
  /** Events per request (default 500). */
  eventsPerRequest?: number;
  /** Keep-alive connections, each with one request in flight (default 8). */
  connections?: number;
  /** The ingest API inside `tributary start --http-port` instead of a `tributary serve` of its own. */
  inEngine?: boolean;
  timeoutMs?: number;
  onProgress?: (message: string) => void;
}

export interface IngestBenchFigures {
  seconds: number;
  eventsPerRequest: number;
  connections: number;
  inEngine: boolean;
  requests: number;
  /** Requests by HTTP status (202, 429, ...). */
  statuses: Record<string, number>;
  acceptedEvents: number;
  /** Accepted events over the timed load. */
  eventsPerSec: number;
  requestsPerSec: number;
  /** Request latency (ms) of every request of the timed load, whatever its status. */
  latencyMs: LatencySummary;
  /** Rows the engine had written when the load ended, and its rate over the load. */
  writtenDuringLoad: number;
  writtenPerSecDuringLoad: number;
  /** From the end of the load until every accepted event (warm-up included) was in Postgres. */
  caughtUpSecs: number;
  /** Accepted events (warm-up included) and rows in Postgres at the end: equal when nothing was lost or doubled. */
  acceptedTotal: number;
  rows: number;
  /** CPU seconds over the timed load: the server's process, the engine's (null when it is the server's), the clients (this process), Redis, every postgres process; the machine's busy share. */
  cpu: { serverSecs: number | null; engineSecs: number | null; clientSecs?: number; redisSecs: number | null; postgresSecs: number | null; hostBusyPct: number | null };
}

interface Child {
  proc: ChildProcess;
  log: () => string;
}

function spawnCli(args: string[], env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, [...CLI_NODE_FLAGS, defaultCliPath(), ...args], { env: { ...env, NO_COLOR: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (chunk: Buffer) => (log = (log + chunk.toString('utf8')).slice(-50_000)));
  return { proc, log: () => log };
}

async function waitLog(child: Child, pattern: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const m = pattern.exec(child.log());
    if (m) return m;
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) throw new Error(`a child exited early:\n${child.log()}`);
    if (performance.now() > until) throw new Error(`timed out waiting for ${pattern}:\n${child.log()}`);
    await sleep(50);
  }
}

async function stopChild(child: Child | undefined): Promise<void> {
  if (!child || child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.proc.once('exit', () => r()));
  child.proc.kill('SIGTERM');
  const t = setTimeout(() => child.proc.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(t);
}

/** One POST over the agent's keep-alive connections: its status and latency. */
function post(agent: Agent, port: number, path: string, token: string, body: Buffer): Promise<{ status: number; ms: number; count: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: '127.0.0.1', port, path, method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          let count = 0;
          if (status === 202) count = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { count: number }).count;
          resolve({ status, ms: performance.now() - started, count });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export async function runIngestBench(options: IngestBenchOptions): Promise<{ settings: Record<string, unknown>; figures: IngestBenchFigures }> {
  const progress = options.onProgress ?? (() => {});
  const perRequest = options.eventsPerRequest ?? 500;
  const connections = options.connections ?? 8;
  const inEngine = options.inEngine ?? false;
  const ws = await openWorkspace('ingest', options.config);
  const c = ws.config;
  const token = randomBytes(24).toString('hex');
  const env: NodeJS.ProcessEnv = { ...configEnv(c), HTTP_TOKEN: token, LOG_LEVEL: 'info' };
  delete env.HTTP_PORT;
  delete env.METRICS_PORT;
  let engine: Child | undefined;
  let server: Child | undefined;
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  try {
    // Bodies built before timing: 16 different requests of sample events, no event_id (the server makes one).
    const bodies = Array.from({ length: 16 }, () => Buffer.from(JSON.stringify(sampleEvents(perRequest).map((e) => ({ event_type: e.type, payload: e.payload })))));
    progress(`${bodies.length} request bodies of ${perRequest} events, ${Math.round(bodies[0]!.length / 1024)} KiB each`);

    engine = spawnCli(inEngine ? ['start', '--http-port', '0'] : ['start'], env);
    await waitLog(engine, /engine started/);
    let port: number;
    if (inEngine) {
      port = Number((await waitLog(engine, /metrics on http:\/\/127\.0\.0\.1:(\d+)/))[1]);
    } else {
      server = spawnCli(['serve', '--port', '0'], env);
      port = Number((await waitLog(server, /listening on http:\/\/127\.0\.0\.1:(\d+)/))[1]);
    }
    const serverPid = (server ?? engine).proc.pid!;
    progress(`${inEngine ? 'engine with the ingest API' : 'engine and server'} up (port ${port}); ${connections} keep-alive connections, 2 s warm-up then ${options.seconds} s`);
    const path = `/v1/streams/${encodeURIComponent(c.streamKey)}/events`;

    let timing = false;
    let stop = false;
    let acceptedTotal = 0;
    let acceptedTimed = 0;
    let requests = 0;
    const statuses: Record<string, number> = {};
    const latencies: number[] = [];
    let next = 0;
    const client = async () => {
      while (!stop) {
        const body = bodies[next++ % bodies.length]!;
        const r = await post(agent, port, path, token, body);
        acceptedTotal += r.count;
        if (!timing) continue;
        requests++;
        acceptedTimed += r.count;
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        latencies.push(r.ms);
        if (r.status === 429) await sleep(100); // as a client honouring Retry-After briefly would
      }
    };
    const clients = Array.from({ length: connections }, client);
    await sleep(2000);
    const rowsBefore = (await countRows(ws)).rows;
    const meter = await CpuMeter.start(ws.redis);
    const serverCpuBefore = processCpuSecs(serverPid);
    const engineCpuBefore = inEngine ? null : processCpuSecs(engine.proc.pid!);
    const clientCpuBefore = process.cpuUsage();
    timing = true;
    const started = performance.now();
    let lastReport = started;
    while (performance.now() - started < options.seconds * 1000) {
      await sleep(250);
      if (performance.now() - lastReport >= 5000) {
        lastReport = performance.now();
        progress(`${Math.round((lastReport - started) / 1000)} s: ${acceptedTimed} events accepted (${ratePerSec(acceptedTimed, (lastReport - started) / 1000)}/s)`);
      }
    }
    timing = false;
    const elapsed = (performance.now() - started) / 1000;
    const cpu = await meter.stop();
    const serverCpu = processCpuSecs(serverPid);
    const engineCpu = inEngine ? null : processCpuSecs(engine.proc.pid!);
    const clientCpu = process.cpuUsage(clientCpuBefore);
    const rowsAtEnd = (await countRows(ws)).rows;
    stop = true;
    await Promise.all(clients);
    const loadEnded = performance.now();
    progress(`load over: ${acceptedTotal} events accepted in all; waiting for the engine to write them`);
    const final = await waitForRows(ws, acceptedTotal, { timeoutMs: options.timeoutMs ?? 300_000 });
    const caughtUpSecs = (performance.now() - loadEnded) / 1000;
    const figures: IngestBenchFigures = {
      seconds: Number(elapsed.toFixed(3)),
      eventsPerRequest: perRequest,
      connections,
      inEngine,
      requests,
      statuses,
      acceptedEvents: acceptedTimed,
      eventsPerSec: ratePerSec(acceptedTimed, elapsed),
      requestsPerSec: ratePerSec(requests, elapsed),
      latencyMs: summarizeLatencies(latencies),
      writtenDuringLoad: rowsAtEnd - rowsBefore,
      writtenPerSecDuringLoad: ratePerSec(rowsAtEnd - rowsBefore, elapsed),
      caughtUpSecs: Number(caughtUpSecs.toFixed(3)),
      acceptedTotal,
      rows: final.rows,
      cpu: {
        serverSecs: serverCpu === null || serverCpuBefore === null ? null : Number((serverCpu - serverCpuBefore).toFixed(2)),
        engineSecs: engineCpu === null || engineCpuBefore === null ? null : Number((engineCpu - engineCpuBefore).toFixed(2)),
        clientSecs: Number(((clientCpu.user + clientCpu.system) / 1e6).toFixed(2)),
        redisSecs: cpu.redisSecs,
        postgresSecs: cpu.postgresSecs,
        hostBusyPct: cpu.hostBusyPct,
      },
    };
    const settings = {
      seconds: options.seconds,
      eventsPerRequest: perRequest,
      connections,
      inEngine,
      numWorkers: c.numWorkers,
      batchSize: c.batchSize,
      ingestMaxLag: c.ingestMaxLag,
    };
    return { settings, figures };
  } finally {
    agent.destroy();
    await stopChild(server);
    await stopChild(engine);
    await ws.cleanup();
  }
}

/** The result as lines for the terminal. */
export function ingestResults(f: IngestBenchFigures): string {
  const l = f.latencyMs;
  return [
    'INGEST BENCHMARK RESULTS',
    `  Load:              ${f.seconds.toFixed(1)} s, ${f.connections} keep-alive connections, ${f.eventsPerRequest} events per request${f.inEngine ? ', ingest inside `start`' : ', `serve` and `start` apart'}`,
    `  Accepted:          ${f.acceptedEvents.toLocaleString('en-US')} events, ${f.eventsPerSec.toLocaleString('en-US')} events/s (${f.requestsPerSec.toLocaleString('en-US')} requests/s)`,
    `  Statuses:          ${Object.entries(f.statuses).map(([s, n]) => `${s} × ${n}`).join(', ')}`,
    `  Request latency:   p50 ${l.p50} ms, p95 ${l.p95} ms, p99 ${l.p99} ms, max ${l.max} ms`,
    `  Engine meanwhile:  ${f.writtenDuringLoad.toLocaleString('en-US')} rows written (${f.writtenPerSecDuringLoad.toLocaleString('en-US')}/s); caught up ${f.caughtUpSecs.toFixed(1)} s after the load`,
    `  In Postgres:       ${f.rows.toLocaleString('en-US')} rows for ${f.acceptedTotal.toLocaleString('en-US')} events accepted${f.rows === f.acceptedTotal ? ' (every one, once)' : ' (MISMATCH)'}`,
    `  CPU seconds:       server ${f.cpu.serverSecs ?? '?'}, engine ${f.cpu.engineSecs ?? (f.inEngine ? '(with the server)' : '?')}, clients ${f.cpu.clientSecs ?? '?'}, redis ${f.cpu.redisSecs ?? '?'}, postgres ${f.cpu.postgresSecs ?? '?'}; host busy ${f.cpu.hostBusyPct ?? '?'}%`,
  ].join('\n');
}
