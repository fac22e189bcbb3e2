/**
 * Completion signals and the view refresher they drive.
 *
 * `OrderSignals.publishPromoted` PUBLISHes a JSON signal on `<p>:signals` after a batch is
 * promoted; `subscribe` listens on a dedicated connection. `ViewRefresher` turns a stream
 * of signals into materialized-view refreshes without polling: at most one refresh runs
 * and at most one more is queued; every signal arriving meanwhile joins the queued one.
 *
 * Pub/sub stores nothing: a signal published while a subscriber is disconnected is lost.
 * Subscribers get `onReconnect` after each reconnect (ViewRefresher refreshes once then),
 * and a missed signal only delays a refresh until the next one.
 */
import { TypedEmitter } from '../../core/emitter.js';
import { TributaryError } from '../../errors.js';
import { destroyQuietly, send, type RedisConnection } from '../../redis/client.js';
import { orderKeys, type OrderKeys } from './keys.js';
import { toNumber } from './reply.js';

/** What is published on `<p>:signals` after a batch is promoted. */
export interface PromotedSignal {
  type: 'promoted';
  /** The staging batch id. */
  batchId: string;
  /** Rows newly inserted into `orders`. */
  promoted: number;
  /** Valid rows already in `orders`. */
  duplicates: number;
  /** Rows moved to `orders_rejected`. */
  rejected: number;
  /** The worker that promoted it, when known. */
  worker?: string;
  /** When it was published, ms since the epoch. */
  at: number;
}

/** The publisher's input: `type` is implied; `duplicates`/`rejected` default to 0, `at` to now. */
export type PromotedInfo = Omit<PromotedSignal, 'type' | 'duplicates' | 'rejected' | 'at'> &
  Partial<Pick<PromotedSignal, 'duplicates' | 'rejected' | 'at'>>;

const count = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** Parses one channel message; throws TRIB_ERR_ORDERS_SIGNAL_INVALID (naming the channel) when it is not a promoted signal. */
export function parsePromotedSignal(message: string, channel = 'signals'): PromotedSignal {
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    throw new TributaryError('TRIB_ERR_ORDERS_SIGNAL_INVALID', [channel, `not JSON: ${message.slice(0, 80)}`]);
  }
  const s = value as Partial<PromotedSignal> | null;
  if (!s || typeof s !== 'object' || s.type !== 'promoted') {
    throw new TributaryError('TRIB_ERR_ORDERS_SIGNAL_INVALID', [channel, 'type is not "promoted"']);
  }
  if (typeof s.batchId !== 'string' || !count(s.promoted) || !count(s.duplicates) || !count(s.rejected) || typeof s.at !== 'number') {
    throw new TributaryError('TRIB_ERR_ORDERS_SIGNAL_INVALID', [channel, 'batchId, promoted, duplicates, rejected or at missing or mistyped']);
  }
  const out: PromotedSignal = { type: 'promoted', batchId: s.batchId, promoted: s.promoted!, duplicates: s.duplicates!, rejected: s.rejected!, at: s.at };
  if (typeof s.worker === 'string') out.worker = s.worker;
  return out;
}

export interface OrderSignalsOptions {
  /** The connection PUBLISH uses, and that `subscribe` duplicates (required). */
  client: RedisConnection;
  /** Key prefix; the channel is `<prefix>:signals` (default `orders`). */
  prefix?: string;
}

export interface SubscribeOptions {
  /**
   * Receives malformed messages (TRIB_ERR_ORDERS_SIGNAL_INVALID), exceptions thrown or
   * rejected by the handler, and the subscriber connection's errors (default: ignored).
   */
  onError?: (err: Error) => void;
  /** Called each time the subscriber connection is back after a reconnect (signals may have been missed). */
  onReconnect?: () => void;
  /** Name of the subscriber connection in CLIENT LIST (no spaces; default: the client's own name). */
  name?: string;
}

/** Stops a subscription and closes its connection; calling it twice is fine. */
export type Unsubscribe = () => Promise<void>;

export class OrderSignals {
  readonly keys: OrderKeys;
  private readonly client: RedisConnection;

  constructor(options: OrderSignalsOptions) {
    if (!options?.client) throw new RangeError('OrderSignals client is required');
    this.client = options.client;
    this.keys = orderKeys(options.prefix);
  }

  /** PUBLISHes a promoted signal; returns how many subscribers received it. */
  async publishPromoted(info: PromotedInfo): Promise<number> {
    const signal: PromotedSignal = {
      type: 'promoted',
      batchId: info.batchId,
      promoted: info.promoted,
      duplicates: info.duplicates ?? 0,
      rejected: info.rejected ?? 0,
      ...(info.worker === undefined ? {} : { worker: info.worker }),
      at: info.at ?? Date.now(),
    };
    return toNumber(await send(this.client, ['PUBLISH', this.keys.signals, JSON.stringify(signal)]));
  }

  /**
   * Subscribes `handler` to the signals channel on a dedicated connection (a duplicate of
   * the client: a subscribed connection can run nothing else). Resolves once subscribed,
   * to the function that unsubscribes and closes that connection.
   */
  async subscribe(handler: (signal: PromotedSignal) => void | Promise<void>, options: SubscribeOptions = {}): Promise<Unsubscribe> {
    const channel = this.keys.signals;
    const report = (err: unknown) => options.onError?.(err instanceof Error ? err : new Error(String(err)));
    const sub = this.client.duplicate(options.name === undefined ? undefined : { name: options.name });
    sub.on('error', report);
    let readies = 0;
    sub.on('ready', () => {
      if (readies++ > 0) options.onReconnect?.();
    });
    try {
      await sub.connect();
      await sub.subscribe(channel, (message: string) => {
        try {
          const outcome = handler(parsePromotedSignal(message, channel));
          if (outcome instanceof Promise) outcome.catch(report);
        } catch (err) {
          report(err);
        }
      });
    } catch (err) {
      destroyQuietly(sub);
      throw err;
    }
    let closing: Promise<void> | undefined;
    return () =>
      (closing ??= (async () => {
        try {
          await sub.unsubscribe(channel);
          await sub.close();
        } catch {
          // Already disconnected: nothing to unsubscribe from.
        } finally {
          destroyQuietly(sub);
        }
      })());
  }
}

/** What one refresh did. */
export interface RefreshOutcome<T> {
  /** 'cancelled': it was queued when the refresher closed and never ran. */
  status: 'refreshed' | 'failed' | 'cancelled';
  /** What the refresh function returned (status 'refreshed'). */
  result?: T;
  /** What it threw (status 'failed'). */
  error?: Error;
  /** How many requests this refresh served (coalesced into it). */
  requests: number;
  /** When it started (ms since epoch); null when cancelled. */
  startedAt: number | null;
  durationMs: number;
}

export interface ViewRefresherEvents<T> {
  refreshed: RefreshOutcome<T>;
  failed: RefreshOutcome<T>;
  error: Error;
}

export interface ViewRefresherOptions<T> {
  /** The refresh, e.g. REFRESH MATERIALIZED VIEW CONCURRENTLY ... (required). Never run twice at once. */
  refresh: () => Promise<T>;
}

export interface ViewRefresherStats<T> {
  /** request() calls. */
  requests: number;
  /** Refreshes run (succeeded or failed). */
  refreshes: number;
  failures: number;
  /** Requests that joined an already queued refresh instead of adding one. */
  coalesced: number;
  running: boolean;
  queued: boolean;
  last: RefreshOutcome<T> | null;
}

interface Pending<T> {
  requests: number;
  promise: Promise<RefreshOutcome<T>>;
  resolve: (outcome: RefreshOutcome<T>) => void;
}

function pending<T>(): Pending<T> {
  let resolve!: (outcome: RefreshOutcome<T>) => void;
  const promise = new Promise<RefreshOutcome<T>>((r) => (resolve = r));
  return { requests: 1, promise, resolve };
}

/**
 * Coalesces refresh requests: at most one refresh runs and at most one is queued. A
 * request while idle starts a refresh; while one runs, it queues the next (a refresh that
 * started before the request may have missed the data it announces, so it cannot serve
 * it); while one is also queued, it joins that one. A failure is recorded and emitted,
 * not retried: the next request refreshes again.
 */
export class ViewRefresher<T = unknown> extends TypedEmitter<ViewRefresherEvents<T>> {
  private readonly refresh: () => Promise<T>;
  private running: Pending<T> | null = null;
  private queued: Pending<T> | null = null;
  private closed = false;
  private readonly counters = { requests: 0, refreshes: 0, failures: 0, coalesced: 0 };
  private last: RefreshOutcome<T> | null = null;

  constructor(options: ViewRefresherOptions<T>) {
    super();
    if (typeof options?.refresh !== 'function') throw new RangeError('ViewRefresher refresh must be a function');
    this.refresh = options.refresh;
  }

  /**
   * Asks for a refresh that starts after this call. Resolves (never rejects) with the
   * outcome of the refresh that serves it; 'cancelled' if the refresher closed first.
   */
  request(): Promise<RefreshOutcome<T>> {
    this.counters.requests++;
    if (this.closed) return Promise.resolve(cancelled<T>(1));
    if (!this.running) {
      const run = pending<T>();
      this.start(run);
      return run.promise;
    }
    if (this.queued) {
      this.queued.requests++;
      this.counters.coalesced++;
      return this.queued.promise;
    }
    this.queued = pending<T>();
    return this.queued.promise;
  }

  get isRunning(): boolean {
    return this.running !== null;
  }

  get isQueued(): boolean {
    return this.queued !== null;
  }

  stats(): ViewRefresherStats<T> {
    return { ...this.counters, running: this.isRunning, queued: this.isQueued, last: this.last };
  }

  /** Subscribes to `signals`: each signal, and each reconnect of the subscriber, requests a refresh. Resolves to the unsubscribe function. */
  listen(signals: OrderSignals): Promise<Unsubscribe> {
    return signals.subscribe(() => void this.request(), {
      onError: (err) => this.emit('error', err),
      onReconnect: () => void this.request(),
    });
  }

  /** Cancels the queued refresh and waits for the running one. Later requests resolve 'cancelled'. */
  async close(): Promise<void> {
    this.closed = true;
    const queued = this.queued;
    this.queued = null;
    queued?.resolve(cancelled<T>(queued.requests));
    await this.running?.promise;
  }

  private start(run: Pending<T>): void {
    this.running = run;
    const startedAt = Date.now();
    const t0 = performance.now();
    let attempt: Promise<T>;
    try {
      attempt = this.refresh();
    } catch (err) {
      attempt = Promise.reject(err);
    }
    attempt.then(
      (result) => this.finish(run, { status: 'refreshed', result, requests: run.requests, startedAt, durationMs: performance.now() - t0 }),
      (err: unknown) =>
        this.finish(run, {
          status: 'failed',
          error: err instanceof Error ? err : new Error(String(err)),
          requests: run.requests,
          startedAt,
          durationMs: performance.now() - t0,
        }),
    );
  }

  private finish(run: Pending<T>, outcome: RefreshOutcome<T>): void {
    this.counters.refreshes++;
    if (outcome.status === 'failed') this.counters.failures++;
    this.last = outcome;
    this.running = null;
    const next = this.queued;
    this.queued = null;
    if (next) this.start(next);
    run.resolve(outcome);
    this.emit(outcome.status === 'refreshed' ? 'refreshed' : 'failed', outcome);
  }
}

function cancelled<T>(requests: number): RefreshOutcome<T> {
  return { status: 'cancelled', requests, startedAt: null, durationMs: 0 };
}
