import type { Command } from 'commander';
import { redactUrl } from '../../config/index.js';
import { Engine } from '../../pipelines/events.js';
import { startOpsServer } from '../../http/server.js';
import { createPipelineMetrics } from '../../observability/metrics.js';
import { configFrom, withConfigOptions } from '../options.js';
import { createLogger, type Logger } from '../output.js';

/** Logs an engine's life: state changes once each, dead letters, a throughput line. */
export function attachEngineLogging(engine: Engine, log: Logger, statsEveryMs = 10_000): () => void {
  engine.on('serverDown', ({ server, error }) =>
    log.warn({ server, err: error.message }, `${server} unavailable (${error.message}); holding work, retrying with backoff`),
  );
  engine.on('serverUp', ({ server, downMs }) => log.info({ server, downMs }, `${server} back after ${(downMs / 1000).toFixed(1)} s; resuming`));
  engine.on('deadLetter', ({ id, code, error }) => log.warn({ entry: id, code }, `dead-lettered ${id}: ${code}: ${error}`));
  engine.on('reclaimed', ({ count, consumer }) => log.info({ count, consumer }, `reclaimed ${count} idle entries to ${consumer}`));
  engine.on('deleted', ({ ids }) => log.warn({ count: ids.length }, `${ids.length} pending entries had been deleted from the stream (trimmed); cleared`));
  engine.on('trimmed', ({ deleted, cut, limitedBy }) => log.info({ deleted, cut, limitedBy }, `trimmed ${deleted} entries below ${cut} (limited by ${limitedBy})`));
  engine.on('retry', ({ server, error }) => log.debug({ server, err: error.message }, `retrying after a ${server} failure`));
  engine.on('error', (err) => log.error({ err }, `unexpected: ${err.message}`));
  let last = engine.stats().written;
  let lastAt = Date.now();
  const timer = setInterval(() => {
    const s = engine.stats();
    if (s.written === last && s.deadLettered === 0) return;
    const rate = ((s.written - last) * 1000) / (Date.now() - lastAt);
    last = s.written;
    lastAt = Date.now();
    log.info(
      { written: s.written, rate: Math.round(rate), duplicates: s.duplicates, deadLettered: s.deadLettered, inFlight: s.inFlight },
      `written ${s.written} (${rate.toFixed(0)}/s), duplicates ${s.duplicates}, dead letters ${s.deadLettered}, in flight ${s.inFlight}`,
    );
  }, statsEveryMs);
  timer.unref();
  return () => clearInterval(timer);
}

export function registerStart(program: Command): void {
  withConfigOptions(
    program
      .command('start')
      .description('run the engine: consume the stream into Postgres until SIGINT/SIGTERM (a second signal forces)')
      .option('--table <name>', 'alias of --events-table: the table this group writes to (fan-out: one table per group)'),
  ).action(async (opts: Record<string, unknown>) => {
    const config = configFrom({ ...opts, eventsTable: opts.eventsTable ?? opts.table });
    const log = createLogger(config.logLevel);
    log.info(
      { stream: config.streamKey, group: config.group, workers: config.numWorkers, table: `${config.pgSchema}.${config.eventsTable}` },
      `engine: stream ${config.streamKey}, group ${config.group}, ${config.numWorkers} workers as ${config.consumerName}-N, ` +
        `table ${config.pgSchema}.${config.eventsTable}; redis ${redactUrl(config.redisUrl)}, postgres ${redactUrl(config.databaseUrl)}`,
    );
    const engine = new Engine(config);
    const stopLogging = attachEngineLogging(engine, log);
    let ops: Awaited<ReturnType<typeof startOpsServer>> | undefined;
    if (config.metricsPort !== undefined) {
      ops = await startOpsServer(engine, createPipelineMetrics(engine), config.metricsPort);
      log.info({ port: ops.port }, `metrics on http://0.0.0.0:${ops.port}/metrics (also /healthz, /readyz)`);
    }
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        log.info({ signal }, `${signal}: stopping — finishing in-flight batches (send again to force)`);
        void engine.close();
      } else {
        log.warn({ signal }, `${signal} again: forcing exit; unacknowledged entries stay pending and will be reclaimed`);
        // A forced stop is never a success, however quickly the engine gives up.
        process.exitCode = 130;
        void engine.close({ force: true });
        setTimeout(() => process.exit(130), 200).unref();
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    engine.on('started', ({ consumers }) => log.info({ consumers }, `engine started: ${consumers.length} workers reading`));
    await engine.start();
    await engine.done;
    await engine.close();
    if (engine.runner.failure) {
      // Every worker stopped on an error retrying cannot fix (it was logged as it happened).
      log.error({ err: engine.runner.failure }, `stopped: ${engine.runner.failure.message}`);
      process.exitCode = 2;
    }
    stopLogging();
    await ops?.close();
    const s = engine.stats();
    log.info(s, `stopped: read ${s.read}, written ${s.written}, duplicates ${s.duplicates}, dead letters ${s.deadLettered}`);
  });
}
