/**
 * The dashboard's orders page in a real browser (Debian's Chromium, playwright-core)
 * while a real orders pipeline runs on real Redis and Postgres: queue depth against
 * MAX_QUEUE_DEPTH, workers, the totals and Postgres's counts follow the run live.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/index.js';
import { OrderGenerator } from '../../src/orders/generate.js';
import { assertWebBuilt, launchBrowser, serveDashboard } from '../helpers/dashboard.js';
import { waitFor } from '../helpers/env.js';
import { ordersTestEnvs } from '../helpers/orders.js';

const envs = ordersTestEnvs();
let browser: Browser;

beforeAll(async () => {
  assertWebBuilt();
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
});

describe('dashboard: the orders page', () => {
  it('shows a live run: depth against MAX_QUEUE_DEPTH, workers, taken and promoted rising to the totals in Redis and Postgres', async () => {
    const env = await envs.setup('dash_orders');
    const config = resolveConfig({ envFile: false, overrides: { ordersPrefix: env.name, ordersSchema: env.name, maxQueueDepth: 50_000 } });
    const server = await serveDashboard(config);
    envs.defer(() => server.close());
    const context = await browser.newContext({ viewport: { width: 1300, height: 1000 } });
    envs.defer(() => context.close());
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${server.url}/#/orders`);
    await page.getByTestId('orders-empty').waitFor({ timeout: 10_000 });

    // 2,000 orders queued: the depth shows against the limit before anything runs.
    const generator = new OrderGenerator({ seed: 11, duplicates: 0.05, invalid: 0.02 });
    await env.queue.push(generator.batch(2000));
    await expect.poll(() => page.getByTestId('orders-depth').textContent(), { timeout: 5000 }).toMatch(/^2,000\s*\/\s*50,000$/);

    // The pipeline runs while more orders arrive: the page follows without a reload.
    const pipeline = env.pipeline({ workers: 2, batchSize: 200 });
    await pipeline.start();
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      await env.queue.push(generator.batch(300));
      await page.waitForTimeout(400);
      seen.add((await page.getByTestId('orders-taken').locator('.value').textContent()) ?? '');
    }
    await waitFor(async () => (await env.queue.depth()) === 0, 20_000, 'the queue drained');
    const taken = pipeline.stats().taken;
    expect(taken).toBe(3800);
    const orders = await env.count('orders');
    const rejected = await env.count('orders_rejected');
    await expect.poll(() => page.getByTestId('orders-taken').locator('.value').textContent(), { timeout: 8000 }).toBe('3,800');
    await expect.poll(() => page.getByTestId('orders-pg-orders').textContent(), { timeout: 8000 }).toBe(orders.toLocaleString('en-US'));
    expect(await page.getByTestId('orders-depth').textContent()).toMatch(/^0\s*\/\s*50,000$/);
    expect(Number((await page.getByTestId('orders-rejected').locator('.value').textContent())!.replace(/,/g, ''))).toBeGreaterThanOrEqual(rejected);
    expect(seen.size, `taken as the page showed it during the run: ${[...seen].join(' | ')}`).toBeGreaterThan(1);
    const workers = await page.getByTestId('orders-workers').textContent();
    for (const w of pipeline.workerNames) expect(workers).toContain(w);
    expect(await page.getByTestId('orders-cache').textContent()).toMatch(/^v\d+, published /);
    expect(await page.getByTestId('orders-views').locator('tbody tr').count()).toBeGreaterThan(0);
    expect(await page.getByTestId('orders-reject-reason').count()).toBeGreaterThan(0);
    expect(await page.getByTestId('orders-empty').count()).toBe(0);
    await pipeline.close();
    expect(errors).toEqual([]);
  });
});
