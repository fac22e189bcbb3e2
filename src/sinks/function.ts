/**
 * A sink that is the user's function: the runner hands it each batch and acknowledges
 * the batch after the function resolves. A thrown error retries the batch (with the
 * runner's backoff); a message the function rejects with `ctx.reject` goes to the dead
 * letters, and its batch-mates are acknowledged.
 */
import type { BatchContext, Message, Rejected, Sink, WriteResult } from '../core/contracts.js';
import { TributaryError } from '../errors.js';

export interface HandlerContext {
  /** The consumer (worker) handling the batch. */
  consumer: string;
  /** 0 on the first call for this batch; counts up as a thrown error retries it. */
  attempt: number;
  /** Aborted on a forced stop: give up (throw) and the batch is redelivered later. */
  signal: AbortSignal;
  /** Sends one message of the batch to the dead letters instead of acknowledging it. */
  reject(message: string | { id: string }, reason: string | Error): void;
}

export type BatchHandler<T> = (batch: T[], ctx: HandlerContext) => Promise<unknown> | unknown;

/**
 * A sink calling `handler` with each batch, its messages first mapped by `view` (for
 * instance to `{ id, fields, deliveries }`). `handler` must be idempotent or tolerate a
 * redelivery: a crash after it resolved and before the ack hands the batch over again.
 */
export function functionSink<B, T>(handler: BatchHandler<T>, view: (m: Message<B>) => T): Sink<B> {
  if (typeof handler !== 'function') throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['function sink handler', 'must be a function']);
  return {
    async write(batch: Message<B>[], ctx: BatchContext): Promise<WriteResult> {
      const ids = new Set(batch.map((m) => m.id));
      const rejected = new Map<string, Rejected>();
      const items = batch.map(view);
      await handler(items, {
        consumer: ctx.consumer,
        attempt: ctx.attempt,
        signal: ctx.signal,
        reject(message, reason) {
          const id = typeof message === 'string' ? message : message?.id;
          if (typeof id !== 'string' || !ids.has(id)) {
            throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['ctx.reject message', `must be a message of this batch (got ${JSON.stringify(id)})`]);
          }
          const text = reason instanceof Error ? reason.message : String(reason);
          const err = new TributaryError('TRIB_ERR_HANDLER_REJECTED', [id, text]);
          rejected.set(id, { id, code: err.code, error: err.message });
        },
      });
      return { written: batch.length - rejected.size, duplicates: 0, rejected: [...rejected.values()], statements: 0 };
    },
  };
}
