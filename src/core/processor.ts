import { TributaryError } from '../errors.js';
import { RawStreamEntry, type StreamEntry } from '../redis/commands.js';
import type { PostgresEventsSink, SinkWriteResult } from '../sinks/postgres-events.js';
import type { RedisStreamSource } from '../sources/redis-stream.js';
import { backoffDelay, sleep } from './backoff.js';
import type { FlushReason } from './batch-policy.js';
import type { DeadLetter, DeadLetterWriter } from './dead-letter.js';
import { parseEntry, parseRawEntry, type EntryProblem, type EventRow, type RawEventRow } from './entry.js';

/** A batch on its way to Postgres: rows for COPY (raw) or for the statement path. */
interface PreparedBatch {
  rows: EventRow[];
  /** The COPY path's rows; null once the batch is on the statement path. */
  raw: RawEventRow[] | null;
  letters: DeadLetter[];
  byId: Map<string, StreamEntry>;
  /** Statements already spent (a refused COPY). */
  statements: number;
}

type WrittenRow = Pick<EventRow, 'streamId' | 'producedAt'>;

export type ServerName = 'redis' | 'postgres';

/** What one processed batch did; emitted as the engine's 'batch' event. */
export interface BatchReport {
  consumer: string;
  reason: FlushReason | 'pending' | 'reclaim';
  size: number;
  inserted: number;
  duplicates: number;
  deadLettered: number;
  /** Time spent in the Postgres write, retries included (ms). */
  writeMs: number;
  /** Statements sent for the write (more than 1 when a bad row forced a split). */
  statements: number;
  /** produced_at of the written rows, for end-to-end latency (ms since epoch). */
  producedAt: number[];
  committedAt: number;
}

/** Tracks whether each server is up, and reports only changes of state. */
export class ServerHealth {
  private readonly down = new Map<ServerName, number>();

  constructor(
    private readonly onChange: (event: { server: ServerName; up: boolean; error?: Error; downMs?: number }) => void,
    /** Called on every failed attempt (each one is retried). */
    private readonly onFailure?: (server: ServerName, error: Error) => void,
  ) {}

  failed(server: ServerName, error: Error): void {
    this.onFailure?.(server, error);
    if (this.down.has(server)) return;
    this.down.set(server, Date.now());
    this.onChange({ server, up: false, error });
  }

  ok(server: ServerName): void {
    const since = this.down.get(server);
    if (since === undefined) return;
    this.down.delete(server);
    this.onChange({ server, up: true, downMs: Date.now() - since });
  }

  isDown(server: ServerName): boolean {
    return this.down.has(server);
  }
}

export class ForcedStop extends Error {
  constructor() {
    super('forced stop');
    this.name = 'ForcedStop';
  }
}

export interface ProcessorDeps {
  source: RedisStreamSource;
  sink: PostgresEventsSink;
  deadLetters: DeadLetterWriter;
  health: ServerHealth;
  /** Aborted on a forced stop: retry loops give up without acknowledging. */
  force: AbortSignal;
  claimIdleMs: number;
  retry?: { baseMs?: number; maxMs?: number };
  onDeadLetter?: (letter: DeadLetter) => void;
}

export interface ProcessOptions {
  consumer: string;
  reason: BatchReport['reason'];
  /** Delivery counts, when known (reclaimed entries); default 1. */
  deliveries?: Map<string, number>;
  /** Entries already judged dead (e.g. too many deliveries); they skip the write. */
  deadLetters?: DeadLetter[];
}

/**
 * Takes a batch from read to acknowledged: parse against the stream contract,
 * write the good rows (one statement), dead-letter the poison ones, then one XACK.
 * Transient failures are retried with capped, jittered backoff until they pass or a
 * forced stop aborts; nothing is acknowledged before its rows are committed.
 */
export class BatchProcessor {
  constructor(private readonly deps: ProcessorDeps) {}

  async process(entries: readonly StreamEntry[], options: ProcessOptions): Promise<BatchReport> {
    const batch: PreparedBatch = { rows: [], raw: null, letters: [...(options.deadLetters ?? [])], byId: new Map(), statements: 0 };
    // Entries read for the first time go by COPY (RawStreamEntry, from XREADGROUP >).
    // Redeliveries (own pending, reclaimed) are likely already stored: straight to the
    // statement path, whose ON CONFLICT skips them.
    const copy = options.reason !== 'pending' && options.reason !== 'reclaim' && entries.every((e) => e instanceof RawStreamEntry);
    if (copy) {
      batch.raw = [];
      for (const entry of entries as readonly RawStreamEntry[]) {
        const parsed = parseRawEntry(entry, this.deps.source.key);
        if (parsed.ok) {
          batch.raw.push(parsed.row);
          batch.byId.set(entry.id, entry);
        } else this.reject(batch, entry, parsed.problem, options);
      }
    } else {
      for (const entry of entries) this.parseInto(batch, entry, options);
    }
    const heldIds = [...entries.map((e) => e.id), ...(options.deadLetters ?? []).map((l) => l.entry.id)];
    // While the batch is worked on (a long write, an outage), keep its entries fresh so no
    // process reclaims work still in progress here. XCLAIM ... JUSTID counts no delivery.
    const toucher = setInterval(
      () => void this.deps.source.touch(options.consumer, heldIds).catch(() => {}),
      Math.max(500, Math.floor(this.deps.claimIdleMs / 3)),
    );
    try {
      return await this.writeAndAck(entries.length, batch, options);
    } finally {
      clearInterval(toucher);
    }
  }

  private parseInto(batch: PreparedBatch, entry: StreamEntry, options: ProcessOptions): void {
    const parsed = parseEntry(entry, this.deps.source.key);
    if (parsed.ok) {
      batch.rows.push(parsed.row);
      batch.byId.set(entry.id, entry);
    } else this.reject(batch, entry, parsed.problem, options);
  }

  private reject(batch: PreparedBatch, entry: StreamEntry, problem: EntryProblem, options: ProcessOptions): void {
    const err = new TributaryError(problem.code, problem.args);
    batch.letters.push({ entry, code: err.code, error: err.message, deliveries: options.deliveries?.get(entry.id) ?? 1 });
  }

  /**
   * COPY first when the batch is raw; if Postgres refuses it for its content (a bad row,
   * a duplicate), the batch drops to the statement path once: parsed as text (so bad JSON
   * gets its own error, as on any other path), then written with ON CONFLICT DO NOTHING
   * and bad rows isolated by splitting.
   */
  private async write(batch: PreparedBatch, options: ProcessOptions): Promise<SinkWriteResult> {
    if (batch.raw !== null) {
      batch.statements++;
      const copied = await this.deps.sink.copy(batch.raw);
      if (copied !== null) return { inserted: copied, duplicates: batch.raw.length - copied, rejected: [], statements: batch.statements };
      const raw = batch.raw;
      batch.raw = null;
      batch.byId.clear();
      for (const row of raw) this.parseInto(batch, row.entry, options);
    }
    const written = await this.deps.sink.write(batch.rows);
    return { ...written, statements: written.statements + batch.statements };
  }

  private async writeAndAck(entryCount: number, batch: PreparedBatch, options: ProcessOptions): Promise<BatchReport> {
    const started = Date.now();
    const written = await this.retry('postgres', () => this.write(batch, options));
    const writeMs = Date.now() - started;
    const committedAt = Date.now();
    const { letters, byId } = batch;
    const rows: readonly WrittenRow[] = batch.raw ?? batch.rows;

    for (const rejected of written.rejected) {
      const entry = byId.get(rejected.row.streamId)!;
      const err = new TributaryError('TRIB_ERR_ENTRY_REJECTED', [entry.id, rejected.sqlState, rejected.message]);
      letters.push({ entry, code: err.code, error: err.message, deliveries: options.deliveries?.get(entry.id) ?? 1 });
    }
    if (letters.length > 0) {
      await this.retry('postgres', () => this.deps.deadLetters.record(letters));
      await this.retry('redis', () => this.deps.deadLetters.moveInRedis(letters));
      for (const letter of letters) this.deps.onDeadLetter?.(letter);
    }

    const rejectedIds = new Set(written.rejected.map((r) => r.row.streamId));
    const ackIds: string[] = [];
    const producedAt: number[] = [];
    for (const r of rows) {
      if (rejectedIds.size > 0 && rejectedIds.has(r.streamId)) continue;
      ackIds.push(r.streamId);
      if (r.producedAt !== null) producedAt.push(r.producedAt);
    }
    await this.retry('redis', () => this.deps.source.ack(ackIds));

    return {
      consumer: options.consumer,
      reason: options.reason,
      size: entryCount + (options.deadLetters?.length ?? 0),
      inserted: written.inserted,
      duplicates: written.duplicates,
      deadLettered: letters.length,
      writeMs,
      statements: written.statements,
      producedAt,
      committedAt,
    };
  }

  /**
   * Runs `fn` until it succeeds, with capped, jittered backoff between attempts and a
   * state change reported once. A forced stop ends it (ForcedStop); so does `giveUpOn`
   * — for work that holds no entries yet, which a graceful stop need not wait for.
   */
  async retry<T>(server: ServerName, fn: () => Promise<T>, options: { giveUpOn?: AbortSignal } = {}): Promise<T> {
    const stopped = () => this.deps.force.aborted || options.giveUpOn?.aborted === true;
    for (let attempt = 0; ; attempt++) {
      if (stopped()) throw new ForcedStop();
      try {
        const result = await fn();
        this.deps.health.ok(server);
        return result;
      } catch (err) {
        if (stopped()) throw new ForcedStop();
        this.deps.health.failed(server, err instanceof Error ? err : new Error(String(err)));
        await sleep(backoffDelay(attempt, { baseMs: 50, maxMs: 5000, ...this.deps.retry }), anySignal(this.deps.force, options.giveUpOn));
      }
    }
  }
}

/**
 * Splits entries by their delivery count: those delivered more than `max` times go to
 * the dead letters (TRIB_ERR_ENTRY_MAX_DELIVERIES), the rest are processed.
 */
export function splitByDeliveries(
  entries: readonly StreamEntry[],
  deliveries: ReadonlyMap<string, number>,
  max: number,
): { keep: StreamEntry[]; dead: DeadLetter[] } {
  const keep: StreamEntry[] = [];
  const dead: DeadLetter[] = [];
  for (const entry of entries) {
    const n = deliveries.get(entry.id) ?? 1;
    if (n <= max) {
      keep.push(entry);
      continue;
    }
    const err = new TributaryError('TRIB_ERR_ENTRY_MAX_DELIVERIES', [entry.id, n, max]);
    dead.push({ entry, code: err.code, error: err.message, deliveries: n });
  }
  return { keep, dead };
}

function anySignal(a: AbortSignal, b?: AbortSignal): AbortSignal {
  return b ? AbortSignal.any([a, b]) : a;
}
