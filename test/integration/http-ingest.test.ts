/**
 * The ingest API (issue 14) on real Redis and Postgres, through a real HTTP client
 * (undici's fetch, and curl for NDJSON): every status it answers, nothing of a refused
 * request added, idempotency end to end with the engine draining, backpressure.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { IngestOptions } from '../../src/http/ingest.js';
import { startHttpServer, type HttpServer, type HttpServerOptions } from '../../src/http/server.js';
import { Engine } from '../../src/pipelines/events.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { freePort, RedisServerProcess } from '../helpers/child.js';
import { countRows, testEnvs, waitFor, type TestEnv } from '../helpers/env.js';

const envs = testEnvs({ numWorkers: 1, batchTimeoutMs: 100, xreadBlockMs: 200 });
const TOKEN = 'test-token-0123456789abcdef';
const run = promisify(execFile);

async function serve(env: TestEnv, ingest: Partial<IngestOptions> = {}, more: Partial<HttpServerOptions> = {}): Promise<HttpServer> {
  const server = await startHttpServer({
    port: 0,
    token: TOKEN,
    ingest: {
      redisUrl: env.config.redisUrl,
      streams: [{ stream: env.config.streamKey, groups: [env.config.group] }],
      maxLag: 100_000,
      maxBodyBytes: 1024 * 1024,
      maxEvents: 1000,
      ...ingest,
    },
    ...more,
  });
  envs.defer(() => server.close());
  return server;
}

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

async function post(server: HttpServer, stream: string, body: string, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(`${server.url}/v1/streams/${encodeURIComponent(stream)}/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...headers },
    body,
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

const xlen = async (env: TestEnv) => Number(await env.redis.sendCommand(['XLEN', env.config.streamKey]));

describe('ingest API (issue 14)', () => {
  it('202: the events are added in order, through the contract, with their entry IDs and event_ids', async () => {
    const env = await envs.setup('http_202');
    const server = await serve(env);
    const events = [
      { event_type: 'page_view', payload: { url: '/a', n: 1 } },
      { event_type: 'click', payload: [1, 'two', null], event_id: 'click-1', produced_at: 1_700_000_000_000 },
      { event_type: 'note', payload: 'just text' },
    ];
    const r = await post(server, env.config.streamKey, JSON.stringify(events));
    expect(r.status, r.text).toBe(202);
    expect(r.json.count).toBe(3);
    expect(r.json.event_ids[1]).toBe('click-1');
    expect(r.json.event_ids[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    const entries = (await env.redis.sendCommand(['XRANGE', env.config.streamKey, '-', '+'])) as [string, string[]][];
    expect(entries.map((e) => e[0])).toEqual(r.json.ids);
    const fields = entries.map(([, f]) => Object.fromEntries(f.flatMap((v, i) => (i % 2 === 0 ? [[v, f[i + 1]]] : []))));
    expect(fields.map((f) => f.event_type)).toEqual(['page_view', 'click', 'note']);
    expect(fields.map((f) => JSON.parse(f.payload!))).toEqual(events.map((e) => e.payload));
    expect(fields.map((f) => f.event_id)).toEqual(r.json.event_ids);
    expect(fields[1]!.produced_at).toBe('1700000000000');
  });

  it('NDJSON from curl: 202, and a bad line is refused with its index', async () => {
    const env = await envs.setup('http_ndjson');
    const server = await serve(env);
    const url = `${server.url}/v1/streams/${env.config.streamKey}/events`;
    const ndjson = '{"event_type":"a","payload":{"i":0}}\r\n\n{"event_type":"b","payload":{"i":1},"event_id":"nd-1"}\n';
    const curl = (body: string) =>
      run('curl', ['-sS', '-X', 'POST', '-H', `Authorization: Bearer ${TOKEN}`, '-H', 'Content-Type: application/x-ndjson', '--data-binary', body, '-w', '\n%{http_code}', url]);
    const ok = await curl(ndjson);
    const [okBody, okStatus] = ok.stdout.split('\n');
    expect(okStatus).toBe('202');
    expect(JSON.parse(okBody!)).toMatchObject({ count: 2, event_ids: [expect.any(String), 'nd-1'] });
    const bad = await curl('{"event_type":"a","payload":1}\n{not json\n');
    const [badBody, badStatus] = bad.stdout.split('\n');
    expect(badStatus).toBe('400');
    expect(JSON.parse(badBody!).error).toMatchObject({ code: 'TRIB_ERR_INGEST_INVALID', errors: [{ index: 1, code: 'TRIB_ERR_HTTP_BAD_REQUEST' }] });
    expect(await xlen(env)).toBe(2);
  });

  it('400 lists every bad event with its index and code, and adds nothing of the request', async () => {
    const env = await envs.setup('http_400');
    const server = await serve(env);
    let deep: unknown = 1;
    for (let i = 0; i < 70; i++) deep = [deep];
    const events = [
      { event_type: 'ok', payload: {} },
      { payload: {} },
      { event_type: 'x' },
      { event_type: 'x', payload: 1, event_id: 'e'.repeat(513) },
      { event_type: 'x', payload: 1, produced_at: 'yesterday' },
      { event_type: 'x', payload: 1, produced_at: 1e15 },
      { event_type: 'x', payload: { text: 'nul \u0000 here' } },
      { event_type: 'x', payload: 1, eventType: 'typo' },
      'not an object',
      { event_type: 7, payload: 1 },
      { event_type: 'x', payload: deep },
      { event_type: 'ok', payload: { text: 'an escaped backslash before u0000: \\u0000' } },
    ];
    const r = await post(server, env.config.streamKey, JSON.stringify(events));
    expect(r.status, r.text).toBe(400);
    expect(r.json.error.code).toBe('TRIB_ERR_INGEST_INVALID');
    expect(r.json.error.errors.map((e: { index: number; code: string }) => [e.index, e.code])).toEqual([
      [1, 'TRIB_ERR_ENTRY_MISSING_FIELD'],
      [2, 'TRIB_ERR_ENTRY_MISSING_FIELD'],
      [3, 'TRIB_ERR_ENTRY_BAD_FIELD'],
      [4, 'TRIB_ERR_ENTRY_BAD_FIELD'],
      [5, 'TRIB_ERR_ENTRY_BAD_FIELD'],
      [6, 'TRIB_ERR_ENTRY_BAD_PAYLOAD'],
      [7, 'TRIB_ERR_ENTRY_BAD_FIELD'],
      [8, 'TRIB_ERR_ENTRY_BAD_FIELD'],
      [9, 'TRIB_ERR_ENTRY_BAD_FIELD'],
      [10, 'TRIB_ERR_ENTRY_BAD_PAYLOAD'],
    ]);
    expect(r.json.error.errors[2].message).toContain('event_id');
    expect(await xlen(env)).toBe(0);

    for (const [body, what] of [
      ['{"event_type":"x","payload":1}', 'array'],
      ['[{"event_type":"x",', 'not JSON'],
      ['[]', 'no events'],
    ] as const) {
      const b = await post(server, env.config.streamKey, body);
      expect(b.status, body).toBe(400);
      expect(b.json.error.code).toBe('TRIB_ERR_HTTP_BAD_REQUEST');
      expect(b.json.error.message).toContain(what);
    }
    // A body nested a million deep is refused without a stack overflow.
    const hostile = await post(server, env.config.streamKey, `[{"event_type":"x","payload":${'['.repeat(200_000)}${']'.repeat(200_000)}}]`);
    expect(hostile.status).toBe(400);
    expect(hostile.json.error.errors[0]).toMatchObject({ index: 0, code: 'TRIB_ERR_ENTRY_BAD_PAYLOAD' });
    expect(await xlen(env)).toBe(0);
  });

  it('401 without the token or with another one (same prefix, other length), before the body is read; read-only without HTTP_TOKEN', async () => {
    const env = await envs.setup('http_401');
    const server = await serve(env);
    const body = JSON.stringify([{ event_type: 'x', payload: 1 }]);
    for (const authorization of [undefined, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, 'Bearer', `Bearer ${'a'.repeat(10_000)}`]) {
      const headers: Record<string, string> = authorization === undefined ? {} : { authorization };
      const res = await fetch(`${server.url}/v1/streams/${env.config.streamKey}/events`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      const json = (await res.json()) as { error: { code: string; message: string } };
      expect(res.status, String(authorization)).toBe(401);
      expect(json.error.code).toBe('TRIB_ERR_HTTP_UNAUTHORIZED');
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
      expect(res.headers.get('set-cookie')).toBeNull();
      expect(JSON.stringify(json)).not.toContain(TOKEN);
    }
    // Checked before the body: a huge body from a client without the token is not read.
    const big = await fetch(`${server.url}/v1/streams/${env.config.streamKey}/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(5 * 1024 * 1024) });
    expect(big.status).toBe(401);
    expect(await xlen(env)).toBe(0);

    const readOnly = await startHttpServer({ port: 0, ingest: { redisUrl: env.config.redisUrl, streams: [{ stream: env.config.streamKey, groups: [] }], maxLag: 10, maxBodyBytes: 1024, maxEvents: 10 } });
    envs.defer(() => readOnly.close());
    expect(readOnly.readOnly).toBe(true);
    const refused = await post(readOnly, env.config.streamKey, body);
    expect(refused.status).toBe(401);
    expect(refused.json.error.code).toBe('TRIB_ERR_HTTP_READ_ONLY');
    expect((await fetch(`${readOnly.url}/healthz`)).status).toBe(200);
    expect(await xlen(env)).toBe(0);
  });

  it('404 for a stream not open to ingest, a stream name too long for a route, and an unknown route; all coded', async () => {
    const env = await envs.setup('http_404');
    const server = await serve(env);
    const body = JSON.stringify([{ event_type: 'x', payload: 1 }]);
    const other = await post(server, `${env.config.streamKey}:other`, body);
    expect(other.status).toBe(404);
    expect(other.json.error.code).toBe('TRIB_ERR_INGEST_UNKNOWN_STREAM');
    expect(other.json.error.message).toContain(env.config.streamKey);
    const long = await post(server, 's'.repeat(5000), body);
    expect(long.status).toBe(404);
    expect(long.json.error.code).toBe('TRIB_ERR_HTTP_NOT_FOUND');
    const route = await fetch(`${server.url}/v2/anything`);
    expect(route.status).toBe(404);
    expect(((await route.json()) as { error: { code: string } }).error.code).toBe('TRIB_ERR_HTTP_NOT_FOUND');
    expect(Number(await env.redis.sendCommand(['EXISTS', `${env.config.streamKey}:other`]))).toBe(0);
  });

  it('413 for a body over INGEST_MAX_BODY_BYTES and for more events than INGEST_MAX_EVENTS; 415 for other content types', async () => {
    const env = await envs.setup('http_413');
    const server = await serve(env, { maxBodyBytes: 2048, maxEvents: 3 });
    const tooBig = await post(server, env.config.streamKey, JSON.stringify([{ event_type: 'x', payload: 'y'.repeat(4000) }]));
    expect(tooBig.status).toBe(413);
    expect(tooBig.json.error).toMatchObject({ code: 'TRIB_ERR_HTTP_BODY_TOO_LARGE' });
    expect(tooBig.json.error.message).toContain('2048');
    const tooMany = await post(server, env.config.streamKey, JSON.stringify([1, 2, 3, 4].map((i) => ({ event_type: 'x', payload: i }))));
    expect(tooMany.status).toBe(413);
    expect(tooMany.json.error.code).toBe('TRIB_ERR_INGEST_TOO_MANY_EVENTS');
    const tooManyLines = await post(server, env.config.streamKey, '{"event_type":"x","payload":1}\n'.repeat(4), { 'content-type': 'application/x-ndjson' });
    expect(tooManyLines.status).toBe(413);
    expect(tooManyLines.json.error.code).toBe('TRIB_ERR_INGEST_TOO_MANY_EVENTS');

    for (const type of ['text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const r = await post(server, env.config.streamKey, '[{"event_type":"x","payload":1}]', { 'content-type': type });
      expect(r.status, type).toBe(415);
      expect(r.json.error.code).toBe('TRIB_ERR_HTTP_UNSUPPORTED_MEDIA_TYPE');
    }
    // No Content-Type at all (a Blob body without a type sends none).
    const none = await fetch(`${server.url}/v1/streams/${env.config.streamKey}/events`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: new Blob(['[{"event_type":"x","payload":1}]']) });
    expect(none.status).toBe(415);
    expect(await xlen(env)).toBe(0);
  });

  it('429 with Retry-After while the group lags by more than INGEST_MAX_LAG, measured at most every 250 ms; 202 again once it is read', async () => {
    const env = await envs.setup('http_429');
    const server = await serve(env, { maxLag: 10 });
    await env.redis.sendCommand(['XGROUP', 'CREATE', env.config.streamKey, env.config.group, '0', 'MKSTREAM']);
    const one = (i: number) => JSON.stringify([{ event_type: 'x', payload: i, event_id: `bp-${i}` }]);
    for (let i = 0; i < 11; i++) expect((await post(server, env.config.streamKey, one(i))).status).toBe(202);
    await new Promise((r) => setTimeout(r, 300)); // the last measure is older than 250 ms
    const probesBefore = server.ingest!.backlog.probes;
    const started = performance.now();
    const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => post(server, env.config.streamKey, one(100 + i))));
    const elapsed = performance.now() - started;
    expect(replies.map((r) => r.status)).toEqual(Array(40).fill(429));
    expect(replies[0]!.headers.get('retry-after')).toBe('1');
    expect(replies[0]!.json.error).toMatchObject({ code: 'TRIB_ERR_INGEST_BACKPRESSURE', lag: 11, maxLag: 10 });
    expect(server.ingest!.backlog.probes - probesBefore).toBeLessThanOrEqual(Math.ceil(elapsed / 250) + 1);
    expect(await xlen(env)).toBe(11);

    // The group reads everything (delivered, even if not yet acknowledged): no lag, writes resume.
    await env.redis.sendCommand(['XREADGROUP', 'GROUP', env.config.group, 'reader', 'COUNT', '100', 'STREAMS', env.config.streamKey, '>']);
    await new Promise((r) => setTimeout(r, 300));
    expect((await post(server, env.config.streamKey, one(999))).status).toBe(202);
  });

  it('an event_id sent again is one row: idempotent end to end with the engine draining into Postgres', async () => {
    const env = await envs.setup('http_idem');
    const engine = new Engine(env.config, { retry: { baseMs: 20, maxMs: 200 } });
    envs.defer(() => engine.close({ force: true }));
    await engine.start();
    const server = await serve(env);
    const batch = Array.from({ length: 200 }, (_, i) => ({ event_type: 'order', payload: { i }, event_id: `idem-${i}` }));
    const first = await post(server, env.config.streamKey, JSON.stringify(batch));
    expect(first.status).toBe(202);
    // The client did not see the answer and sends the whole request again, plus 50 new events.
    const again = await post(server, env.config.streamKey, JSON.stringify([...batch, ...Array.from({ length: 50 }, (_, i) => ({ event_type: 'order', payload: { i: 200 + i }, event_id: `idem-${200 + i}` }))]));
    expect(again.status).toBe(202);
    expect(await xlen(env)).toBe(450);
    await waitFor(async () => engine.stats().written + engine.stats().duplicates >= 450, 20_000, 'the engine drained both requests');
    expect(await countRows(env)).toEqual({ rows: 250, distinct: 250 });
    const r = await env.pool.query<{ payload: { i: number } }>(`SELECT payload FROM ${quoteIdent(env.config.pgSchema)}.events WHERE event_id = 'idem-7'`);
    expect(r.rows[0]!.payload).toEqual({ i: 7 });
  });

  it('503 with Retry-After when Redis does not answer, without its address or password in the answer', async () => {
    const env = await envs.setup('http_503');
    const dir = mkdtempSync(join(tmpdir(), 'trib-http-'));
    const redis = await RedisServerProcess.start(await freePort(), dir);
    envs.defer(() => {
      redis.killNow();
      rmSync(dir, { recursive: true, force: true });
    });
    const url = `redis://ingestuser:hunter2secret@127.0.0.1:${redis.port}`;
    const server = await serve(env, { redisUrl: url, streams: [{ stream: 'down:events', groups: [] }] });
    await redis.stop();
    const r = await post(server, 'down:events', JSON.stringify([{ event_type: 'x', payload: 1 }]));
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(r.json.error.code).toBe('TRIB_ERR_REDIS_UNAVAILABLE');
    for (const secret of ['hunter2secret', 'ingestuser', String(redis.port), '127.0.0.1', 'ECONNREFUSED']) expect(r.text).not.toContain(secret);
  });
});
