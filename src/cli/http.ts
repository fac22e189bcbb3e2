/**
 * The HTTP server inside the CLI's commands (`serve`, and `--http-port` of `start`, `run`
 * and `orders process`): which port and host, which streams ingest may write, and the
 * start-up lines (where it listens, whether it is read-only). Never logs the token.
 */
import type { Registry } from 'prom-client';
import type { TributaryConfig } from '../config/schema.js';
import type { IngestStream } from '../http/backlog.js';
import { dashboardRoutes } from '../http/dashboard.js';
import { isWildcardBind } from '../http/hosts.js';
import { opsUrl, startHttpServer, type HttpRoutes, type HttpServer, type Probed } from '../http/server.js';
import type { Logger } from './output.js';

/** Where the server listens: HTTP_PORT (METRICS_PORT, its older name) and HTTP_HOST (METRICS_HOST); undefined: no server. */
export function httpListen(config: TributaryConfig): { port: number; host: string } | undefined {
  const port = config.httpPort ?? config.metricsPort;
  if (port === undefined) return undefined;
  return { port, host: config.httpHost ?? config.metricsHost };
}

/** HTTP_ALLOWED_HOSTS as the server takes it: `'*'`, the names, or undefined when unset. */
export function allowedHostList(config: TributaryConfig): readonly string[] | '*' | undefined {
  const value = config.httpAllowedHosts;
  return value === undefined ? undefined : value === '*' ? '*' : value.split(',');
}

/** INGEST_STREAMS as a list, or undefined when unset. */
export function ingestStreamList(config: TributaryConfig): string[] | undefined {
  return config.ingestStreams === undefined ? undefined : config.ingestStreams.split(',');
}

/**
 * The streams ingest may write: INGEST_STREAMS, or `fallback` (STREAM_KEY for `serve` and
 * `start`, the files' streams for `run`). Each is held back by the groups `groupsOf` names.
 */
export function ingestStreams(config: TributaryConfig, fallback: readonly string[], groupsOf: (stream: string) => readonly string[]): IngestStream[] {
  const names = ingestStreamList(config) ?? fallback;
  // STREAM_KEY is partitioned by PARTITIONS / PARTITION_KEY; other streams (pipeline files) are one key.
  return [...new Set(names)].map((stream) =>
    stream === config.streamKey && config.partitions > 1
      ? { stream, groups: groupsOf(stream), partitions: config.partitions, partitionKey: config.partitionKey }
      : { stream, groups: groupsOf(stream) },
  );
}

export interface CliHttpOptions {
  listen: { port: number; host: string };
  probe?: Probed;
  metrics?: Registry | readonly Registry[];
  streams: readonly IngestStream[];
  routes?: readonly HttpRoutes[];
  /** The first line: `metrics` (inside a pipeline command, as before) or `listening` (serve). */
  announce: 'metrics' | 'listening';
}

/** Starts the server and logs where it listens, what ingest may write, and whether it is read-only. */
export async function startCliHttp(config: TributaryConfig, log: Logger, o: CliHttpOptions): Promise<HttpServer> {
  const allowedHosts = allowedHostList(config);
  const server = await startHttpServer({
    port: o.listen.port,
    host: o.listen.host,
    ...(o.probe ? { probe: o.probe } : {}),
    ...(o.metrics ? { metrics: o.metrics } : {}),
    ...(config.httpToken === undefined ? {} : { token: config.httpToken }),
    ...(allowedHosts === undefined ? {} : { allowedHosts }),
    ingest: {
      redisUrl: config.redisUrl,
      streams: o.streams,
      maxLag: config.ingestMaxLag,
      maxBodyBytes: config.ingestMaxBodyBytes,
      maxEvents: config.ingestMaxEvents,
    },
    log: log.child({ component: 'http' }),
    // The dashboard (its /api/... and the page at /), then the caller's own routes.
    routes: [dashboardRoutes({ config }), ...(o.routes ?? [])],
  });
  const url = opsUrl(o.listen.host, server.port);
  if (o.announce === 'listening') log.info({ host: o.listen.host, port: server.port }, `listening on ${url}: the dashboard at ${url}/, /metrics, /healthz, /readyz, POST /v1/streams/{stream}/events`);
  else log.info({ host: o.listen.host, port: server.port }, `metrics on ${url}/metrics (also /healthz, /readyz, the dashboard at ${url}/ and the ingest API POST /v1/streams/{stream}/events)`);
  if (allowedHosts === '*') log.warn({ allowedHosts }, 'HTTP_ALLOWED_HOSTS is *: any Host header is answered, so a web page can read the dashboard through DNS rebinding; list the names instead');
  else {
    const bound = isWildcardBind(o.listen.host) ? 'any IP address' : o.listen.host.includes(':') ? `[${o.listen.host}]` : o.listen.host;
    const names = [...new Set(['localhost', '127.0.0.1', '[::1]', bound, ...(allowedHosts ?? [])])];
    log.info({ allowedHosts: allowedHosts ?? [] }, `answers the Host names ${names.join(', ')} (others: 403 TRIB_ERR_HTTP_HOST_NOT_ALLOWED; HTTP_ALLOWED_HOSTS adds names)`);
  }
  const streams = o.streams.map((s) => s.stream);
  if (server.readOnly) {
    log.warn({ readOnly: true }, 'HTTP_TOKEN is not set: the HTTP server is read-only; ingest and every action (the dashboard shows none) answer 401 (TRIB_ERR_HTTP_READ_ONLY)');
  } else if (streams.length === 0) {
    log.info({ streams }, 'ingest: no stream is open to it (set INGEST_STREAMS)');
  } else {
    log.info({ streams, maxLag: config.ingestMaxLag }, `ingest: ${streams.join(', ')} (bearer token required; 429 while a group lags by more than ${config.ingestMaxLag})`);
  }
  return server;
}
