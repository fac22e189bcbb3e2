// The README's dashboard screenshots, taken from the real page: a real engine run on the
// configured Redis and Postgres (REDIS_URL / DATABASE_URL, or what `tributary up` chose)
// with a varying stream of events and a few dead letters, and an orders run, in a stream,
// group, schemas and prefix of its own (removed at the end); the page opened in Debian's
// Chromium (playwright-core) and saved to docs/screenshots/{overview,dead-letters,orders}.png.
// Run after `npm run build` (npm run docs and npm run bench:report run it). About 40 s.
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import {
  analyzeReferenceTables,
  createPgPool,
  createRedisConnection,
  dashboardRoutes,
  Engine,
  LookupCache,
  migrate,
  migrateOrders,
  OrderGenerator,
  OrderQueue,
  OrdersPipeline,
  Producer,
  REFERENCE_DATA,
  resolveConfig,
  sampleEvent,
  seedReferenceData,
  startHttpServer,
} from '../dist/index.js';

const OUT = 'docs/screenshots';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const RUN_SECONDS = Number(process.env.SCREENSHOT_RUN_SECONDS ?? 25);

const config = resolveConfig({
  envFile: false,
  overrides: {
    streamKey: 'shop:events',
    dlqStream: 'shop:events:dead',
    group: 'tributary',
    pgSchema: 'dashboard_demo',
    consumerName: 'demo',
    numWorkers: 2,
    batchTimeoutMs: 200,
    ordersPrefix: 'demo-orders',
    ordersSchema: 'dashboard_demo_orders',
    maxQueueDepth: 20_000,
  },
});
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const redis = createRedisConnection(config.redisUrl, { failFast: false });
await redis.connect();
const pool = createPgPool(config.databaseUrl, { max: 4 });

async function cleanUp() {
  const keys = [
    ...(await redis.keys('shop:events*')),
    ...(await redis.keys('tributary:stats:shop:events:*')),
    ...(await redis.keys('demo-orders:*')),
  ];
  if (keys.length > 0) await redis.del(keys);
  await pool.query('DROP SCHEMA IF EXISTS dashboard_demo CASCADE');
  await pool.query('DROP SCHEMA IF EXISTS dashboard_demo_orders CASCADE');
}

await cleanUp();
await migrate(pool, config.pgSchema);
await migrateOrders(pool, config.ordersSchema);
await seedReferenceData(pool, config.ordersSchema);
await analyzeReferenceTables(pool, config.ordersSchema);
await new LookupCache({ client: redis, prefix: config.ordersPrefix }).publish(REFERENCE_DATA);

const engine = new Engine(config);
const orders = new OrdersPipeline({
  redisUrl: config.redisUrl,
  databaseUrl: config.databaseUrl,
  schema: config.ordersSchema,
  prefix: config.ordersPrefix,
  workers: 2,
  batchSize: 250,
  workerPrefix: 'demo-worker',
});
const server = await startHttpServer({ port: 0, token: 'screenshot-token-0123456789', routes: [dashboardRoutes({ config })] });
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});

try {
  await engine.start();
  await orders.start();
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 1000 }, deviceScaleFactor: 1 })).newPage();
  await page.goto(`${server.url}/#/overview`);

  // Traffic that rises and falls (the charts have a shape), a few poison events, orders trickling in.
  const producer = new Producer({ redisUrl: config.redisUrl, streamKey: config.streamKey });
  const queue = new OrderQueue({ client: redis, prefix: config.ordersPrefix });
  const generator = new OrderGenerator({ seed: 3, duplicates: 0.04, invalid: 0.03 });
  for (let s = 0; s < RUN_SECONDS * 4; s++) {
    const perTick = Math.round(250 + 200 * Math.sin(s / 9));
    await producer.produceBatch(Array.from({ length: perTick }, () => sampleEvent()).map((e) => ({ type: e.type, payload: e.payload })));
    if (s % 12 === 5) await redis.xAdd(config.streamKey, '*', { event_type: 'order_placed', payload: '{"order_id": "A-1042", "total": 19.', event_id: `broken-${s}` });
    if (s % 2 === 0) await queue.push(generator.batch(Math.round(120 + 80 * Math.cos(s / 7))));
    await sleep(250);
    // The overview while events still arrive.
    if (s === RUN_SECONDS * 4 - 6) {
      mkdirSync(OUT, { recursive: true });
      await page.getByTestId('pipeline').first().waitFor();
      await page.screenshot({ path: `${OUT}/overview.png`, fullPage: true });
    }
  }
  await producer.close();

  await page.goto(`${server.url}/#/dead-letters?stream=${encodeURIComponent(config.streamKey)}&group=${config.group}`);
  await page.getByTestId('token-input').fill('screenshot-token-0123456789');
  await page.getByTestId('token-save').click();
  await page.getByTestId('dlq-row').first().click();
  await page.getByTestId('dlq-fields').waitFor();
  await page.screenshot({ path: `${OUT}/dead-letters.png`, fullPage: true });

  await page.goto(`${server.url}/#/orders`);
  await page.getByTestId('orders-workers').waitFor();
  await page.getByTestId('orders-depth-chart').locator('canvas').waitFor();
  await page.screenshot({ path: `${OUT}/orders.png`, fullPage: true });
  console.log(`${OUT}: overview.png, dead-letters.png, orders.png (${engine.stats().written ?? '?'} events written, ${orders.stats().taken} orders taken)`);
} finally {
  await browser.close();
  await server.close();
  await orders.close();
  await engine.close();
  await cleanUp();
  redis.destroy();
  await pool.end();
}
