import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
/** Anything that can say whether it is ready (a pipeline). */
export interface Probed {
  probe(): Promise<{ ready: boolean }>;
}

export interface OpsServerOptions {
  /** How long one probe's answer serves /readyz (ms, default 1000): a flood of requests makes at most one probe per period. */
  probeCacheMs?: number;
}

export interface OpsServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** http://host:port for a log line (an IPv6 address in brackets). */
export function opsUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** A check as /readyz serves it: a code and a short reason, never a driver's message (it names hosts, ports, users). */
export interface ServedCheck {
  ok: boolean;
  code?: string;
  reason?: string;
}

const SHORT_REASONS: Record<string, string> = {
  TRIB_ERR_REDIS_UNAVAILABLE: 'Redis does not answer',
  TRIB_ERR_POSTGRES_UNAVAILABLE: 'Postgres does not answer',
  TRIB_ERR_GROUP_NOT_FOUND: 'the consumer group does not exist',
  TRIB_ERR_POSTGRES_TABLE_MISSING: 'a table is missing',
  TRIB_ERR_POSTGRES_PERMISSION: 'a privilege is missing',
  TRIB_ERR_POSTGRES_READ_ONLY: 'Postgres is read-only',
  TRIB_ERR_POSTGRES_DISK_FULL: 'Postgres has no disk space left',
  TRIB_ERR_POSTGRES_AUTH: 'Postgres refused the credentials',
  TRIB_ERR_REDIS_AUTH: 'Redis refused the credentials',
  TRIB_ERR_REDIS_OOM: 'Redis is out of memory',
};

/**
 * One probe result as served: `ready`, and per check `{ ok }` or `{ ok: false, code,
 * reason }`. The code comes from the check's error when it carries one (a fault the
 * runner classified), else from what was checked; the reason is one of a fixed few.
 */
export function servedProbe(probe: { ready: boolean } & Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { status: probe.ready ? 'ready' : 'not ready', ready: probe.ready };
  const redisOk = (probe.redis as { ok?: boolean } | undefined)?.ok !== false;
  for (const [name, value] of Object.entries(probe)) {
    if (name === 'ready' || name === 'status' || typeof value !== 'object' || value === null || !('ok' in value)) continue;
    const check = value as { ok: boolean; error?: unknown };
    if (check.ok) {
      out[name] = { ok: true };
      continue;
    }
    const error = typeof check.error === 'string' ? check.error : '';
    const lifecycle = /^(?:engine|pipeline) is (new|starting|stopping|stopped|running|closed)$/.exec(error);
    if (lifecycle) {
      out[name] = { ok: false, reason: `not running (${lifecycle[1]})` } satisfies ServedCheck;
      continue;
    }
    const coded = /^(TRIB_ERR_[A-Z_]+)\b/.exec(error)?.[1];
    const code =
      coded ??
      (name === 'redis'
        ? 'TRIB_ERR_REDIS_UNAVAILABLE'
        : name === 'postgres'
          ? 'TRIB_ERR_POSTGRES_UNAVAILABLE'
          : name === 'group'
            ? redisOk
              ? 'TRIB_ERR_GROUP_NOT_FOUND'
              : 'TRIB_ERR_REDIS_UNAVAILABLE'
            : name === 'schema'
              ? /has no .* table/.test(error)
                ? 'TRIB_ERR_POSTGRES_TABLE_MISSING'
                : 'TRIB_ERR_POSTGRES_UNAVAILABLE'
              : undefined);
    out[name] = { ok: false, ...(code ? { code } : {}), reason: (code && SHORT_REASONS[code]) ?? 'check failed' } satisfies ServedCheck;
  }
  return out;
}

/**
 * A pipeline's HTTP surface: `/metrics` (Prometheus text), `/healthz` (the process is
 * alive: always 200 while it serves), `/readyz` (200 when the pipeline's probe says ready
 * — its servers answer, its group exists — else 503 with the failing checks as codes and
 * short reasons). Binds 127.0.0.1 unless told otherwise. One probe serves /readyz for
 * `probeCacheMs` (concurrent requests share the probe in progress), so a flood of
 * requests cannot queue probes ahead of the pipeline's own queries.
 */
export async function startOpsServer(engine: Probed, registry: Registry, port: number, host = '127.0.0.1', options: OpsServerOptions = {}): Promise<OpsServer> {
  const cacheMs = options.probeCacheMs ?? 1000;
  let cached: { at: number; result: { ready: boolean } & Record<string, unknown> } | undefined;
  let running: Promise<{ ready: boolean } & Record<string, unknown>> | undefined;
  const probe = (): Promise<{ ready: boolean } & Record<string, unknown>> => {
    if (cached && performance.now() - cached.at < cacheMs) return Promise.resolve(cached.result);
    running ??= engine
      .probe()
      .then((p) => p as { ready: boolean } & Record<string, unknown>)
      .catch(() => ({ ready: false }))
      .then((result) => {
        cached = { at: performance.now(), result };
        return result;
      })
      .finally(() => (running = undefined));
    return running;
  };
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'text/plain', 'method not allowed\n');
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => reply(200, registry.contentType, text),
        () => reply(500, 'text/plain', 'metrics failed\n'),
      );
    } else if (path === '/healthz') {
      reply(200, 'application/json', '{"status":"ok"}\n');
    } else if (path === '/readyz') {
      void probe().then((p) => reply(p.ready ? 200 : 503, 'application/json', `${JSON.stringify(servedProbe(p))}\n`));
    } else {
      reply(404, 'text/plain', 'not found: try /metrics, /healthz or /readyz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
