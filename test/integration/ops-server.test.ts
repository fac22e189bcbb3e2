/**
 * Issue 11, item 10: the metrics/health server binds 127.0.0.1 unless told otherwise
 * (--metrics-host / METRICS_HOST); /readyz serves codes and short reasons, never a
 * driver's message (host, port, user); one probe serves /readyz for a second, so a flood
 * of requests makes at most one probe per second.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { servedProbe, startOpsServer } from '../../src/http/server.js';
import { createPipelineMetrics } from '../../src/observability/metrics.js';
import { Engine } from '../../src/pipelines/events.js';
import { quoteIdent } from '../../src/postgres/pool.js';
import { assertBuilt, EngineProcess, killChildren } from '../helpers/child.js';
import { testEnvs, waitFor } from '../helpers/env.js';
import { afterEach } from 'vitest';

const envs = testEnvs({ numWorkers: 1, batchTimeoutMs: 200, xreadBlockMs: 200 });
afterEach(killChildren);

async function get(host: string, port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${host}:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

describe('metrics/health server (issue 11, item 10)', () => {
  it('binds 127.0.0.1 by default', async () => {
    const env = await envs.setup('ops_bind');
    const engine = new Engine(env.config);
    envs.defer(() => engine.close({ force: true }));
    const ops = await startOpsServer(engine, createPipelineMetrics(engine), 0);
    envs.defer(() => ops.close());
    expect((ops.server.address() as AddressInfo).address).toBe('127.0.0.1');
  });

  it('/readyz says which check failed with a code and a short reason, not the driver error naming host, port and user', async () => {
    const env = await envs.setup('ops_reason');
    const role = `trib_ops_${randomBytes(4).toString('hex')}`;
    await env.pool.query(`CREATE ROLE ${quoteIdent(role)} LOGIN SUPERUSER`);
    envs.defer(() => env.pool.query(`DROP ROLE IF EXISTS ${quoteIdent(role)}`).catch(() => {}));
    const url = new URL(env.config.databaseUrl);
    url.username = role;
    const engine = new Engine({ ...env.config, databaseUrl: url.toString() }, { retry: { baseMs: 20, maxMs: 200 } });
    envs.defer(() => engine.close({ force: true }));
    const ops = await startOpsServer(engine, createPipelineMetrics(engine), 0, '127.0.0.1', { probeCacheMs: 0 });
    envs.defer(() => ops.close());
    await engine.start();
    await waitFor(async () => (await get('127.0.0.1', ops.port, '/readyz')).status === 200, 10_000, 'ready');

    // The role may no longer log in and its sessions are ended: Postgres's message names the user.
    await env.pool.query(`ALTER ROLE ${quoteIdent(role)} NOLOGIN`);
    await env.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [role]);
    await waitFor(async () => (await get('127.0.0.1', ops.port, '/readyz')).status === 503, 10_000, 'not ready');
    const down = await get('127.0.0.1', ops.port, '/readyz');
    const body = JSON.parse(down.body) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 'not ready', ready: false, redis: { ok: true }, postgres: { ok: false, code: expect.stringMatching(/^TRIB_ERR_POSTGRES_/), reason: expect.any(String) } });
    expect(down.body).not.toContain(role);
    expect(down.body).not.toContain(url.hostname);
    expect(down.body).not.toContain(url.port || '5432');
    expect(down.body).not.toContain('"error"');
    await env.pool.query(`ALTER ROLE ${quoteIdent(role)} LOGIN`);
  });

  it('servedProbe keeps the codes of classified faults and says only "not running" before start', () => {
    expect(servedProbe({ ready: false, redis: { ok: false, error: 'connect ECONNREFUSED 10.1.2.3:6380' }, postgres: { ok: false, error: 'TRIB_ERR_POSTGRES_READ_ONLY: cannot execute INSERT in a read-only transaction' }, group: { ok: false, error: 'group g does not exist on s' } })).toEqual({
      status: 'not ready',
      ready: false,
      redis: { ok: false, code: 'TRIB_ERR_REDIS_UNAVAILABLE', reason: 'Redis does not answer' },
      postgres: { ok: false, code: 'TRIB_ERR_POSTGRES_READ_ONLY', reason: 'Postgres is read-only' },
      group: { ok: false, code: 'TRIB_ERR_REDIS_UNAVAILABLE', reason: 'Redis does not answer' },
    });
    expect(servedProbe({ ready: false, redis: { ok: true }, group: { ok: false, error: 'ERR no such key' }, schema: { ok: false, error: 'schema x has no orders table' } })).toMatchObject({
      group: { ok: false, code: 'TRIB_ERR_GROUP_NOT_FOUND' },
      schema: { ok: false, code: 'TRIB_ERR_POSTGRES_TABLE_MISSING' },
    });
    expect(servedProbe({ ready: false, redis: { ok: false, error: 'engine is starting' } })).toEqual({ status: 'not ready', ready: false, redis: { ok: false, reason: 'not running (starting)' } });
  });

  it('a flood of /readyz makes at most one probe per second', async () => {
    const env = await envs.setup('ops_flood');
    const engine = new Engine(env.config);
    envs.defer(() => engine.close({ force: true }));
    await engine.start();
    let probes = 0;
    const probed = { probe: () => (probes++, engine.probe()) };
    const ops = await startOpsServer(probed, createPipelineMetrics(engine), 0);
    envs.defer(() => ops.close());
    const started = performance.now();
    const statuses: number[] = [];
    while (performance.now() - started < 1500) {
      const batch = await Promise.all(Array.from({ length: 50 }, () => get('127.0.0.1', ops.port, '/readyz')));
      statuses.push(...batch.map((r) => r.status));
    }
    const elapsedS = (performance.now() - started) / 1000;
    expect(statuses.length).toBeGreaterThan(100);
    expect(new Set(statuses)).toEqual(new Set([200]));
    expect(probes).toBeGreaterThanOrEqual(1);
    expect(probes).toBeLessThanOrEqual(Math.ceil(elapsedS) + 1);
  });

  it('tributary start binds 127.0.0.1 by default and --metrics-host elsewhere', async () => {
    assertBuilt();
    const env = await envs.setup('ops_cli');
    const byDefault = new EngineProcess({ ...env.childEnv, NO_COLOR: '1' }, 'ops-default', ['start', '--metrics-port', '0', '--num-workers', '1']);
    const other = new EngineProcess({ ...env.childEnv, NO_COLOR: '1', CONSUMER_NAME: `${env.name}-b` }, 'ops-host', ['start', '--metrics-port', '0', '--metrics-host', '127.0.0.2', '--num-workers', '1']);
    await byDefault.waitForLog(/metrics on http:\/\/127\.0\.0\.1:\d+/, 12_000);
    await other.waitForLog(/metrics on http:\/\/127\.0\.0\.2:\d+/, 12_000);
    const port = Number(/metrics on http:\/\/127\.0\.0\.2:(\d+)/.exec(other.output)![1]);
    expect((await get('127.0.0.2', port, '/healthz')).status).toBe(200);
    await expect(get('127.0.0.1', port, '/healthz')).rejects.toThrow();
    byDefault.kill('SIGTERM');
    other.kill('SIGTERM');
    expect((await byDefault.waitExit(10_000))?.code, byDefault.output).toBe(0);
    expect((await other.waitExit(10_000))?.code, other.output).toBe(0);
  });
});
