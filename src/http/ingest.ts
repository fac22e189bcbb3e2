/**
 * The ingest API: `POST /v1/streams/{stream}/events`, a JSON array or NDJSON of
 * `{ event_type, payload, event_id?, produced_at? }`, appended to the stream through the
 * producer's pipelined path (one socket write of XADDs per request).
 *
 * Every event is checked first, with the producer's own check (eventFields) and the
 * engine's contract parser (parseEntry), so an event accepted here is never
 * dead-lettered for its shape; one bad event refuses the whole request (400, each bad
 * event's index and code) and nothing of it is added. Backpressure: 429 while the
 * stream's group lags by more than INGEST_MAX_LAG (see BacklogWatcher).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FIELD, parseEntry } from '../core/entry.js';
import { isTributaryError, TributaryError, type ErrorCode } from '../errors.js';
import { eventFields, eventPartition, Producer } from '../producer/producer.js';
import { uuidv7 } from '../producer/uuidv7.js';
import { RespPipe } from '../redis/pipe.js';
import type { TokenCheck } from './auth.js';
import { BacklogWatcher, type IngestStream } from './backlog.js';
import { HttpError, sendError, statusOf } from './errors.js';

export type { IngestStream } from './backlog.js';

export interface IngestOptions {
  redisUrl: string;
  /** The streams that may be written (any other is 404), each with the groups whose lag holds it back. */
  streams: readonly IngestStream[];
  /** INGEST_MAX_LAG: 429 while a group has more entries than this not yet delivered. */
  maxLag: number;
  /** INGEST_MAX_BODY_BYTES: larger bodies are 413. */
  maxBodyBytes: number;
  /** INGEST_MAX_EVENTS: more events in one request is 413. */
  maxEvents: number;
  /** How often the lag is measured at most, per stream (default 250 ms). */
  lagProbeMs?: number;
  /** Retry-After of a 429 or 503, seconds (default 1). */
  retryAfterS?: number;
}

/** Nesting a payload may have (objects and arrays within each other); deeper is refused. */
export const MAX_PAYLOAD_DEPTH = 64;
/** How many bad events a 400 lists (the count says how many there were). */
const MAX_LISTED_ERRORS = 100;
const FIELDS = new Set(['event_type', 'payload', 'event_id', 'produced_at']);

/** One refused event of a 400: its index in the request and why. */
export interface EventError {
  index: number;
  code: ErrorCode;
  message: string;
}

export interface IngestStats {
  requests: number;
  accepted: number;
  events: number;
  rejected: number;
  throttled: number;
}

/** An event that passed every check: the stream fields it is added as. */
interface Checked {
  fields: Record<string, string>;
  eventId: string;
  /** Its partition (0 when the stream has one). */
  partition: number;
}

export class Ingest {
  readonly stats: IngestStats = { requests: 0, accepted: 0, events: 0, rejected: 0, throttled: 0 };
  private readonly producers = new Map<string, Producer>();
  private readonly lagPipe: RespPipe;
  readonly backlog: BacklogWatcher;
  private readonly byStream: Map<string, IngestStream>;

  constructor(
    readonly options: IngestOptions,
    /** Called with the events added by each accepted request (metrics). */
    private readonly onAdded: (stream: string, count: number) => void = () => {},
    private readonly log?: { warn(obj: object, msg: string): void },
  ) {
    this.byStream = new Map(options.streams.map((s) => [s.stream, s]));
    this.lagPipe = new RespPipe({ url: options.redisUrl, name: 'tributary:http:lag' });
    this.backlog = new BacklogWatcher(this.lagPipe, options.lagProbeMs ?? 250);
  }

  get streams(): string[] {
    return [...this.byStream.keys()];
  }

  /**
   * Registers the route in its own scope: its body parsers (JSON and NDJSON as text,
   * parsed by the handler) do not apply to other routes. The token check and the stream
   * check run before the body is read.
   */
  register(app: FastifyInstance, auth: TokenCheck): void {
    void app.register(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser(['application/json', 'application/x-ndjson'], { parseAs: 'string', bodyLimit: this.options.maxBodyBytes }, (_req, body, done) => done(null, body));
      scope.post<{ Params: { stream: string } }>(
        '/v1/streams/:stream/events',
        {
          bodyLimit: this.options.maxBodyBytes,
          onRequest: [
            auth.hook,
            async (request: FastifyRequest<{ Params: { stream: string } }>, reply: FastifyReply) => {
              if (!this.byStream.has(request.params.stream)) await sendError(reply, this.unknownStream(request.params.stream));
            },
          ],
        },
        (request, reply) => this.handle(request, reply),
      );
    });
  }

  private unknownStream(stream: string): HttpError {
    const shown = stream.length > 100 ? `${JSON.stringify(stream.slice(0, 100))}...` : JSON.stringify(stream);
    return new HttpError(404, 'TRIB_ERR_INGEST_UNKNOWN_STREAM', [shown, this.streams.join(', ') || 'none']);
  }

  private async handle(request: FastifyRequest<{ Params: { stream: string } }>, reply: FastifyReply): Promise<unknown> {
    this.stats.requests++;
    const target = this.byStream.get(request.params.stream)!;
    const body = request.body;
    if (typeof body !== 'string') {
      throw new HttpError(415, 'TRIB_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE', [request.headers['content-type'] === undefined ? '(none)' : 'of this request']);
    }
    const ndjson = /^application\/x-ndjson\b/i.test(request.headers['content-type'] ?? '');
    let checked: Checked[];
    try {
      checked = this.check(body, ndjson, target.stream, target);
    } catch (err) {
      this.stats.rejected++;
      throw err;
    }

    const retryAfter = String(this.options.retryAfterS ?? 1);
    let backlog;
    try {
      backlog = await this.backlog.backlog(target);
    } catch (err) {
      throw this.serverFault(err, retryAfter);
    }
    if (backlog.lag > this.options.maxLag) {
      this.stats.throttled++;
      throw new HttpError(
        429,
        'TRIB_ERR_INGEST_BACKPRESSURE',
        [target.stream, backlog.lag, backlog.group ?? '(none: the stream length)', this.options.maxLag],
        { lag: backlog.lag, maxLag: this.options.maxLag },
        { 'retry-after': retryAfter },
      );
    }
    let ids: string[];
    try {
      ids = await this.producer(target).produceFields(
        checked.map((e) => e.fields),
        checked.map((e) => e.partition),
      );
    } catch (err) {
      throw this.serverFault(err, retryAfter);
    }
    this.stats.accepted++;
    this.stats.events += ids.length;
    this.onAdded(target.stream, ids.length);
    return reply
      .code(202)
      .header('cache-control', 'no-store')
      .send({
        stream: target.stream,
        count: ids.length,
        ids,
        event_ids: checked.map((e) => e.eventId),
        // A partitioned stream: each event's partition (its entry ID is in <stream>:p<partition>).
        ...((target.partitions ?? 1) > 1 ? { partitions: checked.map((e) => e.partition) } : {}),
      });
  }

  /** Redis does not answer or refuses (OOM): 503 with a fixed message; the details go to the server log only. */
  private serverFault(err: unknown, retryAfter: string): Error {
    if (!isTributaryError(err)) return err as Error;
    this.log?.warn({ code: err.code, err: err.message }, `ingest failed: ${err.code}`);
    const status = statusOf(err.code);
    const message =
      err.code === 'TRIB_ERR_REDIS_OOM'
        ? 'Redis is out of memory; some events of this request may have been added: send it again with the same event_ids'
        : err.code === 'TRIB_ERR_REDIS_UNAVAILABLE'
          ? 'Redis does not answer; some events of this request may have been added: send it again with the same event_ids'
          : `Redis refused the events (${err.code})`;
    return new HttpError(status, err.code, message, {}, status === 503 ? { 'retry-after': retryAfter } : {});
  }

  private producer(target: IngestStream): Producer {
    let p = this.producers.get(target.stream);
    if (!p) {
      p = new Producer({
        redisUrl: this.options.redisUrl,
        streamKey: target.stream,
        name: 'tributary:http:ingest',
        partitions: target.partitions ?? 1,
        ...(target.partitionKey === undefined ? {} : { partitionKey: target.partitionKey }),
      });
      this.producers.set(target.stream, p);
    }
    return p;
  }

  /** Parses and checks the whole body; throws a 400/413 HttpError, or returns every event checked. */
  check(body: string, ndjson: boolean, stream: string, target?: IngestStream): Checked[] {
    const values: unknown[] = [];
    const errors: EventError[] = [];
    const unparsed = new Set<number>();
    if (ndjson) {
      const lines = body.split('\n');
      let count = 0;
      for (const line of lines) if (line.trim() !== '') count++;
      this.checkCount(count);
      for (const line of lines) {
        if (line.trim() === '') continue;
        const index = values.length;
        try {
          values.push(JSON.parse(line));
        } catch (err) {
          values.push(undefined);
          unparsed.add(index);
          errors.push({ index, code: 'TRIB_ERR_HTTP_BAD_REQUEST', message: new TributaryError('TRIB_ERR_HTTP_BAD_REQUEST', [`line of event #${index} is not JSON: ${(err as Error).message}`]).message });
        }
      }
    } else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch (err) {
        throw new HttpError(400, 'TRIB_ERR_HTTP_BAD_REQUEST', [`the body is not JSON: ${(err as Error).message}`]);
      }
      if (!Array.isArray(parsed)) throw new HttpError(400, 'TRIB_ERR_HTTP_BAD_REQUEST', ['the body must be a JSON array of events (or NDJSON with Content-Type application/x-ndjson)']);
      this.checkCount(parsed.length);
      values.push(...parsed);
    }
    if (values.length === 0) throw new HttpError(400, 'TRIB_ERR_HTTP_BAD_REQUEST', ['the body holds no events']);

    const out: Checked[] = [];
    const now = Date.now();
    for (let i = 0; i < values.length; i++) {
      if (unparsed.has(i)) continue;
      const r = checkEvent(values[i], i, stream, now, target);
      if ('code' in r) errors.push(r);
      else out.push(r);
    }
    if (errors.length > 0) {
      errors.sort((a, b) => a.index - b.index);
      throw new HttpError(400, 'TRIB_ERR_INGEST_INVALID', [errors.length, values.length], { errors: errors.slice(0, MAX_LISTED_ERRORS), invalid: errors.length, total: values.length });
    }
    return out;
  }

  private checkCount(count: number): void {
    if (count > this.options.maxEvents) throw new HttpError(413, 'TRIB_ERR_INGEST_TOO_MANY_EVENTS', [count, this.options.maxEvents]);
  }

  async close(): Promise<void> {
    await Promise.all([...this.producers.values()].map((p) => p.close().catch(() => {})));
    await this.lagPipe.close().catch(() => {});
  }
}

/**
 * One event: its shape (an object of the four fields, with their types), then the
 * producer's check and the engine's contract parser on the fields it would be stored as.
 */
function checkEvent(value: unknown, index: number, stream: string, now: number, target?: IngestStream): Checked | EventError {
  const entry = `#${index}`;
  const bad = (code: ErrorCode, ...args: string[]): EventError => ({ index, code, message: new TributaryError(code, [entry, ...args]).message });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad('TRIB_ERR_ENTRY_BAD_FIELD', 'event', 'must be an object { event_type, payload, event_id?, produced_at? }');
  const e = value as Record<string, unknown>;
  for (const key in e) {
    if (!FIELDS.has(key)) return bad('TRIB_ERR_ENTRY_BAD_FIELD', 'event', `unknown field ${JSON.stringify(key.slice(0, 40))} (the fields are event_type, payload, event_id, produced_at)`);
  }
  const type = e.event_type;
  if (type === undefined || type === null || type === '') return bad('TRIB_ERR_ENTRY_MISSING_FIELD', 'event_type');
  if (typeof type !== 'string') return bad('TRIB_ERR_ENTRY_BAD_FIELD', 'event_type', 'must be a non-empty string');
  if (type.includes('\u0000')) return bad('TRIB_ERR_ENTRY_BAD_FIELD', 'event_type', 'must not contain the character U+0000 (Postgres text cannot hold it)');
  if (!('payload' in e) || e.payload === undefined) return bad('TRIB_ERR_ENTRY_MISSING_FIELD', 'payload');
  if (nestsDeeperThan(e.payload, MAX_PAYLOAD_DEPTH)) return bad('TRIB_ERR_ENTRY_BAD_PAYLOAD', `nested deeper than ${MAX_PAYLOAD_DEPTH} levels`);
  let eventId: string;
  if (e.event_id === undefined || e.event_id === null) eventId = uuidv7();
  else if (typeof e.event_id !== 'string') return bad('TRIB_ERR_ENTRY_BAD_FIELD', 'event_id', 'must be a string of 1 to 512 characters');
  else if (e.event_id.includes('\u0000')) return bad('TRIB_ERR_ENTRY_BAD_FIELD', 'event_id', 'must not contain the character U+0000');
  else eventId = e.event_id;
  let producedAt = now;
  const at = e.produced_at;
  if (at !== undefined && at !== null) {
    if (typeof at === 'number') producedAt = at;
    else if (typeof at === 'string' && /^\d{1,16}$/.test(at)) producedAt = Number(at);
    else return bad('TRIB_ERR_ENTRY_BAD_FIELD', 'produced_at', 'must be milliseconds since the epoch (a number)');
  }
  let fields: Record<string, string>;
  try {
    fields = eventFields(type, e.payload, { eventId, producedAt });
  } catch (err) {
    // The producer's own check (a non-finite produced_at, an event_id out of bounds).
    const message = (err as Error).message.replace(/^cannot produce event: /, '');
    return bad(/payload/.test(message) ? 'TRIB_ERR_ENTRY_BAD_PAYLOAD' : 'TRIB_ERR_ENTRY_BAD_FIELD', ...(/payload/.test(message) ? [message] : [/eventId/.test(message) ? 'event_id' : 'produced_at', message]));
  }
  // jsonb refuses the character U+0000 (the engine would dead-letter the row).
  if (hasNulEscape(fields.payload!)) return bad('TRIB_ERR_ENTRY_BAD_PAYLOAD', 'holds the character U+0000, which Postgres jsonb cannot store');
  // The engine's contract parser on the fields as stored. The payload is JSON.stringify's
  // output (JSON by construction): a stand-in spares parsing it a second time.
  const parsed = parseEntry({ id: entry, fields: { ...fields, [FIELD.payload]: '0' } }, stream);
  if (!parsed.ok) return { index, code: parsed.problem.code, message: new TributaryError(parsed.problem.code, parsed.problem.args).message };
  let partition = 0;
  const n = target?.partitions ?? 1;
  if (n > 1) {
    try {
      partition = eventPartition(target?.partitionKey ?? 'event_id', n, e.payload, eventId);
    } catch (err) {
      return { index, code: 'TRIB_ERR_PRODUCE_INVALID', message: `${entry}: ${(err as Error).message}` };
    }
  }
  return { fields, eventId, partition };
}

/** `\u0000` in JSON text (not `\\u0000`, an escaped backslash followed by "u0000"). */
function hasNulEscape(json: string): boolean {
  let at = json.indexOf('\\u0000');
  while (at !== -1) {
    let slashes = 0;
    for (let i = at - 1; i >= 0 && json.charCodeAt(i) === 0x5c; i--) slashes++;
    if (slashes % 2 === 0) return true;
    at = json.indexOf('\\u0000', at + 1);
  }
  return false;
}

/**
 * Whether a parsed JSON value nests arrays and objects deeper than `limit` (a scalar is
 * depth 0). It stops at the limit, so its recursion is bounded whatever the value. Pure.
 */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (limit === 0) return true;
  if (Array.isArray(value)) {
    for (const v of value) if (typeof v === 'object' && v !== null && nestsDeeperThan(v, limit - 1)) return true;
    return false;
  }
  for (const k in value) {
    const v = (value as Record<string, unknown>)[k];
    if (typeof v === 'object' && v !== null && nestsDeeperThan(v, limit - 1)) return true;
  }
  return false;
}
