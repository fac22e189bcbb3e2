import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';

/**
 * The consumer name of this process when CONSUMER_NAME is not set: host, PID and a short
 * random suffix, fixed for the life of the process. Two processes on one host (a `start`
 * and a `demo`) never share consumer names — shared names made each finish, and clear as
 * "trimmed", what the other was holding — and a PID reused after a restart is not mistaken
 * for the old process.
 */
export const DEFAULT_CONSUMER_NAME = `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;

/**
 * Every setting in one place: its environment variable, its default and its
 * validation. CLI flags use the camelCase key; `.env.example` and the README's
 * configuration table are checked against this list by a test.
 */
export interface SettingSpec {
  /** Environment variable name. */
  readonly env: string;
  /** One line for the README and `.env.example`. */
  readonly doc: string;
}

/**
 * A whole number in [min, max], with one message for every way to miss it ("must be a
 * whole number from 1 to 1000"), not zod's "expected int, received number".
 */
const wholeNumber = (min: number, max = Number.MAX_SAFE_INTEGER) => {
  const error = max === Number.MAX_SAFE_INTEGER ? `must be a whole number, at least ${min}` : `must be a whole number from ${min} to ${max.toLocaleString('en-US')}`;
  return z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error });
};
const positiveInt = (max = Number.MAX_SAFE_INTEGER) => wholeNumber(1, max);
const redisUrl = z
  .string()
  .url()
  .refine((u) => /^rediss?:\/\//.test(u), 'must start with redis:// or rediss://');
const postgresUrl = z
  .string()
  .url()
  .refine((u) => /^postgres(ql)?:\/\//.test(u), 'must start with postgres:// or postgresql://');
const identifier = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier (a-z, 0-9, _)');

export const configSchema = z
  .object({
    redisUrl: redisUrl.default('redis://127.0.0.1:6379'),
    redisClusterNodes: z
      .string()
      .regex(/^[^\s,]+(,[^\s,]+)*$/, 'must be Redis URLs (or host:port) separated by commas, without spaces')
      .optional(),
    databaseUrl: postgresUrl.default('postgres://127.0.0.1:5432/tributary'),
    streamKey: z.string().min(1).default('events'),
    partitions: positiveInt(1024).default(1),
    partitionKey: z.string().min(1).default('event_id'),
    partitionLeaseMs: wholeNumber(300).default(10_000),
    group: z.string().min(1).default('tributary'),
    groupStartId: z
      .string()
      .regex(/^(\$|0|\d+(-\d+)?)$/, 'must be 0, $ or a stream ID')
      .default('0'),
    consumerName: z
      .string()
      .min(1)
      .regex(/^[^\s]+$/, 'must not contain spaces')
      .default(DEFAULT_CONSUMER_NAME),
    numWorkers: positiveInt(1000).default(2),
    batchSize: positiveInt(1_000_000).default(5000),
    batchMaxBytes: positiveInt().default(8 * 1024 * 1024),
    batchTimeoutMs: positiveInt().default(2000),
    xreadCount: positiveInt(1_000_000).default(500),
    xreadBlockMs: positiveInt().default(5000),
    maxDeliveries: positiveInt().default(5),
    claimIdleMs: positiveInt().default(60_000),
    claimIntervalMs: positiveInt().default(5000),
    dlqStream: z.string().min(1).default('events:dead'),
    maxInFlight: positiveInt().default(20_000),
    maxInFlightBytes: positiveInt().default(256 * 1024 * 1024),
    maxEntryBytes: positiveInt(512 * 1024 * 1024).default(64 * 1024 * 1024),
    pgSchema: identifier.default('public'),
    eventsTable: identifier.default('events'),
    writeTimeoutMs: positiveInt().default(30_000),
    pgQueryTimeoutMs: wholeNumber(0).default(120_000),
    redisCommandTimeoutMs: wholeNumber(0).default(30_000),
    metricsPort: wholeNumber(0, 65535).optional(),
    metricsHost: z.string().min(1).default('127.0.0.1'),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    httpPort: wholeNumber(0, 65535).optional(),
    httpHost: z.string().min(1).optional(),
    httpAllowedHosts: z
      .string()
      .regex(
        /^(\*|(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?)(:\d{1,5})?(,(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?)(:\d{1,5})?)*)$/,
        'must be * or host names (name or name:port, [IPv6]:port) separated by commas, without spaces',
      )
      .optional(),
    httpToken: z
      .string()
      .min(16, 'must be at least 16 characters (a long random string: openssl rand -hex 32)')
      .max(4096, 'must be at most 4096 characters')
      .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
      .optional(),
    ingestStreams: z
      .string()
      .regex(/^[^\s,]+(,[^\s,]+)*$/, 'must be stream keys separated by commas, without spaces')
      .optional(),
    ingestMaxLag: positiveInt().default(100_000),
    ingestMaxBodyBytes: positiveInt(1024 * 1024 * 1024).default(4 * 1024 * 1024),
    ingestMaxEvents: positiveInt(1_000_000).default(1000),
    trimMaxLen: positiveInt().optional(),
    trimMaxAge: z
      .string()
      .regex(/^\d+(ms|s|m|h|d)$/, 'must be a duration such as 90s, 30m, 12h or 7d')
      .optional(),
    trimIntervalMs: positiveInt().default(60_000),
    // The orders pipeline (`tributary orders ...`).
    ordersSchema: identifier.default('orders'),
    ordersPrefix: z
      .string()
      .min(1)
      .regex(/^[^\s]+$/, 'must not contain spaces')
      .default('orders'),
    ordersWorkers: positiveInt(1000).default(4),
    ordersBatchSize: positiveInt(1_000_000).default(5000),
    ordersBlockMs: positiveInt().default(1000),
    ordersStaleMs: positiveInt().default(30_000),
    ordersRecoverIntervalMs: positiveInt().default(5000),
    dedupWindowS: positiveInt().default(3600),
    dedupBucketS: positiveInt().default(300),
    maxQueueDepth: positiveInt().default(100_000),
    revenueWindowMin: positiveInt().default(15),
    cacheTtlS: positiveInt().default(86_400),
    viewRefreshMinMs: wholeNumber(0).default(5000),
  })
  .superRefine((c, ctx) => {
    if (c.maxInFlight < c.batchSize) {
      ctx.addIssue({
        code: 'custom',
        path: ['maxInFlight'],
        message: `must be at least BATCH_SIZE (${c.batchSize}), or no batch could ever fill`,
      });
    }
    // A reclaim idle time shorter than a batch's life lets the reclaimer steal work
    // that is still in flight and do it twice.
    if (c.claimIdleMs < 2 * c.batchTimeoutMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['claimIdleMs'],
        message: `must be at least twice BATCH_TIMEOUT_MS (${c.batchTimeoutMs}) so in-flight batches are not reclaimed`,
      });
    }
    // The client-side limit must leave the server's statement timeout room to cancel a write first.
    if (c.pgQueryTimeoutMs > 0 && c.pgQueryTimeoutMs <= c.writeTimeoutMs) {
      ctx.addIssue({ code: 'custom', path: ['pgQueryTimeoutMs'], message: `must exceed WRITE_TIMEOUT_MS (${c.writeTimeoutMs}), or 0 for no limit` });
    }
    if (c.claimIdleMs < 3 * 1000) {
      ctx.addIssue({ code: 'custom', path: ['claimIdleMs'], message: 'must be at least 3000 ms' });
    }
    // An idle worker beats once per blocking take: a shorter stale time would declare it dead.
    if (c.ordersStaleMs < Math.max(1000, 3 * c.ordersBlockMs)) {
      ctx.addIssue({
        code: 'custom',
        path: ['ordersStaleMs'],
        message: `must be at least 1000 and at least three times ORDERS_BLOCK_MS (${c.ordersBlockMs}), or idle workers would be judged dead`,
      });
    }
    if (c.dedupBucketS > c.dedupWindowS) {
      ctx.addIssue({ code: 'custom', path: ['dedupBucketS'], message: `must not exceed DEDUP_WINDOW_S (${c.dedupWindowS})` });
    }
    if (c.dedupWindowS / c.dedupBucketS > 1000) {
      ctx.addIssue({ code: 'custom', path: ['dedupBucketS'], message: `must be at least DEDUP_WINDOW_S / 1000 (${Math.ceil(c.dedupWindowS / 1000)}): at most 1000 buckets per window` });
    }
  });

export type TributaryConfig = z.infer<typeof configSchema>;
export type ConfigKey = keyof TributaryConfig;

export const SETTINGS: Record<ConfigKey, SettingSpec> = {
  redisUrl: {
    env: 'REDIS_URL',
    doc: 'Redis URL (`redis://` or `rediss://` for TLS). Unset: the server found by `tributary up`, else redis://127.0.0.1:6379.',
  },
  redisClusterNodes: {
    env: 'REDIS_CLUSTER_NODES',
    doc: 'Redis Cluster seed nodes, comma-separated (`redis://host:port` or `host:port`). Unset: REDIS_URL is asked (`INFO cluster`) and used as the seed when it is a cluster node.',
  },
  databaseUrl: {
    env: 'DATABASE_URL',
    doc: 'Postgres URL. Unset: the server found by `tributary up`, else postgres://127.0.0.1:5432/tributary.',
  },
  streamKey: { env: 'STREAM_KEY', doc: 'Redis Stream the events are read from.' },
  partitions: {
    env: 'PARTITIONS',
    doc: 'Partitions of the stream: 1 is the one key STREAM_KEY; N > 1 is N keys `<STREAM_KEY>:p<i>`, each read by one process at a time (leases). Changing it remaps keys.',
  },
  partitionKey: {
    env: 'PARTITION_KEY',
    doc: 'With PARTITIONS > 1, the event field producers route by: every event with one value goes to one partition, in order (`event_id`, or a top-level payload field).',
  },
  partitionLeaseMs: {
    env: 'PARTITION_LEASE_MS',
    doc: 'With PARTITIONS > 1, the life of a partition\'s lease: renewed every third of it by its owner; a process gone (killed) hands its partitions over this long after, a rebalance takes up to a third of it to start.',
  },
  group: { env: 'GROUP', doc: 'Consumer group name (created with MKSTREAM if missing).' },
  groupStartId: {
    env: 'GROUP_START_ID',
    doc: 'Where a new group starts: `0` (everything already in the stream), `$` (only new entries) or an entry ID.',
  },
  consumerName: {
    env: 'CONSUMER_NAME',
    doc: 'Consumer name prefix; workers are `<name>-<n>`. Must be unique per running process (default: `<host>-<pid>-<random>`, unique per process; a name you set is used as given).',
  },
  numWorkers: {
    env: 'NUM_WORKERS',
    doc: 'Workers per process, each with its own blocking Redis connection and one write to Postgres at a time (the Python original used 5; 2 drained fastest when Postgres shares the machine, see Performance).',
  },
  batchSize: {
    env: 'BATCH_SIZE',
    doc: 'Flush a batch (one COPY, one transaction) at this many entries; it fills only while reads come back full (a backlog), and a worker that has caught up flushes what it has. The Python original used 500; Postgres spends about half as much per row on 5,000-row COPYs.',
  },
  batchMaxBytes: {
    env: 'BATCH_MAX_BYTES',
    doc: 'Flush a batch when its entries hold this many bytes of field data (bounds memory and statement size when entries are large).',
  },
  batchTimeoutMs: { env: 'BATCH_TIMEOUT_MS', doc: 'Flush a batch this long after its first entry arrived.' },
  xreadCount: { env: 'XREAD_COUNT', doc: 'COUNT of each XREADGROUP (never more than the batch still has room for). Fewer, larger reads: below BATCH_SIZE a batch takes several round trips to fill.' },
  xreadBlockMs: { env: 'XREAD_BLOCK_MS', doc: 'BLOCK of each XREADGROUP when the worker has nothing buffered.' },
  maxDeliveries: {
    env: 'MAX_DELIVERIES',
    doc: 'An entry reclaimed with more deliveries than this is dead-lettered.',
  },
  claimIdleMs: {
    env: 'CLAIM_IDLE_MS',
    doc: 'Entries pending longer than this are reclaimed from their consumer (XAUTOCLAIM).',
  },
  claimIntervalMs: { env: 'CLAIM_INTERVAL_MS', doc: 'How often the reclaim loop runs.' },
  dlqStream: { env: 'DLQ_STREAM', doc: 'Dead-letter stream (entries are also kept in the dead_letter_queue table).' },
  maxInFlight: {
    env: 'MAX_IN_FLIGHT',
    doc: 'Cap on entries read but not yet acknowledged, per process (bounds memory whatever the backlog).',
  },
  maxInFlightBytes: {
    env: 'MAX_IN_FLIGHT_BYTES',
    doc: 'Cap on the bytes of entries read but not yet acknowledged, per process: reads wait at the cap and are sized to each worker\'s share of the room left.',
  },
  maxEntryBytes: {
    env: 'MAX_ENTRY_BYTES',
    doc: 'An entry larger than this is dead-lettered unprocessed (TRIB_ERR_ENTRY_TOO_LARGE; the dead-letter stream keeps its bytes, the table a note), its batch-mates written. At most 512 MiB.',
  },
  pgSchema: { env: 'PG_SCHEMA', doc: 'Postgres schema holding the tables (created by migrations).' },
  eventsTable: {
    env: 'EVENTS_TABLE',
    doc: 'Table the events are written to (created like `events` if missing); one per group for fan-out.',
  },
  metricsPort: {
    env: 'METRICS_PORT',
    doc: 'Alias of HTTP_PORT, kept from before the ingest API (HTTP_PORT wins when both are set).',
  },
  metricsHost: {
    env: 'METRICS_HOST',
    doc: 'Alias of HTTP_HOST (HTTP_HOST wins when both are set): 127.0.0.1 (this machine only) by default.',
  },
  httpPort: {
    env: 'HTTP_PORT',
    doc: '`start`, `run` and `orders process` serve /metrics, /healthz, /readyz and the ingest API on this port (0: any free port; unset: no HTTP server). `tributary serve --port` is the same server alone.',
  },
  httpHost: {
    env: 'HTTP_HOST',
    doc: 'Address the HTTP server binds: 127.0.0.1 (this machine only) when unset; `0.0.0.0` or `::` to serve other machines (set HTTP_TOKEN first).',
  },
  httpAllowedHosts: {
    env: 'HTTP_ALLOWED_HOSTS',
    doc: 'Host names the HTTP server answers to besides localhost, 127.0.0.1, [::1] and its bound address (and any IP when bound to 0.0.0.0 or ::), comma-separated, `name` or `name:port`; any other Host header is refused with 403 (the defence against DNS rebinding). `*`: no check.',
  },
  logLevel: { env: 'LOG_LEVEL', doc: 'CLI log level: trace, debug, info, warn, error, fatal or silent.' },
  httpToken: {
    env: 'HTTP_TOKEN',
    doc: 'Bearer token every write of the HTTP server needs (ingest, actions); unset: the server is read-only and refuses writes with 401. At least 16 characters; environment or .env only, never a flag (flags show in `ps`).',
  },
  ingestStreams: {
    env: 'INGEST_STREAMS',
    doc: 'Streams the ingest API may write, separated by commas (unset: STREAM_KEY for `serve` and `start`, the files\' streams for `run`, none for `orders process`); any other stream is 404.',
  },
  ingestMaxLag: {
    env: 'INGEST_MAX_LAG',
    doc: 'Ingest answers 429 with Retry-After while the consumer group has more than this many entries not yet delivered to it (XINFO GROUPS lag; the stream length when Redis cannot tell, or no group exists).',
  },
  ingestMaxBodyBytes: { env: 'INGEST_MAX_BODY_BYTES', doc: 'Largest ingest request body, bytes; a larger one is refused with 413 before it is read whole.' },
  ingestMaxEvents: { env: 'INGEST_MAX_EVENTS', doc: 'Most events in one ingest request; more is refused with 413 (TRIB_ERR_INGEST_TOO_MANY_EVENTS).' },
  trimMaxLen: {
    env: 'TRIM_MAXLEN',
    doc: 'The engine trims the stream to about this many entries, never past what a group has not yet acknowledged (unset: no trimming).',
  },
  trimMaxAge: {
    env: 'TRIM_MAX_AGE',
    doc: 'The engine trims entries older than this (e.g. 7d), never past what a group has not yet acknowledged (unset: no trimming).',
  },
  trimIntervalMs: { env: 'TRIM_INTERVAL_MS', doc: 'How often the engine trims when TRIM_MAXLEN or TRIM_MAX_AGE is set.' },
  writeTimeoutMs: {
    env: 'WRITE_TIMEOUT_MS',
    doc: 'Postgres statement timeout for a batch write; a timed-out write is retried, not acknowledged.',
  },
  redisCommandTimeoutMs: {
    env: 'REDIS_COMMAND_TIMEOUT_MS',
    doc: 'A Redis command with no reply within this long (plus the block time of a blocking read) makes its connection reconnect, failing what waited on it as a lost connection (retried), instead of waiting for the kernel to give up on the socket (~15 min); 0: no limit.',
  },
  pgQueryTimeoutMs: {
    env: 'PG_QUERY_TIMEOUT_MS',
    doc: 'A Postgres query with no reply within this long drops its connection and is retried (a black-holed or half-dead server), instead of waiting for the kernel to give up on the socket (~15 min). Must exceed WRITE_TIMEOUT_MS and the longest COPY, view refresh or migration; 0: no limit.',
  },
  ordersSchema: { env: 'ORDERS_SCHEMA', doc: 'Orders pipeline: Postgres schema of its tables (reference data, staging, orders, rejects, views).' },
  ordersPrefix: { env: 'ORDERS_PREFIX', doc: 'Orders pipeline: prefix of its Redis keys (`<prefix>:queue`, `<prefix>:dedup:*`, `<prefix>:cache:*`, ...).' },
  ordersWorkers: { env: 'ORDERS_WORKERS', doc: 'Orders pipeline: workers per `orders process`, each with its own Redis connection.' },
  ordersBatchSize: { env: 'ORDERS_BATCH_SIZE', doc: 'Orders pipeline: orders per batch (one take, one COPY, one promote).' },
  ordersBlockMs: { env: 'ORDERS_BLOCK_MS', doc: 'Orders pipeline: how long an idle worker waits for orders (BLMOVE timeout).' },
  ordersStaleMs: {
    env: 'ORDERS_STALE_MS',
    doc: 'Orders pipeline: a worker whose heartbeat is this old is dead and its processing list goes back to the queue (one only stalled is fenced: its late promote and ack are refused).',
  },
  ordersRecoverIntervalMs: { env: 'ORDERS_RECOVER_INTERVAL_MS', doc: 'Orders pipeline: how often dead workers are looked for.' },
  dedupWindowS: { env: 'DEDUP_WINDOW_S', doc: 'Orders pipeline: an order whose order_id was processed this many seconds ago or less is a duplicate.' },
  dedupBucketS: { env: 'DEDUP_BUCKET_S', doc: 'Orders pipeline: width of one dedup bucket (a Redis set, UNLINKed once it left the window), seconds.' },
  maxQueueDepth: {
    env: 'MAX_QUEUE_DEPTH',
    doc: 'Orders pipeline: `orders generate` waits while the queue holds this many orders or more (queued plus in processing).',
  },
  revenueWindowMin: { env: 'REVENUE_WINDOW_MIN', doc: 'Orders pipeline: length of the revenue sliding window shown by `orders stats`, minutes.' },
  cacheTtlS: { env: 'CACHE_TTL_S', doc: 'Orders pipeline: a lookup-cache version expires this many seconds after it is published.' },
  viewRefreshMinMs: {
    env: 'VIEW_REFRESH_MIN_MS',
    doc: 'Orders pipeline: at most one materialized-view refresh starts per this many ms; completion signals meanwhile are coalesced.',
  },
};

/** Settings only the orders pipeline reads: `tributary orders ...` takes these as flags, the event commands do not. */
export const ORDERS_SETTINGS = [
  'ordersSchema',
  'ordersPrefix',
  'ordersWorkers',
  'ordersBatchSize',
  'ordersBlockMs',
  'ordersStaleMs',
  'ordersRecoverIntervalMs',
  'dedupWindowS',
  'dedupBucketS',
  'maxQueueDepth',
  'revenueWindowMin',
  'cacheTtlS',
  'viewRefreshMinMs',
] as const satisfies readonly ConfigKey[];

/** Settings both pipelines read. */
export const SHARED_SETTINGS = ['redisUrl', 'redisClusterNodes', 'databaseUrl', 'consumerName', 'logLevel'] as const satisfies readonly ConfigKey[];
/** Secrets: never a flag (a command line shows in `ps`), never echoed in an error. */
export const SECRET_SETTINGS = ['httpToken'] as const satisfies readonly ConfigKey[];

