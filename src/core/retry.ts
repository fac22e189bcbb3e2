/**
 * The one retry policy: an operation that fails is tried again after a capped,
 * jittered backoff, until it succeeds or a stop says to give up. Each server's state is
 * reported once per change (down, then up); every failed attempt is reported too.
 */
import { TributaryError } from '../errors.js';
import { backoffDelay, sleep } from './backoff.js';
import { faultOf, isFault } from './faults.js';
import type { ServerName } from './contracts.js';

/** Thrown inside the runner when a stop abandons work that was being retried. */
export class ForcedStop extends Error {
  constructor() {
    super('forced stop');
    this.name = 'ForcedStop';
  }
}

/** Tracks whether each server is up, and reports only changes of state. */
export class ServerHealth {
  private readonly down = new Map<ServerName, { since: number; error: Error }>();

  constructor(private readonly onChange: (event: { server: ServerName; up: boolean; error?: Error; downMs?: number }) => void) {}

  /**
   * Marks `server` down, reporting it once. A server already down is reported again only
   * when the cause becomes a different fault (an outage, then a read-only server once it
   * answers): each real cause is named once, not every attempt.
   */
  failed(server: ServerName, error: Error): void {
    const fault = faultOf(server, error);
    const current = this.down.get(server);
    if (current) {
      if (fault && fault.code !== (current.error as { code?: unknown }).code) {
        current.error = fault;
        this.onChange({ server, up: false, error: fault });
      }
      return;
    }
    this.down.set(server, { since: Date.now(), error: fault ?? error });
    this.onChange({ server, up: false, error: fault ?? error });
  }

  ok(server: ServerName): void {
    const current = this.down.get(server);
    if (current === undefined) return;
    this.down.delete(server);
    this.onChange({ server, up: true, downMs: Date.now() - current.since });
  }

  isDown(server: ServerName): boolean {
    return this.down.has(server);
  }

  /** While `server` refuses work for a fault that is not an outage (faults.ts), that fault. */
  fault(server: ServerName): TributaryError | undefined {
    const error = this.down.get(server)?.error;
    return isFault(error) ? error : undefined;
  }
}

export interface RetryPolicyOptions {
  /** First backoff ceiling, ms (default 50). */
  baseMs?: number;
  /** Backoff cap, ms (default 5000). */
  maxMs?: number;
}

export interface RetryOptions {
  /** What is being tried, for the reports ('read', 'write', a stage's name, ...). */
  step?: string;
  /** A graceful stop: work that holds nothing need not be finished (ForcedStop when it fires). */
  giveUpOn?: AbortSignal;
  /** Called on every failed attempt. */
  onRetry?: (error: Error) => void;
  /**
   * Retry only while this says so (default: every error but a non-retryable
   * TributaryError, which is thrown at once: a permanent error is named, not retried).
   */
  retryable?: (error: unknown) => boolean;
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** The default test of retryable errors: all but coded errors that say they are not. */
export function isRetryable(err: unknown): boolean {
  return !(err instanceof TributaryError) || err.retryable;
}

export class RetryPolicy {
  readonly baseMs: number;
  readonly maxMs: number;

  constructor(
    options: RetryPolicyOptions,
    private readonly health: ServerHealth,
    /** Aborted on a forced stop: every retry gives up. */
    private readonly force: AbortSignal,
    private readonly onFailure: (server: ServerName | undefined, error: Error, step: string, attempt: number) => void,
  ) {
    this.baseMs = options.baseMs ?? 50;
    this.maxMs = options.maxMs ?? 5000;
  }

  /** The delay before retry number `attempt` (0-based). */
  delay(attempt: number): number {
    return backoffDelay(attempt, { baseMs: this.baseMs, maxMs: this.maxMs });
  }

  /**
   * Runs `fn(attempt)` until it succeeds. A forced stop ends it (ForcedStop), and so
   * does `giveUpOn`. Failures mark `server` down (when given) and are reported.
   */
  async run<T>(server: ServerName | undefined, fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
    const stopped = () => this.force.aborted || options.giveUpOn?.aborted === true;
    // Made on the first failure only: most calls succeed at once.
    let wake: AbortSignal | undefined;
    const retryable = options.retryable ?? isRetryable;
    for (let attempt = 0; ; attempt++) {
      if (stopped()) throw new ForcedStop();
      try {
        const result = await fn(attempt);
        if (server) this.health.ok(server);
        return result;
      } catch (err) {
        if (stopped()) throw new ForcedStop();
        if (!retryable(err)) throw err;
        // A fault that is not an outage (a missing table, a permission, a read-only server, a
        // full disk) is still retried — the entries stay pending until it is fixed — but is
        // reported with its own code.
        const error = faultOf(server, err) ?? asError(err);
        if (server) this.health.failed(server, error);
        this.onFailure(server, error, options.step ?? 'operation', attempt + 1);
        options.onRetry?.(error);
        wake ??= options.giveUpOn ? AbortSignal.any([this.force, options.giveUpOn]) : this.force;
        await sleep(this.delay(attempt), wake);
      }
    }
  }
}
