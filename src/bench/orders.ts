/**
 * `tributary orders benchmark`: the orders pipeline stage by stage, then end to end.
 *
 * In a private corner of the servers (Redis prefix and Postgres schema
 * `bench_orders_<ms>_<hex>`, migrated, seeded, dropped at the end):
 *
 * 1. Stage by stage, like the original Python benchmark, over `total` orders
 *    (`duplicates` of them repeats, `invalid` of them invalid):
 *      generate   build the order JSON texts (CPU only, not part of the pipeline)
 *      ingest     LPUSH them onto the queue (the depth counter in the same MULTI),
 *                 `workers` producers at once
 *    then, in rounds of `workers × roundBatches` batches of `batchSize`, each stage
 *    over every batch of the round before the next stage starts (so each is timed
 *    alone, `workers` batches at a time where the work is I/O):
 *      take       BLMOVE-style take into a processing list (Lua LMOVE loop)
 *      parse      JSON → orders (malformed kept aside)
 *      dedup      the dedup window's one-round-trip check
 *      enrich     the lookup cache, one round trip per batch
 *      transform  the columnar transform
 *      stage      one COPY per batch into the UNLOGGED staging table (and, each round
 *                 after the first, the VACUUM of staging the pipeline runs every 30 s)
 *      promote    one validate-and-promote transaction per batch
 *      commit     ack + mark seen + revenue window + counters, and the signal
 *    and finally
 *      refresh    REFRESH MATERIALIZED VIEW CONCURRENTLY of both views, once.
 *    The functions are the pipeline's own (src/orders/batch.ts and the parts it uses).
 *    processing = take + parse + dedup + enrich + transform; overall = total over the
 *    sum of ingest through refresh.
 * 2. End to end: `pipelineTotal` more orders pushed, then an OrdersPipeline with
 *    `workers` workers drains them (untilEmpty): what `orders process` achieves, every
 *    stage overlapping the others.
 *
 * The runner never prints; `onProgress` receives one line per step.
 */
import { randomBytes } from 'node:crypto';
import type { TributaryConfig } from '../config/schema.js';
import type { BatchContext, Message, Stage } from '../core/contracts.js';
import { lookupFor, rejectedTotal } from '../orders/batch.js';
import { OrderGenerator } from '../orders/generate.js';
import { analyzeReferenceTables } from '../orders/pg/analyze.js';
import { migrateOrders } from '../orders/pg/migrate.js';
import { promote, recordMalformed } from '../orders/pg/promote.js';
import { stageBatch } from '../orders/pg/staging.js';
import { refreshViews } from '../orders/pg/views.js';
import { OrdersPipeline, ordersStages, vacuumStaging } from '../pipelines/orders.js';
import { ordersState } from '../stages/orders.js';
import { LookupCache } from '../orders/redis/cache.js';
import { DedupWindow } from '../orders/redis/dedup.js';
import { escapeGlob, orderKeys } from '../orders/redis/keys.js';
import { OrderQueue } from '../orders/redis/queue.js';
import { RevenueWindow } from '../orders/redis/revenue.js';
import { OrderSignals } from '../orders/redis/signals.js';
import { REFERENCE_DATA, seedReferenceData } from '../orders/seed.js';
import { deleteKeys } from '../orders/stats.js';
import type { Order, PromoteResult, RejectReason } from '../orders/types.js';
import { createPgPool, quoteIdent, type PgPool } from '../postgres/pool.js';
import { createRedisConnection, destroyQuietly, type RedisConnection } from '../redis/client.js';
import { collectMachine, hostCpuTimes, postgresCpuSecs, redisCpuSecs } from './machine.js';
import { buildResult, defaultResultsDir, writeResult, type OrdersBenchFigures, type OrdersBenchStage, type OrdersStageName, type ResultOf } from './result.js';

/** The issue's targets for this machine: five times what the Python original expected at the top of its ranges. */
export const ORDERS_TARGETS = { ingestion: 250_000, processing: 100_000, staging: 150_000, promotion: 100_000 } as const;

export interface OrdersBenchOptions {
  /** Orders of the stage-by-stage run (default 1,000,000). */
  total?: number;
  /** Orders per batch (default ORDERS_BATCH_SIZE). */
  batchSize?: number;
  /** Concurrent batches per stage, and workers of the end-to-end run (default ORDERS_WORKERS). */
  workers?: number;
  /** Share of duplicates generated (default 0.05). */
  duplicates?: number;
  /** Share of invalid orders generated (default 0.01). */
  invalid?: number;
  /** Batches per worker per round of the stage-by-stage run (default 5). */
  roundBatches?: number;
  /** Orders of the end-to-end run; 0 skips it (default `total`). */
  pipelineTotal?: number;
  /** Keep the schema and keys afterwards (default false). */
  keep?: boolean;
  /** Write the result file (default true) to `resultsDir` (default bench/results). */
  write?: boolean;
  resultsDir?: string;
  onProgress?: (line: string) => void;
}

export interface OrdersBenchRun {
  result: ResultOf<'orders', OrdersBenchFigures>;
  path: string | undefined;
}

interface Slot {
  name: string;
  conn: RedisConnection;
  queue: OrderQueue;
  /** The pipeline's own stages (ordersStages): parse, dedup, enrich, transform, announce. */
  stages: Stage<any, any>[];
}

interface Batch {
  slot: Slot;
  id: string;
  items: string[];
  /** The batch context the stages share, as the runner gives it. */
  ctx: BatchContext;
  /** What each stage kept (the input of the next). */
  kept: Message<any>[][];
  staged: number;
  /** Malformed items recorded as new reject rows. */
  malformedRecorded?: number;
  result: PromoteResult | null;
}

/** The benchmark never aborts a batch. */
const never = new AbortController().signal;

/** Runs stage `i` of the batch on what the previous stage kept (the messages when i is 0). */
async function runStage(b: Batch, i: number): Promise<Message<any>[]> {
  const input = i === 0 ? b.items.map((item, k) => ({ id: String(k), body: item, deliveries: 1, bytes: item.length })) : b.kept[i - 1]!;
  const out = input.length === 0 ? { keep: input } : await b.slot.stages[i]!.run(input, b.ctx);
  b.kept[i] = out.keep;
  return out.keep;
}

/** Wall time and CPU (this process, Postgres, Redis, the host) accumulated per stage. */
class StageClock {
  readonly secs = new Map<OrdersStageName, number>();
  readonly orders = new Map<OrdersStageName, number>();
  readonly cpu = new Map<OrdersStageName, { node: number; postgres: number; redis: number; hostBusy: number; hostTotal: number }>();

  constructor(private readonly redis: RedisConnection) {}

  async time<T>(stage: OrdersStageName, orders: number, fn: () => Promise<T> | T): Promise<T> {
    const node0 = process.cpuUsage();
    const pg0 = postgresCpuSecs();
    const redis0 = await redisCpuSecs(this.redis);
    const host0 = hostCpuTimes();
    const t0 = performance.now();
    const value = await fn();
    const secs = (performance.now() - t0) / 1000;
    const node = process.cpuUsage(node0);
    const pg1 = postgresCpuSecs();
    const redis1 = await redisCpuSecs(this.redis);
    const host1 = hostCpuTimes();
    this.secs.set(stage, (this.secs.get(stage) ?? 0) + secs);
    this.orders.set(stage, (this.orders.get(stage) ?? 0) + orders);
    const c = this.cpu.get(stage) ?? { node: 0, postgres: 0, redis: 0, hostBusy: 0, hostTotal: 0 };
    c.node += (node.user + node.system) / 1e6;
    // Machine-wide sums: a postgres process that exits meanwhile (another client's) takes its
    // CPU time out of the sum, so a delta can come out below zero: counted as zero.
    c.postgres += pg0 === null || pg1 === null ? 0 : Math.max(0, pg1 - pg0);
    c.redis += redis0 === null || redis1 === null ? 0 : Math.max(0, redis1 - redis0);
    if (host0 && host1) {
      c.hostBusy += host1.busy - host0.busy;
      c.hostTotal += host1.total - host0.total;
    }
    this.cpu.set(stage, c);
    return value;
  }

  stage(stage: OrdersStageName): OrdersBenchStage {
    const secs = this.secs.get(stage) ?? 0;
    const orders = this.orders.get(stage) ?? 0;
    const c = this.cpu.get(stage);
    const r2 = (v: number) => Number(v.toFixed(2));
    return {
      stage,
      orders,
      secs: Number(secs.toFixed(3)),
      ordersPerSec: secs > 0 ? Math.round(orders / secs) : 0,
      cpuSecs: c ? { node: r2(c.node), postgres: r2(c.postgres), redis: r2(c.redis) } : null,
      hostBusyPct: c && c.hostTotal > 0 ? Number(((100 * c.hostBusy) / c.hostTotal).toFixed(1)) : null,
    };
  }
}

/** Runs `fn` over the batches, `slots` batches at a time (each slot's batches in turn). */
async function perSlot(batches: readonly Batch[], fn: (b: Batch) => Promise<void>): Promise<void> {
  const bySlot = new Map<Slot, Batch[]>();
  for (const b of batches) bySlot.set(b.slot, [...(bySlot.get(b.slot) ?? []), b]);
  await Promise.all(
    [...bySlot.values()].map(async (list) => {
      for (const b of list) await fn(b);
    }),
  );
}

const STAGES: OrdersStageName[] = ['generate', 'ingest', 'take', 'parse', 'dedup', 'enrich', 'transform', 'stage', 'promote', 'commit', 'refresh'];

export async function runOrdersBenchmark(config: TributaryConfig, options: OrdersBenchOptions = {}): Promise<OrdersBenchRun> {
  const total = options.total ?? 1_000_000;
  const batchSize = options.batchSize ?? config.ordersBatchSize;
  const workers = options.workers ?? config.ordersWorkers;
  const duplicates = options.duplicates ?? 0.05;
  const invalid = options.invalid ?? 0.01;
  const roundBatches = options.roundBatches ?? 5;
  const pipelineTotal = options.pipelineTotal ?? total;
  for (const [name, v, min] of [['total', total, 1], ['batchSize', batchSize, 1], ['workers', workers, 1], ['roundBatches', roundBatches, 1], ['pipelineTotal', pipelineTotal, 0]] as const) {
    if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`orders benchmark ${name} must be an integer >= ${min}, got ${String(v)}`);
  }
  const progress = options.onProgress ?? (() => {});
  const started = new Date();
  const wall0 = performance.now();
  const tag = `bench_orders_${started.getTime()}_${randomBytes(2).toString('hex')}`;
  const keys = orderKeys(tag);
  const pool: PgPool = createPgPool(config.databaseUrl, { max: workers + 3, applicationName: tag });
  pool.on('error', () => {});
  const control = createRedisConnection(config.redisUrl, { name: `tributary:${tag}`, failFast: false });
  const slots: Slot[] = [];
  try {
    await control.connect();
    const machine = await collectMachine(control, pool);
    progress(`workspace: redis prefix ${tag}, schema ${tag}; load average ${machine.loadAvg1}`);
    await migrateOrders(pool, tag);
    await seedReferenceData(pool, tag);
    await analyzeReferenceTables(pool, tag);
    await new LookupCache({ client: control, prefix: tag }).publish(REFERENCE_DATA);
    for (let i = 0; i < workers; i++) {
      const conn = createRedisConnection(config.redisUrl, { name: `tributary:${tag}:${i + 1}`, failFast: false });
      await conn.connect();
      const cache = new LookupCache({ client: conn, prefix: tag });
      const parts = {
        client: conn,
        dedup: new DedupWindow({ client: conn, prefix: tag, windowSeconds: config.dedupWindowS, bucketSeconds: config.dedupBucketS }),
        revenue: new RevenueWindow({ client: conn, prefix: tag, windowMs: config.revenueWindowMin * 60_000 }),
        signals: new OrderSignals({ client: conn, prefix: tag }),
        lookup: (orders: Order[]) => lookupFor(cache, orders),
      };
      slots.push({
        name: `${tag}-${i + 1}`,
        conn,
        queue: new OrderQueue({ client: conn, prefix: tag }),
        stages: ordersStages({
          keys,
          worker: () => parts,
        }),
      });
    }
    const clock = new StageClock(control);

    // 1. Generate and ingest.
    const generator = new OrderGenerator({ duplicates, invalid, seed: 20261122 });
    const texts = await clock.time('generate', total, () => generator.batch(total));
    const made = generator.counts();
    progress(`generate: ${total} orders (${made.duplicates} duplicates, ${made.invalidTotal} invalid) in ${clock.stage('generate').secs} s`);
    const chunk = 10_000;
    await clock.time('ingest', total, () =>
      Promise.all(
        slots.map(async (slot, i) => {
          for (let from = i * chunk; from < total; from += chunk * slots.length) await slot.queue.push(texts.slice(from, from + chunk));
        }),
      ),
    );
    texts.length = 0;
    progress(`ingest: ${clock.stage('ingest').ordersPerSec} orders/s`);

    // 2. Stage by stage, round by round.
    const outcome = { promoted: 0, duplicatesDropped: 0, pgDuplicates: 0, rejected: {} as Partial<Record<RejectReason, number>> };
    let seq = 0;
    let taken = 0;
    for (let round = 1; ; round++) {
      const batches = await clock.time('take', 0, async () => {
        const got: Batch[] = [];
        await Promise.all(
          slots.map(async (slot) => {
            for (let k = 0; k < roundBatches; k++) {
              const items = await slot.queue.take(slot.name, batchSize, 0);
              if (items.length === 0) break;
              const ctx: BatchContext = { consumer: slot.name, signal: never, attempt: 0, state: {} };
              got.push({ slot, id: `${slot.name}:${++seq}`, items, ctx, kept: [], staged: 0, result: null });
            }
          }),
        );
        return got;
      });
      if (batches.length === 0) break;
      const inRound = batches.reduce((n, b) => n + b.items.length, 0);
      taken += inRound;
      clock.orders.set('take', taken);
      // The pipeline's own stages, each timed over the whole round.
      await clock.time('parse', inRound, () => Promise.all(batches.map((b) => runStage(b, 0))));
      const parsed = batches.reduce((n, b) => n + b.kept[0]!.length, 0);
      await clock.time('dedup', parsed, () => perSlot(batches, (b) => runStage(b, 1).then(() => {})));
      const fresh = batches.reduce((n, b) => n + b.kept[1]!.length, 0);
      await clock.time('enrich', fresh, () => perSlot(batches, (b) => runStage(b, 2).then(() => {})));
      await clock.time('transform', fresh, () => Promise.all(batches.map((b) => runStage(b, 3))));
      await Promise.all(batches.map((b) => runStage(b, 4)));
      // The staging sink's two steps, timed apart: COPY into staging, then promote.
      await clock.time('stage', fresh, () =>
        perSlot(batches, async (b) => {
          const st = ordersState(b.ctx);
          if (st.malformed && st.malformed.length > 0) b.malformedRecorded = await recordMalformed(pool, tag, b.id, st.malformed);
          b.staged = st.cols && st.cols.length > 0 ? await stageBatch(pool, tag, b.id, st.cols) : 0;
        }),
      );
      // What the pipeline does every 30 s: keep staging from bloating
      // (timed with staging: it is part of what staging costs).
      if (round > 1) await clock.time('stage', 0, () => vacuumStaging(pool, tag));
      await clock.time('promote', fresh, () =>
        perSlot(batches, async (b) => {
          if (b.staged > 0) b.result = await promote(pool, tag, { batchId: b.id });
        }),
      );
      // The commit as the runner does it: the ack, and every stage's after-commit step.
      await clock.time('commit', inRound, () =>
        perSlot(batches, async (b) => {
          const r = b.result;
          Object.assign(b.ctx.state, {
            batchId: b.id,
            result: { promoted: r?.promoted ?? 0, duplicates: r?.duplicates ?? 0, rejected: r?.rejected ?? {}, rejectedIds: r?.rejectedIds, staged: r?.staged ?? 0, stagedRows: b.staged, malformedRecorded: b.malformedRecorded ?? 0, landedEarlier: false },
          });
          await Promise.all([
            b.slot.queue.ack(b.slot.name, b.items.length),
            ...b.slot.stages.map((st, i) => st.afterCommit?.(b.kept[i] ?? [], b.ctx)),
          ]);
        }),
      );
      for (const b of batches) {
        const st = ordersState(b.ctx);
        outcome.duplicatesDropped += st.duplicates ?? 0;
        // A malformed item already recorded (the same item again) adds no row: a duplicate.
        const malformed = Math.min(st.malformed?.length ?? 0, b.malformedRecorded ?? 0);
        outcome.pgDuplicates += (st.malformed?.length ?? 0) - malformed;
        if (malformed > 0) outcome.rejected.malformed = (outcome.rejected.malformed ?? 0) + malformed;
        if (!b.result) continue;
        outcome.promoted += b.result.promoted;
        outcome.pgDuplicates += b.result.duplicates;
        for (const [reason, n] of Object.entries(b.result.rejected) as [RejectReason, number][]) outcome.rejected[reason] = (outcome.rejected[reason] ?? 0) + n;
      }
      progress(`round ${round}: ${taken}/${total} orders through take → commit`);
    }
    const views = await clock.time('refresh', total, () => refreshViews(pool, tag));
    progress(`refresh: ${views.map((v) => `${v.view} ${v.rows} rows in ${v.durationMs.toFixed(0)} ms`).join(', ')}`);

    const s = quoteIdent(tag);
    const left = await pool.query<{ staging: string; orders: string; rejected: string }>(
      `SELECT (SELECT count(*) FROM ${s}.orders_staging) AS staging, (SELECT count(*) FROM ${s}.orders) AS orders, (SELECT count(*) FROM ${s}.orders_rejected) AS rejected`,
    );
    const queueLeft = await slots[0]!.queue.depth();

    // 3. End to end: the real pipeline drains pipelineTotal more orders.
    let pipeline: OrdersBenchFigures['pipeline'] = null;
    if (pipelineTotal > 0) {
      const more = new OrderGenerator({ duplicates, invalid, seed: 20261123 });
      for (let pushed = 0; pushed < pipelineTotal; pushed += chunk) await slots[0]!.queue.push(more.batch(Math.min(chunk, pipelineTotal - pushed)));
      progress(`end to end: ${pipelineTotal} orders queued; OrdersPipeline with ${workers} ${workers === 1 ? 'worker' : 'workers'} draining them`);
      const p = new OrdersPipeline({
        redisUrl: config.redisUrl,
        databaseUrl: config.databaseUrl,
        schema: tag,
        prefix: tag,
        workers,
        batchSize,
        migrate: false,
        refreshViews: false,
        untilEmpty: true,
        workerPrefix: `${tag}-e2e`,
        dedupWindowSeconds: config.dedupWindowS,
        dedupBucketSeconds: config.dedupBucketS,
      });
      const errors: string[] = [];
      p.on('error', (err) => errors.push(err.message));
      const pg0 = postgresCpuSecs();
      const node0 = process.cpuUsage();
      const t0 = performance.now();
      await p.start();
      await p.done;
      const secs = (performance.now() - t0) / 1000;
      const node = process.cpuUsage(node0);
      const pg1 = postgresCpuSecs();
      await p.close();
      const st = p.stats();
      if (errors.length > 0) throw new Error(`the end-to-end pipeline reported errors: ${errors.slice(0, 3).join('; ')}`);
      pipeline = {
        orders: st.taken,
        workers,
        batchSize,
        secs: Number(secs.toFixed(3)),
        ordersPerSec: Math.round(st.taken / secs),
        promoted: st.promoted,
        duplicatesDropped: st.duplicates,
        pgDuplicates: st.pgDuplicates,
        rejected: st.rejectedTotal,
        retries: st.retries,
        cpuSecs: {
          node: Number(((node.user + node.system) / 1e6).toFixed(2)),
          postgres: pg0 === null || pg1 === null || pg1 < pg0 ? null : Number((pg1 - pg0).toFixed(2)),
        },
      };
      progress(`end to end: ${pipeline.ordersPerSec} orders/s (${pipeline.secs} s, start-up included)`);
    }

    const stages = STAGES.map((st) => clock.stage(st));
    const secsOf = (names: OrdersStageName[]) => names.reduce((sum, n) => sum + (clock.secs.get(n) ?? 0), 0);
    const processingSecs = secsOf(['take', 'parse', 'dedup', 'enrich', 'transform']);
    const overallSecs = secsOf(['ingest', 'take', 'parse', 'dedup', 'enrich', 'transform', 'stage', 'promote', 'commit', 'refresh']);
    const rate = (orders: number, secs: number) => (secs > 0 ? Math.round(orders / secs) : 0);
    const summary = {
      ingestion: clock.stage('ingest').ordersPerSec,
      processing: rate(total, processingSecs),
      staging: clock.stage('stage').ordersPerSec,
      promotion: clock.stage('promote').ordersPerSec,
      overall: rate(total, overallSecs),
    };
    const figures: OrdersBenchFigures = {
      orders: {
        total,
        duplicatesGenerated: made.duplicates,
        invalidGenerated: made.invalidTotal,
        promoted: outcome.promoted,
        duplicatesDropped: outcome.duplicatesDropped,
        pgDuplicates: outcome.pgDuplicates,
        rejected: outcome.rejected,
        rejectedTotal: rejectedTotal(outcome.rejected),
        inOrders: Number(left.rows[0]!.orders),
        inRejected: Number(left.rows[0]!.rejected),
        stagingLeft: Number(left.rows[0]!.staging),
        queueLeft,
      },
      stages,
      summary,
      targets: { ...ORDERS_TARGETS },
      processingSecs: Number(processingSecs.toFixed(3)),
      overallSecs: Number(overallSecs.toFixed(3)),
      views: views.map((v) => ({ view: v.view, rows: v.rows, ms: Number(v.durationMs.toFixed(1)) })),
      pipeline,
    };
    const result = buildResult('orders', {
      at: started,
      machine,
      settings: { total, batchSize, workers, duplicates, invalid, roundBatches, pipelineTotal, dedupWindowS: config.dedupWindowS },
      figures,
      wallSecs: (performance.now() - wall0) / 1000,
    });
    const path = options.write === false ? undefined : writeResult(options.resultsDir ?? defaultResultsDir(), result);
    return { result, path };
  } finally {
    for (const slot of slots) destroyQuietly(slot.conn);
    if (!options.keep) {
      if (control.isOpen) await deleteKeys(control, `${escapeGlob(tag)}:*`).catch(() => 0);
      await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(tag)} CASCADE`).catch(() => {});
    }
    destroyQuietly(control);
    await pool.end().catch(() => {});
  }
}
