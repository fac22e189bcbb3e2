import type { Command } from 'commander';
import { redactUrl } from '../../config/index.js';
import type { ServerName } from '../../core/contracts.js';
import { isFault } from '../../core/faults.js';
import { Engine } from '../../pipelines/events.js';
import { checkRedisEviction } from '../../redis/eviction.js';
import type { HttpServer } from '../../http/server.js';
import { createPipelineMetrics } from '../../observability/metrics.js';
import { httpListen, ingestStreams, startCliHttp } from '../http.js';
import { configFrom, withConfigOptions } from '../options.js';
import { createLogger, plural, type Logger } from '../output.js';

/** How often a line says a server is still awaited while it stays down (ms). */
export const STILL_WAITING_EVERY_MS = 10_000;

interface HealthEvents {
  serverDown: { server: ServerName; error: Error };
  serverUp: { server: ServerName; downMs: number };
}

/**
 * Logs a pipeline's outages: one line when a server goes down (at start: it is waited
 * for; running: work is held), a "still waiting for <server> at <url>, N s" line every
 * `everyMs` while it stays down, and one line when it is back. URLs are printed without
 * their password. Returns a function that stops the reminders.
 */
export function logOutages(
  emitter: { on<K extends keyof HealthEvents>(event: K, listener: (arg: HealthEvents[K]) => void): unknown },
  log: Logger,
  o: { urls: Record<ServerName, string>; started: () => boolean; holding: string; everyMs?: number },
): () => void {
  const reminders = new Map<ServerName, NodeJS.Timeout>();
  const everyMs = o.everyMs ?? STILL_WAITING_EVERY_MS;
  const stop = (server: ServerName) => {
    clearInterval(reminders.get(server));
    reminders.delete(server);
  };
  emitter.on('serverDown', ({ server, error }) => {
    const url = redactUrl(o.urls[server]);
    if (isFault(error)) {
      // It answers but refuses the work (a missing table, a permission, read-only, disk full):
      // named once with its code, not called an outage; the work stays pending meanwhile.
      log.error({ server, url, code: error.code, err: error.message }, `${server} at ${url}: ${error.code}: ${error.message}; ${o.holding}, retrying with backoff`);
      stop(server);
      return;
    }
    if (o.started()) log.warn({ server, url, err: error.message }, `${server} unavailable at ${url} (${error.message}); ${o.holding}, retrying with backoff`);
    else log.warn({ server, url, err: error.message }, `${server} at ${url} does not answer (${error.message}); waiting for it (Ctrl-C to give up)`);
    stop(server);
    const since = Date.now();
    const timer = setInterval(() => {
      const secs = Math.round((Date.now() - since) / 1000);
      log.warn({ server, url, waitedS: secs }, `still waiting for ${server} at ${url}, ${secs} s`);
    }, everyMs);
    timer.unref();
    reminders.set(server, timer);
  });
  emitter.on('serverUp', ({ server, downMs }) => {
    stop(server);
    log.info({ server, downMs }, `${server} back after ${(downMs / 1000).toFixed(1)} s; resuming`);
  });
  return () => {
    for (const server of [...reminders.keys()]) stop(server);
  };
}

/** Logs an engine's life: state changes once each, dead letters, a throughput line. */
export function attachEngineLogging(engine: Engine, log: Logger, statsEveryMs = 10_000): () => void {
  const stopReminders = logOutages(engine, log, {
    urls: { redis: engine.config.redisUrl, postgres: engine.config.databaseUrl },
    started: () => engine.running,
    holding: 'holding work',
  });
  engine.on('deadLetter', ({ id, code, error }) => log.warn({ entry: id, code }, `dead-lettered ${id}: ${code}: ${error}`));
  engine.on('deadLetterDeferred', ({ ids, error }) =>
    log.warn({ entries: ids, code: (error as { code?: string }).code }, `could not dead-letter ${ids.join(', ')}: ${(error as { code?: string }).code ?? 'error'}: ${error.message}; left pending (dead-lettered again when reclaimed), the rest of the batch acknowledged`),
  );
  engine.on('reclaimed', ({ count, consumer }) => log.info({ count, consumer }, `reclaimed ${count} idle entries to ${consumer}`));
  engine.on('deleted', ({ ids }) => log.warn({ count: ids.length }, `${ids.length} pending entries had been deleted from the stream (trimmed); cleared`));
  engine.on('consumersRemoved', ({ consumers, idleMs }) =>
    log.info({ consumers, idleMs }, `removed ${consumers.length} consumers holding nothing, idle over ${Math.round(idleMs / 1000)} s (gone processes): ${consumers.join(', ')}`),
  );
  engine.on('groupRecreated', ({ key, group, startId }) =>
    log.warn({ stream: key, group }, `consumer group ${group} of ${key} was gone (Redis restarted without persistence, or the stream was deleted): created it again at ${startId}`),
  );
  engine.on('tableRecreated', ({ schema, table }) => log.warn({ schema, table }, `table ${schema}.${table} was missing (dropped or renamed): created it again; the entries held are written now`));
  engine.on('lease', ({ event, partition, key, token, reason }) => {
    const line = `partition ${partition} (${key}): lease ${event}, token ${token}${reason ? ` (${reason})` : ''}`;
    if (event === 'lost') log.warn({ partition, token, event, reason }, line);
    else log.info({ partition, token, event, reason }, line);
  });
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
  return () => {
    clearInterval(timer);
    stopReminders();
  };
}

/**
 * SIGINT/SIGTERM of a long-running command. First signal: a graceful stop (finish and
 * acknowledge what is held). A second one forces the stop — exit 130, since what was held
 * stays unacknowledged — but only when something is held: with nothing held a forced stop
 * loses nothing, so it is a clean stop (exit 0). Once the stop is complete (`stopped()`),
 * further signals change nothing; `exit()` then ends the process at once with its exit
 * code, rather than in Node's teardown, where a signal would still kill it (exit 130).
 */
export function stopOnSignals(o: {
  log: Logger;
  /** Messages held (read, not acknowledged) right now. */
  held: () => number;
  /** What is held, plural ("entries", "orders"), and what becomes of it when forced. */
  what: string;
  where: string;
  close: (force: boolean) => Promise<unknown>;
}): { stopped(): void; exit(): never } {
  let signals = 0;
  let done = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (done) {
      o.log.debug({ signal }, `${signal}: already stopped`);
      return;
    }
    signals++;
    if (signals === 1) {
      o.log.info({ signal }, `${signal}: stopping — finishing in-flight batches (send again to force)`);
      void o.close(false);
      return;
    }
    const held = o.held();
    if (held === 0) {
      o.log.info({ signal }, `${signal} again: nothing in flight; exiting now`);
      void o.close(true);
      setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref();
      return;
    }
    o.log.warn({ signal, held }, `${signal} again: forcing exit; ${held} unacknowledged ${o.what} ${o.where}`);
    // A forced stop with work held is never a success, however quickly it gives up.
    process.exitCode = 130;
    void o.close(true);
    setTimeout(() => process.exit(130), 200).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    stopped() {
      done = true;
    },
    exit() {
      done = true;
      process.exit(process.exitCode ?? 0);
    },
  };
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
      `engine: stream ${config.streamKey}${config.partitions > 1 ? ` in ${config.partitions} partitions (${config.streamKey}:p<i>, one worker each while this process holds its lease)` : ''}, group ${config.group}, ` +
        `${config.partitions > 1 ? `consumers ${config.consumerName}-p<i>` : `${plural(config.numWorkers, 'worker')} as ${config.consumerName}-N`}, ` +
        `table ${config.pgSchema}.${config.eventsTable}; redis ${redactUrl(config.redisUrl)}, postgres ${redactUrl(config.databaseUrl)}`,
    );
    const engine = new Engine(config);
    const stopLogging = attachEngineLogging(engine, log);
    // HTTP_PORT (--http-port; METRICS_PORT, its older name): metrics, health and the ingest API on one port.
    let ops: HttpServer | undefined;
    const listen = httpListen(config);
    if (listen) {
      ops = await startCliHttp(config, log, {
        listen,
        probe: engine,
        metrics: createPipelineMetrics(engine),
        streams: ingestStreams(config, [config.streamKey], () => [config.group]),
        announce: 'metrics',
      });
    }
    const stop = stopOnSignals({
      log,
      held: () => engine.stats().inFlight,
      what: 'entries',
      where: 'stay pending and will be reclaimed',
      close: (force) => engine.close({ force }),
    });
    engine.on('started', ({ consumers }) => {
      if (engine.partitionCount <= 1) return log.info({ consumers }, `engine started: ${plural(consumers.length, 'worker')} reading`);
      const held = engine.ownedPartitions().map((o) => o.partition);
      log.info({ partitions: held }, `engine started: holding ${held.length} of ${engine.partitionCount} partitions (${held.join(', ') || 'none yet'}), one worker each`);
    });
    await engine.start();
    // Only once running: start() also returns when a signal stopped the wait for the servers.
    if (engine.runner.status === 'running') {
      const eviction = await checkRedisEviction(config.redisUrl);
      if (eviction) log.warn({ redis: redactUrl(config.redisUrl) }, eviction);
    }
    await engine.done;
    await engine.close();
    if (engine.runner.failure) {
      // Every worker stopped on an error retrying cannot fix (it was logged as it happened).
      log.error({ err: engine.runner.failure }, `stopped: ${engine.runner.failure.message}`);
      process.exitCode = 2;
    }
    stop.stopped();
    stopLogging();
    await ops?.close();
    const s = engine.stats();
    log.info(s, `stopped: read ${s.read}, written ${s.written}, duplicates ${s.duplicates}, dead letters ${s.deadLettered}`);
    stop.exit();
  });
}
