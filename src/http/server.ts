/**
 * Tributary's HTTP server (fastify), one port for everything: `/metrics` (Prometheus),
 * `/healthz`, `/readyz`, the ingest API (`POST /v1/streams/{stream}/events`, see
 * ingest.ts) and whatever `routes` a caller registers (the dashboard's `/api/...`).
 *
 * Binds 127.0.0.1 unless told otherwise, and answers only requests whose Host header is
 * one of its names (hosts.ts: the defence against DNS rebinding). Writes need the bearer token HTTP_TOKEN
 * (auth.ts); without one the server is read-only. Every error is coded JSON
 * (`{ error: { code, message } }`) and never carries a driver's message, a URL or a
 * secret. It logs only through the logger it is given (one line per request: method,
 * path, status, time; never a body or a header); the library itself prints nothing.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type onRequestHookHandler } from 'fastify';
import { Counter, Registry } from 'prom-client';
import { TokenCheck } from './auth.js';
import { HttpError, sendError } from './errors.js';
import { hostChecker, type AllowedHosts } from './hosts.js';
import { Ingest, type IngestOptions } from './ingest.js';

/** Anything that can say whether it is ready (a pipeline). */
export interface Probed {
  probe(): Promise<{ ready: boolean }>;
}

/** The logging the server does: pino's shape (the CLI passes its pino logger). */
export interface HttpLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** What a `routes` function gets besides the app: the write guard and the server's state. */
export interface HttpRouteContext {
  /** `onRequest` hook for a write route: 401 without the bearer token (or always, read-only). */
  requireToken: onRequestHookHandler;
  /** No HTTP_TOKEN: every write is refused. */
  readOnly: boolean;
  log: HttpLogger;
}

/** A registration point: adds routes (e.g. the dashboard's `/api/...` JSON and its static files). */
export type HttpRoutes = (app: FastifyInstance, context: HttpRouteContext) => void | Promise<void>;

export interface HttpServerOptions {
  /** Port to listen on (0: any free port). */
  port: number;
  /** Address to bind (default 127.0.0.1: this machine only). */
  host?: string;
  /** What /readyz asks (absent: /readyz answers ready while the server runs). */
  probe?: Probed;
  /** How long one probe's answer serves /readyz (ms, default 1000): a flood of requests makes at most one probe per period. */
  probeCacheMs?: number;
  /** Registries served at /metrics (several are merged family by family), with the server's own. */
  metrics?: Registry | readonly Registry[];
  /** The ingest API (absent: no ingest route). */
  ingest?: IngestOptions;
  /**
   * HTTP_ALLOWED_HOSTS: names (`name` or `name:port`) the Host header may carry besides
   * localhost, 127.0.0.1, [::1], the bound address and (bound to 0.0.0.0 or ::) any IP;
   * `'*'`: no check. Any other Host is answered 403 TRIB_ERR_HTTP_HOST_NOT_ALLOWED.
   */
  allowedHosts?: AllowedHosts;
  /** HTTP_TOKEN: the bearer token of every write; absent or empty: read-only. */
  token?: string;
  /** Where request and failure lines go (default: nowhere). */
  log?: HttpLogger;
  /** More routes, registered after the built-in ones. */
  routes?: readonly HttpRoutes[];
  /** Largest body of routes other than ingest, bytes (default 1 MiB). */
  bodyLimit?: number;
}

export interface HttpServer {
  app: FastifyInstance;
  server: Server;
  host: string;
  port: number;
  /** http://host:port */
  url: string;
  readOnly: boolean;
  ingest: Ingest | undefined;
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
 * Several Prometheus texts as one: the lines of each metric family together, its HELP
 * and TYPE once (two pipelines' registries hold the same family names, with their own
 * `pipeline` labels). Pure.
 */
export function mergeExposition(texts: readonly string[]): string {
  const families = new Map<string, string[]>();
  for (const text of texts) {
    let current: string[] | undefined;
    const mine = new Set<string>(); // families this text introduced: their HELP and TYPE are kept
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const head = /^# (?:HELP|TYPE) (\S+)/.exec(line);
      if (head) {
        const name = head[1]!;
        const known = families.get(name);
        if (known) {
          current = known;
          if (!mine.has(name)) continue; // HELP and TYPE once
        } else {
          current = [];
          families.set(name, current);
          mine.add(name);
        }
      }
      current?.push(line);
    }
  }
  return `${[...families.values()].map((lines) => lines.join('\n')).join('\n')}\n`;
}

/** Where a request went, for the log: the path without its query, at most 200 characters. */
function pathOf(request: FastifyRequest): string {
  const path = request.url.split('?')[0] ?? '/';
  return path.length > 200 ? `${path.slice(0, 200)}...` : path;
}

/** Starts the server and resolves once it listens. */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const host = options.host ?? '127.0.0.1';
  const log = options.log;
  const auth = new TokenCheck(options.token);
  const hostAllowed = hostChecker(host, options.allowedHosts);
  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    routerOptions: { maxParamLength: 256 },
    requestTimeout: 60_000,
    trustProxy: false,
    // Our own 503 while closing (below), coded like every other answer.
    return503OnClosing: false,
    // Errors found before routing, coded like the rest: a path segment over 256 characters
    // (no route takes it: a stream of that name is not open to ingest) and a malformed URL.
    frameworkErrors: (err, request, reply) => {
      if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') return sendError(reply, new HttpError(404, 'TRIB_ERR_HTTP_NOT_FOUND', [`${request.method} (a path segment over 256 characters)`]));
      return sendError(reply, new HttpError(400, 'TRIB_ERR_HTTP_BAD_REQUEST', [`the URL cannot be read (${err.code ?? 'bad URL'})`]));
    },
  });

  // Every route (probes and /metrics too: Kubernetes sends the pod IP, which passes) and
  // the 404s: a Host that is not one of the server's names is refused before anything is
  // read. Each refused Host is logged once (at most 100 of them), never with the body.
  // Requests that arrive while the server stops (on a keep-alive connection, or already
  // queued) are refused with a coded 503 and the connection closed after it; fastify's own
  // would be an uncoded body.
  let closing = false;
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    await sendError(reply, new HttpError(503, 'TRIB_ERR_HTTP_SHUTTING_DOWN', [], {}, { 'retry-after': '1', connection: 'close' }));
  });
  // A request in flight when the server starts stopping is answered, then its keep-alive
  // connection closed: close() does not wait for idle clients' keep-alive timeouts.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (closing) void reply.header('connection', 'close');
    return payload;
  });
  const refusedHosts = new Set<string>();
  app.addHook('onRequest', async (request, reply) => {
    const header = request.headers.host;
    if (hostAllowed(header)) return;
    const shown = header === undefined ? '(none)' : JSON.stringify(header.length > 100 ? `${header.slice(0, 100)}...` : header);
    if (log && refusedHosts.size < 100 && !refusedHosts.has(shown)) {
      refusedHosts.add(shown);
      log.warn(
        { host: shown, method: request.method, path: pathOf(request), ip: request.ip },
        `refused a request with Host ${shown} (403 TRIB_ERR_HTTP_HOST_NOT_ALLOWED): a page that re-pointed its name at this server (DNS rebinding), or a name of yours missing from HTTP_ALLOWED_HOSTS; each Host is logged once`,
      );
    }
    await sendError(reply, new HttpError(403, 'TRIB_ERR_HTTP_HOST_NOT_ALLOWED', [shown]));
  });

  const own = new Registry();
  const requests = new Counter({ name: 'tributary_http_requests_total', help: 'HTTP requests answered, by route and status.', labelNames: ['route', 'status'], registers: [own] });
  const ingested = new Counter({ name: 'tributary_ingest_events_total', help: 'Events added to a stream by the ingest API.', labelNames: ['stream'], registers: [own] });
  const registries = [own, ...(options.metrics === undefined ? [] : Array.isArray(options.metrics) ? options.metrics : [options.metrics as Registry])];

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unknown';
    requests.inc({ route, status: String(reply.statusCode) });
    if (!log) return;
    const fields = { method: request.method, path: pathOf(request), status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10, ip: request.ip };
    const line = `${request.method} ${fields.path} ${reply.statusCode} ${fields.ms} ms`;
    // Probes and scrapes at debug: a load balancer polls them all day.
    if (request.method === 'GET' && reply.statusCode < 400 && route !== '/v1/streams/:stream/events') log.debug(fields, line);
    else if (reply.statusCode >= 500) log.warn(fields, line);
    else log.info(fields, line);
  });

  app.setNotFoundHandler((request, reply) => sendError(reply, new HttpError(404, 'TRIB_ERR_HTTP_NOT_FOUND', [`${request.method} ${JSON.stringify(pathOf(request))}`])));
  app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, request, reply) => {
    if (err instanceof HttpError) return sendError(reply, err);
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendError(reply, new HttpError(413, 'TRIB_ERR_HTTP_BODY_TOO_LARGE', [request.routeOptions.bodyLimit ?? options.bodyLimit ?? 1024 * 1024]));
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': {
        const type = request.headers['content-type'];
        return sendError(reply, new HttpError(415, 'TRIB_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE', [type === undefined ? '(none)' : JSON.stringify(type.slice(0, 80))]));
      }
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return sendError(reply, new HttpError(400, 'TRIB_ERR_HTTP_BAD_REQUEST', ['the body is empty']));
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
        return sendError(reply, new HttpError(400, 'TRIB_ERR_HTTP_BAD_REQUEST', ['the body is not JSON']));
    }
    if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      return sendError(reply, new HttpError(400, 'TRIB_ERR_HTTP_BAD_REQUEST', [`the request was refused (${err.code ?? err.statusCode})`]));
    }
    log?.error({ err, method: request.method, path: pathOf(request) }, `unexpected failure in ${request.method} ${pathOf(request)}: ${err.message}`);
    return sendError(reply, new HttpError(500, 'TRIB_ERR_HTTP_INTERNAL', [err.code ?? err.name]));
  });

  // /readyz: one probe per period, concurrent requests share the one in progress.
  const cacheMs = options.probeCacheMs ?? 1000;
  let cached: { at: number; result: { ready: boolean } & Record<string, unknown> } | undefined;
  let running: Promise<{ ready: boolean } & Record<string, unknown>> | undefined;
  const probe = (): Promise<{ ready: boolean } & Record<string, unknown>> => {
    if (!options.probe) return Promise.resolve({ ready: true });
    if (cached && performance.now() - cached.at < cacheMs) return Promise.resolve(cached.result);
    running ??= options.probe
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

  const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store');
  app.get('/healthz', async (_request, reply) => noStore(reply).type('application/json').send('{"status":"ok"}\n'));
  app.get('/readyz', async (_request, reply) => {
    const p = await probe();
    return noStore(reply)
      .code(p.ready ? 200 : 503)
      .type('application/json')
      .send(`${JSON.stringify(servedProbe(p))}\n`);
  });
  app.get('/metrics', async (_request, reply) => {
    const texts = await Promise.all(registries.map((r) => r.metrics()));
    return noStore(reply).type(own.contentType).send(registries.length === 1 ? texts[0] : mergeExposition(texts));
  });

  const ingest = options.ingest ? new Ingest(options.ingest, (stream, n) => ingested.inc({ stream }, n), log) : undefined;
  ingest?.register(app, auth);
  const context: HttpRouteContext = { requireToken: auth.hook, readOnly: auth.readOnly, log: log ?? silent };
  for (const routes of options.routes ?? []) await app.register(async (scope) => routes(scope, context));

  try {
    await app.listen({ port: options.port, host });
  } catch (err) {
    await ingest?.close();
    throw err;
  }
  const port = (app.server.address() as AddressInfo).port;
  return {
    app,
    server: app.server,
    host,
    port,
    url: opsUrl(host, port),
    readOnly: auth.readOnly,
    ingest,
    close: async () => {
      closing = true;
      await app.close();
      await ingest?.close();
    },
  };
}

const silent: HttpLogger = { debug() {}, info() {}, warn() {}, error() {} };

export interface OpsServerOptions {
  /** How long one probe's answer serves /readyz (ms, default 1000): a flood of requests makes at most one probe per period. */
  probeCacheMs?: number;
}

export interface OpsServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/**
 * A pipeline's metrics and health alone (no ingest, no routes): `/metrics`, `/healthz`
 * (alive: 200 while it serves), `/readyz` (200 when the probe says ready, else 503 with
 * the failing checks as codes and short reasons). startHttpServer with fewer options.
 */
export async function startOpsServer(engine: Probed, registry: Registry, port: number, host = '127.0.0.1', options: OpsServerOptions = {}): Promise<OpsServer> {
  const s = await startHttpServer({ port, host, probe: engine, metrics: registry, ...(options.probeCacheMs === undefined ? {} : { probeCacheMs: options.probeCacheMs }) });
  return { server: s.server, port: s.port, close: s.close };
}
