import type { TributaryError } from '../errors.js';
import type { PgPool } from '../postgres/pool.js';
import { send, type RedisConnection } from '../redis/client.js';

/** One check of a readiness probe: ok, or why not. */
export interface ProbeCheck {
  ok: boolean;
  error?: string;
}

/** Runs one readiness check; never throws (a failure is `{ ok: false, error }`). */
export async function probeCheck(fn: () => Promise<unknown>): Promise<ProbeCheck> {
  try {
    await fn();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * A check that also fails while its server refuses the work for a fault that is not an
 * outage (the runner's `fault(server)`: a missing table, a permission, a read-only
 * server, a full disk): `SELECT 1` still answers then, but nothing can be written.
 */
export function unlessFault(check: ProbeCheck, fault: { code: string; message: string } | undefined): ProbeCheck {
  return fault ? { ok: false, error: `${fault.code}: ${fault.message}` } : check;
}

/** Readiness of a stream pipeline: Redis, Postgres (taking writes) and its group. */
export interface StreamPipelineProbe {
  ready: boolean;
  redis: ProbeCheck;
  postgres: ProbeCheck;
  group: ProbeCheck;
}

/**
 * The probe of a pipeline reading a stream's group into Postgres (the events engine, a
 * pipeline file): Redis and Postgres answer, Postgres takes the writes (no fault such as
 * a missing table, a permission or a read-only server), and the group exists. Never
 * throws; each check says `ok` or why not. `what` names the pipeline in the not-running reasons.
 */
export async function probeStreamPipeline(o: {
  what: string;
  runner: { status: string; running: boolean; fault(server: 'postgres'): TributaryError | undefined };
  commands: RedisConnection;
  pool: PgPool;
  stream: string;
  group: string;
}): Promise<StreamPipelineProbe> {
  const status = o.runner.status;
  if (!o.commands.isReady || status === 'new' || status === 'stopped') {
    const error = status === 'starting' ? `${o.what} is starting` : `${o.what} is ${status}`;
    return { ready: false, redis: { ok: false, error }, postgres: { ok: false, error }, group: { ok: false, error } };
  }
  const [redis, answers, group] = await Promise.all([
    probeCheck(() => send(o.commands, ['PING'])),
    probeCheck(() => o.pool.query('SELECT 1')),
    probeCheck(async () => {
      const groups = await send(o.commands, ['XINFO', 'GROUPS', o.stream]);
      const names = (Array.isArray(groups) ? groups : []).map((g) => (Array.isArray(g) ? String(g[g.indexOf('name') + 1]) : ''));
      if (!names.includes(o.group)) throw new Error(`group ${o.group} does not exist on ${o.stream}`);
    }),
  ]);
  // Postgres may answer SELECT 1 while refusing every write (a fault that is not an outage).
  const postgres = unlessFault(answers, o.runner.fault('postgres'));
  return { ready: o.runner.running && redis.ok && postgres.ok && group.ok, redis, postgres, group };
}
