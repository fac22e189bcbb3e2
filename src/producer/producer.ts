import { v7 as uuidv7 } from 'uuid';
import { TributaryError } from '../errors.js';
import { createRedisConnection, send, type RedisConnection } from '../redis/client.js';
import { xaddArgs, type TrimOption } from '../redis/commands.js';
import { FIELD } from '../core/entry.js';

export interface ProduceOptions {
  /** Idempotency key; a UUIDv7 is generated when absent. */
  eventId?: string;
  /** ms since epoch; now when absent. */
  producedAt?: number;
}

export interface ProducerEvent extends ProduceOptions {
  type: string;
  payload: unknown;
}

export interface ProducerOptions {
  /** Redis URL (redis:// or rediss://). */
  redisUrl: string;
  /** Stream to append to (default `events`). */
  streamKey?: string;
  /** Approximate trimming on every XADD: `{ maxLen }` or `{ minId }` (default none). */
  trim?: TrimOption;
  /** Use this connection instead of opening one (it is not closed by `close()`). */
  connection?: RedisConnection;
}

/** Builds the stream fields of one event per the stream contract. Pure. */
export function eventFields(type: string, payload: unknown, options: ProduceOptions = {}): Record<string, string> {
  if (typeof type !== 'string' || type.length === 0) {
    throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', ['type must be a non-empty string']);
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch (err) {
    throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', [`payload is not JSON-serialisable: ${(err as Error).message}`]);
  }
  if (json === undefined) throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', ['payload is not JSON-serialisable']);
  if (options.eventId !== undefined && (options.eventId === '' || options.eventId.length > 512)) {
    throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', ['eventId must be 1 to 512 characters']);
  }
  const producedAt = options.producedAt ?? Date.now();
  if (!Number.isFinite(producedAt) || producedAt < 0) {
    throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', ['producedAt must be ms since epoch']);
  }
  return {
    [FIELD.eventType]: type,
    [FIELD.payload]: json,
    [FIELD.eventId]: options.eventId ?? uuidv7(),
    [FIELD.producedAt]: String(producedAt),
  };
}

/**
 * Appends events to the stream. `produceBatch` sends the whole batch in one
 * pipelined round trip and returns the entry IDs in order.
 */
export class Producer {
  readonly streamKey: string;
  private readonly client: RedisConnection;
  private readonly owned: boolean;
  private connecting: Promise<unknown> | undefined;

  constructor(private readonly options: ProducerOptions) {
    this.streamKey = options.streamKey ?? 'events';
    this.owned = options.connection === undefined;
    this.client = options.connection ?? createRedisConnection(options.redisUrl, { name: 'tributary:producer', failFast: false });
  }

  async produce(type: string, payload: unknown, options?: ProduceOptions): Promise<string> {
    const [id] = await this.produceBatch([{ type, payload, ...options }]);
    return id!;
  }

  async produceBatch(events: readonly ProducerEvent[]): Promise<string[]> {
    if (events.length === 0) return [];
    // Validate everything before sending anything: a bad event rejects the whole batch.
    const commands = events.map((e) =>
      xaddArgs(this.streamKey, eventFields(e.type, e.payload, e), this.options.trim),
    );
    await this.ready();
    const multi = this.client.multi();
    for (const args of commands) multi.addCommand(args);
    const replies = (await multi.execAsPipeline()) as unknown[];
    return replies.map(String);
  }

  /** Appends raw field maps (for tools and tests that need entries outside the contract). */
  async addRaw(fields: Record<string, string>): Promise<string> {
    await this.ready();
    return String(await send(this.client, xaddArgs(this.streamKey, fields, this.options.trim)));
  }

  async close(): Promise<void> {
    if (this.owned && this.client.isOpen) await this.client.close();
  }

  private async ready(): Promise<void> {
    if (this.client.isReady) return;
    this.connecting ??= this.client.isOpen ? Promise.resolve() : this.client.connect();
    await this.connecting;
  }
}

export function createProducer(options: ProducerOptions): Producer {
  return new Producer(options);
}
