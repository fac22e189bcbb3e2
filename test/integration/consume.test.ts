/**
 * The public pipeline API on real servers: the examples under examples/ run as child
 * processes (as a user runs them), and consume() survives SIGKILL at random moments.
 */
import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { send } from '../../src/redis/client.js';
import { assertBuilt, EngineProcess, killChildren, REPO } from '../helpers/child.js';
import { testEnvs, waitFor, type TestEnv } from '../helpers/env.js';

const envs = testEnvs();
afterEach(killChildren);

const CONSUME_EXAMPLE = resolve(REPO, 'examples/consume-to-postgres.mjs');
const PIPELINE_EXAMPLE = resolve(REPO, 'examples/custom-pipeline.mjs');

function example(env: TestEnv, script: string, label: string, extra: Record<string, string>): EngineProcess {
  assertBuilt();
  return new EngineProcess({ ...env.childEnv, STREAM: env.config.streamKey, ...extra }, label, [], script);
}

async function xadd(env: TestEnv, from: number, to: number, fields: (n: number) => string[]): Promise<string[]> {
  const replies = await Promise.all(Array.from({ length: to - from }, (_, i) => send(env.redis, ['XADD', env.config.streamKey, '*', ...fields(from + i)])));
  return replies.map(String);
}

async function pending(env: TestEnv, group: string): Promise<string[]> {
  const reply = (await send(env.redis, ['XPENDING', env.config.streamKey, group, '-', '+', '100000'])) as string[][];
  return reply.map((r) => String(r[0]));
}

/** Entry IDs the group has acknowledged: delivered (up to last-delivered-id) and not pending. */
async function acknowledged(env: TestEnv, group: string, ids: readonly string[]): Promise<string[]> {
  const groups = (await send(env.redis, ['XINFO', 'GROUPS', env.config.streamKey])) as unknown[][];
  const info = groups.map((g) => Object.fromEntries(g.flatMap((v, i) => (i % 2 === 0 ? [[String(v), g[i + 1]]] : [])))).find((g) => g.name === group);
  if (!info) return [];
  const last = String(info['last-delivered-id']);
  const held = new Set(await pending(env, group));
  const [lastMs, lastSeq] = last.split('-').map(Number) as [number, number];
  return ids.filter((id) => {
    const [ms, seq] = id.split('-').map(Number) as [number, number];
    const delivered = ms < lastMs || (ms === lastMs && seq <= lastSeq);
    return delivered && !held.has(id);
  });
}

describe('examples', () => {
  it('custom-pipeline.mjs: filter and map stages, a transactional sink; counts each event once, dead-letters the one without a type, exits when drained', async () => {
    const env = await envs.setup('example_pipeline');
    const table = `${quoteIdent(env.config.pgSchema)}.counts`;
    await env.pool.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(env.config.pgSchema)}`);
    await xadd(env, 0, 300, (n) => ['event_type', ['page_viewed', 'clicked', 'signed_up'][n % 3]!, 'payload', JSON.stringify({ n })]);
    await xadd(env, 0, 1, () => ['payload', '{}']);
    const run = (label: string) => example(env, PIPELINE_EXAMPLE, label, { TABLE: table, GROUP: 'counts', EVENT_TYPES: 'page_viewed,clicked' });
    const first = run('pipeline-1');
    const exit = await first.waitExit(30_000);
    expect(exit?.code, first.output).toBe(0);
    expect(first.output).toContain('counted 200 events (0 seen before, 100 skipped by the filter, 1 dead-lettered)');
    const rows = await env.pool.query<{ event_type: string; events: string }>(`SELECT event_type, events FROM ${table} ORDER BY 1`);
    expect(rows.rows.map((r) => [r.event_type, Number(r.events)])).toEqual([
      ['clicked', 100],
      ['page_viewed', 100],
    ]);
    expect(Number(await send(env.redis, ['XLEN', `${env.config.streamKey}:dead`]))).toBe(1);
    expect(await pending(env, 'counts')).toEqual([]);
    // A second run finds nothing new: the group is where the first left it.
    const second = run('pipeline-2');
    expect((await second.waitExit(30_000))?.code, second.output).toBe(0);
    expect(second.output).toContain('counted 0 events');
    await env.redis.del(`${env.config.streamKey}:dead`);
  }, 60_000);
});

describe('consume()', () => {
  it('SIGKILLed at random moments while 20,000 messages flow: every message handled, none acknowledged before its handler resolved, nothing pending at the end', async () => {
    const env = await envs.setup('consume_kill');
    const table = `${quoteIdent(env.config.pgSchema)}.handled`;
    await env.pool.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(env.config.pgSchema)}`);
    const group = 'handlers';
    const childEnv = { TABLE: table, GROUP: group, WORKERS: '2', BATCH_SIZE: '200', CLAIM_IDLE_MS: '3000', CLAIM_INTERVAL_MS: '300' };
    const total = 20_000;
    const ids: string[] = [];
    let produced = 0;
    const producing = (async () => {
      while (produced < total) {
        const n = Math.min(250, total - produced);
        ids.push(...(await xadd(env, produced, produced + n, (i) => ['event_type', 'tick', 'payload', JSON.stringify({ i })])));
        produced += n;
        await sleep(100);
      }
    })();
    const handledIds = async () => new Set((await env.pool.query<{ entry_id: string }>(`SELECT entry_id FROM ${table}`).catch(() => ({ rows: [] }))).rows.map((r) => r.entry_id));

    const kills: Array<{ afterMs: number; produced: number; handled: number; pending: number }> = [];
    for (let round = 1; round <= 5; round++) {
      const child = example(env, CONSUME_EXAMPLE, `consume-${round}`, childEnv);
      await child.waitForLog('consuming as', 20_000);
      const afterMs = 200 + Math.floor(Math.random() * 1200);
      await sleep(afterMs);
      // Kill it holding work when it can: wait (briefly) for a moment with entries pending.
      const until = Date.now() + 1000;
      while (Date.now() < until && (await pending(env, group)).length === 0 && produced < total) await sleep(5);
      await child.killHard();
      // The child is dead: whatever the group shows acknowledged must have been handled.
      const handled = await handledIds();
      const acked = await acknowledged(env, group, [...ids]);
      const lost = acked.filter((id) => !handled.has(id));
      expect(lost, `round ${round}: acknowledged but never handled`).toEqual([]);
      kills.push({ afterMs, produced, handled: handled.size, pending: (await pending(env, group)).length });
    }
    console.log(`consume_kill: ${JSON.stringify(kills)}`);
    expect(kills.some((k) => k.pending > 0), 'at least one kill left work pending').toBe(true);
    await producing;

    const survivor = example(env, CONSUME_EXAMPLE, 'consume-final', childEnv);
    await survivor.waitForLog('consuming as', 20_000);
    await waitFor(async () => (await handledIds()).size === total && (await pending(env, group)).length === 0, 60_000, 'every message handled and none pending');
    survivor.kill('SIGTERM');
    expect((await survivor.waitExit(15_000))?.code, survivor.output).toBe(0);
    expect(survivor.output).toContain('stopped:');

    const handled = await handledIds();
    expect(ids.filter((id) => !handled.has(id))).toEqual([]);
    expect(handled.size).toBe(total);
    expect(await pending(env, group)).toEqual([]);
    expect(Number(await send(env.redis, ['XLEN', `${env.config.streamKey}:dead`]))).toBe(0);
  }, 120_000);
});
