/**
 * A request that reaches the HTTP server while it stops gets a coded 503 (not fastify's
 * uncoded body) with Retry-After, and what was in flight still finishes.
 */
import { describe, expect, it } from 'vitest';
import { startHttpServer } from '../../src/http/server.js';

describe('the HTTP server while it stops', () => {
  it('answers a request that arrives during close() with a coded 503, and lets the one in flight finish', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let probed!: () => void;
    const probing = new Promise<void>((r) => (probed = r));
    const server = await startHttpServer({
      port: 0,
      probeCacheMs: 0,
      probe: {
        probe: async () => {
          probed();
          await held; // a slow probe keeps /readyz in flight
          return { ready: true };
        },
      },
    });
    const inFlight = fetch(`${server.url}/readyz`);
    await probing;
    const closed = server.close();
    const during = await server.app.inject({ method: 'GET', url: '/healthz', headers: { host: '127.0.0.1' } });
    expect(during.statusCode).toBe(503);
    expect(during.headers['retry-after']).toBe('1');
    expect(during.json()).toEqual({ error: { code: 'TRIB_ERR_HTTP_SHUTTING_DOWN', message: expect.stringContaining('shutting down') } });
    release();
    expect((await inFlight).status).toBe(200);
    await closed;
  });
});
