/**
 * The Postgres half of one batch of orders, as plain functions over explicit
 * dependencies: stage and promote (safe to repeat after any failure), poison isolation,
 * and the lookups and revenue entries the stages (src/stages/orders.ts) use. The
 * acknowledgement is the runner's, after the promote committed.
 */
import { isRowContentError, quoteIdent, type PgPool } from '../postgres/pool.js';
import { isolateByHalving, type Halving } from '../sinks/isolate.js';
import { promote, recordMalformed, type WorkerFence } from './pg/promote.js';
import { stageBatch } from './pg/staging.js';
import type { LookupCache } from './redis/cache.js';
import type { RevenueEntry } from './redis/revenue.js';
import type { MalformedOrder } from './transform.js';
import type { LookupResult, Order, PromoteResult, RejectReason, StagingColumns } from './types.js';

/** Throughput slots are this long (ms); `orders stats` sums the last few. */
export const THROUGHPUT_SLOT_MS = 10_000;
/** A throughput slot's counter lives this long (s). */
export const THROUGHPUT_TTL_S = 180;

/** The lookup cache entries these orders name, from one cache version: one round trip. */
export function lookupFor(cache: LookupCache, orders: readonly Order[]): Promise<LookupResult> {
  const products = new Set<string>();
  const currencies = new Set<string>();
  const zips = new Set<string>();
  for (const o of orders) {
    products.add(o.product_id);
    currencies.add(o.currency);
    zips.add(o.zip_code);
  }
  return cache.lookup(products, currencies, zips);
}

/** What staging and promoting one batch did. */
export interface StagePromoteResult extends PromoteResult {
  /** Rows staged by the COPY that was promoted (0 when the batch was empty). */
  stagedRows: number;
  /** Malformed items recorded as rejects. */
  malformedRecorded: number;
  /**
   * True when an earlier attempt's promote had committed (its reply was lost) and the
   * batch's rows were found in `orders` / `orders_rejected`: the counts are then zeros.
   */
  landedEarlier: boolean;
  stageMs: number;
  promoteMs: number;
}

/** Where one stage-and-promote of a batch stands between attempts. */
export interface StagePromoteState {
  /** The malformed items are recorded. */
  malformedRecorded: boolean;
  /** A COPY of this batch may have committed (an attempt got that far): promote it before staging again. */
  maybeStaged: boolean;
  /** An attempt to record the malformed items failed, possibly after its commit: look before recording again. */
  malformedMaybeRecorded?: boolean;
}

export function newStagePromoteState(): StagePromoteState {
  return { malformedRecorded: false, maybeStaged: false, malformedMaybeRecorded: false };
}

/**
 * True when malformed items of this batch are in `orders_rejected` (rows with `raw`: they
 * are written by one statement, so all or none). Reads without an index on batch_id:
 * used only after a failure left that unknown.
 */
export async function malformedLanded(pool: PgPool, schema: string, batchId: string): Promise<boolean> {
  const res = await pool.query<{ landed: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ${quoteIdent(schema)}.orders_rejected WHERE batch_id = $1 AND raw IS NOT NULL) AS landed`,
    [batchId],
  );
  return res.rows[0]!.landed;
}

/** recordMalformed, not repeated when an earlier attempt's insert committed but its reply was lost. */
async function recordMalformedOnce(pool: PgPool, schema: string, batchId: string, items: readonly MalformedOrder[], state: StagePromoteState): Promise<number> {
  if (state.malformedMaybeRecorded && (await malformedLanded(pool, schema, batchId))) return 0;
  state.malformedMaybeRecorded = true;
  return recordMalformed(pool, schema, batchId, items);
}

/** Thrown when staged rows were gone at promote (a Postgres restart empties the UNLOGGED staging table): the batch is staged again. */
export class StagedRowsVanished extends Error {
  constructor(
    readonly batchId: string,
    readonly expected: number,
    readonly found: number,
  ) {
    super(`batch ${batchId}: ${expected} rows staged, ${found} found at promote (staging emptied, e.g. by a Postgres restart); staging again`);
    this.name = 'StagedRowsVanished';
  }
}

/**
 * True when rows of this batch are in `orders` or (staged and rejected) in
 * `orders_rejected`: an earlier promote of it committed. Reads without an index on
 * batch_id: used only after a failure left that unknown.
 */
export async function batchLanded(pool: PgPool, schema: string, batchId: string): Promise<boolean> {
  const s = quoteIdent(schema);
  const res = await pool.query<{ landed: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ${s}.orders WHERE batch_id = $1)
         OR EXISTS (SELECT 1 FROM ${s}.orders_rejected WHERE batch_id = $1 AND raw IS NULL) AS landed`,
    [batchId],
  );
  return res.rows[0]!.landed;
}

/**
 * Stages the batch (one COPY) and promotes it (one transaction), recording malformed
 * items first. Safe to call again with the same `state` after it threw, whatever the
 * failure left behind:
 * - a COPY that may have committed is promoted first (`maybeStaged`), so its rows are
 *   neither lost nor staged twice;
 * - a promote whose commit's reply was lost is recognised (`batchLanded`) and not redone;
 * - rows that vanished from staging (a Postgres restart empties the UNLOGGED table)
 *   make it throw StagedRowsVanished, and the next call stages them again.
 * Returns once the batch's orders are committed in `orders` / `orders_rejected`.
 */
export async function stageAndPromote(
  pool: PgPool,
  schema: string,
  batchId: string,
  cols: StagingColumns,
  malformed: readonly MalformedOrder[],
  state: StagePromoteState,
  fence?: WorkerFence,
): Promise<StagePromoteResult> {
  let stageMs = 0;
  let promoteMs = 0;
  let malformedRecorded = 0;
  const t0 = performance.now();
  if (!state.malformedRecorded && malformed.length > 0) {
    malformedRecorded = await recordMalformedOnce(pool, schema, batchId, malformed, state);
  }
  state.malformedRecorded = true;
  if (cols.length === 0) {
    stageMs = performance.now() - t0;
    return { promoted: 0, duplicates: 0, rejected: {}, staged: 0, stagedRows: 0, malformedRecorded, landedEarlier: false, stageMs, promoteMs };
  }
  if (state.maybeStaged) {
    const t1 = performance.now();
    const leftover = await promote(pool, schema, { batchId, fence });
    promoteMs += performance.now() - t1;
    if (leftover.fenced) {
      state.maybeStaged = false;
      return { ...leftover, stagedRows: 0, malformedRecorded, landedEarlier: false, stageMs, promoteMs };
    }
    if (leftover.staged === cols.length) {
      state.maybeStaged = false;
      return { ...leftover, stagedRows: leftover.staged, malformedRecorded, landedEarlier: false, stageMs, promoteMs };
    }
    if (leftover.staged === 0 && (await batchLanded(pool, schema, batchId))) {
      state.maybeStaged = false;
      return { promoted: 0, duplicates: 0, rejected: {}, staged: 0, stagedRows: 0, malformedRecorded, landedEarlier: true, stageMs, promoteMs };
    }
    // Nothing (or only part) was there: stage the whole batch again. Rows already in
    // `orders` are skipped by its primary key.
  }
  state.maybeStaged = true;
  const t2 = performance.now();
  const stagedRows = await stageBatch(pool, schema, batchId, cols);
  stageMs += performance.now() - t2;
  const t3 = performance.now();
  const result = await promote(pool, schema, { batchId, fence });
  promoteMs += performance.now() - t3;
  if (result.fenced) {
    // The worker was fenced (stalled past staleMs; its orders went back to the queue and
    // another worker promotes them): refused, its staged rows dropped, nothing to retry.
    state.maybeStaged = false;
    return { ...result, stagedRows, malformedRecorded, landedEarlier: false, stageMs, promoteMs };
  }
  if (result.staged !== stagedRows) {
    // Part of the batch may just have been promoted (committed): a retry that promoted
    // the leftovers would find none, see batchLanded and ack the vanished part unsaved.
    // Stage the whole batch again instead; the orders primary key absorbs what landed.
    state.maybeStaged = false;
    throw new StagedRowsVanished(batchId, stagedRows, result.staged);
  }
  state.maybeStaged = false;
  return { ...result, stagedRows, malformedRecorded, landedEarlier: false, stageMs, promoteMs };
}

/** Rows start..end-1 of a batch's columns. Pure. */
export function sliceColumns(cols: StagingColumns, start: number, end: number): StagingColumns {
  const out = { length: Math.max(0, Math.min(end, cols.length) - start) } as Record<string, unknown>;
  for (const [k, v] of Object.entries(cols)) if (Array.isArray(v)) out[k] = v.slice(start, end);
  return out as unknown as StagingColumns;
}

/** Progress of isolating one batch's bad rows, kept between attempts so a retry redoes nothing that committed. */
export interface IsolationState {
  /** The whole batch failed on its content: isolate (do not stage it whole again). */
  active: boolean;
  /** Sub-batch id → its finished result. */
  done: Map<string, StagePromoteResult>;
  /** Sub-batch id → its stage-and-promote state. */
  states: Map<string, StagePromoteState>;
}

export function newIsolationState(): IsolationState {
  return { active: false, done: new Map(), states: new Map() };
}

function addResults(a: StagePromoteResult, b: StagePromoteResult): StagePromoteResult {
  const rejected = { ...a.rejected };
  for (const [r, n] of Object.entries(b.rejected) as [RejectReason, number][]) rejected[r] = (rejected[r] ?? 0) + n;
  const rejectedIds = [...(a.rejectedIds ?? []), ...(b.rejectedIds ?? [])];
  const fenced = a.fenced ?? b.fenced;
  return {
    ...(rejectedIds.length > 0 ? { rejectedIds } : {}),
    ...(fenced ? { fenced } : {}),
    promoted: a.promoted + b.promoted,
    duplicates: a.duplicates + b.duplicates,
    rejected,
    staged: a.staged + b.staged,
    stagedRows: a.stagedRows + b.stagedRows,
    malformedRecorded: a.malformedRecorded + b.malformedRecorded,
    landedEarlier: a.landedEarlier && b.landedEarlier,
    stageMs: a.stageMs + b.stageMs,
    promoteMs: a.promoteMs + b.promoteMs,
  };
}

/** JSON text with every non-ASCII character escaped: Postgres stores it whatever the order holds. Pure. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * stageAndPromote, except that a failure on the batch's content (isRowContentError: a
 * value Postgres refuses, e.g. an index entry too large, SQLSTATE 54000) is not retried:
 * the batch is split in halves (sub-batch ids `<batchId>.0` / `.1`, recursively) until the
 * refused orders stand alone; each is recorded in `orders_rejected` as 'malformed' with
 * the Postgres message, and every other order lands. `orders[i]` is the order of row i of
 * `cols`. Safe to call again with the same `state` / `isolation` after it threw.
 */
export async function stageAndPromoteIsolating(
  pool: PgPool,
  schema: string,
  batchId: string,
  cols: StagingColumns,
  orders: readonly Order[],
  malformed: readonly MalformedOrder[],
  state: StagePromoteState,
  isolation: IsolationState,
  fence?: WorkerFence,
): Promise<StagePromoteResult> {
  if (!isolation.active) {
    try {
      return await stageAndPromote(pool, schema, batchId, cols, malformed, state, fence);
    } catch (err) {
      if (!isRowContentError(err) || !state.malformedRecorded) throw err;
      isolation.active = true;
    }
  }
  // The failed promote rolled back: drop the batch's staged rows, then promote it in parts.
  await dropStaged(pool, schema, batchId);
  state.maybeStaged = false;
  const empty: StagePromoteResult = { promoted: 0, duplicates: 0, rejected: {}, staged: 0, stagedRows: 0, malformedRecorded: 0, landedEarlier: false, stageMs: 0, promoteMs: 0 };
  type Part = { cols: StagingColumns; orders: readonly Order[] };
  const halving: Halving<Part, StagePromoteResult> = {
    done: isolation.done,
    attempt: async (part, id) => {
      if (part.cols.length === 0) return empty;
      let sub = isolation.states.get(id);
      if (!sub) isolation.states.set(id, (sub = { malformedRecorded: true, maybeStaged: false, malformedMaybeRecorded: false }));
      return stageAndPromote(pool, schema, id, part.cols, [], sub, fence);
    },
    isContentError: isRowContentError,
    size: (part) => part.cols.length,
    split: (part) => {
      const half = Math.ceil(part.cols.length / 2);
      return [
        { cols: sliceColumns(part.cols, 0, half), orders: part.orders.slice(0, half) },
        { cols: sliceColumns(part.cols, half, part.cols.length), orders: part.orders.slice(half) },
      ];
    },
    refused: async (_part, id) => {
      await dropStaged(pool, schema, id);
      const sub = isolation.states.get(id);
      if (sub) sub.maybeStaged = false;
    },
    alone: async (part, id, err) => {
      const message = `Postgres refused the order: ${(err as Error).message} (SQLSTATE ${String((err as { code?: unknown }).code)})`;
      await recordMalformedOnce(pool, schema, id, [{ raw: asciiJson(part.orders[0]), error: message }], isolation.states.get(id)!);
      return { ...empty, staged: 1, stagedRows: 1, rejected: { malformed: 1 }, rejectedIds: [part.orders[0]!.order_id] };
    },
    combine: addResults,
  };
  const [a, b] = halving.split({ cols, orders });
  const out = addResults(await isolateByHalving(a, `${batchId}.0`, halving), await isolateByHalving(b, `${batchId}.1`, halving));
  // The malformed items were recorded by the first call, before staging.
  return { ...out, landedEarlier: false };
}

/** Drops a batch's (or sub-batch's) staged rows. */
function dropStaged(pool: PgPool, schema: string, batchId: string): Promise<unknown> {
  return pool.query(`DELETE FROM ${quoteIdent(schema)}.orders_staging WHERE batch_id = $1`, [batchId]);
}

/** The orders of a batch that count towards windowed revenue: valid by the cache's data. Pure. */
export function revenueEntries(cols: StagingColumns): RevenueEntry[] {
  const out: RevenueEntry[] = [];
  for (let i = 0; i < cols.length; i++) {
    const ts = cols.order_ts[i];
    const total = cols.total_usd[i];
    if (ts === null || ts === undefined || total === null || total === undefined) continue;
    if (cols.rate_to_usd[i] === null || cols.shipping_zone[i] === null || !(cols.quantity[i]! > 0)) continue;
    out.push({ orderId: cols.order_id[i]!, timestampMs: Date.parse(ts), totalUsd: total });
  }
  return out;
}

/** Total rejects of a promote result. */
export function rejectedTotal(rejected: Partial<Record<RejectReason, number>>): number {
  let n = 0;
  for (const v of Object.values(rejected)) n += v ?? 0;
  return n;
}
