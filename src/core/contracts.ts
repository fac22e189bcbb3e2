/**
 * The parts every pipeline is wired from: a Source that hands out messages and takes
 * them back (ack, keep-alive, recovery), Stages that transform or reject messages, a
 * Sink that writes a batch atomically, and a DeadLetterStore. The runner (runner.ts)
 * is the one loop that drives them; it knows nothing of Redis or Postgres.
 *
 *   Source ──▶ batch ──▶ Stages ──▶ Sink ──▶ ack
 *     │ keep-alive of held work         │ rejected ──▶ dead letters
 *     └── recovery of dead consumers' work
 */
import type { ErrorCode } from '../errors.js';

/** Which server an operation talks to: failures are reported per server (serverDown / serverUp). */
export type ServerName = 'redis' | 'postgres';

/**
 * One unit of work. `body` is whatever the source (or the last stage) made of it: for a
 * stream it may stay the bytes Redis sent, so a sink can COPY them without decoding.
 */
export interface Message<T> {
  /** The source's ID of the message (a stream entry ID, a list position, ...). */
  readonly id: string;
  readonly body: T;
  /** Times the source has handed this message out (1 on a first read). */
  deliveries: number;
  /** Bytes the message occupies (what the byte caps count). */
  readonly bytes: number;
  /** When the producer made it (ms since epoch), if known: end-to-end latency. */
  producedAt?: number | null;
}

/** A message a stage or a sink refused, with the coded reason: it goes to the dead letters. */
export interface Rejected {
  /** The ID of the message (as the source gave it). */
  id: string;
  code: ErrorCode;
  error: string;
}

/** What recovery found: messages to process now, and IDs the source found gone (trimmed). */
export interface Recovered<T> {
  messages: Message<T>[];
  /** IDs that were held but whose content no longer exists: cleared, nothing to process. */
  deleted: string[];
  /** More may follow: call again (with `cursor`, for reclaim). */
  more: boolean;
  /** Where the next reclaim call continues. */
  cursor?: string;
  /** The consumer's own held work should be resumed (it holds entries the source could not return). */
  recheckOwn?: boolean;
}

/**
 * Where messages come from. The only place that knows the commands of its server.
 * Every method may throw on a server failure: the runner retries it with backoff.
 * Each consumer is one worker of the runner; the source keeps whatever per-consumer
 * connection a blocking read needs.
 */
export interface Source<T> {
  /** Which server the source talks to (for health and retries). */
  readonly server: ServerName;
  /** Connect and prepare (create the consumer group, ...). Retried until it succeeds unless it throws a non-retryable TributaryError. */
  start(signal: AbortSignal): Promise<void>;
  /**
   * Up to `count` new messages for `consumer`, waiting at most `blockMs` when there are
   * none (undefined: do not wait). Throws ReadAgain when the read should simply be tried
   * again (the failure was already reported), RecoverFirst when the consumer's pending
   * work must be finished first.
   */
  read(consumer: string, count: number, blockMs: number | undefined, signal: AbortSignal): Promise<Message<T>[]>;
  /** The messages are done (written, or skipped on purpose): forget them. Only after the sink committed. */
  ack(consumer: string, messages: readonly Message<T>[]): Promise<void>;
  /** The consumer still works on these: do not let them be recovered by anyone else. */
  keepAlive(consumer: string, messages: readonly Message<T>[]): Promise<void>;
  /**
   * The consumer's own unfinished work from an earlier run under the same name (up to
   * `max` messages at a time), counted as one more delivery; called until `more` is false.
   */
  resume(consumer: string, max: number, after: string | undefined): Promise<Recovered<T>>;
  /** Work dead or stalled consumers left (idle at least `minIdleMs`), taken over by `consumer`. */
  reclaim?(consumer: string, max: number, minIdleMs: number, cursor: string): Promise<Recovered<T>>;
  /**
   * Removes consumers that hold nothing and have been idle at least `minIdleMs` (names
   * left by processes that are gone), except `keep`; never one holding messages. Returns
   * the names removed. Called by the reclaim loop.
   */
  forgetIdle?(minIdleMs: number, keep: readonly string[]): Promise<string[]>;
  /** Moves rejected messages to the source's dead letters, which also acknowledges them. */
  deadLetter(consumer: string, letters: readonly DeadLetter<T>[]): Promise<void>;
  /** Releases a blocked read of the consumer (it then returns what it has). */
  interrupt(consumer: string): Promise<void>;
  /** The consumer is done: close what the source kept for it. */
  release(consumer: string): Promise<void>;
  /** Text fields of a message, for the dead letters and logs. */
  describe(message: Message<T>): Record<string, string>;
  close(): Promise<void>;
}

/** Handed to stages and sinks with each batch. */
export interface BatchContext {
  /** The consumer (worker) processing the batch. */
  consumer: string;
  /** Aborted on a forced stop: give up and throw. */
  signal: AbortSignal;
  /** Attempt number of this call (0 first; retries of a failed call count up). */
  attempt: number;
  /** Kept for the batch across retries: a sink may note how far it got. */
  state: Record<string, unknown>;
}

export interface StageResult<Out> {
  /** Messages that go on (in order). Messages in neither list are skipped: acknowledged, not written. */
  keep: Message<Out>[];
  rejected?: Rejected[];
}

/** A step between source and sink: validate, filter, map, dedup, enrich, transform. */
export interface Stage<In = unknown, Out = unknown> {
  readonly name: string;
  /** The server the stage talks to, if any (its failures are reported as that server's). */
  readonly server?: ServerName;
  /** Which failures are worth retrying (default: all but non-retryable coded errors, which stop the worker). */
  readonly retryable?: (error: unknown) => boolean;
  run(batch: Message<In>[], ctx: BatchContext): Promise<StageResult<Out>> | StageResult<Out>;
  /**
   * Called once the sink committed the batch, with the messages this stage kept (maybe
   * none), along with the acknowledgement (e.g. a dedup window marks their keys seen).
   * Must be safe to repeat: a failure retries it; a crash before it ran skips it.
   */
  afterCommit?(kept: Message<Out>[], ctx: BatchContext): Promise<void>;
}

export interface WriteResult {
  /** Messages newly written. */
  written: number;
  /** Messages already written before (a redelivery): skipped. */
  duplicates: number;
  /** Messages refused for their content: they go to the dead letters; the rest are written. */
  rejected: Rejected[];
  /** Statements spent (more than 1 when a bad row forced a split). */
  statements?: number;
  /** Anything the sink wants reported with the batch (its own counts). */
  details?: Record<string, unknown>;
}

/**
 * Where batches go. `write` is atomic and idempotent: when it resolves the messages
 * are durable (or rejected); when it throws nothing is half-known and the runner
 * retries the same batch.
 */
export interface Sink<T> {
  /** Names the write in reports (default 'write'). */
  readonly name?: string;
  readonly server?: ServerName;
  /** Call write even when the stages left no message (the batch state may hold something to record). */
  readonly writeEmpty?: boolean;
  /**
   * `write` may be called on any part of a batch, each part with its own state (a copy of
   * the batch's state as the stages left it). Then a write that fails for a reason
   * retrying cannot cure — a statement too large for Postgres or for a JS string, a
   * timeout of a large batch (core/faults.ts, isTooLargeToWrite) — is split in halves by
   * the runner instead of retried forever, and a single message that still fails is
   * dead-lettered with its reason (TRIB_ERR_ENTRY_TOO_LARGE, TRIB_ERR_ENTRY_WRITE_TIMEOUT).
   */
  readonly splittable?: boolean;
  write(batch: Message<T>[], ctx: BatchContext): Promise<WriteResult>;
  close?(): Promise<void>;
}

/** A message on its way to the dead letters. */
export interface DeadLetter<T = unknown> {
  message: Message<T>;
  code: ErrorCode;
  error: string;
  /**
   * Set for a message too large to copy as text (TRIB_ERR_ENTRY_TOO_LARGE): the store
   * records this reason in place of its fields (never decoding them), and the source
   * keeps the message's content as the bytes it has.
   */
  fieldsOmitted?: string;
}

/** Keeps dead letters durably (a table) before the source lets go of them. Idempotent. */
export interface DeadLetterStore {
  readonly server?: ServerName;
  /** `consumer`: the worker whose batch they come from (a store per partition picks by it). */
  record(letters: readonly DeadLetter[], describe: (m: Message<unknown>) => Record<string, string>, consumer: string): Promise<void>;
}

/** Thrown by Source.read when the read should just be tried again (the cause was already reported). */
export class ReadAgain extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ReadAgain';
  }
}

/**
 * Thrown by Source.read when the consumer must first finish its pending work before it
 * reads anything new (a partition this process just took over: the previous owner's
 * entries come first, in order). The worker writes what it holds, then resumes (the
 * source's `resume`, until `more` is false: one more delivery each, past maxDeliveries
 * dead-lettered) and reads again.
 */
export class RecoverFirst extends ReadAgain {
  constructor(reason: string) {
    super(reason);
    this.name = 'RecoverFirst';
  }
}

/** A stage from a plain function. */
export function stage<In, Out>(name: string, run: Stage<In, Out>['run'], server?: ServerName): Stage<In, Out> {
  return { name, run, server };
}
