import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TributaryError } from '../errors.js';
import { isConnectionError, quoteIdent, withClient, type PgPool } from './pool.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');

/** The numbered SQL files (`NNN_name.sql`), in order. */
export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d+_.+\.sql$/.test(f))
    .map((f) => ({ version: Number.parseInt(f, 10), name: f.replace(/\.sql$/, ''), sql: readFileSync(join(dir, f), 'utf8') }))
    .sort((a, b) => a.version - b.version);
}

export interface MigrateResult {
  applied: string[];
  current: number;
}

/**
 * Applies the migrations not yet recorded in `<schema>.tributary_migrations`, each in
 * its own transaction, in order. Safe to run concurrently: each transaction takes a
 * transaction-level advisory lock per schema and re-reads what is applied, so a second
 * runner finds nothing left to do. Transaction-level, not session-level: behind
 * PgBouncer in transaction mode a session lock and its unlock can land on different
 * server connections and leave the lock held.
 */
export async function migrate(pool: PgPool, schema = 'public', migrations = loadMigrations()): Promise<MigrateResult> {
  const s = quoteIdent(schema);
  const applied: string[] = [];
  await withClient(pool, async (client) => {
    for (;;) {
      let current: Migration | undefined;
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tributary:migrate:${schema}`]);
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${s}.tributary_migrations (
             version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
        );
        const done = new Set(
          (await client.query<{ version: number }>(`SELECT version FROM ${s}.tributary_migrations`)).rows.map((r) => r.version),
        );
        current = migrations.find((m) => !done.has(m.version));
        if (current === undefined) {
          await client.query('COMMIT');
          break;
        }
        await client.query(`SET LOCAL search_path TO ${s}`);
        await client.query(current.sql);
        await client.query(`INSERT INTO ${s}.tributary_migrations (version, name) VALUES ($1, $2)`, [current.version, current.name]);
        await client.query('COMMIT');
        applied.push(current.name);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        // A lost connection is an outage, retried by the caller; anything else is the migration's fault.
        if (isConnectionError(err) || current === undefined) throw err;
        throw new TributaryError('TRIB_ERR_MIGRATION_FAILED', [current.name, (err as Error).message], { cause: err });
      }
    }
  });
  return { applied, current: migrations.at(-1)?.version ?? 0 };
}

/**
 * Makes sure the events table exists: `events` comes from the migrations; any other
 * name (one table per group, for fan-out) is created like it, indexes included.
 */
export async function ensureEventsTable(pool: PgPool, schema: string, table: string): Promise<void> {
  if (table === 'events') return;
  const s = quoteIdent(schema);
  try {
    await pool.query(`CREATE TABLE IF NOT EXISTS ${s}.${quoteIdent(table)} (LIKE ${s}.events INCLUDING ALL)`);
  } catch (err) {
    // Two processes creating it at once: the loser sees the winner's catalog row.
    const code = (err as { code?: string }).code;
    if (code !== '42P07' && code !== '23505') throw err;
  }
}

/** The migrations that build the events table (created, then its key collated "C"). */
const EVENTS_TABLE_MIGRATIONS = [1, 4];

/**
 * Recreates the events table (and `table`, a fan-out table made like it) after it was
 * dropped or renamed while the engine ran: the schema's migrations are applied (all of
 * them when the schema itself is gone), then, if `events` is still missing because its
 * migrations are recorded as applied, those are run again. Under the migrations'
 * advisory lock, so concurrent engines recreate it once. Returns whether it created it.
 */
export async function recreateEventsTable(pool: PgPool, schema: string, table = 'events', migrations = loadMigrations()): Promise<boolean> {
  const s = quoteIdent(schema);
  const before = await migrate(pool, schema, migrations);
  let created = before.applied.length > 0;
  await withClient(pool, async (client) => {
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tributary:migrate:${schema}`]);
      const exists = (await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`${s}.events`])).rows[0]?.t;
      if (!exists) {
        await client.query(`SET LOCAL search_path TO ${s}`);
        for (const m of migrations) if (EVENTS_TABLE_MIGRATIONS.includes(m.version)) await client.query(m.sql);
        created = true;
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  });
  if (table !== 'events') {
    const had = (await pool.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`${s}.${quoteIdent(table)}`])).rows[0]?.t;
    await ensureEventsTable(pool, schema, table);
    if (!had) created = true;
  }
  return created;
}
