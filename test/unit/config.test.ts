import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/index.js';
import { SETTINGS } from '../../src/config/schema.js';
import { isTributaryError } from '../../src/errors.js';

const base = { envFile: false as const, useServicesState: false };

function configError(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    if (isTributaryError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a configuration error');
}

describe('resolveConfig', () => {
  it('has the documented defaults', () => {
    const c = resolveConfig({ ...base, env: {} });
    expect(c).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      databaseUrl: 'postgres://127.0.0.1:5432/tributary',
      streamKey: 'events',
      group: 'tributary',
      numWorkers: 2,
      batchSize: 5000,
      batchTimeoutMs: 2000,
      xreadCount: 500,
      xreadBlockMs: 5000,
      maxDeliveries: 5,
      claimIdleMs: 60000,
      dlqStream: 'events:dead',
      groupStartId: '0',
    });
  });

  it('reads and coerces environment variables', () => {
    const c = resolveConfig({ ...base, env: { NUM_WORKERS: '8', BATCH_SIZE: '1000', STREAM_KEY: 'clicks', REDIS_URL: 'rediss://user:pw@cache.example.com:6380' } });
    expect(c.numWorkers).toBe(8);
    expect(c.batchSize).toBe(1000);
    expect(c.streamKey).toBe('clicks');
    expect(c.redisUrl).toBe('rediss://user:pw@cache.example.com:6380');
  });

  it('flags beat the environment, which beats .env, which beats the servers `up` chose', () => {
    const dir = mkdtempSync(join(tmpdir(), 'trib-config-'));
    writeFileSync(join(dir, '.env'), 'BATCH_SIZE=700\nGROUP=from-file\nSTREAM_KEY=file-stream\n');
    writeFileSync(join(dir, 'services.json'), JSON.stringify({ redis: { url: 'redis://127.0.0.1:7001', managed: true } }));
    const c = resolveConfig({
      env: { TRIBUTARY_HOME: dir, GROUP: 'from-env' },
      envFile: join(dir, '.env'),
      overrides: { streamKey: 'from-flag' },
    });
    expect(c.streamKey).toBe('from-flag');
    expect(c.group).toBe('from-env');
    expect(c.batchSize).toBe(700);
    expect(c.redisUrl).toBe('redis://127.0.0.1:7001');
  });

  it.each([
    [{ NUM_WORKERS: 'five' }, /NUM_WORKERS \(--num-workers\).*"five"/],
    [{ NUM_WORKERS: '0' }, /NUM_WORKERS/],
    [{ BATCH_SIZE: '2.5' }, /BATCH_SIZE/],
    [{ REDIS_URL: 'http://localhost:6379' }, /REDIS_URL.*redis:\/\//],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL/],
    [{ PG_SCHEMA: 'Robert"); DROP' }, /PG_SCHEMA/],
    [{ GROUP_START_ID: 'latest' }, /GROUP_START_ID/],
    [{ MAX_IN_FLIGHT: '100', BATCH_SIZE: '500' }, /MAX_IN_FLIGHT.*BATCH_SIZE/],
    [{ CLAIM_IDLE_MS: '3000', BATCH_TIMEOUT_MS: '2000' }, /CLAIM_IDLE_MS.*twice BATCH_TIMEOUT_MS/],
  ])('rejects %j with a coded error naming the setting', (env, text) => {
    const err = configError(() => resolveConfig({ ...base, env }));
    expect(err.code).toBe('TRIB_ERR_CONFIG_INVALID');
    expect(err.message).toMatch(text);
  });

  it('a malformed .env file is a coded error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'trib-config-'));
    // A directory where a file is expected cannot be read.
    const err = configError(() => resolveConfig({ env: {}, envFile: dir, useServicesState: false }));
    expect(err.code).toBe('TRIB_ERR_CONFIG_ENV_FILE');
  });

  it('every setting has an environment variable and documentation', () => {
    const names = Object.values(SETTINGS).map((s) => s.env);
    expect(new Set(names).size).toBe(names.length);
    for (const s of Object.values(SETTINGS)) expect(s.doc.length).toBeGreaterThan(10);
  });
});
