/**
 * A per-process cap on entries read but not yet acknowledged. A worker reserves
 * permits before each read (so a read can never return more than the cap allows),
 * turns the reservation into held entries when the read returns (`received`), and
 * gives them back after the ack (`release`). Memory stays bounded however long the
 * backlog is.
 */
export class InFlight {
  private used = 0;
  private heldCount = 0;
  private waiters: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`in-flight limit must be a positive integer, got ${limit}`);
  }

  /** Permits in use: reservations for reads in progress plus entries held. */
  get current(): number {
    return this.used;
  }

  /** Entries read and not yet acknowledged (what `tributary_in_flight` reports). */
  get held(): number {
    return this.heldCount;
  }

  /** Reserves up to `wanted` permits without waiting; returns how many were granted (maybe 0). */
  tryAcquire(wanted: number): number {
    const granted = Math.max(0, Math.min(wanted, this.limit - this.used));
    this.used += granted;
    return granted;
  }

  /** Reserves between 1 and `wanted` permits, waiting until at least one is free (or `signal` aborts: 0). */
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

  /** A read with `reserved` permits returned `got` entries: keep those, give back the rest. */
  received(reserved: number, got: number): void {
    const kept = Math.min(got, reserved);
    this.heldCount += kept;
    this.free(reserved - kept);
  }

  /** `n` held entries were acknowledged (or abandoned). */
  release(n: number): void {
    if (n <= 0) return;
    this.heldCount = Math.max(0, this.heldCount - n);
    this.free(n);
  }

  private free(n: number): void {
    if (n <= 0) return;
    this.used = Math.max(0, this.used - n);
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
