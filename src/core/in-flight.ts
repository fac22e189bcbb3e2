/**
 * A per-process cap on messages read but not yet acknowledged, in messages and in
 * bytes. A worker reserves permits before each read (so a read can never return more
 * messages than the cap allows), turns the reservation into held messages when the
 * read returns (`received`), and gives them back after the ack (`release`). The byte cap
 * is checked before each read: no read starts while the held bytes are at the cap, so
 * they exceed it by at most one read. Memory stays bounded however long the backlog is.
 */
export class InFlight {
  private used = 0;
  private heldCount = 0;
  private heldBytesNow = 0;
  private waiters: Array<() => void> = [];

  constructor(
    readonly limit: number,
    /** Bytes held at which reads wait (default: no byte cap). */
    readonly byteLimit = Number.POSITIVE_INFINITY,
  ) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`in-flight limit must be a positive integer, got ${limit}`);
    if (!(byteLimit >= 1)) throw new RangeError(`in-flight byte limit must be positive, got ${byteLimit}`);
  }

  /** Permits in use: reservations for reads in progress plus messages held. */
  get current(): number {
    return this.used;
  }

  /** Messages read and not yet acknowledged (what `tributary_in_flight` reports). */
  get held(): number {
    return this.heldCount;
  }

  /** Bytes of the messages held. */
  get heldBytes(): number {
    return this.heldBytesNow;
  }

  /** Reserves up to `wanted` permits without waiting; returns how many were granted (maybe 0). */
  tryAcquire(wanted: number): number {
    if (this.heldBytesNow >= this.byteLimit) return 0;
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

  /** A read with `reserved` permits returned `got` messages of `bytes` bytes: keep those, give back the rest. */
  received(reserved: number, got: number, bytes = 0): void {
    const kept = Math.min(got, reserved);
    this.heldCount += kept;
    this.heldBytesNow += bytes;
    this.free(reserved - kept);
  }

  /** `n` held messages (of `bytes` bytes) were acknowledged (or abandoned). */
  release(n: number, bytes = 0): void {
    if (n <= 0 && bytes <= 0) return;
    this.heldCount = Math.max(0, this.heldCount - n);
    this.heldBytesNow = Math.max(0, this.heldBytesNow - bytes);
    this.free(n, bytes > 0);
  }

  private free(n: number, bytesFreed = false): void {
    if (n <= 0 && !bytesFreed) return;
    this.used = Math.max(0, this.used - n);
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
