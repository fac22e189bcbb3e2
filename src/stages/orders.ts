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
import type { BatchContext, Message, Stage } from '../core/contracts.js';
import type { DedupWindow } from '../orders/redis/dedup.js';
import type { RevenueWindow } from '../orders/redis/revenue.js';
import { revenueEntries } from '../orders/batch.js';
import { parseOrder, transformBatch, type MalformedOrder } from '../orders/transform.js';
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
      if (kept.length > 0) await dedupFor(ctx).markSeen(kept.map((m) => m.body.order_id));
    },
  };
}

/** The lookups the batch needs, from one cache version (`lookup` may publish an empty cache first). */
export function enrichStage(lookup: (orders: Order[], ctx: BatchContext) => Promise<LookupResult>): Stage<Order, Order> {
  return {
    name: 'enrich',
    server: 'redis',
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
      if (!cols) return;
      const entries = revenueEntries(cols);
      if (entries.length > 0) await revenueFor(ctx).add(entries);
    },
  };
}

