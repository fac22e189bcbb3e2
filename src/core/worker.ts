import { ClientOfflineError } from '@redis/client';
import { createRedisConnection, destroyQuietly, send, type RedisConnection } from '../redis/client.js';
import { redisErrorIs, type RawStreamEntry } from '../redis/commands.js';
import type { RedisStreamSource } from '../sources/redis-stream.js';
import { backoffDelay, sleep } from './backoff.js';
import { BatchPolicy, type FlushReason } from './batch-policy.js';
import type { InFlight } from './in-flight.js';
import { ForcedStop, splitByDeliveries, type BatchProcessor, type BatchReport, type ServerHealth } from './processor.js';

export interface WorkerDeps {
  redisUrl: string;
  source: RedisStreamSource;
  commands: RedisConnection;
  processor: BatchProcessor;
  inFlight: InFlight;
  health: ServerHealth;
  policy: BatchPolicy;
  readCount: number;
  blockMs: number;
  /** Aborted on a graceful stop: waits that hold no entries give up. */
  stop: AbortSignal;
  maxDeliveries: number;
  force: AbortSignal;
  onBatch: (report: BatchReport) => void;
  onDeleted: (consumer: string, ids: string[]) => void;
  onRead: (count: number) => void;
}

/**
 * Finishes the consumer's own pending entries, left by an earlier run under the same
 * name, oldest first, in batches. Found pending at start means that run died holding
 * them, which counts as one delivery: they are claimed again without JUSTID (the count
 * goes up once per restart, never per retry within a run), and an entry past
 * MAX_DELIVERIES — one that keeps crashing the process — is dead-lettered.
 * Shared by workers and the reclaimer.
 */
export async function drainOwnPending(
  deps: Pick<WorkerDeps, 'source' | 'processor' | 'inFlight' | 'force' | 'stop' | 'maxDeliveries' | 'onBatch' | 'onDeleted'>,
  consumer: string,
  batchSize: number,
  stopping: () => boolean,
): Promise<void> {
  let after: string | undefined;
  const giveUpOn = deps.stop;
  while (!stopping()) {
    // Reserve capacity first, and ask for no more pending entries than it allows.
    const reserved = await deps.inFlight.acquire(batchSize, deps.force);
    if (reserved === 0) return; // forced stop
    let settled = false;
    let held = 0;
    try {
      const pending = await deps.processor.retry('redis', () => deps.source.pendingOf(consumer, reserved, after), { giveUpOn });
      if (pending.length === 0) return;
      after = pending.at(-1)!.id;
      const ids = pending.map((p) => p.id);
      const { entries, missing } = await deps.processor.retry('redis', () => deps.source.claim(consumer, ids), { giveUpOn });
      deps.inFlight.received(reserved, entries.length);
      settled = true;
      held = entries.length;
      if (missing.length > 0) {
        // Trimmed before anyone processed them: nothing left to write; clear them from the PEL.
        await deps.processor.retry('redis', () => deps.source.ack(missing));
        deps.onDeleted(consumer, missing);
      }
      if (entries.length === 0) continue;
      const deliveries = new Map(pending.map((p) => [p.id, p.deliveries + 1]));
      const { keep, dead } = splitByDeliveries(entries, deliveries, deps.maxDeliveries);
      deps.onBatch(await deps.processor.process(keep, { consumer, reason: 'pending', deliveries, deadLetters: dead }));
    } finally {
      if (!settled) deps.inFlight.received(reserved, 0);
      deps.inFlight.release(held);
    }
  }
}

/**
 * One consumer of the group: its own blocking connection, its own batch. Reads with
 * XREADGROUP, flushes by the batch policy, and acknowledges only what was committed.
 */
export class Worker {
  private stopping = false;
  private reader: RedisConnection | undefined;
  private readerId: string | undefined;
  private batch: RawStreamEntry[] = [];
  private batchBytes = 0;
  private firstAt: number | undefined;
  private permits = 0;
  /** The batch being written while the next one is read (see flush). */
  private writing: Promise<void> | undefined;

  constructor(
    readonly consumer: string,
    private readonly deps: WorkerDeps,
  ) {}

  async run(): Promise<void> {
    const reader = createRedisConnection(this.deps.redisUrl, {
      name: `tributary:${this.consumer}`,
      onError: (err) => this.deps.health.failed('redis', err),
    });
    this.reader = reader;
    reader.on('ready', () => {
      send(reader, ['CLIENT', 'ID']).then(
        (id) => (this.readerId = String(id)),
        () => {},
      );
    });
    try {
      await this.connect(reader);
      await drainOwnPending(this.deps, this.consumer, this.deps.policy.maxCount, () => this.stopping);
      await this.readLoop(reader);
      await this.flush('shutdown');
      await this.settleWrite();
    } catch (err) {
      if (!(err instanceof ForcedStop)) throw err;
    } finally {
      // The write still running (after a forced stop, or an error) releases its own entries.
      await this.writing?.catch(() => {});
      this.deps.inFlight.release(this.permits);
      this.permits = 0;
      destroyQuietly(reader);
    }
  }

  /** Stop reading: unblock the pending XREADGROUP; the loop flushes and acks what it holds. */
  stop(): void {
    this.stopping = true;
    void this.unblock();
  }

  /** Re-sends CLIENT UNBLOCK until the read loop has noticed (covers a read sent just after stop). */
  async unblock(): Promise<void> {
    for (let i = 0; i < 50 && this.reader?.isOpen; i++) {
      if (this.readerId) await send(this.deps.commands, ['CLIENT', 'UNBLOCK', this.readerId]).catch(() => {});
      await sleep(100, this.deps.force);
      if (this.deps.force.aborted) return;
    }
  }

  private async connect(reader: RedisConnection): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.deps.force.aborted) throw new ForcedStop();
      try {
        await reader.connect();
        this.readerId = String(await send(reader, ['CLIENT', 'ID']));
        return;
      } catch (err) {
        this.deps.health.failed('redis', err as Error);
        if (reader.isOpen) return;
        await sleep(backoffDelay(attempt, { baseMs: 100, maxMs: 5000 }), this.deps.force);
      }
    }
  }

  private async readLoop(reader: RedisConnection): Promise<void> {
    const { policy, inFlight } = this.deps;
    let attempt = 0;
    while (!this.stopping) {
      const state = { count: this.batch.length, firstAt: this.firstAt };
      const wanted = policy.nextReadCount(state, this.deps.readCount);
      let asked: number;
      if (this.batch.length > 0) {
        asked = inFlight.tryAcquire(wanted);
        if (asked === 0) {
          await this.flush('capacity');
          continue;
        }
      } else {
        asked = await inFlight.acquire(wanted, this.deps.force);
        if (asked === 0) continue;
        if (this.stopping) {
          // Stopped while waiting for capacity: do not start another read.
          inFlight.received(asked, 0);
          break;
        }
      }
      this.permits += asked;
      // With entries buffered, never block: an empty answer means "caught up, flush now".
      const blockMs =
        this.batch.length === 0
          ? this.deps.blockMs
          : policy.flushWhenCaughtUp
            ? undefined
            : policy.blockFor(state, Date.now(), this.deps.blockMs) || undefined;
      let got: RawStreamEntry[];
      try {
        got = (await this.deps.source.read(reader, this.consumer, asked, blockMs)).entries;
        this.deps.health.ok('redis');
        attempt = 0;
      } catch (err) {
        this.permits -= asked;
        inFlight.received(asked, 0);
        if (this.stopping) break;
        if (redisErrorIs(err, 'NOGROUP')) {
          // The stream (and with it the group) was deleted: recreate both and carry on.
          // At 0: the stream is new, so everything in it arrived after the deletion.
          await this.deps.source.ensureGroup('0').catch(() => {});
          await sleep(backoffDelay(attempt++, { baseMs: 50, maxMs: 5000 }), this.deps.force);
          continue;
        }
        if (err instanceof ClientOfflineError) {
          // The reader is reconnecting; its 'error' listener reported the break already.
          // Wait for it rather than report Redis down again while the other workers are
          // reading fine (that made the health state flap after every outage).
          await untilReady(reader, 1000, this.deps.force);
          if (this.deps.force.aborted) throw new ForcedStop();
          continue;
        }
        this.deps.health.failed('redis', err as Error);
        await sleep(backoffDelay(attempt++, { baseMs: 100, maxMs: 5000 }), this.deps.force);
        if (this.deps.force.aborted) throw new ForcedStop();
        continue;
      }
      this.permits -= asked - got.length;
      inFlight.received(asked, got.length);
      if (got.length > 0) {
        if (this.batch.length === 0) this.firstAt = Date.now();
        for (const e of got) {
          this.batch.push(e);
          this.batchBytes += e.size;
        }
        this.deps.onRead(got.length);
      }
      const reason = policy.check(
        { count: this.batch.length, bytes: this.batchBytes, firstAt: this.firstAt, lastRead: { got: got.length, asked } },
        Date.now(),
      );
      if (reason) await this.flush(reason);
    }
  }

  /**
   * Hands the batch to the processor and returns as soon as the write has started (after
   * the previous one has finished: at most one batch in the write per worker), so the
   * next read overlaps this batch's COPY and XACK instead of waiting for them.
   */
  private async flush(reason: FlushReason): Promise<void> {
    await this.settleWrite();
    if (this.batch.length === 0) return;
    const entries = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    this.firstAt = undefined;
    const writing = (async () => {
      try {
        const report = await this.deps.processor.process(entries, {
          consumer: this.consumer,
          reason,
        });
        this.deps.onBatch(report);
      } finally {
        this.permits -= entries.length;
        this.deps.inFlight.release(entries.length);
      }
    })();
    writing.catch(() => {}); // its outcome is taken by settleWrite
    this.writing = writing;
  }

  /** Waits for the batch being written, if any; rethrows what it failed with (a forced stop). */
  private async settleWrite(): Promise<void> {
    const writing = this.writing;
    if (writing === undefined) return;
    try {
      await writing;
    } finally {
      if (this.writing === writing) this.writing = undefined;
    }
  }
}

/** Resolves when `client` is ready again, after `maxMs`, or on `signal`; leaves no listener behind. */
function untilReady(client: RedisConnection, maxMs: number, signal: AbortSignal): Promise<void> {
  if (client.isReady || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off('ready', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, maxMs);
    client.on('ready', done);
    signal.addEventListener('abort', done);
  });
}
