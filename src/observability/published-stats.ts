import { send, type RedisConnection } from '../redis/client.js';
import { statsKey } from '../redis/keys.js';
import type { BatchReport } from '../core/runner.js';

/**
 * Publishes a pipeline's batch counters to a Redis hash (`tributary:stats:<stream>:<group>`)
 * so `tributary monitor` can show flush reasons and average batch size for every
 * process of the group. Counts accumulate in memory and go out in one pipelined
 * HINCRBY round per interval; a failed publish keeps its counts for the next one.
 *
 * Fields: `batches`, `rows`, `flush:<reason>` (size, time, caught_up, capacity,
 * shutdown, pending, reclaim) — cumulative.
 */
export class StatsPublisher {
  private pending = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  readonly key: string;

  constructor(
    private readonly redis: RedisConnection,
    streamKey: string,
    group: string,
    private readonly intervalMs = 1000,
    /** The hash to publish to (default `tributary:stats:<stream>:<group>`; the orders pipeline: `<prefix>:batch-stats`). */
    key?: string,
  ) {
    this.key = key ?? statsKey(streamKey, group);
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  record(report: BatchReport): void {
    this.add('batches', 1);
    this.add('rows', report.size);
    this.add(`flush:${report.reason}`, 1);
  }

  /** Sends what has accumulated; safe to call concurrently (one flush at a time). */
  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = (async () => {
      try {
        await Promise.all([...batch].map(([field, n]) => send(this.redis, ['HINCRBY', this.key, field, String(n)])));
      } catch {
        for (const [field, n] of batch) this.add(field, n); // keep them for the next round
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  private add(field: string, n: number): void {
    this.pending.set(field, (this.pending.get(field) ?? 0) + n);
  }
}
