/**
 * `tributary run <file>...` and `tributary check <file>...`: pipelines described by files
 * (src/pipeline-file), each from a Redis stream into a table of the user's own.
 */
import type { Command } from 'commander';
import { kebab, redactUrl } from '../../config/index.js';
import { SETTINGS, type ConfigKey } from '../../config/schema.js';
import { TributaryError } from '../../errors.js';
import { formatProblem, loadPipelineFile, PipelineFileError, type FileProblem, type PipelineSpec } from '../../pipeline-file/spec.js';
import { TablePipeline } from '../../pipelines/table.js';
import { ServersProbe } from '../../http/probe.js';
import type { HttpServer } from '../../http/server.js';
import { createPipelineMetrics } from '../../observability/metrics.js';
import { parseXinfoGroups } from '../../redis/xinfo.js';
import { encodeCommand, RespError, RespPipe } from '../../redis/pipe.js';
import type { RawReply } from '../../redis/commands.js';
import { httpListen, ingestStreams, startCliHttp } from '../http.js';
import { configFrom } from '../options.js';
import { createLogger, print, type Logger } from '../output.js';
import { logOutages, stopOnSignals } from './start.js';

const RUN_SETTINGS: readonly ConfigKey[] = [
  'redisUrl', 'databaseUrl', 'consumerName', 'pgSchema', 'maxInFlight', 'maxInFlightBytes', 'maxEntryBytes', 'claimIdleMs', 'claimIntervalMs', 'writeTimeoutMs', 'logLevel',
  // The HTTP server of --http-port (HTTP_TOKEN from the environment or .env only).
  ...(['httpPort', 'httpHost', 'httpAllowedHosts', 'metricsPort', 'metricsHost', 'ingestStreams', 'ingestMaxLag', 'ingestMaxBodyBytes', 'ingestMaxEvents'] as const),
];

/** Every file's spec, or every problem of every file. */
function loadAll(files: readonly string[]): { specs: PipelineSpec[]; problems: FileProblem[] } {
  const specs: PipelineSpec[] = [];
  const problems: FileProblem[] = [];
  for (const file of files) {
    try {
      specs.push(loadPipelineFile(file));
    } catch (err) {
      if (!(err instanceof PipelineFileError)) throw err;
      problems.push(...err.problems);
    }
  }
  const seen = new Map<string, string>();
  for (const s of specs) {
    const where = `${s.source.stream}/${s.source.group}`;
    const other = seen.get(where);
    if (other !== undefined) {
      problems.push({ file: s.file ?? '?', line: 1, col: 1, key: 'source.group', message: `pipeline ${s.name} reads ${where}, as ${other} does: give each pipeline its own group` });
    }
    seen.set(where, s.name);
  }
  return { specs, problems };
}

function describe(s: PipelineSpec): string {
  const k = s.sink;
  const key = k.key.length > 0 ? ` key (${k.key.join(', ')})` : '';
  const version = k.version ? `, version ${k.version}` : '';
  const filter = s.filter ? `, only ${s.filter.eventTypes.join(', ')}` : '';
  return `${s.name}: ${s.source.stream} (group ${s.source.group}${filter}) → ${k.schema}.${k.table}, ${k.mode}${key}${version}, ${k.columns.length} columns, ${s.workers} worker${s.workers === 1 ? '' : 's'}`;
}

function failWith(problems: readonly FileProblem[]): never {
  for (const p of problems) process.stderr.write(`${formatProblem(p)}\n`);
  throw new TributaryError('TRIB_ERR_PIPELINE_FILE', [problems[0]!.file, problems.length, 'see above; tributary check <file> checks a file without connecting']);
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('check pipeline files without connecting: exit 0 when every file is valid, 2 with each problem (file:line:col: key: message)')
    .argument('<file...>', 'pipeline files (YAML or JSON)')
    .action((files: string[]) => {
      const { specs, problems } = loadAll(files);
      const bad = new Set(problems.map((p) => p.file));
      for (const s of specs) if (!bad.has(s.file!)) print(`ok ${s.file}: ${describe(s)}`);
      if (problems.length > 0) failWith(problems);
    });
}

export function registerRun(program: Command): void {
  const command = program
    .command('run')
    .description('run the pipelines the files describe, in one process, until SIGINT/SIGTERM (a second signal forces)')
    .argument('<file...>', 'pipeline files (YAML or JSON)');
  for (const key of RUN_SETTINGS) command.option(`--${kebab(key)} <value>`, `${SETTINGS[key].doc} [${SETTINGS[key].env}]`);
  command.action(async (files: string[], opts: Record<string, unknown>) => {
    const { specs, problems } = loadAll(files);
    if (problems.length > 0) failWith(problems);
    const config = configFrom(opts);
    const log = createLogger(config.logLevel);
    log.info(`redis ${redactUrl(config.redisUrl)}, postgres ${redactUrl(config.databaseUrl)}`);
    const pipelines = specs.map(
      (spec) =>
        new TablePipeline(spec, {
          redisUrl: config.redisUrl,
          databaseUrl: config.databaseUrl,
          consumer: `${config.consumerName}-${spec.name}`,
          deadLetterSchema: config.pgSchema,
          maxInFlight: config.maxInFlight,
          maxInFlightBytes: config.maxInFlightBytes,
          maxEntryBytes: config.maxEntryBytes,
          claimIdleMs: config.claimIdleMs,
          claimIntervalMs: config.claimIntervalMs,
          writeTimeoutMs: config.writeTimeoutMs,
        }),
    );
    let started = false;
    const stopLogging = pipelines.map((p) => attachLogging(p, log));
    const stopOutages = pipelines.map((p) =>
      logOutages(p.runner, log, {
        urls: { redis: config.redisUrl, postgres: config.databaseUrl },
        started: () => started,
        holding: `${p.spec.name} holds its work`,
      }),
    );
    const stop = stopOnSignals({
      log,
      held: () => pipelines.reduce((n, p) => n + p.runner.stats().inFlight, 0),
      what: 'entries',
      where: 'stay pending and will be reclaimed',
      close: (force) => Promise.all(pipelines.map((p) => p.close({ force }))),
    });
    const http = await startRunHttp(config, log, pipelines);
    // A pipeline that cannot start (its table does not fit) stops the others: one process, one outcome.
    const starts = await Promise.allSettled(pipelines.map((p) => p.start()));
    started = true;
    const failed = starts.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(pipelines.map((p) => p.close()));
      await http?.close();
      [...stopLogging, ...stopOutages].forEach((f) => f());
      stop.stopped();
      throw failed.reason;
    }
    await Promise.all(pipelines.map((p) => p.done));
    await Promise.all(pipelines.map((p) => p.close()));
    await http?.close();
    stop.stopped();
    [...stopLogging, ...stopOutages].forEach((f) => f());
    for (const p of pipelines) {
      const s = p.runner.stats();
      if (p.runner.failure) {
        log.error({ pipeline: p.spec.name, err: p.runner.failure }, `${p.spec.name} stopped: ${p.runner.failure.message}`);
        process.exitCode = 2;
      }
      log.info({ pipeline: p.spec.name, ...s }, `${p.spec.name} stopped: read ${s.read}, written ${s.written}, unchanged ${s.duplicates}, dead letters ${s.deadLettered}`);
    }
    stop.exit();
  });
}

/**
 * `--http-port` (HTTP_PORT): metrics of every pipeline (one registry each, merged by the
 * server), /readyz (Redis, Postgres, every pipeline running) and the ingest API for the
 * files' streams (or INGEST_STREAMS), each held back by the groups of the files reading it.
 */
async function startRunHttp(config: ReturnType<typeof configFrom>, log: Logger, pipelines: readonly TablePipeline[]): Promise<{ close(): Promise<void> } | undefined> {
  const listen = httpListen(config);
  if (!listen) return undefined;
  const gaugePipe = new RespPipe({ url: config.redisUrl, name: 'tributary:http:gauges' });
  const probe = new ServersProbe(config.redisUrl, config.databaseUrl, () =>
    Object.fromEntries(pipelines.map((p) => [`pipeline:${p.spec.name}`, p.runner.status === 'running' ? { ok: true } : { ok: false, error: `pipeline is ${p.runner.status}` }])),
  );
  const metrics = pipelines.map((p) =>
    createPipelineMetrics({
      metricsLabels: { pipeline: p.spec.name, stream: p.spec.source.stream, group: p.spec.source.group },
      runner: p.runner,
      async gauges() {
        const { stream, group } = p.spec.source;
        const [length, groups] = await gaugePipe.pipeline(encodeCommand(['XLEN', stream]) + encodeCommand(['XINFO', 'GROUPS', stream]), 2);
        if (length instanceof RespError) throw length;
        const info = groups instanceof RespError ? undefined : parseXinfoGroups(groups as RawReply).find((g) => g.name === group);
        return { streamLength: Number(length), pending: info?.pending ?? 0, lag: info?.lag ?? null };
      },
    }),
  );
  const groupsOf = (stream: string) => pipelines.filter((p) => p.spec.source.stream === stream).map((p) => p.spec.source.group);
  let server: HttpServer;
  try {
    server = await startCliHttp(config, log, {
      listen,
      probe,
      metrics,
      streams: ingestStreams(config, [...new Set(pipelines.map((p) => p.spec.source.stream))], groupsOf),
      announce: 'metrics',
    });
  } catch (err) {
    await Promise.all([probe.close(), gaugePipe.close()]);
    throw err;
  }
  return {
    close: async () => {
      await server.close();
      await Promise.all([probe.close(), gaugePipe.close()]);
    },
  };
}

/** Logs a pipeline's life: start, outages, dead letters, a throughput line. */
function attachLogging(p: TablePipeline, log: Logger, everyMs = 10_000): () => void {
  const name = p.spec.name;
  const r = p.runner;
  r.on('started', ({ consumers }) => log.info({ pipeline: name }, `${describe(p.spec)}: started, ${consumers.length} worker${consumers.length === 1 ? '' : 's'} reading`));
  r.on('deadLetter', ({ id, code, error }) => log.warn({ pipeline: name, entry: id, code }, `${name}: dead-lettered ${id}: ${code}: ${error}`));
  r.on('reclaimed', ({ count, consumer }) => log.info({ pipeline: name }, `${name}: reclaimed ${count} idle entries to ${consumer}`));
  r.on('error', (err) => log.error({ pipeline: name, err }, `${name}: unexpected: ${err.message}`));
  p.on('tableRecreated', ({ table }) => log.warn({ pipeline: name, table }, `${name}: table ${table} was missing (dropped or renamed): created it again (create: true); the entries held are written now`));
  let last = 0;
  let lastAt = Date.now();
  const timer = setInterval(() => {
    const s = r.stats();
    if (s.written === last) return;
    const rate = ((s.written - last) * 1000) / (Date.now() - lastAt);
    [last, lastAt] = [s.written, Date.now()];
    log.info({ pipeline: name, written: s.written, rate: Math.round(rate) }, `${name}: written ${s.written} (${rate.toFixed(0)}/s), unchanged ${s.duplicates}, dead letters ${s.deadLettered}`);
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
