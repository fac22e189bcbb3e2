/**
 * The runner: the one worker loop under every pipeline. N workers (consumers) each read
 * from the source, batch by the batch policy, run the stages, write to the sink, send
 * what was rejected to the dead letters and acknowledge the rest — only after the sink
 * committed. Around them: recovery of dead consumers' work, keep-alive of everything a
 * worker holds, one retry policy, server health, a cap on held messages and bytes, and
 * an idempotent graceful or forced close.
 *
 *   const runner = new Runner({ source, stages, sink, consumers: ['w-1', 'w-2'], batch: {...} });
 *   runner.on('batch', (report) => ...);
 *   await runner.start();
 *   ...
 *   await runner.close();
 *
 * The runner knows no server: the source, stages and sink do.
 */
import { isTributaryError, TributaryError } from '../errors.js';
import { ABORTED, sleep, untilAborted } from './backoff.js';
import { BatchPolicy, EntrySizeEstimate, prefixWithin, readCountFor, type BatchPolicyOptions, type FlushReason } from './batch-policy.js';
import {
  ReadAgain,
  RecoverFirst,
  type DeadLetter,
  type DeadLetterStore,
  type Message,
  type Recovered,
  type Rejected,
  type ServerName,
  type Sink,
  type Source,
  type Stage,
  type WriteResult,
} from './contracts.js';
import { TypedEmitter } from './emitter.js';
import { InFlight } from './in-flight.js';
import { isFault, isOutOfMemory, isTooLargeToWrite, isWriteTimeout, plural } from './faults.js';
import { halves } from '../sinks/isolate.js';
import { asError, ForcedStop, isRetryable, RetryPolicy, ServerHealth, type RetryPolicyOptions } from './retry.js';

/** Why a batch was processed: a flush of new messages, or recovered work. */
export type BatchReason = FlushReason | 'pending' | 'reclaim';

/** What one processed batch did; the runner's 'batch' event. */
export interface BatchReport {
  consumer: string;
  reason: BatchReason;
  /** Messages in the batch (dead-lettered ones included). */
  size: number;
  /** Bytes of the batch's messages (at most BATCH_MAX_BYTES, unless it is one larger message). */
  bytes: number;
  /** Messages newly written by the sink. */
  written: number;
  /** Messages the sink found written before (redeliveries). */
  duplicates: number;
  deadLettered: number;
  /** Messages a stage dropped on purpose (acknowledged, not written). */
  skipped: number;
  /** Time spent in the sink's write, retries included (ms). */
  writeMs: number;
  /** Statements the sink sent (more than 1 when a bad row forced a split). */
  statements: number;
  /** Wall time of the reads that filled the batch ('read'), each stage, the write ('write') and the acknowledgement with the stages' after-commit steps ('ack'), ms. */
  timings: Record<string, number>;
  /** Failed attempts retried while processing this batch. */
  retries: number;
  /** What the sink reported (WriteResult.details). */
  details?: Record<string, unknown>;
  /** producedAt of the acknowledged messages that carry one (ms since epoch), for end-to-end latency. */
  producedAt: number[];
  committedAt: number;
}

export interface RunnerStats {
  read: number;
  written: number;
  duplicates: number;
  deadLettered: number;
  skipped: number;
  reclaimed: number;
  batches: number;
  /** Failed attempts that were retried (any server). */
  retries: number;
  /** Messages read and not yet acknowledged. */
  inFlight: number;
  inFlightBytes: number;
  flushReasons: Record<string, number>;
}

/** Every event the runner emits, with its argument. */
export interface RunnerEvents {
  /** All workers are reading. */
  started: { consumers: string[] };
  /** A batch was committed and acknowledged. */
  batch: BatchReport;
  /** A message went to the dead letters. */
  deadLetter: { id: string; code: string; error: string; deliveries: number };
  /**
   * The source's server refused to store these dead letters for lack of memory (Redis at
   * maxmemory: TRIB_ERR_REDIS_OOM). They stay pending, to be dead-lettered again when
   * reclaimed; their batch-mates were acknowledged all the same.
   */
  deadLetterDeferred: { ids: string[]; error: Error };
  /** Messages idle on another consumer were taken over by this process. */
  reclaimed: { count: number; consumer: string };
  /** Held messages whose content was gone (trimmed) were cleared. */
  deleted: { consumer: string; ids: string[] };
  /** Consumers holding nothing, idle at least `idleMs` (gone processes' names), were removed by the reclaim loop. */
  consumersRemoved: { consumers: string[]; idleMs: number };
  /** A server became unreachable (reported once per outage). */
  serverDown: { server: ServerName; error: Error };
  /** A server is reachable again. */
  serverUp: { server: ServerName; downMs: number };
  /** An operation failed and will be retried (every attempt; serverDown reports only the first). */
  retry: { server: ServerName | undefined; error: Error; step: string; attempt: number };
  /** untilEmpty (or maxBatches): every worker found the source empty (or did its batches) and stopped. */
  drained: { batches: number };
  /** Graceful stop begun. */
  stopping: { force: boolean };
  stopped: { stats: RunnerStats };
  error: Error;
}

/** A step run before the workers start (a migration, say): retried like everything else. */
export interface StartStep {
  /** Names the step in reports (default 'start'). */
  name?: string;
  server?: ServerName;
  run: (signal: AbortSignal) => Promise<void>;
  /** Which failures are worth retrying (default: all but non-retryable coded errors). */
  retryable?: (error: unknown) => boolean;
}

export interface RunnerOptions<T> {
  source: Source<T>;
  /** Run in order on each batch (default none). */
  stages?: Stage<any, any>[];
  sink: Sink<any>;
  /** Where rejected messages are kept before the source lets go of them (default: the source's dead letters only). */
  deadLetters?: DeadLetterStore;
  /** The workers' consumer names, one per worker (at least one, unique). */
  consumers: string[];
  /** When a batch is flushed (count, bytes, period, caught-up). */
  batch: BatchPolicyOptions;
  /** Messages asked for per read (default: batch.maxCount). */
  readCount?: number;
  /** How long an idle worker's read waits for messages, ms (default 5000). */
  blockMs?: number;
  /** Messages read and not acknowledged, per runner (default: 4 batches per worker). */
  maxInFlight?: number;
  /**
   * Bytes of messages held, per runner, at which reads wait (default 256 MiB). Reads are
   * also sized by it: a worker asks for no more than its share of the room left.
   */
  maxInFlightBytes?: number;
  /**
   * A message larger than this many bytes is dead-lettered before any stage sees it
   * (TRIB_ERR_ENTRY_TOO_LARGE; its fields are not decoded), its batch-mates processed
   * (default 64 MiB).
   */
  maxEntryBytes?: number;
  /** A message delivered more often than this goes to the dead letters (default 5). */
  maxDeliveries?: number;
  /** How often held messages are kept alive, ms (default 20,000). */
  keepAliveMs?: number;
  /**
   * Take over work idle on dead consumers (default: no reclaim loop). `forgetIdleMs`: a
   * consumer holding nothing and idle this long is removed, where the source can
   * (default: three times the longer of minIdleMs and blockMs).
   */
  reclaim?: { consumer: string; minIdleMs: number; intervalMs: number; forgetIdleMs?: number };
  /** Backoff of retried operations. */
  retry?: RetryPolicyOptions;
  /** Steps after source.start and before the workers start. */
  prepare?: StartStep[];
  /**
   * Called when a step fails for a fault that is not an outage (core/faults.ts), while
   * the work stays pending and is retried: a pipeline that can cure it (recreate a
   * dropped table) does so here. One call at a time; its own failure is ignored (the
   * fault stays reported and the next failed attempt calls it again).
   */
  repair?: (fault: TributaryError) => Promise<void>;
  /** Each worker stops at its first read that finds nothing; `done` resolves when all have (default false). */
  untilEmpty?: boolean;
  /** Each worker stops reading after this many batches; `done` resolves when all have stopped (default: no limit). */
  maxBatches?: number;
}

/**
 * Keeps alive everything a consumer holds (the batch being filled or waiting for the
 * write before it, and the batch being written): every `everyMs`, one keepAlive call
 * for all of it. What is held is asked for at that moment (`held`), never recorded on
 * the hot path: a long-lived collection of the batches in flight made every young-
 * generation GC of a 1M-event drain twice as slow.
 */
class KeepAlive<T> {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly consumer: string,
    private readonly source: Source<T>,
    private readonly everyMs: number,
    private readonly held: () => readonly Message<T>[],
  ) {}

  start(): void {
    this.timer ??= setInterval(() => {
      const all = this.held();
      if (all.length > 0) void this.source.keepAlive(this.consumer, all).catch(() => {});
    }, this.everyMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** A slot for the batch a recovery loop is processing (what its keep-alive covers). */
interface Held<T> {
  current: readonly Message<T>[] | undefined;
}

const NOTHING_IN_WRITE: { readonly count: number; readonly bytes: number } = { count: 0, bytes: 0 };

/** Default cap on the bytes a runner holds read and not acknowledged (MAX_IN_FLIGHT_BYTES). */
export const DEFAULT_MAX_IN_FLIGHT_BYTES = 256 * 1024 * 1024;
/**
 * Default size above which a message is dead-lettered unprocessed (MAX_ENTRY_BYTES). One
 * entry's processing takes a few times its size (the bytes read, the text of the
 * statement path, JSON.parse), which must stay far below V8's string limit (~512 MiB)
 * and Postgres's jsonb limit (256 MiB).
 */
export const DEFAULT_MAX_ENTRY_BYTES = 64 * 1024 * 1024;
/** A message written alone and larger than a batch is dead-lettered after this many timeouts in a row. */
const LONE_TIMEOUTS = 3;

/** Errors already emitted (a worker's permanent failure), so they are not emitted twice. */
const REPORTED = new WeakSet<Error>();

function sum(messages: readonly Message<unknown>[]): number {
  let n = 0;
  for (let i = 0; i < messages.length; i++) n += messages[i]!.bytes;
  return n;
}

export class Runner<T = unknown> extends TypedEmitter<RunnerEvents> {
  readonly options: Readonly<RunnerOptions<T>>;
  readonly policy: BatchPolicy;
  private readonly inFlight: InFlight;
  /** Bytes per message, learned from the reads: sizes every read so it fits the byte budgets. */
  readonly sizes = new EntrySizeEstimate();
  readonly maxEntryBytes: number;
  private readonly health: ServerHealth;
  private readonly retry: RetryPolicy;
  private readonly forceCtl = new AbortController();
  private readonly stopCtl = new AbortController();
  /** Aborted when untilEmpty workers have all finished: the reclaim loop ends too. */
  private readonly drainedCtl = new AbortController();
  private readonly stages: Stage<any, any>[];
  private workers: Worker<T>[] = [];
  private loops: Promise<void>[] = [];
  private closing: Promise<void> | undefined;
  private state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  private readonly failedConsumers = new Set<string>();
  /** The first permanent (non-retryable) error that stopped a worker, if any. */
  failure: Error | undefined;
  private readonly counters: RunnerStats = {
    read: 0,
    written: 0,
    duplicates: 0,
    deadLettered: 0,
    skipped: 0,
    reclaimed: 0,
    batches: 0,
    retries: 0,
    inFlight: 0,
    inFlightBytes: 0,
    flushReasons: {},
  };

  constructor(options: RunnerOptions<T>) {
    super();
    const consumers = options.consumers;
    if (!Array.isArray(consumers) || consumers.length === 0) throw invalid('consumers', 'must name at least one consumer');
    if (new Set(consumers).size !== consumers.length) throw invalid('consumers', 'must be unique');
    if (options.reclaim && consumers.includes(options.reclaim.consumer)) throw invalid('reclaim.consumer', 'must differ from the workers');
    try {
      this.policy = new BatchPolicy(options.batch);
    } catch (err) {
      throw invalid('batch', (err as Error).message);
    }
    const maxInFlight = options.maxInFlight ?? this.policy.maxCount * consumers.length * 4;
    if (!Number.isSafeInteger(maxInFlight) || maxInFlight < this.policy.maxCount) throw invalid('maxInFlight', `must be an integer >= batch.maxCount (${this.policy.maxCount})`);
    if (options.maxBatches !== undefined && !(Number.isSafeInteger(options.maxBatches) && options.maxBatches >= 1)) {
      throw invalid('maxBatches', `must be a positive integer (got ${String(options.maxBatches)})`);
    }
    positive('blockMs', options.blockMs);
    positive('reclaim.forgetIdleMs', options.reclaim?.forgetIdleMs);
    positive('keepAliveMs', options.keepAliveMs);
    positive('maxInFlightBytes', options.maxInFlightBytes);
    positive('maxEntryBytes', options.maxEntryBytes);
    positive('readCount', options.readCount);
    positive('maxDeliveries', options.maxDeliveries);
    if (options.reclaim && options.keepAliveMs !== undefined && options.keepAliveMs >= options.reclaim.minIdleMs) {
      throw invalid('keepAliveMs', `must be below reclaim.minIdleMs (${options.reclaim.minIdleMs}): held work would be reclaimed from a live worker`);
    }
    this.options = { ...options };
    this.stages = options.stages ?? [];
    this.inFlight = new InFlight(maxInFlight, options.maxInFlightBytes ?? DEFAULT_MAX_IN_FLIGHT_BYTES);
    this.maxEntryBytes = options.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES;
    this.health = new ServerHealth(({ server, up, error, downMs }) => {
      if (up) this.emit('serverUp', { server, downMs: downMs ?? 0 });
      else this.emit('serverDown', { server, error: error! });
    });
    this.retry = new RetryPolicy(options.retry ?? {}, this.health, this.forceCtl.signal, (server, error, step, attempt) => this.retried(server, error, step, attempt));
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /** 'new', 'starting', 'running', 'stopping' or 'stopped'. */
  get status(): string {
    return this.state;
  }

  /** The consumer names of the workers. */
  get consumers(): string[] {
    return [...this.options.consumers];
  }

  stats(): RunnerStats {
    return { ...this.counters, inFlight: this.inFlight.held, inFlightBytes: this.inFlight.heldBytes, flushReasons: { ...this.counters.flushReasons } };
  }

  /** True while `server` is known to be unreachable. */
  isDown(server: ServerName): boolean {
    return this.health.isDown(server);
  }

  /**
   * While `server` answers but refuses the work for a fault that is not an outage (a
   * missing table, a permission, a read-only server, a full disk: core/faults.ts), that
   * fault: the work is held pending and retried, and the pipeline is not ready.
   */
  fault(server: ServerName): TributaryError | undefined {
    return this.health.fault(server);
  }

  /** Resolves when every worker and the reclaim loop have exited. */
  get done(): Promise<void> {
    return Promise.all(this.loops).then(() => {});
  }

  /** Reports a failure seen outside the runner's own calls (a shared connection's error). */
  reportFailure(server: ServerName, error: Error): void {
    this.health.failed(server, error);
  }

  /**
   * Starts the source (waiting out an outage with backoff), runs the prepare steps and
   * starts the workers and the reclaim loop. Resolves once they run — or, when close() is
   * called meanwhile, as soon as start-up gives up, having started nothing. A step that
   * fails for good (a non-retryable coded error) rejects.
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new TributaryError('TRIB_ERR_ENGINE_CLOSED');
    this.state = 'starting';
    const o = this.options;
    const steps: StartStep[] = [{ name: 'connect', server: o.source.server, run: (signal) => o.source.start(signal) }, ...(o.prepare ?? [])];
    try {
      for (const step of steps) {
        await this.retry.run(step.server, () => step.run(this.stopCtl.signal), { giveUpOn: this.stopCtl.signal, step: step.name ?? 'start', retryable: step.retryable });
      }
    } catch (err) {
      if (!(err instanceof ForcedStop)) {
        this.state = 'stopped';
        await o.source.close().catch(() => {});
        throw err;
      }
    }
    if (this.closing || this.stopCtl.signal.aborted) return;
    this.workers = o.consumers.map((c) => new Worker(c, this));
    const workerLoops = this.workers.map((w) => w.run().catch((err) => this.emit('error', asError(err))));
    this.loops = [...workerLoops];
    if (o.reclaim) {
      this.loops.push(
        this.reclaimLoop(o.reclaim).catch((err) => {
          if (!(err instanceof ForcedStop)) this.emit('error', asError(err));
        }),
      );
    }
    if (o.untilEmpty || o.maxBatches !== undefined) {
      // Recovery ends once every worker has stopped reading; 'drained' once their last batches are acknowledged.
      void Promise.all(this.workers.map((w) => w.finished)).then(() => this.drainedCtl.abort());
      void Promise.all(workerLoops).then(() => {
        if (this.stopCtl.signal.aborted) return;
        this.emit('drained', { batches: this.counters.batches });
      });
    }
    this.state = 'running';
    this.emit('started', { consumers: [...o.consumers] });
  }

  /**
   * Graceful stop: stop reading, finish and acknowledge in-flight batches, close the
   * source. Idempotent: a second call returns the same promise. `force` abandons
   * in-flight batches without acknowledging them (they are recovered later).
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    if (options.force) this.forceCtl.abort();
    if (this.closing) return this.closing;
    this.emit('stopping', { force: options.force === true });
    const wasStarted = this.state !== 'new';
    this.state = 'stopping';
    this.stopCtl.abort();
    this.closing = (async () => {
      await Promise.resolve(); // let a start() in progress see `closing`
      for (const w of this.workers) w.stop();
      await this.done;
      if (wasStarted) await this.options.source.close().catch(() => {});
      await this.options.sink.close?.().catch(() => {});
      this.state = 'stopped';
      this.emit('stopped', { stats: this.stats() });
    })();
    return this.closing;
  }

  // ---- internals shared with the workers ----

  /** @internal */
  get forceSignal(): AbortSignal {
    return this.forceCtl.signal;
  }

  /** @internal */
  get capacity(): InFlight {
    return this.inFlight;
  }

  /** @internal */
  markUp(server: ServerName): void {
    this.health.ok(server);
  }

  /** A failed attempt that will be retried: counted and reported. */
  private retried(server: ServerName | undefined, error: Error, step: string, attempt: number): void {
    this.counters.retries++;
    this.emit('retry', { server, error, step, attempt });
    const repair = this.options.repair;
    if (repair && isFault(error) && !this.repairing) {
      this.repairing = repair(error)
        .catch(() => {})
        .finally(() => {
          this.repairing = undefined;
        });
    }
  }

  /** A repair under way (options.repair), so that only one runs at a time. */
  private repairing: Promise<void> | undefined;

  /**
   * Records dead letters (the store, then the source). A source whose server refuses them
   * for lack of memory (TRIB_ERR_REDIS_OOM) is not retried in a loop that would hold the
   * worker: they stay pending (the store's record is idempotent) and are dead-lettered
   * again when reclaimed; `deadLetterDeferred` says so.
   */
  private async deadLetter(consumer: string, letters: DeadLetter<T>[], onRetry: (error: Error) => void): Promise<void> {
    const o = this.options;
    const store = o.deadLetters;
    const describe = (m: Message<unknown>) => o.source.describe(m as Message<T>);
    if (store) await this.retry.run(store.server, () => store.record(letters, describe, consumer), { step: 'dead letters', onRetry });
    try {
      await this.retry.run(o.source.server, () => o.source.deadLetter(consumer, letters), {
        step: 'dead letters',
        onRetry,
        retryable: (err) => !isOutOfMemory(err) && isRetryable(err),
      });
    } catch (err) {
      if (!isOutOfMemory(err)) throw err;
      const error = isTributaryError(err) ? err : new TributaryError('TRIB_ERR_REDIS_OOM', [`${plural(letters.length, 'dead letter')}`, asError(err).message], { cause: err });
      this.emit('deadLetterDeferred', { ids: letters.map((l) => l.message.id), error });
      return;
    }
    for (const l of letters) {
      this.counters.deadLettered++;
      this.emit('deadLetter', { id: l.message.id, code: l.code, error: l.error, deliveries: l.message.deliveries });
    }
  }

  /** @internal A failed read: reported like any failed attempt of the retry policy. */
  readFailed(server: ServerName, error: Error, attempt: number): void {
    this.health.failed(server, error);
    this.retried(server, error, 'read', attempt);
  }

  /** @internal */
  backoff(attempt: number): number {
    return this.retry.delay(attempt);
  }

  /** @internal A worker met a permanent error and stopped. */
  failed(consumer: string, error: Error): void {
    REPORTED.add(error);
    this.failedConsumers.add(consumer);
    this.failure ??= error;
    this.emit('error', Object.assign(error, { consumer }));
    // No worker left reading: stop the whole runner (gracefully), so `done` resolves and a
    // process running it can exit with the error instead of idling forever.
    if (this.failedConsumers.size === this.options.consumers.length) void this.close();
  }

  /** @internal */
  countRead(n: number): void {
    this.counters.read += n;
  }

  /** @internal */
  keepAlive(consumer: string, held: () => readonly Message<T>[]): KeepAlive<T> {
    const o = this.options;
    // Default: three keep-alives per reclaim idle time (20 s without a reclaim loop).
    const every = o.keepAliveMs ?? (o.reclaim ? Math.max(100, Math.floor(o.reclaim.minIdleMs / 3)) : 20_000);
    return new KeepAlive(consumer, o.source, every, held);
  }

  /**
   * Finishes the consumer's own unfinished work from an earlier run, oldest first, in
   * batches: the source counts it as one more delivery, and a message past maxDeliveries
   * (one that keeps crashing the process) goes to the dead letters.
   * @internal
   */
  async resumeOwn(consumer: string, held: Held<T>, stopping: () => boolean): Promise<void> {
    const source = this.options.source;
    let after: string | undefined;
    while (!stopping()) {
      const found = await this.recover(consumer, 'resume', 'pending', held, this.stopCtl.signal, (max) => source.resume(consumer, max, after));
      if (found === null) return; // forced stop
      after = found.cursor;
      if (!found.more) return;
    }
  }

  /**
   * Takes a batch from read to acknowledged: dead-letter what was delivered too often,
   * run the stages, write, dead-letter what was rejected, acknowledge the rest. Each
   * step is retried until it passes or a forced stop aborts; nothing is acknowledged
   * before the sink committed.
   * @internal
   */
  async process(consumer: string, messages: Message<T>[], reason: BatchReason, readMs = 0): Promise<void> {
    const report = await this.processHeld(consumer, messages, reason, readMs);
    this.recordBatch(report);
  }

  /**
   * One round of recovery: reserves room for a batch, asks the source for recovered
   * work (retried, given up on `giveUpOn`), and processes what came back, holding it
   * meanwhile. Null on a forced stop.
   */
  private async recover(
    consumer: string,
    step: 'resume' | 'reclaim',
    reason: BatchReason,
    held: Held<T>,
    giveUpOn: AbortSignal,
    fetch: (max: number) => Promise<Recovered<T>>,
  ): Promise<Recovered<T> | null> {
    const wanted = readCountFor(this.policy.maxCount, this.readBudget(0), this.entryBytes, true);
    const reserved = await this.inFlight.acquire(wanted, this.forceCtl.signal);
    if (reserved === 0) return null;
    let found: Recovered<T>;
    try {
      found = await this.retry.run(this.options.source.server, () => fetch(reserved), { giveUpOn, step });
    } catch (err) {
      this.inFlight.received(reserved, 0);
      throw err;
    }
    const bytes = sum(found.messages);
    this.inFlight.received(reserved, found.messages.length, bytes);
    this.sizes.observe(found.messages.length, bytes);
    try {
      if (found.deleted.length > 0) this.emit('deleted', { consumer, ids: found.deleted });
      if (found.messages.length > 0) {
        if (reason === 'reclaim') {
          this.counters.reclaimed += found.messages.length;
          this.emit('reclaimed', { count: found.messages.length, consumer });
        }
        // In batches of at most BATCH_MAX_BYTES (one larger message alone), everything not
        // yet done kept alive meanwhile.
        let rest = found.messages;
        while (rest.length > 0) {
          const n = prefixWithin(rest, this.policy.maxBytes);
          await this.processHolding(consumer, n === rest.length ? rest : rest.slice(0, n), reason, held, rest);
          rest = rest.slice(n);
        }
      }
    } finally {
      this.inFlight.release(found.messages.length, bytes);
    }
    return found;
  }

  /** process(), with the batch (or `holding`, which includes it) in `held` meanwhile (what the consumer's keep-alive covers). */
  private async processHolding(consumer: string, messages: Message<T>[], reason: BatchReason, held: Held<T>, holding: Message<T>[] = messages): Promise<void> {
    held.current = holding;
    try {
      // A forced stop does not wait for a write that ignores the signal.
      if ((await untilAborted(this.process(consumer, messages, reason), this.forceCtl.signal)) === ABORTED) throw new ForcedStop();
    } finally {
      held.current = undefined;
    }
  }

  private async processHeld(consumer: string, messages: Message<T>[], reason: BatchReason, readMs: number): Promise<BatchReport> {
    const o = this.options;
    const maxDeliveries = o.maxDeliveries ?? 5;
    const timings: Record<string, number> = { read: readMs };
    const letters: DeadLetter<T>[] = [];
    const state: Record<string, unknown> = {};
    const signal = this.forceCtl.signal;
    let retries = 0;
    const onRetry = () => void retries++;
    let current: Message<any>[] = messages;
    const recovered = reason === 'pending' || reason === 'reclaim';
    const maxEntryBytes = this.maxEntryBytes;
    if (recovered || this.hasOversize(messages)) {
      current = [];
      for (const m of messages) {
        if (m.bytes > maxEntryBytes) {
          // Never decoded: its fields could make a string larger than V8 can hold.
          const why = `${m.bytes} bytes, over MAX_ENTRY_BYTES (${maxEntryBytes})`;
          const err = new TributaryError('TRIB_ERR_ENTRY_TOO_LARGE', [m.id, why]);
          letters.push({ message: m, code: err.code, error: err.message, fieldsOmitted: `not copied: entry of ${why}` });
        } else if (recovered && m.deliveries > maxDeliveries) {
          const err = new TributaryError('TRIB_ERR_ENTRY_MAX_DELIVERIES', [m.id, m.deliveries, maxDeliveries]);
          letters.push({ message: m, code: err.code, error: err.message });
        } else current.push(m);
      }
    }
    let byId: Map<string, Message<T>> | undefined;
    const reject = (rejected: readonly Rejected[] | undefined) => {
      if (!rejected || rejected.length === 0) return;
      byId ??= new Map(messages.map((m) => [m.id, m]));
      for (const r of rejected) {
        const m = byId.get(r.id);
        if (m) letters.push({ message: m, code: r.code, error: r.error });
      }
    };

    const kept: Message<any>[][] = [];
    for (const st of this.stages) {
      const input = current;
      if (input.length === 0) {
        kept.push(input);
        continue;
      }
      const t = performance.now();
      const out = await this.retry.run(st.server, (attempt) => Promise.resolve(st.run(input, { consumer, signal, attempt, state })), { step: st.name, onRetry, retryable: st.retryable });
      timings[st.name] = performance.now() - t;
      reject(out.rejected);
      current = out.keep;
      kept.push(current);
    }

    const sink = o.sink;
    const started = performance.now();
    const written: WriteResult =
      current.length === 0 && !sink.writeEmpty
        ? { written: 0, duplicates: 0, rejected: [], statements: 0 }
        : // An empty write (writeEmpty) may not talk to its server: its success says nothing of the server's health.
          await this.write(current, consumer, state, onRetry);
    const writeMs = performance.now() - started;
    timings.write = writeMs;
    const committedAt = Date.now();
    reject(written.rejected);

    const ackStarted = performance.now();
    const dead = letters.length > 0 ? new Set(letters.map((l) => l.message.id)) : undefined;
    const ack = dead ? messages.filter((m) => !dead.has(m.id)) : messages;
    const committing: Promise<void>[] = [];
    // The healthy messages are acknowledged first: a dead letter the source's server will not
    // store (Redis at maxmemory) must not hold up its batch-mates, which are written.
    if (ack.length > 0) committing.push(this.retry.run(o.source.server, () => o.source.ack(consumer, ack), { step: 'ack', onRetry }));
    if (letters.length > 0) {
      try {
        await this.deadLetter(consumer, letters, onRetry);
      } catch (err) {
        await Promise.allSettled(committing);
        throw err;
      }
    }
    this.stages.forEach((st, i) => {
      const after = st.afterCommit?.bind(st);
      const mine = kept[i] ?? [];
      if (!after) return;
      // With nothing kept, an after-commit step has nothing to send: its success is no sign the
      // server is back (it reported "redis back" in an outage that had not ended).
      const server = mine.length > 0 ? st.server : undefined;
      committing.push(this.retry.run(server, (attempt) => after(mine, { consumer, signal, attempt, state }), { step: `${st.name} (after commit)`, onRetry }));
    });
    await Promise.all(committing);
    timings.ack = performance.now() - ackStarted;

    const producedAt: number[] = [];
    for (const m of current) if (typeof m.producedAt === 'number' && (!dead || !dead.has(m.id))) producedAt.push(m.producedAt);
    return {
      consumer,
      reason,
      size: messages.length,
      bytes: sum(messages),
      written: written.written,
      duplicates: written.duplicates,
      deadLettered: letters.length,
      skipped: Math.max(0, messages.length - letters.length - written.written - written.duplicates),
      writeMs,
      statements: written.statements ?? (current.length === 0 ? 0 : 1),
      timings,
      retries,
      details: written.details,
      producedAt,
      committedAt,
    };
  }

  /**
   * The size reads are planned with: what the reads have shown, and before the first one,
   * the largest an entry may be (maxEntryBytes) — so a process started on a backlog of
   * large entries first reads one at a time.
   * @internal
   */
  get entryBytes(): number {
    return this.sizes.value ?? this.maxEntryBytes;
  }

  private hasOversize(messages: readonly Message<T>[]): boolean {
    for (let i = 0; i < messages.length; i++) if (messages[i]!.bytes > this.maxEntryBytes) return true;
    return false;
  }

  /**
   * Bytes the next read of a worker whose batch holds `batchBytes` may bring: what the
   * batch still has room for (BATCH_MAX_BYTES), and no more than the worker's share of
   * the process's in-flight byte room.
   * @internal
   */
  readBudget(batchBytes: number): number {
    const batchRoom = this.policy.maxBytes - batchBytes;
    const inFlightRoom = (this.inFlight.byteLimit - this.inFlight.heldBytes) / this.options.consumers.length;
    return Math.min(batchRoom, inFlightRoom);
  }

  /**
   * The sink's write of a batch, retried. A splittable sink's write that fails for a
   * reason retrying cannot cure (isTooLargeToWrite: a statement or string too large, a
   * statement timeout) is split in halves, each written with its own copy of the
   * stages' state; a single message still refused for its size is rejected
   * (TRIB_ERR_ENTRY_TOO_LARGE), and one larger than BATCH_MAX_BYTES that keeps timing
   * out alone is rejected after LONE_TIMEOUTS timeouts (TRIB_ERR_ENTRY_WRITE_TIMEOUT). A
   * small message timing out alone is retried like any failure (a lock, a slow server).
   */
  private async write(batch: Message<any>[], consumer: string, state: Record<string, unknown>, onRetry: (error: Error) => void): Promise<WriteResult> {
    const sink = this.options.sink;
    const signal = this.forceCtl.signal;
    const server = batch.length > 0 ? sink.server : undefined;
    const step = sink.name ?? 'write';
    if (sink.splittable !== true || batch.length === 0) {
      return this.retry.run(server, (attempt) => sink.write(batch, { consumer, signal, attempt, state }), { step, onRetry });
    }
    const before = { ...state };
    const lone = batch.length === 1 ? batch[0]! : undefined;
    const giant = lone !== undefined && lone.bytes > this.policy.maxBytes;
    let timeouts = 0;
    try {
      return await this.retry.run(server, (attempt) => sink.write(batch, { consumer, signal, attempt, state }), {
        step,
        onRetry,
        retryable: (err) => {
          if (!isRetryable(err)) return false;
          if (!isTooLargeToWrite(err)) return true;
          if (!lone || !isWriteTimeout(err)) return false;
          return !giant || ++timeouts < LONE_TIMEOUTS;
        },
      });
    } catch (err) {
      if (!isTooLargeToWrite(err) || err instanceof ForcedStop) throw err;
      if (!lone) {
        const [a, b] = halves(batch);
        const first = await this.write(a, consumer, { ...before }, onRetry);
        const second = await this.write(b, consumer, { ...before }, onRetry);
        return combineWrites(first, second);
      }
      const reason = asError(err).message;
      const e = isWriteTimeout(err)
        ? new TributaryError('TRIB_ERR_ENTRY_WRITE_TIMEOUT', [lone.id, lone.bytes, timeouts, reason])
        : new TributaryError('TRIB_ERR_ENTRY_TOO_LARGE', [lone.id, `even alone its write failed: ${reason}`]);
      return { written: 0, duplicates: 0, rejected: [{ id: lone.id, code: e.code, error: e.message }], statements: 1 };
    }
  }

  private recordBatch(report: BatchReport): void {
    const c = this.counters;
    c.batches++;
    c.written += report.written;
    c.duplicates += report.duplicates;
    c.skipped += report.skipped;
    c.flushReasons[report.reason] = (c.flushReasons[report.reason] ?? 0) + 1;
    this.emit('batch', report);
  }

  /**
   * Removes consumers that hold nothing and have been idle long (names of processes that
   * are gone) where the source can, never this runner's own. One attempt per reclaim
   * round: a failure is reported and tried again at the next one.
   */
  private async forgetIdle(options: NonNullable<RunnerOptions<T>['reclaim']>): Promise<void> {
    const source = this.options.source;
    if (!source.forgetIdle) return;
    const idleMs = options.forgetIdleMs ?? 3 * Math.max(options.minIdleMs, this.options.blockMs ?? 5000);
    try {
      const removed = await source.forgetIdle(idleMs, [...this.options.consumers, options.consumer]);
      if (removed.length > 0) this.emit('consumersRemoved', { consumers: removed, idleMs });
    } catch (err) {
      this.retried(source.server, asError(err), 'forget idle consumers', 1);
    }
  }

  /**
   * Takes over work left idle by stalled or dead consumers, first finishing whatever
   * this process's reclaim consumer itself left. A message delivered more than
   * maxDeliveries times goes to the dead letters instead of being retried.
   */
  private async reclaimLoop(options: NonNullable<RunnerOptions<T>['reclaim']>): Promise<void> {
    const source = this.options.source;
    const reclaim = source.reclaim?.bind(source);
    if (!reclaim) return;
    const { consumer, minIdleMs, intervalMs } = options;
    const stop = AbortSignal.any([this.stopCtl.signal, this.drainedCtl.signal]);
    const stopping = () => stop.aborted;
    const held: Held<T> = { current: undefined };
    const keepAlive = this.keepAlive(consumer, () => held.current ?? []);
    keepAlive.start();
    try {
      await this.resumeOwn(consumer, held, stopping);
      while (!stopping()) {
        let cursor = '0-0';
        try {
          do {
            const found = await this.recover(consumer, 'reclaim', 'reclaim', held, stop, (max) => reclaim(consumer, max, minIdleMs, cursor));
            if (found === null) return; // forced stop
            cursor = found.cursor ?? '0-0';
            if (found.recheckOwn) await this.resumeOwn(consumer, held, stopping);
          } while (cursor !== '0-0' && !stopping());
          if (!stopping()) await this.forgetIdle(options);
        } catch (err) {
          if (err instanceof ForcedStop) throw err;
          // A batch that failed for good: named, left pending on the reclaim consumer (its
          // next start resumes it); recovery goes on at the next interval.
          this.emit('error', Object.assign(asError(err), { consumer }));
        }
        await sleep(intervalMs, stop);
      }
    } finally {
      keepAlive.stop();
      await source.release(consumer).catch(() => {});
    }
  }
}

/**
 * One worker: reads for its consumer, flushes by the batch policy, and hands each batch
 * to the runner while it reads the next (at most one batch in the write per worker).
 */
class Worker<T> {
  private stopping = false;
  private batch: Message<T>[] = [];
  private batchBytes = 0;
  /** Time spent in the reads that filled the batch, ms. */
  private batchReadMs = 0;
  private firstAt: number | undefined;
  /** Permits of the reads in progress and the messages held. */
  private permits = 0;
  private heldBytes = 0;
  private writing: Promise<void> | undefined;
  private readonly keepAlive: KeepAlive<T>;
  /** Size of the batch being written: it releases its own permits when it settles, even after the worker stopped. */
  private inWrite: { readonly count: number; readonly bytes: number } = NOTHING_IN_WRITE;
  /** The batch being written (or recovered work being processed): kept alive with the one being filled. */
  private readonly held: Held<T> = { current: undefined };
  private loopDone = false;
  /** Batches this worker has handed to the write (for maxBatches). */
  private batches = 0;
  private resolveFinished!: () => void;
  /** Resolves when the worker has stopped reading (its last batch may still be written). */
  readonly finished = new Promise<void>((r) => (this.resolveFinished = r));

  constructor(
    readonly consumer: string,
    private readonly runner: Runner<T>,
  ) {
    this.keepAlive = runner.keepAlive(consumer, () => {
      const inWrite = this.held.current;
      if (!inWrite || inWrite.length === 0) return this.batch;
      return this.batch.length === 0 ? inWrite : [...this.batch, ...inWrite];
    });
  }

  async run(): Promise<void> {
    const source = this.runner.options.source;
    try {
      this.keepAlive.start();
      await this.runner.resumeOwn(this.consumer, this.held, () => this.stopping);
      await this.readLoop();
      this.loopDone = true;
      this.resolveFinished();
      await this.flush('shutdown');
      await this.settleWrite();
    } catch (err) {
      // A permanent failure met outside a flush (resuming its own pending work, say): the
      // worker stops, named like any other.
      if (!(err instanceof ForcedStop) && !REPORTED.has(err as Error)) this.runner.failed(this.consumer, asError(err));
    } finally {
      this.loopDone = true;
      this.resolveFinished();
      // The write still running (after a forced stop, or an error) releases its own messages;
      // a forced stop does not wait for one that ignores the signal (a user's handler).
      if (this.writing) await untilAborted(this.writing.catch(() => {}), this.runner.forceSignal);
      const inWrite = this.inWrite;
      this.runner.capacity.release(this.permits - inWrite.count, this.heldBytes - inWrite.bytes);
      this.permits = inWrite.count;
      this.heldBytes = inWrite.bytes;
      this.keepAlive.stop();
      await source.release(this.consumer).catch(() => {});
    }
  }

  /** Stop reading: interrupt the blocked read; the loop flushes and acks what it holds. */
  stop(): void {
    this.stopping = true;
    void this.interrupt();
  }

  /** Interrupts again until the read loop has noticed (covers a read sent just after stop). */
  private async interrupt(): Promise<void> {
    const source = this.runner.options.source;
    const force = this.runner.forceSignal;
    for (let i = 0; i < 50 && !this.loopDone; i++) {
      await source.interrupt(this.consumer).catch(() => {});
      await sleep(100, force);
      if (force.aborted) return;
    }
  }

  private async readLoop(): Promise<void> {
    const runner = this.runner;
    const { policy } = runner;
    const inFlight = runner.capacity;
    const o = runner.options;
    const source = o.source;
    const force = runner.forceSignal;
    const readCount = o.readCount ?? policy.maxCount;
    const idleBlockMs = o.blockMs ?? 5000;
    let attempt = 0;
    const maxBatches = o.maxBatches ?? Infinity;
    while (!this.stopping && this.batches < maxBatches) {
      const state = { count: this.batch.length, firstAt: this.firstAt };
      const byCount = policy.nextReadCount(state, readCount);
      // Sized by bytes too: the entries are expected to fit what the batch and the process
      // have room for (Redis reads by count only).
      const empty = this.batch.length === 0;
      const wanted = readCountFor(byCount, runner.readBudget(this.batchBytes), runner.entryBytes, empty);
      let asked: number;
      if (!empty) {
        if (wanted === 0) {
          const full = readCountFor(byCount, policy.maxBytes - this.batchBytes, runner.entryBytes, false) === 0;
          await this.flush(full ? 'bytes' : 'capacity');
          continue;
        }
        asked = inFlight.tryAcquire(wanted);
        if (asked === 0) {
          await this.flush('capacity');
          continue;
        }
      } else {
        asked = await inFlight.acquire(wanted, force);
        if (asked === 0) {
          if (force.aborted) throw new ForcedStop();
          continue;
        }
        if (this.stopping) {
          // Stopped while waiting for capacity: do not start another read.
          inFlight.received(asked, 0);
          break;
        }
      }
      this.permits += asked;
      // With messages buffered, never block: an empty answer means "caught up, flush now".
      const blockMs =
        this.batch.length === 0
          ? o.untilEmpty
            ? Math.min(idleBlockMs, 100)
            : idleBlockMs
          : policy.flushWhenCaughtUp
            ? undefined
            : policy.blockFor(state, Date.now(), idleBlockMs) || undefined;
      let got: Message<T>[];
      const readStarted = performance.now();
      try {
        got = await source.read(this.consumer, asked, blockMs, force);
        runner.markUp(source.server);
        attempt = 0;
      } catch (err) {
        this.permits -= asked;
        inFlight.received(asked, 0);
        if (this.stopping) break;
        if (force.aborted) throw new ForcedStop();
        if (err instanceof RecoverFirst) {
          // The consumer's pending work comes before anything new (a partition just taken
          // over): what is buffered is written first, then the recovered work, in order.
          await this.flush('caught_up');
          await this.settleWrite();
          await runner.resumeOwn(this.consumer, this.held, () => this.stopping);
          attempt = 0;
          continue;
        }
        if (!(err instanceof ReadAgain)) runner.readFailed(source.server, asError(err), attempt + 1);
        // What is buffered still goes out on time, whatever the reads do.
        if (this.batch.length > 0 && policy.check({ count: this.batch.length, bytes: this.batchBytes, firstAt: this.firstAt }, Date.now()) === 'time') {
          await this.flush('time');
          continue;
        }
        await sleep(runner.backoff(attempt++), force);
        if (force.aborted) throw new ForcedStop();
        continue;
      }
      this.permits -= asked - got.length;
      const bytes = got.length > 0 ? sum(got) : 0;
      this.heldBytes += bytes;
      inFlight.received(asked, got.length, bytes);
      if (got.length > 0) {
        runner.sizes.observe(got.length, bytes);
        if (this.batch.length === 0) this.firstAt = Date.now();
        for (let i = 0; i < got.length; i++) this.batch.push(got[i]!);
        this.batchBytes += bytes;
        this.batchReadMs += performance.now() - readStarted;
        runner.countRead(got.length);
        // A read may bring more than expected (larger entries than the last ones): no batch
        // goes out above BATCH_MAX_BYTES, and an entry larger than that goes alone.
        while (this.batch.length > 1 && this.batchBytes > policy.maxBytes) {
          await this.flush('bytes', prefixWithin(this.batch, policy.maxBytes));
        }
      } else if (o.untilEmpty && this.batch.length === 0) {
        break;
      }
      const reason = policy.check(
        { count: this.batch.length, bytes: this.batchBytes, firstAt: this.firstAt, lastRead: { got: got.length, asked } },
        Date.now(),
      );
      if (reason) await this.flush(reason);
    }
  }

  /**
   * Hands the batch to the runner and returns as soon as the write has started (after the
   * previous one has finished: at most one batch in the write per worker), so the next
   * read overlaps this batch's write and ack instead of waiting for them. The batch stays
   * kept alive while it waits.
   */
  private async flush(reason: FlushReason, upTo?: number): Promise<void> {
    await this.settleWrite();
    if (this.batch.length === 0) return;
    this.batches++;
    let messages: Message<T>[];
    let bytes: number;
    if (upTo === undefined || upTo >= this.batch.length) {
      messages = this.batch;
      bytes = this.batchBytes;
      this.batch = [];
      this.batchBytes = 0;
      this.firstAt = undefined;
    } else {
      // The first `upTo` messages; the rest stay buffered (and kept alive) for the next batch.
      messages = this.batch.slice(0, upTo);
      this.batch = this.batch.slice(upTo);
      bytes = sum(messages);
      this.batchBytes -= bytes;
    }
    const readMs = this.batchReadMs;
    this.batchReadMs = 0;
    this.held.current = messages;
    this.inWrite = { count: messages.length, bytes };
    const writing = (async () => {
      try {
        await this.runner.process(this.consumer, messages, reason, readMs);
      } catch (err) {
        if (!(err instanceof ForcedStop)) {
          // A permanent failure (not retried): name it now, stop reading; the batch stays
          // unacknowledged for recovery.
          this.runner.failed(this.consumer, asError(err));
          this.stop();
        }
        throw err;
      } finally {
        if (this.held.current === messages) this.held.current = undefined;
        this.inWrite = NOTHING_IN_WRITE;
        this.permits -= messages.length;
        this.heldBytes -= bytes;
        this.runner.capacity.release(messages.length, bytes);
      }
    })();
    writing.catch(() => {}); // its outcome is taken by settleWrite
    this.writing = writing;
  }

  /** Waits for the batch being written, if any; rethrows what it failed with (a forced stop). */
  private async settleWrite(): Promise<void> {
    const writing = this.writing;
    if (writing === undefined) return;
    if ((await untilAborted(writing, this.runner.forceSignal)) === ABORTED) throw new ForcedStop();
    if (this.writing === writing) this.writing = undefined;
  }
}

/** Two parts' write results as one. */
function combineWrites(a: WriteResult, b: WriteResult): WriteResult {
  let details: Record<string, unknown> | undefined;
  if (a.details || b.details) {
    details = { ...a.details };
    for (const [k, v] of Object.entries(b.details ?? {})) {
      const prev = details[k];
      details[k] = typeof prev === 'number' && typeof v === 'number' ? prev + v : v;
    }
  }
  return {
    written: a.written + b.written,
    duplicates: a.duplicates + b.duplicates,
    rejected: [...a.rejected, ...b.rejected],
    statements: (a.statements ?? 1) + (b.statements ?? 1),
    ...(details ? { details } : {}),
  };
}

function invalid(option: string, why: string): TributaryError {
  return new TributaryError('TRIB_ERR_CONFIG_INVALID', [`runner ${option}`, why]);
}

function positive(option: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isFinite(value) && value > 0)) throw invalid(option, `must be a positive number (got ${String(value)})`);
}
