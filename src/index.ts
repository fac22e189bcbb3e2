/**
 * Tributary: Kafka-style pipelines on Redis and Postgres. The library API; the
 * `tributary` CLI is a thin shell over it.
 */
export { resolveConfig, redactUrl, redactSecrets, readServicesState, servicesStatePath, tributaryHome } from './config/index.js';
export { configSchema, SETTINGS, type TributaryConfig, type ConfigKey } from './config/schema.js';
export { ERRORS, TributaryError, isTributaryError, type ErrorCode } from './errors.js';
export { Engine, type EngineEvents, type EngineOptions, type EngineStats } from './pipelines/events.js';
export { BatchPolicy, type BatchPolicyOptions, type FlushReason } from './core/batch-policy.js';
export { backoffDelay } from './core/backoff.js';
export { parseEntry, FIELD, type EventRow, type ParsedEntry } from './core/entry.js';
export type { BatchReport } from './core/runner.js';
export { Producer, createProducer, eventFields, eventPartition, partitionKeyValue, type ProducerOptions, type ProducerEvent, type ProduceOptions } from './producer/producer.js';
// The partitioned-stream naming and routing contract (any producer can route the same way).
export { partitionOf, fnv1a32, partitionStreamKey, partitionStreamKeys, partitionDeadLetterKey, partitionLeaseKey, parseLease } from './redis/partitions.js';
export { sampleEvent, SAMPLE_EVENT_TYPES } from './producer/sample.js';
export { migrate, loadMigrations } from './postgres/migrate.js';
export { createPgPool } from './postgres/pool.js';
export { createRedisConnection } from './redis/client.js';
export { detectRedisCluster, registerRedisCluster, keySlot, hashTag } from './redis/cluster.js';
export { collectMonitorSnapshot, formatMonitor, type MonitorSnapshot } from './observability/monitor.js';
export { collectPartitionedSnapshot, formatPartitions, type PartitionedMonitorSnapshot, type MonitorPartition } from './observability/monitor-partitions.js';
export { createPipelineMetrics, type ObservedPipeline } from './observability/metrics.js';
export { startOpsServer, startHttpServer, type HttpServer, type HttpServerOptions, type HttpRoutes, type HttpRouteContext, type HttpLogger } from './http/server.js';
export type { IngestOptions, IngestStream } from './http/ingest.js';
export { dashboardRoutes, type DashboardConfig, type DashboardOptions } from './http/dashboard.js';
export { trimStream, safeTrimPoint } from './ops/retention.js';
export { servicesUp, servicesDown, ensureDatabase } from './services/index.js';

// The orders pipeline (`tributary orders ...`): src/orders. (Its benchmark is a CLI command, not library API.)
export {
  OrdersPipeline,
  ordersStages,
  loadReferenceDataOrFail,
  type OrdersPipelineOptions,
  type OrdersPipelineEvents,
  type OrdersPipelineStats,
  type OrdersBatchReport,
  type StageTimings,
} from './pipelines/orders.js';
export { OrderGenerator, produceOrders, INVALID_KINDS, type OrderGeneratorOptions, type ProduceOrdersOptions, type ProduceOrdersResult } from './orders/generate.js';
export { collectOrdersStats, formatOrdersStats, type OrdersStats, type OrdersStatsOptions } from './orders/stats.js';
export { stageAndPromote, lookupFor, batchLanded, revenueEntries } from './orders/batch.js';
export * from './orders/redis/index.js';
export {
  migrateOrders,
  stageBatch,
  promote,
  recordMalformed,
  refreshViews,
  viewStats,
  ordersCounts,
  analyzeReferenceTables,
  ORDERS_SCHEMA,
  ORDERS_VIEWS,
  type PromoteOptions,
  type ViewRefresh,
  type ViewStats,
  type OrdersCounts,
} from './orders/pg/index.js';
export { parseOrders, parseOrder, transformBatch, normaliseTimestamp } from './orders/transform.js';
export { REFERENCE_DATA, seedReferenceData, loadReferenceData } from './orders/seed.js';
export type { Order, Product, Currency, ZipCode, ReferenceData, LookupResult, StagingColumns, PromoteResult, RejectReason } from './orders/types.js';
export { REJECT_REASONS } from './orders/types.js';

// The pipeline model: contracts, the runner, the parts, and the two ways to build a pipeline.
export { pipeline, consume, defaultConsumerName, type PipelineOptions, type ConsumeOptions, type ConsumedMessage } from './api.js';
export { Runner, type RunnerOptions, type RunnerEvents, type RunnerStats, type BatchReason, type StartStep } from './core/runner.js';
export {
  stage,
  ReadAgain,
  RecoverFirst,
  type Message,
  type Source,
  type Stage,
  type StageResult,
  type Sink,
  type WriteResult,
  type Rejected,
  type Recovered,
  type DeadLetter as PipelineDeadLetter,
  type DeadLetterStore,
  type BatchContext,
  type ServerName,
} from './core/contracts.js';
export { RedisStreamSource, type RedisStreamSourceOptions, type StreamMessage } from './sources/redis-stream.js';
export {
  PartitionedStreamSource,
  type PartitionedStreamSourceOptions,
  type PartitionLeaseEvent,
  type PartitionReadEvent,
} from './sources/partitioned-stream.js';
export { PartitionLeases, type Lease, type AcquireResult, type PartitionLeasesOptions } from './redis/leases.js';
export { functionSink, type BatchHandler, type HandlerContext } from './sinks/function.js';
export { EventsTableSink, PostgresEventsSink } from './sinks/postgres-events.js';
export { PostgresDeadLetterStore } from './sinks/dead-letters.js';
export { validateEvents, type EventRowBody } from './stages/validate-event.js';

// Pipeline files: a stream into a table of your own, with typed columns (tributary run / check).
export {
  loadPipelineFile,
  parsePipelineFile,
  PipelineFileError,
  formatProblem,
  COLUMN_TYPES,
  type PipelineSpec,
  type ColumnSpec,
  type ColumnType,
  type SinkMode,
  type FileProblem,
} from './pipeline-file/spec.js';
export { mapColumns, convert, type MappedRow } from './pipeline-file/mapping.js';
export { TablePipeline, type TablePipelineOptions } from './pipelines/table.js';
export { TableSink, ensureTable, tableSql } from './sinks/postgres-table.js';
