/**
 * The orders pipeline's stages, as plain functions over the batch:
 *
 *   parse (malformed items are set aside for the rejects table)
 *   → dedup (order_ids seen in the window, or repeated in the batch, are dropped; marked
 *     seen only after the commit)
 *   → enrich (one lookup-cache version for the whole batch, one round trip)
 *   → transform (columnar: the staging rows)
 *
 * What is known of the whole batch (malformed items, the lookup, the columns) travels in
 * the batch state to the staging sink.
 */
import { stage, type BatchContext, type Message, type Stage } from '../core/contracts.js';
import { asError } from '../core/retry.js';
import { rejectedTotal, THROUGHPUT_SLOT_MS, THROUGHPUT_TTL_S } from '../orders/batch.js';
import type { orderKeys } from '../orders/redis/keys.js';
import type { OrderSignals } from '../orders/redis/signals.js';
import type { RedisConnection } from '../redis/client.js';
import type { StagingDetails } from '../sinks/postgres-staging.js';
import type { DedupWindow } from '../orders/redis/dedup.js';
import type { RevenueWindow } from '../orders/redis/revenue.js';
import { revenueEntries } from '../orders/batch.js';
import { parseOrder, transformBatch, type MalformedOrder } from '../orders/transform.js';
import { fenceEpochOf } from '../sources/redis-list.js';
import type { LookupResult, Order, StagingColumns } from '../orders/types.js';

/** What the orders stages learn about a batch (kept in BatchContext.state). */
export interface OrdersBatchState {
  /** Items taken (the whole batch). */
  taken?: number;
  malformed?: MalformedOrder[];
  /** Orders the dedup window dropped. */
  duplicates?: number;
  lookup?: LookupResult;
  cols?: StagingColumns;
  /** The fencing epoch the batch was taken under (list items only): the promote carries it. */
  fenceEpoch?: number;
}

/** The sink's result, once it wrote: fenced (refused), and the order_ids it rejected. */
function written(ctx: BatchContext): { fenced: boolean; rejected: ReadonlySet<string> } {
  const r = (ctx.state as { result?: StagingDetails['result'] }).result;
  return { fenced: r?.fenced !== undefined, rejected: new Set(r?.rejectedIds ?? []) };
}

export function ordersState(ctx: BatchContext): OrdersBatchState {
  return ctx.state as OrdersBatchState;
}

/** A parsed order, carried by the message it came from (no copy of its ID or counts). */
class Parsed implements Message<Order> {
  constructor(
    private readonly from: Message<string>,
    readonly body: Order,
  ) {}

  get id(): string {
    return this.from.id;
  }

  get deliveries(): number {
    return this.from.deliveries;
  }

  get bytes(): number {
    return this.from.bytes;
  }
}

const EMPTY_LOOKUP: LookupResult = { version: 0, products: new Map(), currencies: new Map(), zipCodes: new Map() };

/** Items (JSON text) → orders; items that do not parse are kept aside as malformed. */
export function parseOrdersStage(): Stage<string, Order> {
  return {
    name: 'parse',
    run(batch, ctx) {
      const keep: Message<Order>[] = [];
      const malformed: MalformedOrder[] = [];
      for (const m of batch) {
        const parsed = parseOrder(m.body);
        if ('error' in parsed) malformed.push({ raw: m.body, error: parsed.error });
        else keep.push(new Parsed(m, parsed));
      }
      const state = ordersState(ctx);
      state.malformed = malformed;
      state.taken = batch.length;
      state.fenceEpoch = fenceEpochOf(batch[0]);
      return { keep };
    },
  };
}

/** Keeps orders not seen in the window and first of their order_id in the batch; marks them seen after the commit. */
export function dedupStage(dedupFor: (ctx: BatchContext) => DedupWindow): Stage<Order, Order> {
  return {
    name: 'dedup',
    server: 'redis',
    async run(batch, ctx) {
      const ids = new Array<string>(batch.length);
      for (let i = 0; i < batch.length; i++) ids[i] = batch[i]!.body.order_id;
      const fresh = await dedupFor(ctx).filterUnseen(ids);
      const keep = batch.filter((_, i) => fresh[i]);
      ordersState(ctx).duplicates = batch.length - keep.length;
      return { keep };
    },
    async afterCommit(kept, ctx) {
      // A fenced batch was not promoted (another worker has its orders); a rejected order
      // is not seen: its corrected resend must pass the window.
      const w = written(ctx);
      if (w.fenced) return;
      const ids = kept.map((m) => m.body.order_id).filter((id) => !w.rejected.has(id));
      if (ids.length > 0) await dedupFor(ctx).markSeen(ids);
    },
  };
}

/** The lookups the batch needs, from one cache version (`lookup` may publish an empty cache first). */
export function enrichStage(lookup: (orders: Order[], ctx: BatchContext) => Promise<LookupResult>): Stage<Order, Order> {
  return {
    name: 'enrich',
    server: 'redis',
    // An empty or expired cache, or reference data not loaded yet, is waited out (each
    // attempt reported as a retry), never a reason to stop a worker.
    retryable: () => true,
    async run(batch, ctx) {
      ordersState(ctx).lookup = batch.length === 0 ? EMPTY_LOOKUP : await lookup(batch.map((m) => m.body), ctx);
      return { keep: batch };
    },
  };
}

/** The columnar transform into staging rows; after the commit, the valid orders join the revenue window. */
export function transformStage(revenueFor: (ctx: BatchContext) => RevenueWindow): Stage<Order, Order> {
  return {
    name: 'transform',
    run(batch, ctx) {
      const state = ordersState(ctx);
      state.cols = transformBatch(
        batch.map((m) => m.body),
        state.lookup ?? EMPTY_LOOKUP,
      );
      return { keep: batch };
    },
    async afterCommit(_kept, ctx) {
      const cols = ordersState(ctx).cols;
      const w = written(ctx);
      if (!cols || w.fenced) return;
      const entries = w.rejected.size === 0 ? revenueEntries(cols) : revenueEntries(cols).filter((e) => !w.rejected.has(e.orderId));
      if (entries.length > 0) await revenueFor(ctx).add(entries);
    },
  };
}

/** What the orders stages use for one worker: its own connection and the Redis parts on it. */
export interface OrdersWorkerParts {
  /** The connection for the worker's commands (non-blocking; never the one its takes block). */
  client: RedisConnection;
  dedup: DedupWindow;
  revenue: RevenueWindow;
  signals: OrderSignals;
  /** The lookups of a batch's orders (one cache version). */
  lookup: (orders: Order[]) => Promise<LookupResult>;
}

/** What the orders stages need. */
export interface OrdersStageParts {
  keys: ReturnType<typeof orderKeys>;
  /** The parts of the worker (consumer) processing a batch. */
  worker: (consumer: string) => OrdersWorkerParts;
  /** A batch promoted rows (the views are now stale). */
  onPromoted?: () => void;
  /** A completion signal could not be published (a hint only: nothing is retried). */
  onError?: (err: Error) => void;
}

/**
 * The orders pipeline's stages, in order: parse, dedup, enrich, transform, and announce
 * (after the commit: the counters `orders stats` reads and the completion signal). The
 * pipeline and the benchmark run these same objects. Each worker's Redis commands go on
 * its own connection: on one shared connection, the big commands of one batch (a
 * 5,000-id dedup check, the revenue ZADD) queue in front of every other worker's.
 */
export function ordersStages(p: OrdersStageParts): Stage<any, any>[] {
  const announce = stage<Order, Order>('announce', (batch) => ({ keep: batch }));
  announce.afterCommit = async (_kept, ctx) => {
    const w = p.worker(ctx.consumer);
    const details = ctx.state as { result?: StagingDetails['result']; batchId?: string };
    // A fenced batch counts nowhere: the worker that now holds its orders counts them.
    if (details.result?.fenced) return;
    await countBatch(w.client, p.keys, ctx.state);
    const r = details.result;
    if (r && (r.stagedRows > 0 || r.landedEarlier)) {
      p.onPromoted?.();
      // The signal is a hint (pub/sub keeps nothing): a failure only delays a refresh.
      await w.signals
        .publishPromoted({ batchId: details.batchId ?? '', worker: ctx.consumer, promoted: r.promoted, duplicates: r.duplicates, rejected: rejectedTotal(r.rejected) })
        .catch((err: unknown) => p.onError?.(asError(err)));
    }
  };
  return [
    parseOrdersStage(),
    dedupStage((ctx) => p.worker(ctx.consumer).dedup),
    enrichStage((orders, ctx) => p.worker(ctx.consumer).lookup(orders)),
    transformStage((ctx) => p.worker(ctx.consumer).revenue),
    announce,
  ];
}

/** Counts a committed batch in the stats hash and its throughput slot (what `orders stats` reads). */
async function countBatch(client: RedisConnection, keys: ReturnType<typeof orderKeys>, state: Record<string, unknown>): Promise<void> {
  const st = state as OrdersBatchState;
  const r = (state as { result?: StagingDetails['result'] }).result;
  const taken = st.taken ?? 0;
  const now = Date.now();
  const slotNumber = Math.floor(now / THROUGHPUT_SLOT_MS);
  const slot = keys.throughput(slotNumber);
  // Malformed items recorded now (one already in orders_rejected, the same item again, is not a new reject).
  const malformed = Math.min(st.malformed?.length ?? 0, r?.malformedRecorded ?? Infinity);
  const multi = client.multi();
  multi.addCommand(['HINCRBY', keys.stats, 'batches', '1']);
  multi.addCommand(['HINCRBY', keys.stats, 'taken', String(taken)]);
  multi.addCommand(['HINCRBY', keys.stats, 'promoted', String(r?.promoted ?? 0)]);
  multi.addCommand(['HINCRBY', keys.stats, 'duplicates', String(st.duplicates ?? 0)]);
  multi.addCommand(['HINCRBY', keys.stats, 'pg_duplicates', String((r?.duplicates ?? 0) + (st.malformed?.length ?? 0) - malformed)]);
  multi.addCommand(['HINCRBY', keys.stats, 'rejected', String(rejectedTotal(r?.rejected ?? {}) + malformed)]);
  multi.addCommand(['HSET', keys.stats, 'last_batch_at', String(now)]);
  multi.addCommand(['INCRBY', slot, String(taken)]);
  multi.addCommand(['EXPIRE', slot, String(THROUGHPUT_TTL_S)]);
  multi.addCommand(['SET', keys.throughputFirst(slotNumber), String(now), 'NX', 'EX', String(THROUGHPUT_TTL_S)]);
  await multi.execAsPipeline();
}
