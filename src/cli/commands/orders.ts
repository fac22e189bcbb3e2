/**
 * `tributary orders <verb>`: the orders pipeline's commands. Thin shells over
 * src/orders: parse flags, call the library, print.
 */
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { formatOrdersBench } from '../../bench/orders-report.js';
import { runOrdersBenchmark } from '../../bench/orders.js';
import { redactUrl } from '../../config/index.js';
import type { PgPool } from '../../postgres/pool.js';
import type { RedisConnection } from '../../redis/client.js';
import type { TributaryConfig } from '../../config/schema.js';
import { sleep } from '../../core/backoff.js';
import { TributaryError } from '../../errors.js';
import { OrderGenerator, produceOrders } from '../../orders/generate.js';
import { analyzeReferenceTables } from '../../orders/pg/analyze.js';
import { migrateOrders } from '../../orders/pg/migrate.js';
import { promote } from '../../orders/pg/promote.js';
import { refreshViews } from '../../orders/pg/views.js';
import { loadReferenceDataOrFail, MAX_TIMER_MS, OrdersPipeline, type OrdersPipelineOptions } from '../../pipelines/orders.js';
import type { HttpServer } from '../../http/server.js';
import { httpListen, ingestStreams, startCliHttp } from '../http.js';
import { createPipelineMetrics } from '../../observability/metrics.js';
import { Backpressure } from '../../orders/redis/backpressure.js';
import { LookupCache } from '../../orders/redis/cache.js';
import { escapeGlob, orderKeys } from '../../orders/redis/keys.js';
import { OrderQueue } from '../../orders/redis/queue.js';
import { OrderSignals } from '../../orders/redis/signals.js';
import { seedReferenceData } from '../../orders/seed.js';
import { collectOrdersStats, deleteKeys, formatOrdersStats, ordersStatsOptions } from '../../orders/stats.js';
import { REJECT_REASONS, type PromoteResult, type RejectReason } from '../../orders/types.js';
import { openRedis, redisLostAsCoded, withConnections } from '../connect.js';
import { configFrom, withConfigOptions } from '../options.js';
import { quitOnKey } from '../keys.js';
import { createLogger, plural, print, type Logger } from '../output.js';
import { logOutages, stopOnSignals } from './start.js';
import { parsePositiveInt } from './produce.js';

/** A share flag (`--duplicates 0.05`): a number in [0, 1]. */
export function parseShare(name: string, value: unknown): number {
  const n = Number(value);
  if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [name, `must be a number from 0 to 1 (got ${JSON.stringify(value)})`]);
  }
  return n;
}

function parseNonNegativeInt(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [name, `must be a non-negative integer (got ${JSON.stringify(value)})`]);
  return n;
}

const fmt = (v: number) => Math.round(v).toLocaleString('en-US');

/** `orders generate` without --count: the original demo's 10,000 orders. */
export const DEFAULT_GENERATE_COUNT = 10_000;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** "3 unknown_zip, 2 malformed" (reasons in REJECT_REASONS order), or "none". */
export function formatReasons(rejected: Partial<Record<RejectReason, number>>): string {
  const parts = REJECT_REASONS.filter((r) => rejected[r]).map((r) => `${rejected[r]} ${r}`);
  return parts.length > 0 ? parts.join(', ') : 'none';
}

/** The pipeline options from the configuration (CLI and benchmark use the same mapping). */
export function pipelineOptions(config: TributaryConfig): OrdersPipelineOptions {
  return {
    redisUrl: config.redisUrl,
    databaseUrl: config.databaseUrl,
    schema: config.ordersSchema,
    prefix: config.ordersPrefix,
    workers: config.ordersWorkers,
    batchSize: config.ordersBatchSize,
    blockMs: config.ordersBlockMs,
    staleMs: config.ordersStaleMs,
    queryTimeoutMs: config.pgQueryTimeoutMs,
    redisCommandTimeoutMs: config.redisCommandTimeoutMs,
    recoverIntervalMs: config.ordersRecoverIntervalMs,
    dedupWindowSeconds: config.dedupWindowS,
    dedupBucketSeconds: config.dedupBucketS,
    revenueWindowMs: config.revenueWindowMin * 60_000,
    cacheTtlMs: config.cacheTtlS * 1000,
    viewRefreshMinIntervalMs: config.viewRefreshMinMs,
    // A random run token: worker names stay unique even if this process runs a second pipeline.
    workerPrefix: `${config.consumerName}-${process.pid}-${randomBytes(3).toString('hex')}`,
  };
}

function ordersCommand(parent: Command, name: string, description: string): Command {
  return withConfigOptions(parent.command(name).description(description), 'orders');
}

/** Publishes the Postgres reference tables to the lookup cache; prints what it did. */
async function publishCache(config: TributaryConfig, redis: RedisConnection, pool: PgPool): Promise<void> {
  const data = await loadReferenceDataOrFail(pool, config.ordersSchema);
  const cache = new LookupCache({ client: redis, prefix: config.ordersPrefix, ttlMs: config.cacheTtlS * 1000 });
  const r = await cache.publish(data);
  print(
    `lookup cache ${config.ordersPrefix}: version ${r.version}${r.replaced ? ` (replaced ${r.replaced})` : ''}, ` +
      `${fmt(r.sizes.products)} products, ${fmt(r.sizes.currencies)} currencies, ${fmt(r.sizes.zipCodes)} zip codes ` +
      `in ${r.durationMs.toFixed(0)} ms; expires in ${fmt(config.cacheTtlS / 3600)} h unless refreshed`,
  );
}

function registerInitCache(orders: Command): void {
  ordersCommand(orders, 'init-cache', 'snapshot products, currencies and zip codes from Postgres into the Redis lookup cache (a new version, swapped in atomically)')
    .option('--all', 'first create the orders schema (migrate) and seed the sample reference data')
    .action(async (opts: Record<string, unknown>) => {
      const config = configFrom(opts);
      await withConnections(config, 'orders-init-cache', { max: 2 }, async ({ redis, pool }) => {
        if (opts.all) {
          const m = await migrateOrders(pool, config.ordersSchema);
          print(m.applied.length > 0 ? `schema ${config.ordersSchema}: applied ${m.applied.join(', ')}` : `schema ${config.ordersSchema} is up to date (version ${m.current})`);
          const seeded = await seedReferenceData(pool, config.ordersSchema);
          print(`reference data: ${seeded.products} products, ${seeded.currencies} currencies, ${seeded.zipCodes} zip codes written (0: already up to date)`);
        }
        await publishCache(config, redis, pool);
        await analyzeReferenceTables(pool, config.ordersSchema);
      });
    });
}

function registerGenerate(orders: Command): void {
  ordersCommand(orders, 'generate', 'push sample orders onto the queue (LPUSH), waiting while the queue is deeper than MAX_QUEUE_DEPTH')
    .option('--count <n>', 'orders to push (the original demo\'s 10,000)', String(DEFAULT_GENERATE_COUNT))
    .option('--duplicates <share>', 'share of orders that repeat an earlier order_id (0-1)', '0')
    .option('--invalid <share>', 'share of invalid orders, one of each reject reason in turn (0-1)', '0.01')
    .option('--burst', 'one burst: every order with the same timestamp, pushed without pacing or waiting for room')
    .option('--rate <orders/s>', 'pace the pushes to this rate, as `produce --rate` (default: as fast as the queue takes them)')
    .option('--batch <n>', 'orders per push (one LPUSH)', '1000')
    .option('--seed <n>', 'seed of the random choices (same seed: same orders)')
    .action(async (opts: Record<string, unknown>) => {
      const count = parsePositiveInt('--count', String(opts.count));
      const burst = opts.burst === true;
      const duplicates = parseShare('--duplicates', opts.duplicates);
      const invalid = parseShare('--invalid', opts.invalid);
      if (duplicates + invalid > 1) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--duplicates + --invalid', 'must not exceed 1']);
      const batch = parsePositiveInt('--batch', String(opts.batch));
      const rate = opts.rate === undefined ? undefined : parsePositiveInt('--rate', String(opts.rate));
      if (rate !== undefined && burst) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--rate', 'cannot be combined with --burst (a burst is not paced)']);
      const seed = opts.seed === undefined ? undefined : parseNonNegativeInt('--seed', String(opts.seed));
      const config = configFrom(opts);
      const redis = await openRedis(config, { name: 'orders-generate' });
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const queue = new OrderQueue({ client: redis, prefix: config.ordersPrefix });
      const generator = new OrderGenerator({ duplicates, invalid, ...(seed === undefined ? {} : { seed }), ...(burst ? { fixedTimestampMs: Date.now() } : {}) });
      const backpressure = new Backpressure(queue);
      // Say when producers are held back, and when they are let go.
      let heldSince: number | null = null;
      const watch = setInterval(() => {
        if (backpressure.isEngaged && heldSince === null) {
          heldSince = Date.now();
          process.stderr.write(`backpressure: queue depth ${fmt(backpressure.stats().lastDepth ?? 0)} >= MAX_QUEUE_DEPTH ${fmt(config.maxQueueDepth)}; waiting for the workers\n`);
        } else if (!backpressure.isEngaged && heldSince !== null) {
          process.stderr.write(`backpressure: released after ${secs(Date.now() - heldSince)}\n`);
          heldSince = null;
        }
      }, 200);
      let lastReport = 0;
      try {
        const r = await produceOrders(queue, generator, {
          count,
          batchSize: batch,
          ...(burst ? {} : { maxQueueDepth: config.maxQueueDepth }),
          ...(rate === undefined ? {} : { rate }),
          backpressure,
          signal: stop.signal,
          onProgress: ({ pushed, depth }) => {
            if (pushed - lastReport >= Math.max(10_000, count / 10) || pushed === count) {
              lastReport = pushed;
              process.stderr.write(`pushed ${fmt(pushed)}/${fmt(count)}, queue depth ${fmt(depth)}\n`);
            }
          },
        });
        if (heldSince !== null) process.stderr.write(`backpressure: released after ${secs(Date.now() - heldSince)}\n`);
        const made = generator.counts();
        const invalidText = made.invalidTotal > 0 ? ` (${Object.entries(made.invalid).map(([k, v]) => `${v} ${k}`).join(', ')})` : '';
        print(
          `generated ${fmt(r.pushed)} orders onto ${queue.keys.queue} in ${secs(r.elapsedMs)} (${fmt(r.pushed / Math.max(r.elapsedMs / 1000, 1e-6))} orders/s): ` +
            `${fmt(made.duplicates)} duplicates, ${fmt(made.invalidTotal)} invalid${invalidText}`,
        );
        print(
          burst
            ? 'backpressure: not applied (--burst)'
            : `backpressure: ${r.waits === 0 ? 'never engaged' : `engaged ${r.waits} times, waited ${secs(r.waitedMs)}`} (MAX_QUEUE_DEPTH ${fmt(config.maxQueueDepth)}, highest depth ${fmt(r.maxDepth)})`,
        );
        if (r.aborted) {
          print(`stopped early by a signal after ${fmt(r.pushed)} of ${fmt(count)}`);
          process.exitCode = 130;
        }
      } catch (err) {
        throw redisLostAsCoded(err, config.redisUrl);
      } finally {
        clearInterval(watch);
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        redis.destroy();
      }
    });
}

/** Logs a pipeline's life: outages once each, recoveries, cache publishes, failed refreshes, and a throughput line. */
export function attachOrdersLogging(pipeline: OrdersPipeline, log: Logger, everyMs = 10_000): () => void {
  const stopReminders = logOutages(pipeline, log, {
    urls: { redis: pipeline.options.redisUrl, postgres: pipeline.options.databaseUrl ?? '(the given pool)' },
    started: () => pipeline.runner.running,
    holding: 'holding the batches',
  });
  pipeline.on('retry', ({ server, step, error, attempt }) => log.debug({ server, step, attempt, err: error.message }, `retrying ${step} (${server}): ${error.message}`));
  pipeline.on('recovered', ({ items, workers, byWorker, stagingRowsDropped }) =>
    log.info({ items, workers, byWorker, stagingRowsDropped }, `recovered ${items} orders from ${plural(workers, 'dead worker')} (${Object.keys(byWorker).join(', ')}) back to the queue`),
  );
  pipeline.on('fenced', ({ worker, step, epoch, current, items, batchId, code }) =>
    log.warn(
      { code, worker, step, epoch, current, items, batchId },
      `${code}: ${new TributaryError(code, [worker, step, epoch, current]).message}; ${items} orders left to the worker that holds them now`,
    ),
  );
  pipeline.on('cachePublished', ({ version }) => log.info({ version }, `lookup cache was empty or expired: published version ${version} from Postgres`));
  pipeline.on('viewsRefreshed', (o) => {
    if (o.status === 'failed') log.warn({ err: o.error?.message }, `view refresh failed: ${o.error?.message}`);
    else log.debug({ ms: Math.round(o.durationMs), requests: o.requests }, `views refreshed in ${o.durationMs.toFixed(0)} ms (${o.requests} signals)`);
  });
  pipeline.on('error', (err) => log.error({ err }, `unexpected: ${err.message}`));
  let last = 0;
  let lastAt = Date.now();
  const timer = setInterval(() => {
    const s = pipeline.stats();
    if (s.taken === last) return;
    const rate = ((s.taken - last) * 1000) / (Date.now() - lastAt);
    last = s.taken;
    lastAt = Date.now();
    log.info(
      { taken: s.taken, rate: Math.round(rate), promoted: s.promoted, duplicates: s.duplicates, rejected: s.rejectedTotal },
      `processed ${fmt(s.taken)} (${fmt(rate)}/s): ${fmt(s.promoted)} promoted, ${fmt(s.duplicates)} duplicates dropped, ${fmt(s.rejectedTotal)} rejected`,
    );
  }, everyMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    stopReminders();
  };
}

function registerProcess(orders: Command): void {
  ordersCommand(orders, 'process', 'run the workers: take, dedup, enrich, transform, stage, promote, acknowledge; until SIGINT/SIGTERM (a second signal forces)')
    .option('--workers <n>', 'alias of --orders-workers')
    .option('--batch-size <n>', 'alias of --orders-batch-size')
    .option('--until-empty', 'stop once the queue is empty (each worker at its first empty take)')
    .option('--iterations <n>', 'each worker processes at most N batches, then the command exits (sooner if the queue is empty), as the original\'s process --iterations')
    .option('--http-port <port>', 'serve /metrics, /healthz, /readyz and the ingest API (streams of INGEST_STREAMS only) on this port (0: any free port) [HTTP_PORT]')
    .option('--http-host <host>', 'address the HTTP server binds (default 127.0.0.1: this machine only) [HTTP_HOST]')
    .option('--http-allowed-hosts <hosts>', 'host names the HTTP server answers to besides localhost, 127.0.0.1, [::1] and its bound address, comma-separated (`*`: any) [HTTP_ALLOWED_HOSTS]')
    .option('--metrics-port <port>', 'alias of --http-port [METRICS_PORT]')
    .option('--metrics-host <host>', 'alias of --http-host [METRICS_HOST]')
    .action(async (opts: Record<string, unknown>) => {
      const iterations = opts.iterations === undefined ? undefined : parsePositiveInt('--iterations', String(opts.iterations));
      const config = configFrom({ ...opts, ordersWorkers: opts.ordersWorkers ?? opts.workers, ordersBatchSize: opts.ordersBatchSize ?? opts.batchSize });
      const log = createLogger(config.logLevel);
      // Long-running, it waits out a server that is not up yet; one-shot (--until-empty, --iterations), it fails fast.
      const oneShot = opts.untilEmpty === true || iterations !== undefined;
      const pipeline = new OrdersPipeline({
        ...pipelineOptions(config),
        untilEmpty: oneShot,
        ...(iterations === undefined ? {} : { maxBatchesPerWorker: iterations }),
        waitForServers: !oneShot,
      });
      const stopLogging = attachOrdersLogging(pipeline, log);
      let ops: HttpServer | undefined;
      const listen = httpListen(config);
      if (listen) {
        // Orders come from a list, not a stream: ingest writes only the streams INGEST_STREAMS names.
        ops = await startCliHttp(config, log, {
          listen,
          probe: pipeline,
          metrics: createPipelineMetrics(pipeline),
          streams: ingestStreams(config, [], () => [config.group]),
          announce: 'metrics',
        });
      }
      const started = performance.now();
      await pipeline.start();
      log.info(
        { workers: config.ordersWorkers, batchSize: config.ordersBatchSize, prefix: config.ordersPrefix, schema: config.ordersSchema },
        `orders pipeline started: ${plural(config.ordersWorkers, 'worker')} (${pipeline.workerNames[0]}${config.ordersWorkers > 1 ? '...' : ''}), batch ${config.ordersBatchSize}, ` +
          (iterations === undefined ? '' : `at most ${plural(iterations, 'batch', 'batches')} each, `) +
          `queue ${config.ordersPrefix}:queue, schema ${config.ordersSchema}; redis ${redactUrl(config.redisUrl)}, postgres ${redactUrl(config.databaseUrl)}`,
      );
      const stop = stopOnSignals({
        log,
        held: () => pipeline.stats().inFlight,
        what: 'orders',
        where: 'stay in the processing lists and are recovered later',
        close: (force) => pipeline.close({ force }),
      });
      await pipeline.done;
      await pipeline.close();
      stop.stopped();
      stopLogging();
      await ops?.close();
      const s = pipeline.stats();
      const ms = performance.now() - started;
      print(
        `processed ${fmt(s.taken)} orders in ${plural(s.batches, 'batch', 'batches')} in ${secs(ms)} (${fmt(s.taken / Math.max(ms / 1000, 1e-6))} orders/s): ` +
          `${fmt(s.promoted)} promoted, ${fmt(s.duplicates)} duplicates dropped, ${fmt(s.pgDuplicates)} already in orders, ` +
          `${fmt(s.rejectedTotal)} rejected (${formatReasons(s.rejected)})` +
          (s.recovered > 0 ? `; ${fmt(s.recovered)} orders recovered from dead workers` : ''),
      );
      stop.exit();
    });
}

function describePromote(r: PromoteResult): string {
  return `${fmt(r.staged)} staged rows: ${fmt(r.promoted)} promoted, ${fmt(r.duplicates)} already in orders, ${fmt(Object.values(r.rejected).reduce((a, b) => a + (b ?? 0), 0))} rejected (${formatReasons(r.rejected)})`;
}

function registerPromote(orders: Command): void {
  ordersCommand(orders, 'promote', 'promote every staged row (valid → orders, invalid → orders_rejected, one transaction), then refresh the views')
    .action(async (opts: Record<string, unknown>) => {
      const config = configFrom(opts);
      await withConnections(config, 'orders-promote', { max: 2 }, async ({ redis, pool }) => {
        const t = performance.now();
        let r: PromoteResult;
        try {
          r = await promote(pool, config.ordersSchema);
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          if (code === '42P01' || code === '3F000') throw new TributaryError('TRIB_ERR_ORDERS_NO_REFERENCE_DATA', [config.ordersSchema, 'no tables'], { cause: err });
          throw err;
        }
        print(`promoted ${describePromote(r)} in ${secs(performance.now() - t)}`);
        if (r.staged > 0) {
          await new OrderSignals({ client: redis, prefix: config.ordersPrefix }).publishPromoted({
            batchId: 'orders-promote',
            promoted: r.promoted,
            duplicates: r.duplicates,
            rejected: r.staged - r.promoted - r.duplicates,
          });
        }
        const views = await refreshViews(pool, config.ordersSchema);
        print(`views refreshed: ${views.map((v) => `${v.view} ${fmt(v.rows)} rows (${v.durationMs.toFixed(0)} ms)`).join(', ')}`);
      });
    });
}

function registerStats(orders: Command): void {
  ordersCommand(orders, 'stats', 'queue depths, dedup window, cache, staging vs orders, rejects, views and their freshness, windowed revenue, throughput')
    .option('--watch [seconds]', 'redraw every N seconds (default 5) until q or Ctrl-C')
    .option('--json', 'one JSON object per snapshot')
    .action(async (opts: Record<string, unknown>) => {
      const config = configFrom(opts);
      const everyMs = opts.watch === undefined ? 0 : opts.watch === true ? 5000 : Math.round(Number(opts.watch) * 1000);
      // Node fires a timer longer than 2^31-1 ms after 1 ms: refuse it.
      if (opts.watch !== undefined && !(everyMs >= 100 && everyMs <= MAX_TIMER_MS)) {
        throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--watch', `must be a number of seconds from 0.1 to ${MAX_TIMER_MS / 1000} (got ${JSON.stringify(opts.watch)})`]);
      }
      // Redrawn in place on a terminal (q quits); appended otherwise.
      const live = everyMs > 0 && !opts.json && process.stdout.isTTY === true;
      await withConnections(config, 'orders-stats', { max: 2 }, async ({ redis, pool }) => {
        const show = async () => {
          const s = await collectOrdersStats(redis, pool, ordersStatsOptions(config));
          if (opts.json) print(JSON.stringify(s));
          else if (live) {
            process.stdout.write('\x1b[2J\x1b[H');
            print(formatOrdersStats(s));
            print(`refresh every ${everyMs / 1000} s · q or Ctrl-C quits`);
          } else print(formatOrdersStats(s));
        };
        await show();
        if (everyMs === 0) return;
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        // On a terminal, q (or Ctrl-C, Ctrl-D) quits, as in `monitor`.
        const releaseKeys = live ? quitOnKey(onSignal) : () => {};
        process.on('exit', releaseKeys);
        try {
          while (!stop.signal.aborted) {
            await sleep(everyMs, stop.signal);
            if (!stop.signal.aborted) await show();
          }
        } finally {
          releaseKeys();
          process.off('exit', releaseKeys);
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      });
    });
}

function registerClear(orders: Command): void {
  ordersCommand(orders, 'clear', 'delete the lookup cache (--cache), the dedup window (--dedup), or every Redis key of the pipeline (--all)')
    .option('--cache', 'every lookup-cache version (workers republish it from Postgres when they need it)')
    .option('--dedup', 'the dedup window (order_ids seen in the last DEDUP_WINDOW_S)')
    .option('--all', 'every key under ORDERS_PREFIX: queue, processing lists, depth, dedup, cache, revenue window, stats')
    .option('--yes', 'with --all: also when orders are waiting or in processing (they are deleted, not processed)')
    .action(async (opts: Record<string, unknown>) => {
      if (!opts.cache && !opts.dedup && !opts.all) {
        throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['clear', 'say what to clear: --cache, --dedup or --all']);
      }
      const config = configFrom(opts);
      const redis = await openRedis(config, { name: 'orders-clear' });
      try {
        const keys = orderKeys(config.ordersPrefix);
        const p = escapeGlob(config.ordersPrefix);
        if (opts.all) {
          const queue = new OrderQueue({ client: redis, prefix: config.ordersPrefix });
          const [waiting, workers] = await Promise.all([queue.length(), queue.workers()]);
          const held = workers.reduce((n, w) => n + w.processing, 0);
          if ((waiting > 0 || held > 0) && !opts.yes) {
            throw new TributaryError('TRIB_ERR_CONFIRMATION_REQUIRED', [`delete every key under ${config.ordersPrefix}:, including ${fmt(waiting)} waiting and ${fmt(held)} in-processing orders`]);
          }
          print(`deleted ${fmt(await deleteKeys(redis, `${p}:*`))} keys under ${config.ordersPrefix}: (${fmt(waiting)} waiting and ${fmt(held)} in-processing orders among them)`);
          return;
        }
        if (opts.cache) print(`deleted ${fmt(await deleteKeys(redis, `${escapeGlob(keys.cacheVersionPrefix)}*`))} lookup-cache keys`);
        if (opts.dedup) print(`deleted ${fmt(await deleteKeys(redis, `${p}:dedup:*`))} dedup buckets`);
      } catch (err) {
        throw redisLostAsCoded(err, config.redisUrl);
      } finally {
        redis.destroy();
      }
    });
}

function registerBenchmark(orders: Command): void {
  ordersCommand(orders, 'benchmark', 'time every stage (generate/ingest → dedup → enrich → transform → stage → promote → refresh), then the pipeline end to end; writes bench/results/orders-<time>.json')
    .option('--total <n>', 'orders of the stage-by-stage run', '1000000')
    .option('--batch-size <n>', 'orders per batch (default ORDERS_BATCH_SIZE)')
    .option('--workers <n>', 'batches at a time per stage, and workers of the end-to-end run (default ORDERS_WORKERS)')
    .option('--duplicates <share>', 'share of duplicates generated (0-1)', '0.05')
    .option('--invalid <share>', 'share of invalid orders generated (0-1)', '0.01')
    .option('--pipeline-total <n>', 'orders of the end-to-end run (0: skip it; default --total)')
    .option('--keep', 'keep the benchmark schema and Redis keys')
    .action(async (opts: Record<string, unknown>) => {
      const total = parsePositiveInt('--total', String(opts.total));
      const duplicates = parseShare('--duplicates', opts.duplicates);
      const invalid = parseShare('--invalid', opts.invalid);
      const config = configFrom({ ...opts, ordersWorkers: opts.ordersWorkers ?? opts.workers, ordersBatchSize: opts.ordersBatchSize ?? opts.batchSize });
      const pipelineTotal = opts.pipelineTotal === undefined ? total : parseNonNegativeInt('--pipeline-total', String(opts.pipelineTotal));
      // Fail fast, with a coded error, when a server is not there.
      await withConnections(config, 'orders-benchmark', { max: 1 }, async () => {});
      const run = await runOrdersBenchmark(config, {
        total,
        duplicates,
        invalid,
        pipelineTotal,
        batchSize: config.ordersBatchSize,
        workers: config.ordersWorkers,
        keep: opts.keep === true,
        onProgress: (line) => process.stderr.write(`${line}\n`),
      });
      print(formatOrdersBench(run.result, run.path));
    });
}

export function registerOrders(program: Command): void {
  const orders = program.command('orders').description('the orders pipeline: Redis list queue, dedup window, lookup cache, COPY staging, validate and promote, views');
  registerInitCache(orders);
  registerGenerate(orders);
  registerProcess(orders);
  registerPromote(orders);
  registerStats(orders);
  registerBenchmark(orders);
  registerClear(orders);
}
