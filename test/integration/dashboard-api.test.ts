/**
 * The dashboard's JSON API (issue 14) on real Redis and Postgres: every route's status
 * codes (401 read-only and without the token, 404, 400 for bad parameters, 409 for a
 * purge not confirmed), coded errors with no driver message or password when a server is
 * down, the same answers as the CLI's library functions, and the page's static files.
 */
import { describe, expect, it } from 'vitest';
import { freePort } from '../helpers/child.js';
import { assertWebBuilt, call, serveDashboard, TOKEN } from '../helpers/dashboard.js';
import { getDeadLetter, listDeadLetters } from '../../src/ops/dead-letters.js';
import { pendingSummary } from '../../src/ops/pending.js';
import { send } from '../../src/redis/client.js';
import { DeadLetterWriter } from '../../src/sinks/dead-letters.js';
import { testEnvs, type TestEnv } from '../helpers/env.js';

const envs = testEnvs();
const auth = { authorization: `Bearer ${TOKEN}` };

/** An entry delivered to consumer `c1` and dead-lettered as the engine does (row, then ack and dead-letter stream). */
async function deadLetter(env: TestEnv, fields: Record<string, string>, code: 'TRIB_ERR_ENTRY_BAD_PAYLOAD' | 'TRIB_ERR_ENTRY_MISSING_FIELD' = 'TRIB_ERR_ENTRY_BAD_PAYLOAD'): Promise<string> {
  const id = String(await send(env.redis, ['XADD', env.config.streamKey, '*', ...Object.entries(fields).flat()]));
  await send(env.redis, ['XREADGROUP', 'GROUP', env.config.group, 'c1', 'COUNT', '1', 'STREAMS', env.config.streamKey, '>']);
  const writer = new DeadLetterWriter(env.pool, env.redis, env.config, env.config.pgSchema);
  const letter = { entry: { id, fields }, code, error: `failed ${id}`, deliveries: 1 };
  await writer.record([letter]);
  await writer.moveInRedis([letter]);
  return id;
}

async function setup(label: string) {
  const env = await envs.setup(label);
  await send(env.redis, ['XGROUP', 'CREATE', env.config.streamKey, env.config.group, '0', 'MKSTREAM']);
  return env;
}

describe('dashboard API: reads', () => {
  it('answers what the CLI library answers: dead letters with filters, one in full, pending; info says whether it is read-only', async () => {
    const env = await setup('dash_reads');
    const a = await deadLetter(env, { event_type: 'order', payload: '{bad', event_id: 'a' });
    await deadLetter(env, { payload: '{}', event_id: 'b' }, 'TRIB_ERR_ENTRY_MISSING_FIELD');
    await send(env.redis, ['XADD', env.config.streamKey, '*', 'event_type', 'x', 'payload', '{}']);
    await send(env.redis, ['XREADGROUP', 'GROUP', env.config.group, 'c2', 'COUNT', '5', 'STREAMS', env.config.streamKey, '>']);
    const server = await serveDashboard(env.config);
    envs.defer(() => server.close());

    const info = await call(server, 'GET', '/api/info');
    expect(info.status).toBe(200);
    expect(info.json).toMatchObject({ readOnly: true, stream: env.config.streamKey, group: env.config.group });

    const q = `stream=${encodeURIComponent(env.config.streamKey)}&group=${env.config.group}`;
    const list = await call(server, 'GET', `/api/dead-letters?${q}`);
    expect(list.status).toBe(200);
    const ops = { redis: env.redis, pool: env.pool, config: env.config };
    const lib = await listDeadLetters(ops, { limit: 50 });
    expect(list.json.total).toBe(2);
    expect(list.json.rows).toEqual(JSON.parse(JSON.stringify(lib.rows)));
    expect(list.json.deadLetterStream).toBe(env.config.dlqStream);
    // Filters: error code, type, time.
    expect((await call(server, 'GET', `/api/dead-letters?${q}&code=TRIB_ERR_ENTRY_MISSING_FIELD`)).json.rows.map((r: any) => r.eventId)).toEqual(['b']);
    expect((await call(server, 'GET', `/api/dead-letters?${q}&type=order`)).json.rows.map((r: any) => r.eventId)).toEqual(['a']);
    expect((await call(server, 'GET', `/api/dead-letters?${q}&since=1h`)).json.total).toBe(2);
    expect((await call(server, 'GET', `/api/dead-letters?${q}&until=1h`)).json.total).toBe(0);

    const id = lib.rows.find((r) => r.streamId === a)!.id;
    const one = await call(server, 'GET', `/api/dead-letters/${id}?${q}`);
    expect(one.status).toBe(200);
    expect(one.json).toEqual(JSON.parse(JSON.stringify(await getDeadLetter(ops, id))));
    expect(one.json.streamEntry.fields).toMatchObject({ event_type: 'order', payload: '{bad' });

    const pending = await call(server, 'GET', `/api/pending?${q}&limit=5`);
    expect(pending.status).toBe(200);
    expect(pending.json).toMatchObject({ total: 1, consumers: [{ name: 'c2', pending: 1 }] });
    const libPending = await pendingSummary(env.redis, env.config, { limit: 5 });
    expect(pending.json.oldest.map((p: any) => p.id)).toEqual(libPending.oldest.map((p) => p.id));

    // The overview finds the stream with its group, and its dead letters.
    const overview = await call(server, 'GET', '/api/overview');
    expect(overview.status).toBe(200);
    const p = overview.json.pipelines.find((x: any) => x.stream === env.config.streamKey);
    expect(p).toMatchObject({ group: env.config.group, configured: true, partitioned: false });
    expect(p.totals).toMatchObject({ length: 3, pending: 1, deadLetters: 2 });
    expect(p.parts[0].snapshot.groups[0].consumers.map((c: any) => c.name).sort()).toEqual(['c1', 'c2']);
    expect(p.series).toHaveLength(1);
  });

  it('groups a partitioned stream under its logical stream: parts in order, totals summed, each partition with its own dead-letter stream', async () => {
    const env = await envs.setup('dash_parts', { partitions: 2 });
    const keys = [`${env.config.streamKey}:p0`, `${env.config.streamKey}:p1`];
    envs.defer(() => env.redis.del([...keys, ...keys.map((k) => `{${k}}:dead`)]));
    for (const [i, key] of keys.entries()) {
      await send(env.redis, ['XGROUP', 'CREATE', key, env.config.group, '0', 'MKSTREAM']);
      for (let j = 0; j <= i; j++) await send(env.redis, ['XADD', key, '*', 'event_type', 'x', 'payload', '{}']);
    }
    const server = await serveDashboard({ ...env.config, partitions: 2 });
    envs.defer(() => server.close());
    const overview = await call(server, 'GET', '/api/overview');
    const p = overview.json.pipelines.find((x: any) => x.stream === env.config.streamKey);
    expect(p).toMatchObject({ partitioned: true, group: env.config.group, totals: { length: 3, lag: 3, pending: 0 } });
    expect(p.parts.map((x: any) => [x.key, x.deadLetterStream])).toEqual(keys.map((k) => [k, `{${k}}:dead`]));
    expect(overview.json.pipelines.filter((x: any) => keys.includes(x.stream))).toEqual([]);
    const dead = await call(server, 'GET', `/api/dead-letters?stream=${encodeURIComponent(keys[1]!)}`);
    expect(dead.json).toMatchObject({ stream: keys[1], deadLetterStream: `{${keys[1]}}:dead`, total: 0 });
  });

  it('says what to do when there is nothing yet: no group (404), no tables (503), an empty overview entry for STREAM_KEY', async () => {
    const env = await envs.setup('dash_empty', {}, { migrate: false });
    const server = await serveDashboard(env.config);
    envs.defer(() => server.close());
    const pending = await call(server, 'GET', '/api/pending');
    expect(pending.status).toBe(404);
    expect(pending.json.error).toEqual({ code: 'TRIB_ERR_GROUP_NOT_FOUND', message: 'the consumer group does not exist yet: start the engine (tributary start)' });
    const dead = await call(server, 'GET', '/api/dead-letters');
    expect(dead.status).toBe(503);
    expect(dead.json.error.code).toBe('TRIB_ERR_POSTGRES_TABLE_MISSING');
    expect(dead.json.error.message).toContain('tributary migrate');
    const overview = await call(server, 'GET', '/api/overview');
    expect(overview.status).toBe(200);
    const p = overview.json.pipelines[0];
    expect(p).toMatchObject({ stream: env.config.streamKey, group: null, configured: true });
    expect(p.warnings[0]).toContain('tributary start');
  });

  it('refuses bad parameters with 400, unknown routes and dead letters with 404', async () => {
    const env = await setup('dash_bad');
    const server = await serveDashboard(env.config, { token: TOKEN });
    envs.defer(() => server.close());
    const expect400 = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
      const r = await call(server, method, path, body, method === 'POST' ? auth : {});
      expect(r.status, `${method} ${path} ${JSON.stringify(body)}`).toBe(400);
      expect(r.json.error.code).toBe('TRIB_ERR_HTTP_BAD_REQUEST');
    };
    await expect400('GET', '/api/dead-letters?limit=0');
    await expect400('GET', '/api/dead-letters?limit=abc');
    await expect400('GET', '/api/dead-letters?since=yesterday');
    await expect400('GET', `/api/dead-letters?stream=${'x'.repeat(300)}`);
    await expect400('GET', '/api/dead-letters/abc');
    await expect400('GET', '/api/pending?limit=100000');
    await expect400('POST', '/api/dead-letters/retry', {});
    await expect400('POST', '/api/dead-letters/retry', { ids: ['1'] });
    await expect400('POST', '/api/dead-letters/retry', { ids: [1], all: true });
    await expect400('POST', '/api/dead-letters/retry', [1, 2]);
    await expect400('POST', '/api/dead-letters/retry', '{not json');
    await expect400('POST', '/api/dead-letters/purge', { confirm: 'yes' });
    await expect400('POST', '/api/dead-letters/purge', { before: 'last week' });
    await expect400('POST', '/api/pending/claim', { minIdleMs: -1, consumer: 'c' });
    await expect400('POST', '/api/pending/claim', { minIdleMs: 1000 });
    await expect400('POST', '/api/pending/claim', { minIdleMs: 1000, consumer: 'c', count: 0 });

    const missing = await call(server, 'GET', '/api/dead-letters/999999999');
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe('TRIB_ERR_DLQ_NOT_FOUND');
    const route = await call(server, 'GET', '/api/nothing-here');
    expect(route.status).toBe(404);
    expect(route.json.error.code).toBe('TRIB_ERR_HTTP_NOT_FOUND');
  });
});

describe('dashboard API: actions', () => {
  it('read-only: every action answers 401 TRIB_ERR_HTTP_READ_ONLY and changes nothing', async () => {
    const env = await setup('dash_ro');
    await deadLetter(env, { event_type: 'x', payload: '{bad', event_id: 'ro' });
    const server = await serveDashboard(env.config);
    envs.defer(() => server.close());
    for (const [path, body] of [
      ['/api/dead-letters/retry', { all: true }],
      ['/api/dead-letters/purge', { confirm: true }],
      ['/api/pending/claim', { minIdleMs: 0, consumer: 'x' }],
    ] as const) {
      const r = await call(server, 'POST', path, body, auth);
      expect(r.status, path).toBe(401);
      expect(r.json.error.code).toBe('TRIB_ERR_HTTP_READ_ONLY');
    }
    expect((await listDeadLetters({ redis: env.redis, pool: env.pool, config: env.config })).rows[0]!.retryState).toBe('not_retried');
  });

  it('with HTTP_TOKEN: no token or a wrong one is 401; retry re-adds once, purge needs confirm (409 with the count), claim moves entries', async () => {
    const env = await setup('dash_act');
    const a = await deadLetter(env, { event_type: 'x', payload: '{bad', event_id: 'act-a' });
    await deadLetter(env, { event_type: 'x', payload: '{bad', event_id: 'act-b' });
    const server = await serveDashboard(env.config, { token: TOKEN });
    envs.defer(() => server.close());

    expect((await call(server, 'POST', '/api/dead-letters/retry', { all: true })).json.error.code).toBe('TRIB_ERR_HTTP_UNAUTHORIZED');
    const wrong = await call(server, 'POST', '/api/dead-letters/retry', { all: true }, { authorization: 'Bearer not-the-token-at-all' });
    expect(wrong.status).toBe(401);
    expect(wrong.json.error.code).toBe('TRIB_ERR_HTTP_UNAUTHORIZED');

    const ops = { redis: env.redis, pool: env.pool, config: env.config };
    const id = (await listDeadLetters(ops)).rows.find((r) => r.streamId === a)!.id;
    const before = Number(await send(env.redis, ['XLEN', env.config.streamKey]));
    const retried = await call(server, 'POST', '/api/dead-letters/retry', { ids: [id] }, auth);
    expect(retried.status).toBe(200);
    expect(retried.json.retried).toBe(1);
    expect(retried.json.outcomes[0]).toMatchObject({ id, status: 'retried', source: 'stream' });
    const again = await call(server, 'POST', '/api/dead-letters/retry', { ids: [id] }, auth);
    expect(again.json.outcomes[0]).toMatchObject({ id, status: 'already_retried' });
    expect(Number(await send(env.redis, ['XLEN', env.config.streamKey]))).toBe(before + 1);
    const notFound = await call(server, 'POST', '/api/dead-letters/retry', { ids: [999999999] }, auth);
    expect(notFound.json.outcomes[0]).toMatchObject({ status: 'not_found' });

    const ask = await call(server, 'POST', '/api/dead-letters/purge', {}, auth);
    expect(ask.status).toBe(409);
    expect(ask.json.error).toMatchObject({ code: 'TRIB_ERR_CONFIRMATION_REQUIRED', rows: 2, streamEntries: 1 });
    expect(ask.json.error.message).toContain('send confirm: true');
    expect((await listDeadLetters(ops)).total).toBe(2);
    const purged = await call(server, 'POST', '/api/dead-letters/purge', { confirm: true }, auth);
    expect(purged.json).toMatchObject({ purged: true, rows: 2, streamEntries: 1 });
    expect((await listDeadLetters(ops)).total).toBe(0);
    expect((await call(server, 'POST', '/api/dead-letters/purge', {}, auth)).json).toMatchObject({ purged: false, rows: 0 });

    // The re-added entry is pending nowhere yet; deliver it to c1, then claim it to `manual`.
    await send(env.redis, ['XREADGROUP', 'GROUP', env.config.group, 'c1', 'COUNT', '10', 'STREAMS', env.config.streamKey, '>']);
    const claim = await call(server, 'POST', '/api/pending/claim', { minIdleMs: 0, consumer: 'manual' }, auth);
    expect(claim.status).toBe(200);
    expect(claim.json.claimed).toHaveLength(1);
    expect((await pendingSummary(env.redis, env.config)).consumers).toEqual([{ name: 'manual', pending: 1 }]);
    const noGroup = await call(server, 'POST', '/api/pending/claim', { group: 'nope', minIdleMs: 0, consumer: 'm' }, auth);
    expect(noGroup.status).toBe(404);
    expect(noGroup.json.error.code).toBe('TRIB_ERR_GROUP_NOT_FOUND');
  });
});

describe('dashboard API: servers down', () => {
  it('no Redis: 503 TRIB_ERR_REDIS_UNAVAILABLE saying what to do; no Postgres: 503 TRIB_ERR_POSTGRES_UNAVAILABLE; no URL, password or driver text', async () => {
    const env = await setup('dash_down');
    const deadRedis = `redis://:redis-secret-pw@127.0.0.1:${await freePort()}`;
    const deadPg = `postgres://root:pg-secret-pw@127.0.0.1:${await freePort()}/tributary`;
    const noRedis = await serveDashboard({ ...env.config, redisUrl: deadRedis });
    envs.defer(() => noRedis.close());
    const noPg = await serveDashboard({ ...env.config, databaseUrl: deadPg });
    envs.defer(() => noPg.close());
    for (const path of ['/api/overview', '/api/pending', '/api/dead-letters', '/api/orders']) {
      const r = await call(noRedis, 'GET', path);
      expect(r.status, path).toBe(503);
      expect(r.json.error).toEqual({ code: 'TRIB_ERR_REDIS_UNAVAILABLE', message: 'Redis does not answer: start it (tributary up) or check REDIS_URL' });
    }
    for (const path of ['/api/overview', '/api/dead-letters', '/api/orders']) {
      const r = await call(noPg, 'GET', path);
      expect(r.status, path).toBe(503);
      expect(r.json.error).toEqual({ code: 'TRIB_ERR_POSTGRES_UNAVAILABLE', message: 'Postgres does not answer: start it (tributary up) or check DATABASE_URL' });
      expect(r.text).not.toMatch(/secret|ECONNREFUSED|127\.0\.0\.1/);
    }
  });
});

describe('dashboard: the page', () => {
  it('serves the built app at / and its assets, with security headers; nothing outside assets', async () => {
    assertWebBuilt();
    const env = await envs.setup('dash_static', {}, { migrate: false });
    const server = await serveDashboard(env.config);
    envs.defer(() => server.close());
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    const html = await page.text();
    expect(html).toContain('<title>Tributary</title>');
    const script = /src="\.\/assets\/([\w.-]+\.js)"/.exec(html)![1]!;
    const js = await fetch(`${server.url}/assets/${script}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toContain('text/javascript');
    expect(js.headers.get('cache-control')).toContain('immutable');
    for (const path of ['/assets/nope.js', '/assets/..%2F..%2Fpackage.json', '/assets/.env.js', '/assets/index.html']) {
      const r = await call(server, 'GET', path);
      expect(r.status, path).toBe(404);
      expect(r.json.error.code).toBe('TRIB_ERR_HTTP_NOT_FOUND');
    }
  });
});
