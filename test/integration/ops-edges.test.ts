import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/pipelines/events.js';
import { createPipelineMetrics } from '../../src/observability/metrics.js';
import { retryDeadLetters, type DeadLetterOps } from '../../src/ops/dead-letters.js';
import { trimStream } from '../../src/ops/retention.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { send } from '../../src/redis/client.js';
import { countRows, pendingCount, testEnvs, waitFor } from '../helpers/env.js';

const envs = testEnvs({ numWorkers: 2, batchTimeoutMs: 200, xreadBlockMs: 200, claimIdleMs: 3000, claimIntervalMs: 200 });

describe('operating tools: edge cases found in review', () => {
  it('dlq retry --all while an engine runs retries what existed at the start, once, and returns', async () => {
    const env = await envs.setup('retry_all_engine');
    const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 200 } });
    envs.defer(() => engine.close({ force: true }));
    await engine.start();
    // Poison that fails every time it is retried: no event_type.
    for (let i = 0; i < 30; i++) await send(env.redis, ['XADD', env.config.streamKey, '*', 'payload', `{"i":${i}}`, 'event_id', `p-${i}`]);
    await waitFor(async () => (await countRows(env, 'dead_letter_queue')).rows === 30, 10_000, '30 dead letters');
    const ops: DeadLetterOps = { redis: env.redis, pool: env.pool, config: env.config };
    const outcomes = await retryDeadLetters(ops, { all: true });
    expect(outcomes).toHaveLength(30);
    expect(outcomes.every((o) => o.status === 'retried')).toBe(true);
    await waitFor(async () => (await countRows(env, 'dead_letter_queue')).rows === 60 && (await pendingCount(env)) === 0, 10_000, 'failed again once');
    await new Promise((r) => setTimeout(r, 300));
    expect((await countRows(env, 'dead_letter_queue')).rows).toBe(60); // not a loop
  });

  it('a very wide dead letter is re-added with its own fields; a row without fields is refused', async () => {
    const env = await envs.setup('wide_retry');
    const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 200 } });
    envs.defer(() => engine.close({ force: true }));
    await engine.start();
    const fields: string[] = ['payload', '{}', 'event_id', 'wide'];
    for (let i = 0; i < 3500; i++) fields.push(`f${i}`, `v${i}`);
    await send(env.redis, ['XADD', env.config.streamKey, '*', ...fields]); // no event_type: dead-lettered
    await waitFor(async () => (await countRows(env, 'dead_letter_queue')).rows === 1, 10_000, 'dead letter');
    await engine.close();
    const ops: DeadLetterOps = { redis: env.redis, pool: env.pool, config: env.config };
    const [outcome] = await retryDeadLetters(ops, { all: true });
    expect(outcome).toMatchObject({ status: 'retried', source: 'stream' });
    const added = (await send(env.redis, ['XRANGE', env.config.streamKey, (outcome as { newStreamId: string }).newStreamId, '+'])) as [string, string[]][];
    const re = added[0]![1];
    expect(re.length).toBe(fields.length);
    expect(re).not.toContain('dlq_fields_json');
    expect(re.slice(re.indexOf('f3499'), re.indexOf('f3499') + 2)).toEqual(['f3499', 'v3499']);

    const s = quoteIdent(env.config.pgSchema);
    const row = await env.pool.query<{ id: string }>(
      `INSERT INTO ${s}.dead_letter_queue (stream_key, group_name, stream_id, event_id, fields, error_code, error, deliveries)
       VALUES ($1, $2, '1-1', 'x', '{"_tributary":"fields not storable"}', 'TRIB_ERR_ENTRY_REJECTED', 'e', 1) RETURNING id`,
      [env.config.streamKey, env.config.group],
    );
    const before = Number(await send(env.redis, ['XLEN', env.config.streamKey]));
    const [refused] = await retryDeadLetters(ops, { ids: [Number(row.rows[0]!.id)] });
    expect(refused).toMatchObject({ status: 'unretryable' });
    expect(Number(await send(env.redis, ['XLEN', env.config.streamKey]))).toBe(before);
  });

  it('one trimStream call trims a long stream all the way to maxLen, not one bounded pass', async () => {
    const env = await envs.setup('trim_passes', {}, { migrate: false });
    const key = env.config.streamKey;
    for (let done = 0; done < 30_000; done += 1000) {
      const multi = env.redis.multi();
      for (let i = 0; i < 1000; i++) multi.addCommand(['XADD', key, '*', 'n', String(done + i)]);
      await multi.execAsPipeline();
    }
    await send(env.redis, ['XGROUP', 'CREATE', key, env.config.group, '$']); // caught up: nothing held back
    const result = await trimStream(env.redis, key, { maxLen: 1000 });
    const left = Number(await send(env.redis, ['XLEN', key]));
    expect(left).toBeGreaterThanOrEqual(1000);
    expect(left).toBeLessThan(1200); // whole nodes (100 entries each) may stay
    expect(result.deleted).toBe(30_000 - left);
  });

  it('/metrics leaves the stream gauges out, and counts the failure, when Redis cannot be read', async () => {
    const env = await envs.setup('stale_gauges', {}, { migrate: false });
    const engine = new Engine(env.config); // never started: gauges() cannot read Redis
    const registry = createPipelineMetrics(engine);
    const text = await registry.metrics();
    expect(text).not.toMatch(/^tributary_stream_length\{/m);
    expect(text).not.toMatch(/^tributary_group_pending\{/m);
    expect(text).toMatch(/^tributary_gauges_up\{[^}]*\} 0$/m);
  });
});
