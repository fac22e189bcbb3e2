/**
 * The orders pipeline has what every pipeline on the runner has: Prometheus series with
 * a `pipeline` label, /healthz and /readyz — in the library and on `tributary orders
 * process --metrics-port`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startOpsServer } from '../../src/http/server.js';
import { createPipelineMetrics } from '../../src/observability/metrics.js';
import { collectOrdersStats, formatOrdersStats } from '../../src/orders/stats.js';
import { EngineProcess, assertBuilt, killChildren } from '../helpers/child.js';
import { waitFor } from '../helpers/env.js';
import { orderJson, ordersTestEnvs } from '../helpers/orders.js';

const envs = ordersTestEnvs();
afterEach(killChildren);

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

function metricValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.split(' ').at(-1));
  }
  return undefined;
}

describe('orders pipeline observability', () => {
  it('library: /metrics counts what the pipeline did under pipeline="orders"; /readyz is 200 while it runs and 503 once it stopped', async () => {
    const env = await envs.setup('obs_lib', 'cache');
    const texts = Array.from({ length: 1200 }, (_, i) => orderJson(`obs-${i}`));
    texts.push('not json');
    await env.queue.push(texts);
    const p = env.pipeline({ workers: 2, batchSize: 300 });
    const ops = await startOpsServer(p, createPipelineMetrics(p), 0, '127.0.0.1');
    try {
      expect((await get(ops.port, '/readyz')).status).toBe(503);
      await p.start();
      await waitFor(async () => (await env.count('orders')) === 1200, 20_000, 'all orders promoted');
      await waitFor(async () => p.stats().taken === 1201, 5000, 'the batch counted');
      // /readyz serves one probe for up to a second (the 503 from before start, at first).
      await waitFor(async () => (await get(ops.port, '/readyz')).status === 200, 3000, 'ready');
      const ready = await get(ops.port, '/readyz');
      expect(ready.status, ready.body).toBe(200);
      expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready', redis: { ok: true }, postgres: { ok: true }, schema: { ok: true } });
      const text = (await get(ops.port, '/metrics')).body;
      const labels = { pipeline: 'orders', stream: `${env.name}:queue`, group: env.name };
      expect(metricValue(text, 'tributary_entries_read_total', labels)).toBe(1201);
      expect(metricValue(text, 'tributary_entries_written_total', labels)).toBe(1200);
      expect(metricValue(text, 'tributary_batch_size_sum', labels)).toBe(1201);
      expect(metricValue(text, 'tributary_stream_length', labels)).toBe(0);
      expect(metricValue(text, 'tributary_group_pending', labels)).toBe(0);
      expect(metricValue(text, 'tributary_in_flight', labels)).toBe(0);
      expect((await get(ops.port, '/healthz')).status).toBe(200);
      await p.close();
      await waitFor(async () => (await get(ops.port, '/readyz')).status === 503, 3000, 'not ready once stopped (within the probe period)');
      // The runner's batch counters, published for `orders stats` like the engine's for `monitor`.
      const stats = await collectOrdersStats(env.redis, env.pool, { prefix: env.name, schema: env.name, maxQueueDepth: 100_000, dedupWindowSeconds: 3600, dedupBucketSeconds: 300 });
      const reasons = stats.pipeline.flushReasons;
      expect(Object.values(reasons).reduce((a, b) => a + b, 0)).toBe(p.stats().batches);
      expect(reasons.size).toBeGreaterThan(0);
      expect(formatOrdersStats(stats)).toMatch(/Flushed by: +size \d/);
    } finally {
      await ops.close();
    }
  });

  it('`tributary orders process --metrics-port 0` serves the same endpoints', async () => {
    assertBuilt();
    const env = await envs.setup('obs_cli', 'cache');
    await env.queue.push(Array.from({ length: 500 }, (_, i) => orderJson(`cli-obs-${i}`)));
    const child = new EngineProcess({ ...env.childEnv, NO_COLOR: '1' }, 'orders-metrics', ['orders', 'process', '--metrics-port', '0', '--workers', '1']);
    await child.waitForLog(/metrics on http:\/\/127\.0\.0\.1:\d+/, 20_000);
    const port = Number(/metrics on http:\/\/127\.0\.0\.1:(\d+)/.exec(child.output)![1]);
    await waitFor(async () => (await env.count('orders')) === 500, 20_000, 'orders promoted by the child');
    await waitFor(async () => metricValue((await get(port, '/metrics')).body, 'tributary_entries_written_total', { pipeline: 'orders' }) === 500, 10_000, 'the written counter');
    await waitFor(async () => (await get(port, '/readyz')).status === 200, 3000, 'ready');
    child.kill('SIGTERM');
    expect((await child.waitExit(15_000))?.code, child.output).toBe(0);
  });
});
