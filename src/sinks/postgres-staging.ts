/**
 * The staging sink: one COPY of the batch into an UNLOGGED staging table, then one
 * transaction that promotes valid rows and records invalid ones with their reason
 * (orders/pg/promote.ts). Content Postgres refuses is isolated by halving; a retry after
 * any failure redoes nothing that committed (the state kept per batch says how far it
 * got). Malformed items set aside by the parse stage are recorded with the batch.
 */
import { randomBytes } from 'node:crypto';
import type { BatchContext, Message, Sink, WriteResult } from '../core/contracts.js';
import { newIsolationState, newStagePromoteState, stageAndPromoteIsolating, type IsolationState, type StagePromoteResult, type StagePromoteState } from '../orders/batch.js';
import { transformBatch } from '../orders/transform.js';
import type { Order } from '../orders/types.js';
import type { PgPool } from '../postgres/pool.js';
import { ordersState } from '../stages/orders.js';

interface StagingState {
  batchId?: string;
  stage?: StagePromoteState;
  isolation?: IsolationState;
  result?: StagePromoteResult;
}

/** What the staging sink reports with each batch (BatchReport.details). */
export interface StagingDetails {
  batchId: string;
  result: StagePromoteResult;
  malformed: number;
  duplicates: number;
  cacheVersion: number | null;
}

export class PostgresStagingSink implements Sink<Order> {
  readonly name = 'stage and promote';
  readonly server = 'postgres' as const;
  readonly writeEmpty = true;
  /** Batch ids are `<consumer>:<run token>:<n>`: recovery drops a dead consumer's staged rows by prefix. */
  private readonly runToken = randomBytes(3).toString('hex');
  private seq = 0;

  /**
   * `prefix`: the Redis key prefix of the queue. With it, each batch's promote carries its
   * worker's fencing epoch (set by the parse stage) and is refused once the worker was
   * fenced (PromoteOptions.fence).
   */
  constructor(
    private readonly pool: PgPool,
    private readonly schema: string,
    private readonly prefix?: string,
    /** A promote was refused by the worker's fence (called before the runner acknowledges the batch). */
    private readonly onFenced?: (consumer: string, fenced: { epoch: number; current: number }) => void,
  ) {}

  async write(batch: Message<Order>[], ctx: BatchContext): Promise<WriteResult> {
    const orders = ordersState(ctx);
    const st = ctx.state as StagingState;
    st.batchId ??= `${ctx.consumer}:${this.runToken}:${++this.seq}`;
    st.stage ??= newStagePromoteState();
    st.isolation ??= newIsolationState();
    const list = batch.map((m) => m.body);
    const cols = orders.cols ?? transformBatch(list, orders.lookup ?? { version: 0, products: new Map(), currencies: new Map(), zipCodes: new Map() });
    const epoch = orders.fenceEpoch;
    const fence = this.prefix !== undefined && epoch !== undefined ? { prefix: this.prefix, worker: ctx.consumer, epoch } : undefined;
    const result = await stageAndPromoteIsolating(this.pool, this.schema, st.batchId, cols, list, orders.malformed ?? [], st.stage, st.isolation, fence);
    st.result = result;
    if (result.fenced) this.onFenced?.(ctx.consumer, result.fenced);
    const details: StagingDetails = {
      batchId: st.batchId,
      result,
      malformed: orders.malformed?.length ?? 0,
      duplicates: orders.duplicates ?? 0,
      cacheVersion: list.length === 0 ? null : (orders.lookup?.version ?? null),
    };
    return { written: result.promoted, duplicates: result.duplicates, rejected: [], statements: 2, details: details as unknown as Record<string, unknown> };
  }
}
