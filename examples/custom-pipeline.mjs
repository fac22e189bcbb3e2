// A pipeline of your own parts on the one runner: a stream source, two stages (a filter
// and a map) and a sink that keeps a running count per event type in Postgres. Each
// batch is one transaction; the source acknowledges only after it commits. With
// untilEmpty, the workers stop when the stream has nothing left, and the program exits.
//
//   STREAM=events node examples/custom-pipeline.mjs
import { createPgPool, pipeline, RedisStreamSource, stage } from 'tributary';

const env = process.env;
const table = env.TABLE ?? 'public.event_type_counts';
const db = createPgPool(env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/tributary', { max: 4 });
await db.query(`CREATE TABLE IF NOT EXISTS ${table} (event_type text PRIMARY KEY, events bigint NOT NULL)`);
// Which entries each group has counted, so a redelivered batch is not counted twice.
await db.query(`CREATE TABLE IF NOT EXISTS ${table}_seen (entry_id text PRIMARY KEY)`);

// Keep only the event types asked for (all when EVENT_TYPES is unset); the rest are
// acknowledged and skipped. Entries with no type go on, for the next stage to reject.
const wanted = env.EVENT_TYPES ? new Set(env.EVENT_TYPES.split(',')) : null;
const typeOf = (m) => m.body.fields.event_type;
const onlyWanted = stage('filter', (batch) => ({ keep: batch.filter((m) => !wanted || !typeOf(m) || wanted.has(typeOf(m))) }));

// Stream entry → { type }: a map stage. A message a stage rejects goes to the dead letters.
const toType = stage('map', (batch) => {
  const keep = [];
  const rejected = [];
  for (const m of batch) {
    const type = m.body.fields.event_type;
    if (type) keep.push({ ...m, body: { type } });
    else rejected.push({ id: m.id, code: 'TRIB_ERR_ENTRY_MISSING_FIELD', error: `entry ${m.id} has no event_type field` });
  }
  return { keep, rejected };
});

// A sink: atomic and idempotent. Throwing retries the batch; resolving lets it be acked.
const counts = {
  server: 'postgres',
  async write(batch) {
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      const fresh = await client.query(
        `INSERT INTO ${table}_seen (entry_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING entry_id`,
        [batch.map((m) => m.id)],
      );
      const isFresh = new Set(fresh.rows.map((r) => r.entry_id));
      const perType = new Map();
      for (const m of batch) if (isFresh.has(m.id)) perType.set(m.body.type, (perType.get(m.body.type) ?? 0) + 1);
      for (const [type, n] of perType) {
        await client.query(
          `INSERT INTO ${table} (event_type, events) VALUES ($1, $2)
           ON CONFLICT (event_type) DO UPDATE SET events = ${table}.events + EXCLUDED.events`,
          [type, n],
        );
      }
      await client.query('COMMIT');
      return { written: isFresh.size, duplicates: batch.length - isFresh.size, rejected: [] };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  },
};

const source = new RedisStreamSource({
  redisUrl: env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  key: env.STREAM ?? 'events',
  group: env.GROUP ?? 'event-type-counts',
});
const counter = pipeline({ source, stages: [onlyWanted, toType], sink: counts, workers: 2, batch: { maxCount: 500 }, untilEmpty: true });
counter.on('deadLetter', ({ id, error }) => console.error(`dead-lettered ${id}: ${error}`));
counter.on('drained', () => void counter.close());
await counter.start();
await counter.done;
await counter.close();
const s = counter.stats();
console.log(`counted ${s.written} events (${s.duplicates} seen before, ${s.skipped} skipped by the filter, ${s.deadLettered} dead-lettered)`);
const { rows } = await db.query(`SELECT event_type, events FROM ${table} ORDER BY event_type`);
for (const r of rows) console.log(`${r.event_type.padEnd(20)} ${r.events}`);
await db.end();
