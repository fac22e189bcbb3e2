/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core) against
 * real Redis, Postgres and a running engine: the overview's numbers match the servers,
 * a dead letter retried from the page is re-added exactly once and its row marked, purge
 * asks for a confirmation, and a read-only server shows no action (its API refuses them).
 * One browser for the file.
 */
import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/pipelines/events.js';
import { listDeadLetters } from '../../src/ops/dead-letters.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { Producer } from '../../src/producer/producer.js';
import { sampleEvent } from '../../src/producer/sample.js';
import { send } from '../../src/redis/client.js';
import { freePort } from '../helpers/child.js';
import { assertWebBuilt, launchBrowser, serveDashboard, TOKEN } from '../helpers/dashboard.js';
import { countRows, testEnvs, waitFor, type TestEnv } from '../helpers/env.js';

const envs = testEnvs({ numWorkers: 2, batchTimeoutMs: 100, xreadBlockMs: 200, claimIdleMs: 3000, claimIntervalMs: 200 });
let browser: Browser;

beforeAll(async () => {
  assertWebBuilt();
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
});

async function open(url: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1300, height: 1000 } });
  envs.defer(() => context.close());
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  envs.defer(() => expect(errors, 'errors in the page').toEqual([]));
  await page.goto(url);
  return page;
}

/** The number a tile shows (`3,000` → 3000; `–` → null). */
async function tile(scope: Locator, testId: string): Promise<number | null> {
  const text = (await scope.getByTestId(testId).locator('.value').textContent()) ?? '';
  const digits = text.replace(/[^\d.]/g, '');
  return digits === '' ? null : Number(digits);
}

function startEngine(env: TestEnv): Engine {
  const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 300 } });
  envs.defer(() => engine.close({ force: true }));
  return engine;
}

async function produce(env: TestEnv, n: number): Promise<void> {
  const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
  try {
    for (let done = 0; done < n; done += 250) {
      await producer.produceBatch(Array.from({ length: Math.min(250, n - done) }, () => sampleEvent()).map((e) => ({ type: e.type, payload: e.payload })));
    }
  } finally {
    await producer.close();
  }
}

describe('dashboard in a browser', () => {
  it('the overview shows the numbers of Redis and Postgres while the engine runs', async () => {
    const env = await envs.setup('dash_ui_overview');
    const engine = startEngine(env);
    await engine.start();
    const server = await serveDashboard(env.config, { token: TOKEN });
    envs.defer(() => server.close());
    const page = await open(`${server.url}/#/overview`);
    const card = page.locator(`[data-testid="pipeline"][data-stream="${env.config.streamKey}"]`);
    await card.waitFor({ timeout: 10_000 });

    // Traffic for a few seconds: the page shows a produced rate while it lasts.
    const seenRates: number[] = [];
    for (let i = 0; i < 8; i++) {
      await produce(env, 500);
      await page.waitForTimeout(350);
      const rate = await tile(card, 'produced-rate');
      if (rate !== null && rate > 0) seenRates.push(rate);
    }
    expect(seenRates.length, 'produced/s shown while events arrive').toBeGreaterThan(0);
    await waitFor(async () => (await countRows(env)).rows === 4000, 20_000, 'the engine writes 4,000 rows');

    // Settled, the engine still running: every figure is the servers' own, within a refresh.
    const xlen = Number(await send(env.redis, ['XLEN', env.config.streamKey]));
    await waitFor(async () => (await tile(card, 'stream-length')) === xlen && (await tile(card, 'events-rows')) === 4000 && (await tile(card, 'lag')) === 0 && (await tile(card, 'pending')) === 0, 10_000, 'the page to catch up');
    expect(xlen).toBe(4000);
    const consumers = (await send(env.redis, ['XINFO', 'CONSUMERS', env.config.streamKey, env.config.group])) as unknown[][];
    const names = consumers.map((c) => String(c[1])).sort();
    const shown = (await card.getByTestId('consumer-row').locator('td:first-child').allTextContents()).map((s) => s.trim()).sort();
    expect(shown).toEqual(names);
    const batches = await card.getByTestId('batches').textContent();
    expect(batches).toMatch(/flushed: /);
    expect(await card.getByTestId('rate-chart').locator('canvas').count()).toBe(1);
    expect(await card.getByTestId('dead-letters').getAttribute('class')).not.toContain('warn');

    // A poison event: the dead-letter count rises and the page warns.
    await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 'x', 'payload', '{oops', 'event_id', 'poison-1']);
    await expect.poll(() => tile(card, 'dead-letters'), { timeout: 10_000 }).toBe(1);
    expect(await card.getByTestId('dead-letters').getAttribute('class')).toContain('warn');
    expect(await card.getByTestId('warning').allTextContents()).toContain('dead letters grew in the last minute (1 now): see the dead letters page');
    await engine.close();
  });

  it('a dead letter retried from the page is re-added exactly once and its row marked; purge asks for confirmation', async () => {
    const env = await envs.setup('dash_ui_dlq');
    const engine = startEngine(env);
    await engine.start();
    const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
    for (let i = 0; i < 3; i++) await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 'broken', 'payload', '{oops', 'event_id', `poison-${i}`]);
    await producer.close();
    const ops = { redis: env.redis, pool: env.pool, config: env.config };
    await waitFor(async () => (await listDeadLetters(ops)).total === 3, 15_000, 'three dead letters');
    // Stopped, so the re-added entry stays in the stream to be counted.
    await engine.close();

    const server = await serveDashboard(env.config, { token: TOKEN });
    envs.defer(() => server.close());
    const page = await open(`${server.url}/#/dead-letters?stream=${encodeURIComponent(env.config.streamKey)}&group=${env.config.group}`);
    await page.getByTestId('token-input').fill(TOKEN);
    await page.getByTestId('token-save').click();
    const rows = page.getByTestId('dlq-row');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(3);

    // Filters: the error code.
    await page.getByTestId('filter-code').fill('TRIB_ERR_NOPE');
    await page.getByTestId('filter-apply').click();
    await page.getByTestId('no-dead-letters').waitFor();
    await page.getByTestId('filter-code').fill('');
    await page.getByTestId('filter-apply').click();
    await expect.poll(() => rows.count()).toBe(3);

    // One letter in full.
    const target = rows.nth(1);
    const id = Number(await target.getAttribute('data-id'));
    await target.click();
    await expect.poll(() => page.getByTestId('dlq-fields').textContent()).toContain('{oops');
    const eventId = JSON.parse((await page.getByTestId('dlq-fields').textContent())!).event_id as string;

    const lengthBefore = Number(await send(env.redis, ['XLEN', env.config.streamKey]));
    await target.getByTestId('dlq-retry-one').click();
    await page.getByTestId('action-result').waitFor();
    expect(await page.getByTestId('action-result').textContent()).toMatch(new RegExp(`retried 1 of 1: #${id} retried as \\d+-\\d+`));
    const marked = page.locator(`[data-testid="dlq-row"][data-id="${id}"]`);
    await expect.poll(() => marked.getAttribute('data-state')).toBe('retried');
    expect(await marked.getByTestId('dlq-retried').textContent()).toMatch(/^as \d+-\d+$/);
    expect(await marked.getByTestId('dlq-retry-one').count(), 'no retry button on a retried row').toBe(0);
    // Exactly once: one entry more, the original and its one copy carry the event_id.
    const entries = (await send(env.redis, ['XRANGE', env.config.streamKey, '-', '+'])) as [string, string[]][];
    expect(entries.length).toBe(lengthBefore + 1);
    expect(entries.filter(([, f]) => f[f.indexOf('event_id') + 1] === eventId)).toHaveLength(2);
    // Retrying the same row again (another tab, a double click) adds nothing.
    const again: any = await page.evaluate(
      async ([token, body]) => (await fetch('/api/dead-letters/retry', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body })).json(),
      [TOKEN, JSON.stringify({ stream: env.config.streamKey, group: env.config.group, ids: [id] })] as const,
    );
    expect(again.outcomes[0].status).toBe('already_retried');
    expect(Number(await send(env.redis, ['XLEN', env.config.streamKey]))).toBe(lengthBefore + 1);

    // A selection: the two others, checked and retried together.
    for (const box of await page.locator('[data-testid="dlq-row"][data-state="not_retried"] [data-testid="dlq-select"]').all()) await box.check();
    await page.getByTestId('retry-selected').click();
    await expect.poll(() => page.getByTestId('action-result').textContent()).toMatch(/^retried 2 of 2: /);
    await expect.poll(() => page.locator('[data-testid="dlq-row"][data-state="retried"]').count()).toBe(3);
    expect(Number(await send(env.redis, ['XLEN', env.config.streamKey]))).toBe(lengthBefore + 3);

    // Purge: a dialog with the count; the button stays disabled until the count is typed; cancel deletes nothing.
    await page.getByTestId('purge').click();
    const dialog = page.getByTestId('purge-dialog');
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain('delete 3 dead letters');
    expect(await page.getByTestId('purge-confirm').isDisabled()).toBe(true);
    await page.getByTestId('purge-confirm-input').fill('2');
    expect(await page.getByTestId('purge-confirm').isDisabled()).toBe(true);
    await page.getByTestId('purge-cancel').click();
    await dialog.waitFor({ state: 'detached' });
    expect((await listDeadLetters(ops)).total).toBe(3);
    await page.getByTestId('purge').click();
    await page.getByTestId('purge-confirm-input').fill('3');
    await page.getByTestId('purge-confirm').click();
    await expect.poll(() => page.getByTestId('action-result').textContent()).toContain('deleted 3 dead letters');
    expect((await listDeadLetters(ops)).total).toBe(0);
    await page.getByTestId('no-dead-letters').waitFor();
    const s = quoteIdent(env.config.pgSchema);
    expect(Number((await env.pool.query(`SELECT count(*) AS n FROM ${s}.dead_letter_queue`)).rows[0].n)).toBe(0);
  });

  it('pending: the oldest entries with idle time and deliveries, claimed to a consumer from the page', async () => {
    const env = await envs.setup('dash_ui_pending');
    await send(env.redis, ['XGROUP', 'CREATE', env.config.streamKey, env.config.group, '0', 'MKSTREAM']);
    for (let i = 0; i < 3; i++) await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 'x', 'payload', '{}']);
    await send(env.redis, ['XREADGROUP', 'GROUP', env.config.group, 'stuck-1', 'COUNT', '3', 'STREAMS', env.config.streamKey, '>']);
    const server = await serveDashboard(env.config, { token: TOKEN });
    envs.defer(() => server.close());
    const page = await open(`${server.url}/#/pending?stream=${encodeURIComponent(env.config.streamKey)}&group=${env.config.group}`);
    await page.getByTestId('token-input').fill(TOKEN);
    await page.getByTestId('token-save').click();
    const rows = page.getByTestId('pending-row');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(3);
    expect(await rows.first().locator('td').allTextContents()).toEqual([expect.stringMatching(/^\d+-\d+$/), 'stuck-1', expect.stringMatching(/ms|s$/), '1']);

    await page.getByTestId('claim-idle').fill('0');
    await page.getByTestId('claim-consumer').fill('manual');
    await page.getByTestId('claim-submit').click();
    await expect.poll(() => page.getByTestId('claim-result').textContent()).toBe('claimed 3 entries to manual');
    const summary = (await send(env.redis, ['XPENDING', env.config.streamKey, env.config.group])) as [number, string, string, [string, string][]];
    expect(summary[3]).toEqual([['manual', '3']]);
    // Each claim counts a delivery: the page shows 2 deliveries on consumer manual.
    await expect.poll(async () => (await rows.first().locator('td').allTextContents()).filter((_, i) => i === 1 || i === 3)).toEqual(['manual', '2']);
  });

  it('says what to do when a server is missing or nothing runs yet: no Redis, no Postgres, no group', async () => {
    const env = await envs.setup('dash_ui_states', {}, { migrate: false });
    const noRedis = await serveDashboard({ ...env.config, redisUrl: `redis://:secret-pw@127.0.0.1:${await freePort()}` });
    envs.defer(() => noRedis.close());
    let page = await open(`${noRedis.url}/#/overview`);
    const banner = page.getByTestId('error-banner');
    await banner.waitFor({ timeout: 10_000 });
    expect(await banner.getAttribute('data-code')).toBe('TRIB_ERR_REDIS_UNAVAILABLE');
    expect(await banner.textContent()).toContain('tributary up');
    expect(await page.content()).not.toContain('secret-pw');

    const noPostgres = await serveDashboard({ ...env.config, databaseUrl: `postgres://root:secret-pw@127.0.0.1:${await freePort()}/tributary` });
    envs.defer(() => noPostgres.close());
    page = await open(`${noPostgres.url}/#/dead-letters`);
    await page.getByTestId('error-banner').waitFor({ timeout: 10_000 });
    expect(await page.getByTestId('error-banner').getAttribute('data-code')).toBe('TRIB_ERR_POSTGRES_UNAVAILABLE');
    expect(await page.getByTestId('error-banner').textContent()).toContain('DATABASE_URL');

    const fresh = await serveDashboard(env.config);
    envs.defer(() => fresh.close());
    page = await open(`${fresh.url}/#/overview`);
    await page.getByTestId('no-group').waitFor({ timeout: 10_000 });
    expect(await page.getByTestId('no-group').textContent()).toContain('tributary start');
    await page.goto(`${fresh.url}/#/pending`);
    await page.getByTestId('error-banner').waitFor();
    expect(await page.getByTestId('error-banner').getAttribute('data-code')).toBe('TRIB_ERR_GROUP_NOT_FOUND');
  });

  it('read-only: the pages show no action and the API refuses them', async () => {
    const env = await envs.setup('dash_ui_ro');
    await send(env.redis, ['XGROUP', 'CREATE', env.config.streamKey, env.config.group, '0', 'MKSTREAM']);
    await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 'x', 'payload', '{}']);
    await send(env.redis, ['XREADGROUP', 'GROUP', env.config.group, 'c1', 'COUNT', '1', 'STREAMS', env.config.streamKey, '>']);
    await env.pool.query(
      `INSERT INTO ${quoteIdent(env.config.pgSchema)}.dead_letter_queue (stream_key, group_name, stream_id, event_id, event_type, fields, error_code, error, deliveries)
       VALUES ($1, $2, '1-0', 'ro-1', 'x', '{"payload":"{"}', 'TRIB_ERR_ENTRY_BAD_PAYLOAD', 'bad', 1)`,
      [env.config.streamKey, env.config.group],
    );
    const server = await serveDashboard(env.config);
    envs.defer(() => server.close());
    const q = `stream=${encodeURIComponent(env.config.streamKey)}&group=${env.config.group}`;
    const page = await open(`${server.url}/#/dead-letters?${q}`);
    await page.getByTestId('read-only').waitFor();
    await page.getByTestId('dlq-row').first().waitFor();
    await page.getByTestId('read-only-notice').waitFor();
    for (const id of ['dlq-actions', 'dlq-select', 'dlq-retry-one', 'purge', 'token-input']) expect(await page.getByTestId(id).count(), id).toBe(0);

    await page.goto(`${server.url}/#/pending?${q}`);
    await page.getByTestId('pending-row').first().waitFor();
    expect(await page.getByTestId('claim-form').count()).toBe(0);

    const refused: { status: number; body: any } = await page.evaluate(async () => {
      const r = await fetch('/api/dead-letters/retry', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"all":true}' });
      return { status: r.status, body: await r.json() };
    });
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('TRIB_ERR_HTTP_READ_ONLY');
    expect((await listDeadLetters({ redis: env.redis, pool: env.pool, config: env.config })).rows[0]!.retryState).toBe('not_retried');
  });
});
