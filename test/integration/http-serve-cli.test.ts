/**
 * `tributary serve` and `start --http-port` (issue 14) as child processes: they say where
 * they listen and whether they are read-only, take events, stop with exit 0 on SIGTERM,
 * and never print the token.
 */
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { assertBuilt, EngineProcess, killChildren } from '../helpers/child.js';
import { countRows, testEnvs, waitFor } from '../helpers/env.js';

const envs = testEnvs({ numWorkers: 1, batchTimeoutMs: 100, xreadBlockMs: 200 });
afterEach(killChildren);
const TOKEN = 'cli-token-9f8e7d6c5b4a39281706';

function childEnv(base: NodeJS.ProcessEnv, extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, NO_COLOR: '1', LOG_LEVEL: 'info', ...extra };
  for (const k of ['HTTP_TOKEN', 'HTTP_PORT', 'HTTP_HOST', 'METRICS_PORT', 'INGEST_STREAMS']) if (extra[k] === undefined) delete env[k];
  return env;
}

const ndjson = (from: number, n: number) => Array.from({ length: n }, (_, i) => JSON.stringify({ event_type: 'cli', payload: { i: from + i }, event_id: `cli-${from + i}` })).join('\n');

describe('tributary serve and --http-port (issue 14)', () => {
  it('serve listens on 127.0.0.1, takes NDJSON with the token, says ready, and exits 0 on SIGTERM without printing the token', async () => {
    assertBuilt();
    const env = await envs.setup('http_serve');
    const child = new EngineProcess(childEnv(env.childEnv, { HTTP_TOKEN: TOKEN }), 'serve', ['serve', '--port', '0']);
    await child.waitForLog(/listening on http:\/\/127\.0\.0\.1:\d+/, 15_000);
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(child.output)![1]);
    const res = await fetch(`http://127.0.0.1:${port}/v1/streams/${env.config.streamKey}/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/x-ndjson' },
      body: ndjson(0, 5),
    });
    expect(res.status).toBe(202);
    expect(((await res.json()) as { count: number }).count).toBe(5);
    expect(Number(await env.redis.sendCommand(['XLEN', env.config.streamKey]))).toBe(5);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, redis: { ok: true }, postgres: { ok: true } });
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
    await child.waitForLog(/POST \/v1\/streams\/\S+ 202/, 5000);
    child.kill('SIGTERM');
    const exit = await child.waitExit(10_000);
    expect(exit?.code, child.output).toBe(0);
    expect(child.output).toContain('5 events added');
    expect(child.output).not.toContain(TOKEN);
    expect(child.output).not.toMatch(/read-only/);
  });

  it('serve without HTTP_TOKEN says it is read-only and refuses writes with 401', async () => {
    assertBuilt();
    const env = await envs.setup('http_serve_ro');
    const child = new EngineProcess(childEnv(env.childEnv, {}), 'serve-ro', ['serve', '--port', '0']);
    await child.waitForLog(/read-only/, 15_000);
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(child.output)![1]);
    const res = await fetch(`http://127.0.0.1:${port}/v1/streams/${env.config.streamKey}/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/x-ndjson' },
      body: ndjson(0, 1),
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('TRIB_ERR_HTTP_READ_ONLY');
    child.kill('SIGTERM');
    expect((await child.waitExit(10_000))?.code, child.output).toBe(0);
  });

  it('a token that is too short stops the command with a coded error that does not echo it; there is no --http-token flag', async () => {
    assertBuilt();
    const env = await envs.setup('http_serve_bad');
    const short = new EngineProcess(childEnv(env.childEnv, { HTTP_TOKEN: 'short-tok' }), 'serve-short', ['serve', '--port', '0']);
    expect((await short.waitExit(10_000))?.code).toBe(2);
    expect(short.output).toContain('TRIB_ERR_CONFIG_INVALID');
    expect(short.output).toContain('HTTP_TOKEN');
    expect(short.output).not.toContain('short-tok');
    const flag = new EngineProcess(childEnv(env.childEnv, {}), 'serve-flag', ['serve', '--http-token', TOKEN]);
    expect((await flag.waitExit(10_000))?.code).toBe(2);
    expect(flag.output).toContain('TRIB_ERR_CLI_USAGE');
  });

  it('start --http-port serves the ingest API next to the engine: the events are in Postgres once each, resent or not', async () => {
    assertBuilt();
    const env = await envs.setup('http_start');
    const child = new EngineProcess(childEnv(env.childEnv, { HTTP_TOKEN: TOKEN }), 'start-http', ['start', '--http-port', '0', '--num-workers', '1']);
    await child.waitForLog(/metrics on http:\/\/127\.0\.0\.1:\d+/, 15_000);
    await child.waitForLog('engine started', 15_000);
    const port = Number(/metrics on http:\/\/127\.0\.0\.1:(\d+)/.exec(child.output)![1]);
    const send = (body: string) =>
      fetch(`http://127.0.0.1:${port}/v1/streams/${env.config.streamKey}/events`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/x-ndjson' }, body });
    expect((await send(ndjson(0, 100))).status).toBe(202);
    expect((await send(ndjson(50, 100))).status).toBe(202); // 50 of them again
    await waitFor(async () => (await countRows(env)).rows >= 150, 15_000, '150 rows');
    await new Promise((r) => setTimeout(r, 500));
    expect(await countRows(env)).toEqual({ rows: 150, distinct: 150 });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/tributary_ingest_events_total\{stream="[^"]+"\} 200/);
    expect(metrics).toContain('tributary_entries_written_total');
    child.kill('SIGTERM');
    expect((await child.waitExit(10_000))?.code, child.output).toBe(0);
    expect(child.output).not.toContain(TOKEN);
  });

  it('run <file> --http-port serves the ingest API for the file\'s stream, its metrics and readiness', async () => {
    assertBuilt();
    const env = await envs.setup('http_run');
    const file = join(tmpdir(), `${env.name}-${randomBytes(3).toString('hex')}.yaml`);
    writeFileSync(
      file,
      `name: http-run\nsource: { stream: ${env.config.streamKey} }\nbatch: { count: 50, period: 10ms }\nworkers: 1\ndead_letters: { stream: ${env.config.dlqStream} }\n` +
        `sink:\n  table: ${env.config.pgSchema}.state\n  mode: upsert\n  key: [k]\n  columns:\n    k: { from: payload.k, type: text }\n    n: { from: payload.n, type: bigint }\n`,
    );
    envs.defer(() => rmSync(file, { force: true }));
    const child = new EngineProcess(childEnv(env.childEnv, { HTTP_TOKEN: TOKEN }), 'run-http', ['run', file, '--http-port', '0']);
    await child.waitForLog(/metrics on http:\/\/127\.0\.0\.1:\d+/, 15_000);
    await child.waitForLog('started', 15_000);
    const port = Number(/metrics on http:\/\/127\.0\.0\.1:(\d+)/.exec(child.output)![1]);
    const body = JSON.stringify(Array.from({ length: 30 }, (_, i) => ({ event_type: 'state', payload: { k: `k${i % 10}`, n: i } })));
    const res = await fetch(`http://127.0.0.1:${port}/v1/streams/${env.config.streamKey}/events`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body });
    expect(res.status).toBe(202);
    const other = await fetch(`http://127.0.0.1:${port}/v1/streams/${env.config.streamKey}x/events`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body });
    expect(other.status).toBe(404);
    await waitFor(async () => Number((await env.pool.query(`SELECT count(*)::int AS n FROM ${env.config.pgSchema}.state`).catch(() => ({ rows: [{ n: 0 }] }))).rows[0].n) === 10, 15_000, '10 keys');
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, 'pipeline:http-run': { ok: true } });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/tributary_entries_read_total\{pipeline="http-run"[^}]*\} 30/);
    expect(metrics.match(/^# TYPE tributary_entries_read_total /gm)).toHaveLength(1);
    child.kill('SIGTERM');
    expect((await child.waitExit(10_000))?.code, child.output).toBe(0);
  });
});
