/** The shapes of the /api answers the pages read (see src/http/dashboard.ts). */

export interface Info {
  readOnly: boolean;
  refreshMs: number;
  historyMs: number;
  stream: string;
  group: string;
  partitions: number;
  pgSchema: string;
  eventsTable: string;
  orders: { prefix: string; schema: string; maxQueueDepth: number };
}

export interface Consumer {
  name: string;
  pending: number;
  idleMs: number;
}

export interface Group {
  name: string;
  configured: boolean;
  consumerCount: number;
  pending: number;
  lastDeliveredId: string;
  lag: number | null;
  lagSource: string;
  consumers: Consumer[];
}

export interface Snapshot {
  stream: { key: string; exists: boolean; length: number; lastGeneratedId: string | null };
  groups: Group[];
  deadLetters: { stream: string; streamLength: number; rows: number; growing: boolean };
  rates: { producedPerSec: number | null; writtenPerSec: number | null };
}

export interface BatchCounters {
  batches: number;
  rows: number;
  avgSize: number | null;
  flushReasons: Record<string, number>;
}

export interface Pipeline {
  id: string;
  stream: string;
  partitioned: boolean;
  group: string | null;
  groups: string[];
  configured: boolean;
  parts: Array<{ key: string; deadLetterStream: string; snapshot: Snapshot }>;
  totals: {
    length: number;
    pending: number;
    lag: number | null;
    producedPerSec: number | null;
    writtenPerSec: number | null;
    deadLetters: number;
    deadLettersGrowing: boolean;
  };
  batches: BatchCounters & { published: boolean; interval: BatchCounters | null };
  latencyMs: { p50: number | null; p99: number | null; max: number | null; samples: number } | null;
  events: { table: string; exists: boolean; rows: number; estimated: boolean } | null;
  warnings: string[];
  series: Array<{ t: number; produced: number | null; written: number | null; lag: number | null; deadLetters: number }>;
}

export interface Overview {
  takenAt: string;
  refreshMs: number;
  historyMs: number;
  pipelines: Pipeline[];
  orders: { prefix: string; present: boolean };
}

export interface DeadLetterRow {
  id: number;
  streamKey: string | null;
  group: string | null;
  streamId: string | null;
  eventId: string | null;
  eventType: string | null;
  fields: Record<string, string>;
  errorCode: string;
  error: string;
  deliveries: number;
  failedAt: string;
  retriedAt: string | null;
  retriedAs: string | null;
  retryState: 'not_retried' | 'retried' | 'in_doubt';
}

export interface DeadLetterPage {
  stream: string;
  group: string;
  deadLetterStream: string;
  total: number;
  rows: DeadLetterRow[];
}

export interface DeadLetterDetail extends DeadLetterRow {
  streamEntry: { id: string; fields: Record<string, string> } | null;
}

export interface RetryOutcome {
  id: number;
  status: string;
  newStreamId?: string;
  retriedAs?: string | null;
  reason?: string;
}

export interface PendingSummary {
  streamKey: string;
  group: string;
  total: number;
  smallestId: string | null;
  largestId: string | null;
  consumers: Array<{ name: string; pending: number }>;
  oldest: Array<{ id: string; consumer: string; idleMs: number; deliveries: number }>;
}

export interface ClaimResult {
  consumer: string;
  minIdleMs: number;
  claimed: Array<{ id: string; deliveries: number }>;
  deleted: string[];
}

export interface OrdersStats {
  takenAt: string;
  prefix: string;
  schema: string;
  redis: {
    queue: { length: number; depth: number; processing: number; workers: Array<{ worker: string; processing: number; heartbeatAgeMs: number | null }> };
    dedup: { size: number; windowSeconds: number; bucketSeconds: number; buckets: number };
    cache: { version: number | null; publishedAt: number | null; sizes: Record<string, number> | null; ttlMs: number | null; expired: boolean };
    revenue: { orders: number; revenueUsd: number; fromMs: number; exact: boolean; windowMs: number };
  };
  backpressure: { maxQueueDepth: number; engaged: boolean };
  pipeline: { batches: number; taken: number; promoted: number; duplicates: number; pgDuplicates: number; rejected: number; lastBatchAt: number | null; flushReasons: Record<string, number> };
  throughput: { ordersPerSec: number; windowSecs: number };
  postgres: {
    staging: number;
    orders: number;
    rejected: Record<string, number>;
    rejectedTotal: number;
    views: Array<{ view: string; rows: number; populated: boolean; sizeBytes: number; lastRefreshedAt: string | null; lastRefreshMs: number | null; refreshes: number }>;
  } | null;
  postgresError?: string;
  series: Array<{ t: number; depth: number; ordersPerSec: number }>;
}
