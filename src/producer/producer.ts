import { TributaryError } from '../errors.js';
import { bulk, RespError, RespPipe, RespWriter, type RespReply } from '../redis/pipe.js';
import { xaddArgs, type TrimOption } from '../redis/commands.js';
import { FIELD } from '../core/entry.js';
import { detectRedisCluster, isClusterUrl } from '../redis/cluster.js';
import { checkPartitions, partitionOf, partitionStreamKey } from '../redis/partitions.js';
import { uuidv7 } from './uuidv7.js';

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
  /**
   * Approximate trimming on every XADD: `{ maxLen }` or `{ minId }` (default none).
   * XADD's MAXLEN / MINID cuts entries whether or not a group has read them, so it is
   * refused (TRIB_ERR_CONFIG_INVALID) unless `allowUnreadLoss: true` says the caller
   * accepts losing unread entries. `tributary trim` / TRIM_MAXLEN never cut unread entries.
   */
  trim?: TrimOption & { allowUnreadLoss?: boolean };
  /** CLIENT SETNAME of the producer's connection (default `tributary:producer`). */
  name?: string;
  /**
   * PARTITIONS: the stream is this many keys, `<streamKey>:p<i>` (default 1: the one key
   * `streamKey`). Each event goes to partitionOf(its partition key, partitions).
   */
  partitions?: number;
  /**
   * PARTITION_KEY: what routes an event with partitions > 1: `event_id` (the default) or
   * the name of a top-level field of the payload (a string, number or boolean; an event
   * without it is refused with TRIB_ERR_PRODUCE_INVALID and nothing of its batch is sent).
   */
  partitionKey?: string;
}

/**
 * The partition key value of an event: its event ID for `event_id`, else the payload's
 * top-level field `partitionKey` — a string as it is, a number or boolean as its JSON
 * text (`42`, `true`). Anything else (missing, null, an object) is refused with
 * TRIB_ERR_PRODUCE_INVALID naming the field. Pure.
 */
export function partitionKeyValue(partitionKey: string, payload: unknown, eventId: string): string {
  if (partitionKey === 'event_id') return eventId;
  const value = typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? (payload as Record<string, unknown>)[partitionKey] : undefined;
  if (typeof value === 'string') return value;
  if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean') return String(value);
  throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', [
    `the partition key (PARTITION_KEY) is the payload field ${JSON.stringify(partitionKey)}, and this event's payload ` +
      (value === undefined ? 'has no such top-level field' : `has it as ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}, not a string, number or boolean`),
  ]);
}

/** The partition (0..partitions-1) of an event. Pure. */
export function eventPartition(partitionKey: string, partitions: number, payload: unknown, eventId: string): number {
  return partitionOf(partitionKeyValue(partitionKey, payload, eventId), partitions);
}

/** Checks an event; returns its payload as JSON and its produced_at as text. */
function checkEvent(type: string, payload: unknown, options: ProduceOptions): [json: string, producedAt: string] {
  const json = checkPayload(type, payload, options);
  return [json, String(options.producedAt ?? Date.now())];
}

/** Checks an event (type, payload, eventId, producedAt); returns its payload as JSON. */
function checkPayload(type: string, payload: unknown, options: ProduceOptions): string {
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
  if (options.eventId !== undefined && (typeof options.eventId !== 'string' || options.eventId === '' || options.eventId.length > 512)) {
    throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', ['eventId must be 1 to 512 characters']);
  }
  const producedAt = options.producedAt;
  // null, as undefined: now.
  if (producedAt != null && (typeof producedAt !== 'number' || !Number.isFinite(producedAt) || producedAt < 0)) {
    throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', ['producedAt must be ms since epoch']);
  }
  return json;
}

/** Builds the stream fields of one event per the stream contract. Pure. */
export function eventFields(type: string, payload: unknown, options: ProduceOptions = {}): Record<string, string> {
  const [json, producedAt] = checkEvent(type, payload, options);
  return { [FIELD.eventType]: type, [FIELD.payload]: json, [FIELD.eventId]: options.eventId ?? uuidv7(), [FIELD.producedAt]: producedAt };
}

/** The RESP text every XADD of this producer starts with: key, trimming, `*` (auto ID). Pure. */
export function xaddPrefix(streamKey: string, trim?: TrimOption): string {
  const head = xaddArgs(streamKey, {}, trim); // XADD key [MAXLEN|MINID ~ n] *
  // 8 more arguments follow: the four field names and values.
  return `*${head.length + 8}\r\n${head.map(bulk).join('')}`;
}

const NAME_TYPE = bulk(FIELD.eventType);
const NAME_PAYLOAD = bulk(FIELD.payload);
const NAME_ID = bulk(FIELD.eventId);
const NAME_AT = bulk(FIELD.producedAt);
const NAME_ID_BYTES = Buffer.from(NAME_ID);
const NAME_AT_BYTES = Buffer.from(NAME_AT);

/**
 * Appends events to the stream. `produceBatch` checks the whole batch first, then
 * sends it as one pipelined write of XADDs on the producer's own connection and
 * returns the entry IDs in order.
 *
 * Delivery: if the connection breaks while a batch is in flight, the batch fails with
 * TRIB_ERR_REDIS_UNAVAILABLE and some of its events may have been added. Sending it
 * again with the same `eventId`s is safe: the engine writes each event_id once.
 */
export class Producer {
  readonly streamKey: string;
  /** PARTITIONS (1: the one key streamKey). */
  readonly partitions: number;
  readonly partitionKey: string;
  private readonly pipe: RespPipe;
  /** XADD key [trim] * event_type: what every entry starts with. */
  private readonly prefixType: string;
  /** With partitions > 1: the same, per partition key. */
  private readonly partitionPrefixes: string[];
  /** On a Redis Cluster with partitions > 1: a connection per partition (each follows its slot's MOVED). */
  private readonly partitionPipes: (RespPipe | undefined)[] = [];
  /** Whether the URL is a Redis Cluster (asked once, at the first partitioned batch). */
  private cluster: Promise<boolean> | undefined;
  private sizeHint = 64 * 1024;
  private readonly heads = new Map<string, Buffer>();

  constructor(private readonly options: ProducerOptions) {
    this.streamKey = options.streamKey ?? 'events';
    if (options.trim && options.trim.allowUnreadLoss !== true) {
      throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [
        'trim (Producer option)',
        'XADD MAXLEN/MINID deletes entries no consumer group has read yet; pass trim.allowUnreadLoss: true to accept losing them, ' +
          'or leave trim out and let the engine trim (TRIM_MAXLEN / TRIM_MAX_AGE, or `tributary trim`), which never cuts unread entries',
      ]);
    }
    this.partitions = checkPartitions(options.partitions ?? 1);
    this.partitionKey = options.partitionKey ?? 'event_id';
    if (this.partitionKey === '') throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['partitionKey (Producer option)', 'must be event_id or a payload field name']);
    this.pipe = new RespPipe({ url: options.redisUrl, name: options.name ?? 'tributary:producer' });
    this.prefixType = xaddPrefix(this.streamKey, options.trim) + NAME_TYPE;
    this.partitionPrefixes =
      this.partitions > 1 ? Array.from({ length: this.partitions }, (_, i) => xaddPrefix(partitionStreamKey(this.streamKey, i, this.partitions), options.trim) + NAME_TYPE) : [];
  }

  /** The partition an event goes to (0 with one partition); TRIB_ERR_PRODUCE_INVALID when it lacks the partition key. */
  partitionOf(payload: unknown, eventId: string): number {
    return this.partitions > 1 ? eventPartition(this.partitionKey, this.partitions, payload, eventId) : 0;
  }

  /** Connects now (otherwise the first call does); fails with TRIB_ERR_REDIS_UNAVAILABLE. */
  async connect(): Promise<void> {
    await this.pipe.connect();
  }

  async produce(type: string, payload: unknown, options?: ProduceOptions): Promise<string> {
    const [id] = await this.produceBatch([{ type, payload, ...options }]);
    return id!;
  }

  async produceBatch(events: readonly ProducerEvent[]): Promise<string[]> {
    if (this.partitions > 1) return (await this.produceBatchRouted(events)).ids;
    if (events.length === 0) return [];
    // Check and encode everything before sending anything: a bad event rejects the whole batch.
    const out = new RespWriter(this.sizeHint);
    let now = -1;
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      const json = checkPayload(e.type, e.payload, e);
      // XADD key [trim] * event_type <type> payload: encoded once per type.
      out.bytes(this.typeHead(e.type)).bulk(json).bytes(NAME_ID_BYTES);
      if (e.eventId === undefined) out.uuidv7();
      else out.bulk(e.eventId);
      out.bytes(NAME_AT_BYTES);
      const at = e.producedAt ?? (now < 0 ? (now = Date.now()) : now);
      if (Number.isSafeInteger(at)) out.intBulk(at);
      else out.bulk(String(at));
    }
    return this.send(out, events.length);
  }

  /** The bytes every XADD of an event of `type` starts with, up to the payload's value (a few types: cached). */
  private typeHead(type: string): Buffer {
    let head = this.heads.get(type);
    if (head === undefined) {
      head = Buffer.from(this.prefixType + bulk(type) + NAME_PAYLOAD);
      if (this.heads.size < 256) this.heads.set(type, head);
    }
    return head;
  }

  /**
   * As produceBatch, with the partition each event went to (all 0 with one partition).
   * With partitions > 1 every event's partition key is found first (a UUIDv7 event ID is
   * made here when absent): one event without it refuses the batch, nothing sent.
   */
  async produceBatchRouted(events: readonly ProducerEvent[]): Promise<{ ids: string[]; partitions: number[] }> {
    if (this.partitions <= 1) return { ids: await this.produceBatch(events), partitions: events.map(() => 0) };
    const entries: Record<string, string>[] = [];
    const partitions: number[] = [];
    for (const e of events) {
      const [json, producedAt] = checkEvent(e.type, e.payload, e);
      const eventId = e.eventId ?? uuidv7();
      partitions.push(eventPartition(this.partitionKey, this.partitions, e.payload, eventId));
      entries.push({ [FIELD.eventType]: e.type, [FIELD.payload]: json, [FIELD.eventId]: eventId, [FIELD.producedAt]: producedAt });
    }
    return { ids: await this.sendRouted(entries, partitions), partitions };
  }

  /**
   * Appends entries whose fields `eventFields()` built — checked, the payload already
   * JSON text — in the same pipelined write as produceBatch (the HTTP ingest API checks
   * each event with the contract first, then sends them here without encoding twice).
   * With partitions > 1, `partitions` gives each entry's partition (Producer.partitionOf);
   * without it they are found from the fields (the payload parsed again when the
   * partition key is a payload field).
   */
  async produceFields(entries: readonly Record<string, string>[], partitions?: readonly number[]): Promise<string[]> {
    if (entries.length === 0) return [];
    if (this.partitions > 1) {
      for (const f of entries) {
        if (f[FIELD.eventType] === undefined || f[FIELD.payload] === undefined || f[FIELD.eventId] === undefined || f[FIELD.producedAt] === undefined) {
          throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', ['produceFields takes the fields eventFields() builds']);
        }
      }
      const parts = partitions ?? entries.map((f) => this.partitionOf(this.partitionKey === 'event_id' ? undefined : JSON.parse(f[FIELD.payload]!), f[FIELD.eventId]!));
      if (parts.length !== entries.length || parts.some((p) => !Number.isInteger(p) || p < 0 || p >= this.partitions)) {
        throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', [`produceFields: one partition from 0 to ${this.partitions - 1} per entry`]);
      }
      return this.sendRouted(entries, parts);
    }
    const out = new RespWriter(this.sizeHint);
    for (const f of entries) {
      const type = f[FIELD.eventType];
      const payload = f[FIELD.payload];
      const id = f[FIELD.eventId];
      const at = f[FIELD.producedAt];
      if (type === undefined || payload === undefined || id === undefined || at === undefined) {
        throw new TributaryError('TRIB_ERR_PRODUCE_INVALID', ['produceFields takes the fields eventFields() builds']);
      }
      out.ascii(this.prefixType).bulk(type).ascii(NAME_PAYLOAD).bulk(payload).ascii(NAME_ID).bulk(id).ascii(NAME_AT).bulk(at);
    }
    return this.send(out, entries.length);
  }

  private async send(out: RespWriter, count: number): Promise<string[]> {
    // Start the next batch's buffer at about this one's size.
    this.sizeHint = Math.min(64 * 1024 * 1024, Math.max(64 * 1024, out.length + (out.length >> 3)));
    const replies = await this.pipe.pipeline(out.finish(), count);
    return idsOf(replies);
  }

  /**
   * Sends checked entries to their partitions' keys. On a single Redis: one pipelined
   * write, as produceBatch. On a Redis Cluster the partitions live on different masters:
   * one write per partition, each on the partition's own connection, which follows its
   * slot (MOVED, ASK) as RespPipe does. The IDs come back in the entries' order.
   */
  private async sendRouted(entries: readonly Record<string, string>[], partitions: readonly number[]): Promise<string[]> {
    if (entries.length === 0) return [];
    this.cluster ??= isClusterUrl(this.options.redisUrl) ? Promise.resolve(true) : detectRedisCluster(this.options.redisUrl);
    const write = (out: RespWriter, f: Record<string, string>, p: number) =>
      out
        .ascii(this.partitionPrefixes[p]!)
        .bulk(f[FIELD.eventType]!)
        .ascii(NAME_PAYLOAD)
        .bulk(f[FIELD.payload]!)
        .ascii(NAME_ID)
        .bulk(f[FIELD.eventId]!)
        .ascii(NAME_AT)
        .bulk(f[FIELD.producedAt]!);
    if (!(await this.cluster)) {
      const out = new RespWriter(this.sizeHint);
      for (let i = 0; i < entries.length; i++) write(out, entries[i]!, partitions[i]!);
      return this.send(out, entries.length);
    }
    const groups = new Map<number, number[]>();
    for (let i = 0; i < entries.length; i++) {
      const g = groups.get(partitions[i]!);
      if (g) g.push(i);
      else groups.set(partitions[i]!, [i]);
    }
    const replies: RespReply[] = new Array<RespReply>(entries.length);
    const sent = [...groups].map(async ([p, indexes]) => {
      const out = new RespWriter(64 * 1024);
      for (const i of indexes) write(out, entries[i]!, p);
      const pipe = (this.partitionPipes[p] ??= new RespPipe({ url: this.options.redisUrl, name: this.options.name ?? 'tributary:producer' }));
      const got = await pipe.pipeline(out.finish(), indexes.length);
      indexes.forEach((i, k) => (replies[i] = got[k]!));
    });
    const results = await Promise.allSettled(sent);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return idsOf(replies);
  }

  /** Appends raw field maps (for tools and tests that need entries outside the contract). */
  async addRaw(fields: Record<string, string>): Promise<string> {
    return idsOf([await this.pipe.command(xaddArgs(this.streamKey, fields, this.options.trim))])[0]!;
  }

  /** Waits for batches in flight, then closes the connection. */
  async close(): Promise<void> {
    await Promise.all([this.pipe.close(), ...this.partitionPipes.map((p) => p?.close())]);
  }
}

/** The entry IDs; an XADD Redis refused (wrong key type: PRODUCE_REFUSED; out of memory: REDIS_OOM) fails the call. */
function idsOf(replies: readonly RespReply[]): string[] {
  const refused = replies.filter((r): r is RespError => r instanceof RespError);
  if (refused.length > 0) {
    // Out of memory is the server's state, not the event's fault: its own code, retryable.
    const oom = refused.find((r) => r.message.startsWith('OOM'));
    if (oom) throw new TributaryError('TRIB_ERR_REDIS_OOM', [`${refused.length} of ${replies.length} events`, oom.message]);
    throw new TributaryError('TRIB_ERR_PRODUCE_REFUSED', [refused.length, replies.length, refused[0]!.message]);
  }
  return replies.map(String);
}

export function createProducer(options: ProducerOptions): Producer {
  return new Producer(options);
}
