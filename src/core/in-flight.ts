/**
 * A per-process cap on entries read but not yet acknowledged. Workers take permits
 * before each read and give them back after the ack, so memory stays bounded however
 * long the backlog is.
 */
export class InFlight {
  private used = 0;
  private waiters: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`in-flight limit must be a positive integer, got ${limit}`);
  }

  get current(): number {
    return this.used;
  }

  /** Takes up to `wanted` permits without waiting; returns how many were granted (maybe 0). */
  tryAcquire(wanted: number): number {
    const granted = Math.max(0, Math.min(wanted, this.limit - this.used));
    this.used += granted;
    return granted;
  }

  /** Takes between 1 and `wanted` permits, waiting until at least one is free (or `signal` aborts: 0). */
  async acquire(wanted: number, signal?: AbortSignal): Promise<number> {
    for (;;) {
      const granted = this.tryAcquire(wanted);
      if (granted > 0 || wanted <= 0 || signal?.aborted) return granted;
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        this.waiters.push(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }

  release(n: number): void {
    if (n <= 0) return;
    this.used = Math.max(0, this.used - n);
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
