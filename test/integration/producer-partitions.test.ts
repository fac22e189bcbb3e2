/**
 * Producers route partitioned streams (PARTITIONS=4) on one Redis: the library producer,
 * `tributary produce` and the HTTP ingest API send every event to partitionOf(its
 * partition key, 4), in order per key; an event without the key refuses its whole batch.
 * (The same on a Redis Cluster: cluster-ops.test.ts.)
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { startHttpServer } from '../../src/http/server.js';
import { Producer } from '../../src/producer/producer.js';
import { partitionOf, partitionStreamKey, partitionStreamKeys } from '../../src/redis/partitions.js';
import { assertBuilt, CLI } from '../helpers/child.js';
import { codeOf, testEnvs, type TestEnv } from '../helpers/env.js';

const run = promisify(execFile);
const N = 4;
const envs = testEnvs({ partitions: N });

function cleanPartitions(env: TestEnv): void {
  envs.defer(() => env.redis.del(partitionStreamKeys(env.config.streamKey, N)));
}

/** Every entry of every partition: [partition, entry ID, fields]. */
async function entries(env: TestEnv): Promise<Array<{ partition: number; id: string; fields: Record<string, string> }>> {
  const out = [];
  for (let p = 0; p < N; p++) {
    const reply = (await env.redis.sendCommand(['XRANGE', partitionStreamKey(env.config.streamKey, p, N), '-', '+'])) as Array<[string, string[]]>;
    for (const [id, flat] of reply) {
      const fields: Record<string, string> = {};
      for (let i = 0; i < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
      out.push({ partition: p, id, fields });
    }
  }
  return out;
}

describe('producers route to partitions (one Redis, PARTITIONS=4)', () => {
  it('Producer: each user_id to one partition, in order, IDs returned in the batch order; a missing key sends nothing', async () => {
    const env = await envs.setup('prodpart', {}, { migrate: false });
    cleanPartitions(env);
    const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey, partitions: N, partitionKey: 'user_id' });
    envs.defer(() => producer.close());
    const events = Array.from({ length: 300 }, (_, i) => ({ type: 't', payload: { user_id: `u${i % 17}`, seq: Math.floor(i / 17) }, eventId: `e${i}` }));
    const { ids, partitions } = await producer.produceBatchRouted(events);
    expect(ids).toHaveLength(300);
    expect(partitions).toEqual(events.map((e) => partitionOf(e.payload.user_id, N)));
    const got = await entries(env);
    expect(got).toHaveLength(300);
    expect(new Set(got.map((g) => g.partition)).size).toBe(N);
    const byEventId = new Map(got.map((g) => [g.fields.event_id!, g]));
    events.forEach((e, i) => {
      const g = byEventId.get(e.eventId)!;
      expect(g.partition).toBe(partitions[i]);
      expect(g.id).toBe(ids[i]);
    });
    // Per user, the entries of its partition come in sequence order.
    for (let u = 0; u < 17; u++) {
      const seqs = got.filter((g) => JSON.parse(g.fields.payload!).user_id === `u${u}`).map((g) => JSON.parse(g.fields.payload!).seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    }

    const bad = [...events.slice(0, 5), { type: 't', payload: { other: 1 }, eventId: 'x' }];
    expect(await codeOf(producer.produceBatch(bad))).toMatch(/^TRIB_ERR_PRODUCE_INVALID: .*"user_id".*no such top-level field/);
    expect(await entries(env)).toHaveLength(300);
  });

  it('Producer: by event_id (the default), generated IDs included; produceFields routes the same way', async () => {
    const env = await envs.setup('prodpart_id', {}, { migrate: false });
    cleanPartitions(env);
    const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey, partitions: N });
    envs.defer(() => producer.close());
    await producer.produceBatch(Array.from({ length: 100 }, (_, i) => ({ type: 't', payload: { i } })));
    await producer.produce('t', {}, { eventId: 'given' });
    await producer.produceFields([{ event_type: 't', payload: '{}', event_id: 'fields-1', produced_at: '1' }]);
    const got = await entries(env);
    expect(got).toHaveLength(102);
    for (const g of got) expect(g.partition).toBe(partitionOf(g.fields.event_id!, N));
    expect(new Set(got.map((g) => g.partition)).size).toBe(N);
  });

  it('tributary produce with PARTITIONS=4 (and PARTITION_KEY=user_id: a sample without it is refused, coded)', async () => {
    assertBuilt();
    const env = await envs.setup('prodpart_cli', {}, { migrate: false });
    cleanPartitions(env);
    const { stdout } = await run('node', [CLI, 'produce', '400'], { env: { ...env.childEnv, PARTITIONS: String(N) } });
    expect(stdout).toContain(`(${N} partitions`);
    const got = await entries(env);
    expect(got).toHaveLength(400);
    for (const g of got) expect(g.partition).toBe(partitionOf(g.fields.event_id!, N));
    expect(Number(await env.redis.sendCommand(['EXISTS', env.config.streamKey]))).toBe(0);
    // Not every sample event has a user_id (payment_processed has none).
    const refused = await run('node', [CLI, 'produce', '200'], { env: { ...env.childEnv, PARTITIONS: String(N), PARTITION_KEY: 'user_id' } }).catch((e: { stderr: string; code: number }) => e);
    expect((refused as { code: number }).code).toBe(2);
    expect((refused as { stderr: string }).stderr).toMatch(/TRIB_ERR_PRODUCE_INVALID.*"user_id"/);
  });

  it('HTTP ingest: 202 with entry IDs in order and each event\'s partition; an event without the key is a 400', async () => {
    const env = await envs.setup('prodpart_http', {}, { migrate: false });
    cleanPartitions(env);
    const server = await startHttpServer({
      port: 0,
      token: 'test-token-0123456789abcdef',
      ingest: {
        redisUrl: env.config.redisUrl,
        streams: [{ stream: env.config.streamKey, groups: [env.config.group], partitions: N, partitionKey: 'account' }],
        maxLag: 100_000,
        maxBodyBytes: 1024 * 1024,
        maxEvents: 1000,
      },
    });
    envs.defer(() => server.close());
    const post = async (events: unknown[]) => {
      const res = await fetch(`${server.url}/v1/streams/${encodeURIComponent(env.config.streamKey)}/events`, {
        method: 'POST',
        headers: { authorization: 'Bearer test-token-0123456789abcdef', 'content-type': 'application/json' },
        body: JSON.stringify(events),
      });
      return { status: res.status, json: (await res.json()) as any };
    };
    const events = Array.from({ length: 50 }, (_, i) => ({ event_type: 't', payload: { account: i % 7 }, event_id: `h${i}` }));
    const ok = await post(events);
    expect(ok.status).toBe(202);
    expect(ok.json.partitions).toEqual(events.map((e) => partitionOf(String(e.payload.account), N)));
    const got = await entries(env);
    expect(got).toHaveLength(50);
    const byId = new Map(got.map((g) => [g.fields.event_id!, g]));
    events.forEach((e, i) => {
      expect(byId.get(e.event_id)!.partition).toBe(ok.json.partitions[i]);
      expect(byId.get(e.event_id)!.id).toBe(ok.json.ids[i]);
    });

    const bad = await post([...events.slice(0, 3), { event_type: 't', payload: { nope: 1 } }]);
    expect(bad.status).toBe(400);
    expect(bad.json.error.errors).toEqual([expect.objectContaining({ index: 3, code: 'TRIB_ERR_PRODUCE_INVALID', message: expect.stringContaining('"account"') })]);
    expect(await entries(env)).toHaveLength(50);
  });
});
