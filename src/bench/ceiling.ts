import { uuidv7 } from '../producer/uuidv7.js';
import type { TributaryConfig } from '../config/schema.js';
import { parseEntry, parseRawEntry, type EventRow, type RawEventRow } from '../core/entry.js';
import { createPgPool, quoteIdent } from '../postgres/pool.js';
import { createRedisConnection, destroyQuietly, send, type RedisConnection } from '../redis/client.js';
import { parseStreamReadReply, RawStreamEntry, xackArgs, xreadgroupArgs, type StreamEntry } from '../redis/commands.js';
import { PostgresEventsSink } from '../sinks/postgres-events.js';
import { copyChunks, copyInto } from './copy.js';
import { runDrain, type DrainRun } from './drain.js';
import { measureProduce, sampleEvents } from './load.js';
import type { CeilingFigures } from './result.js';
import { ratePerSec } from './stats.js';
import { openWorkspace } from './workspace.js';

export interface CeilingOptions {
  config: TributaryConfig;
  count: number;
  /** Entries per pipelined XADD round and per produceBatch (default 1000). */
  batch?: number;
  /** produceBatch calls in flight (default 1). */
  produceConcurrency?: number;
  timeoutMs?: number;
  cliPath?: string;
  onProgress?: (message: string) => void;
}

export interface CeilingRun {
  settings: Record<string, unknown> & { count: number };
  figures: CeilingFigures;
}

const READ_COUNT = 1000;
/** Entries sent (and discarded) before timing, so that the JIT has compiled the client's hot paths. */
const WARMUP = 5000;
const CEILING_GROUP = 'bench-ceiling';

const secsSince = (t: number) => (performance.now() - t) / 1000;
const round3 = (n: number) => Number(n.toFixed(3));

/** XADD of pre-built argument lists, `batch` per pipelined round trip. */
async function pipelinedXadd(conn: RedisConnection, commands: readonly string[][], batch: number): Promise<void> {
  for (let i = 0; i < commands.length; i += batch) {
    const multi = conn.multi();
    for (const args of commands.slice(i, i + batch)) multi.addCommand(args);
    await multi.execAsPipeline();
  }
}

/** XREADGROUP COUNT 1000 then XACK of what was read, until the group has read everything. */
async function readAndAck(conn: RedisConnection, key: string): Promise<StreamEntry[]> {
  const all: StreamEntry[] = [];
  for (;;) {
    const { entries } = parseStreamReadReply(await send(conn, xreadgroupArgs({ group: CEILING_GROUP, consumer: 'reader', key, count: READ_COUNT })));
    if (entries.length === 0) return all;
    await send(conn, xackArgs(key, CEILING_GROUP, entries.map((e) => e.id)));
    for (const e of entries) all.push(e);
  }
}

/**
 * The ceiling benchmark, in one run on the same N events: how fast Postgres takes
 * the rows with a single COPY into a table like `events` (and with the engine's own
 * INSERT statement alone), how fast Redis takes them (pipelined XADD) and hands them
 * out (XREADGROUP + XACK), how fast Producer.produceBatch sends them from one
 * process, and how fast the engine drains them — so drain can be read as a fraction
 * of the ceiling.
 */
export async function runCeiling(options: CeilingOptions): Promise<CeilingRun> {
  const progress = options.onProgress ?? (() => {});
  const count = options.count;
  const batch = options.batch ?? 1000;
  const concurrency = options.produceConcurrency ?? 1;
  const ws = await openWorkspace('ceiling', options.config);
  const c = ws.config;
  const s = quoteIdent(c.pgSchema);
  const conn = createRedisConnection(c.redisUrl, { name: `tributary:${ws.tag}:ceiling`, failFast: false });
  try {
    await conn.connect();
    progress(`generating ${count} sample events`);
    const events = sampleEvents(count);
    const producedAt = String(Date.now());
    const xadds = events.map((e) => ['XADD', c.streamKey, '*', 'event_type', e.type, 'payload', JSON.stringify(e.payload), 'event_id', uuidv7(), 'produced_at', producedAt]);

    progress(`Redis: XADD ${count} entries, ${batch} per pipelined round trip (after a warm-up of ${WARMUP})`);
    const warmKey = ws.track(`${ws.tag}:warmup`);
    await pipelinedXadd(conn, xadds.slice(0, WARMUP).map((args) => ['XADD', warmKey, ...args.slice(2)]), batch);
    await conn.del(warmKey);
    let t = performance.now();
    await pipelinedXadd(conn, xadds, batch);
    const redisXaddSecs = secsSince(t);
    xadds.length = 0;

    // The engine first, on a fresh table, as in the drain bench; its group reads the entries from 0.
    progress('engine: draining the same entries');
    const drain: DrainRun = await runDrain({ config: c, count, workspace: ws, timeoutMs: options.timeoutMs, cliPath: options.cliPath, onProgress: progress });
    await ws.pool.query(`TRUNCATE ${s}.${quoteIdent(c.eventsTable)}`);

    progress('Redis: XREADGROUP + XACK of the same entries, one consumer');
    await send(conn, ['XGROUP', 'CREATE', c.streamKey, CEILING_GROUP, '0']);
    t = performance.now();
    const entries = await readAndAck(conn, c.streamKey);
    const redisReadAckSecs = secsSince(t);
    await conn.del(c.streamKey);
    const rows: EventRow[] = [];
    for (const e of entries) {
      const parsed = parseEntry(e, c.streamKey);
      if (parsed.ok) rows.push(parsed.row);
    }
    if (rows.length !== count) throw new Error(`read back ${rows.length} valid entries of ${count}`);

    progress(`Postgres: one COPY of the ${count} rows into a table like events`);
    await ws.pool.query(`CREATE TABLE ${s}.events_copy (LIKE ${s}.${quoteIdent(c.eventsTable)} INCLUDING ALL)`);
    const chunks = copyChunks(rows);
    t = performance.now();
    const copied = await copyInto(ws.pool, c.pgSchema, 'events_copy', chunks);
    const postgresCopySecs = secsSince(t);
    if (copied !== count) throw new Error(`COPY wrote ${copied} rows of ${count}`);
    await ws.pool.query(`DROP TABLE ${s}.events_copy`);

    progress(`Postgres: the engine's write alone (binary COPY), ${c.numWorkers} writers of ${c.batchSize} rows`);
    await ws.pool.query(`CREATE TABLE ${s}.events_sink (LIKE ${s}.${quoteIdent(c.eventsTable)} INCLUDING ALL)`);
    const sinkPool = createPgPool(c.databaseUrl, { max: c.numWorkers, applicationName: `${ws.tag}:sink` });
    let sinkWriteSecs: number;
    try {
      const sink = new PostgresEventsSink(sinkPool, c.pgSchema, 'events_sink');
      // The rows as the engine holds them: the bytes Redis sent.
      const raw: RawEventRow[] = [];
      for (const e of entries) {
        const parsed = parseRawEntry(new RawStreamEntry(e.id, Object.entries(e.fields).flat().map((v) => Buffer.from(v))), c.streamKey);
        if (parsed.ok) raw.push(parsed.row);
      }
      await sinkPool.query('SELECT 1'); // connect before timing
      let next = 0;
      let written = 0;
      t = performance.now();
      await Promise.all(
        Array.from({ length: c.numWorkers }, async () => {
          while (next < raw.length) {
            const slice = raw.slice(next, (next += c.batchSize));
            const n = await sink.copy(slice);
            if (n === null) throw new Error('the sink refused a batch of fresh rows');
            written += n;
          }
        }),
      );
      sinkWriteSecs = secsSince(t);
      if (written !== count) throw new Error(`the sink wrote ${written} rows of ${count}`);
    } finally {
      await sinkPool.end();
    }
    await ws.pool.query(`DROP TABLE ${s}.events_sink`);

    progress(`Producer.produceBatch: ${count} events, batch ${batch}, ${concurrency} in flight`);
    const produceKey = ws.track(`${ws.tag}:produce`);
    const produce = await measureProduce(c.redisUrl, produceKey, events, batch, concurrency);
    await conn.del(produceKey);

    const redisReadAckEventsPerSec = ratePerSec(count, redisReadAckSecs);
    const postgresCopyEventsPerSec = ratePerSec(count, postgresCopySecs);
    const ceiling = Math.min(postgresCopyEventsPerSec, redisReadAckEventsPerSec);
    const fraction = (n: number) => Number((n / ceiling).toFixed(3));
    return {
      settings: { ...drain.settings, count, batch, produceConcurrency: concurrency, readCount: READ_COUNT },
      figures: {
        postgresCopySecs: round3(postgresCopySecs),
        postgresCopyEventsPerSec,
        sinkWriteSecs: round3(sinkWriteSecs),
        sinkWriteEventsPerSec: ratePerSec(count, sinkWriteSecs),
        redisXaddSecs: round3(redisXaddSecs),
        redisXaddEventsPerSec: ratePerSec(count, redisXaddSecs),
        redisReadAckSecs: round3(redisReadAckSecs),
        redisReadAckEventsPerSec,
        produce,
        drain: drain.figures,
        ceilingEventsPerSec: ceiling,
        drainFractionOfCeiling: fraction(drain.figures.drainEventsPerSec),
        steadyFractionOfCeiling: fraction(drain.figures.ingestEventsPerSec),
      },
    };
  } finally {
    destroyQuietly(conn);
    await ws.cleanup();
  }
}
