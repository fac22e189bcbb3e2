/**
 * `tributary serve`: the HTTP server alone (no pipeline in this process) against the
 * configured Redis and Postgres: the dashboard at /, /metrics, /healthz, /readyz (Redis
 * and Postgres answer) and the ingest API, until SIGINT/SIGTERM.
 */
import type { Command } from 'commander';
import { kebab, redactUrl } from '../../config/index.js';
import { SETTINGS, type ConfigKey } from '../../config/schema.js';
import { ServersProbe } from '../../http/probe.js';
import { httpListen, ingestStreams, startCliHttp } from '../http.js';
import { configFrom } from '../options.js';
import { createLogger } from '../output.js';

/** The settings `serve` reads (HTTP_TOKEN too, from the environment or .env only). */
const SERVE_SETTINGS: readonly ConfigKey[] = [
  'httpAllowedHosts',
  'redisUrl',
  'databaseUrl',
  'streamKey',
  'group',
  'pgSchema',
  'eventsTable',
  'dlqStream',
  'ingestStreams',
  'ingestMaxLag',
  'ingestMaxBodyBytes',
  'ingestMaxEvents',
  'partitions',
  'ordersPrefix',
  'ordersSchema',
  'maxQueueDepth',
  'logLevel',
];

export const DEFAULT_SERVE_PORT = 8080;

export function registerServe(program: Command): void {
  const command = program
    .command('serve')
    .description('run the HTTP server alone: the dashboard at /, /metrics, /healthz, /readyz and the ingest API POST /v1/streams/{stream}/events, until SIGINT/SIGTERM')
    .option('--port <port>', `port to listen on, 0 for any free port [HTTP_PORT] (default: ${DEFAULT_SERVE_PORT})`)
    .option('--host <host>', 'address to bind; 0.0.0.0 or :: serves other machines [HTTP_HOST] (default: 127.0.0.1)');
  for (const key of SERVE_SETTINGS) command.option(`--${kebab(key)} <value>`, `${SETTINGS[key].doc} [${SETTINGS[key].env}]`);
  command.action(async (opts: Record<string, unknown>) => {
    // --port and --host are HTTP_PORT and HTTP_HOST (checked by the config schema).
    const config = configFrom({ ...opts, httpPort: opts.port, httpHost: opts.host });
    const log = createLogger(config.logLevel);
    const listen = httpListen(config) ?? { port: DEFAULT_SERVE_PORT, host: config.httpHost ?? config.metricsHost };
    log.info({ redis: redactUrl(config.redisUrl), postgres: redactUrl(config.databaseUrl) }, `serve: redis ${redactUrl(config.redisUrl)}, postgres ${redactUrl(config.databaseUrl)}`);
    const probe = new ServersProbe(config.redisUrl, config.databaseUrl);
    let server;
    try {
      server = await startCliHttp(config, log, {
        listen,
        probe,
        streams: ingestStreams(config, [config.streamKey], () => [config.group]),
        announce: 'listening',
      });
    } catch (err) {
      await probe.close();
      throw err;
    }
    let signals = 0;
    await new Promise<void>((resolve) => {
      const onSignal = (signal: NodeJS.Signals) => {
        signals++;
        if (signals > 1) {
          log.info({ signal }, `${signal} again: exiting now`);
          process.exit(0);
        }
        log.info({ signal }, `${signal}: stopping — finishing the requests in progress (send again to force)`);
        resolve();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    });
    await server.close();
    await probe.close();
    const s = server.ingest?.stats;
    log.info(s ?? {}, s ? `stopped: ${s.accepted} ingest requests accepted, ${s.events} events added, ${s.rejected} refused, ${s.throttled} throttled` : 'stopped');
    process.exit(0);
  });
}
