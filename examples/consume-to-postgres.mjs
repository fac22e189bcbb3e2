// The seed guide's worker, on Tributary: for each batch of a stream, call my function;
// the batch is acknowledged only after it returns. Run it against the demo's stream:
//
//   STREAM=events GROUP=my-worker node examples/consume-to-postgres.mjs
//
// Each event lands in a table of its own (`TABLE`, default public.consumed_events), keyed
// on the stream entry ID, so a batch handed over again after a crash adds no row. An
// event whose payload is not JSON is rejected: it goes to the dead-letter stream
// (<stream>:dead) and its batch-mates are written. SIGINT / SIGTERM stop gracefully.
import { consume, createPgPool } from 'tributary';

const env = process.env;
const table = env.TABLE ?? 'public.consumed_events';
const db = createPgPool(env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/tributary', { max: 4 });
await db.query(
  `CREATE TABLE IF NOT EXISTS ${table} (
     entry_id text PRIMARY KEY,
     event_type text NOT NULL,
     payload jsonb NOT NULL,
     deliveries int NOT NULL,
     handled_at timestamptz NOT NULL DEFAULT now())`,
);

const consumer = await consume(
  {
    redisUrl: env.REDIS_URL,
    stream: env.STREAM ?? 'events',
    group: env.GROUP ?? 'consumed-events',
    workers: Number(env.WORKERS ?? 2),
    batchSize: Number(env.BATCH_SIZE ?? 200),
    claimIdleMs: Number(env.CLAIM_IDLE_MS ?? 60_000),
    claimIntervalMs: Number(env.CLAIM_INTERVAL_MS ?? 5000),
  },
  async (batch, ctx) => {
    const rows = [];
    for (const m of batch) {
      try {
        rows.push({ id: m.id, type: m.fields.event_type ?? 'unknown', payload: JSON.parse(m.fields.payload), deliveries: m.deliveries });
      } catch (err) {
        ctx.reject(m, err); // to the dead letters, with the parser's message
      }
    }
    // One statement per batch; a redelivered entry is skipped by the primary key.
    await db.query(
      `INSERT INTO ${table} (entry_id, event_type, payload, deliveries)
       SELECT r.id, r.type, r.payload, r.deliveries FROM jsonb_to_recordset($1::jsonb) AS r(id text, type text, payload jsonb, deliveries int)
       ON CONFLICT (entry_id) DO NOTHING`,
      [JSON.stringify(rows)],
    );
  },
);
consumer.on('serverDown', ({ server, error }) => console.error(`${server} unreachable (${error.message}); waiting`));
consumer.on('serverUp', ({ server }) => console.error(`${server} back`));
consumer.on('deadLetter', ({ id, error }) => console.error(`dead-lettered ${id}: ${error}`));
console.error(`consuming as ${consumer.consumers.join(', ')}; Ctrl-C stops`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (stopping) return void consumer.close({ force: true }); // a second signal forces
    stopping = true;
    void consumer.close().then(async () => {
      const s = consumer.stats();
      console.error(`stopped: ${s.written} handled, ${s.deadLettered} dead-lettered`);
      await db.end();
    });
  });
}
