import { probeCheck, type ProbeCheck } from '../observability/probe.js';
import { createPgPool, type PgPool } from '../postgres/pool.js';
import { RespPipe } from '../redis/pipe.js';
import type { Probed } from './server.js';

/**
 * Readiness of a server that runs no pipeline of its own (`tributary serve`): Redis
 * answers PING and Postgres answers `SELECT 1`. More checks (a pipeline's state) can be
 * added by `extra`, each `{ ok }` or `{ ok: false, error }`.
 */
export class ServersProbe implements Probed {
  private readonly redis: RespPipe;
  private readonly pool: PgPool;

  constructor(
    redisUrl: string,
    databaseUrl: string,
    private readonly extra: () => Record<string, ProbeCheck> = () => ({}),
  ) {
    this.redis = new RespPipe({ url: redisUrl, name: 'tributary:http:probe', connectTimeoutMs: 2000 });
    // One connection; a dead idle one is dropped by the pool, not thrown.
    this.pool = createPgPool(databaseUrl, { max: 1, statementTimeoutMs: 2000, applicationName: 'tributary:http:probe', onError: () => {} });
  }

  async probe(): Promise<{ ready: boolean } & Record<string, ProbeCheck | boolean>> {
    const [redis, postgres] = await Promise.all([
      probeCheck(async () => {
        const reply = await this.redis.command(['PING']);
        if (reply instanceof Error) throw reply;
      }),
      probeCheck(() => this.pool.query('SELECT 1')),
    ]);
    const checks: Record<string, ProbeCheck> = { redis, postgres, ...this.extra() };
    return { ready: Object.values(checks).every((c) => c.ok), ...checks };
  }

  async close(): Promise<void> {
    await Promise.all([this.redis.close().catch(() => {}), this.pool.end().catch(() => {})]);
  }
}
