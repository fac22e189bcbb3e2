import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { CopyFrame, copyIn } from '../../src/postgres/copy-in.js';
import { createPgPool, quoteIdent, withClient, withDefaultUser, type PgPool } from '../../src/postgres/pool.js';
import { testDatabaseUrl } from '../helpers/orders-pg.js';
import { startPgBouncer, stopPgBouncer, type PgBouncer } from '../helpers/pgbouncer.js';

// The one-write COPY (statement, data and CopyDone sent before any reply) against a real
// server, directly and through PgBouncer: rows land, and after every refusal the same
// connection is still in step (the server ignored the CopyData that followed the error).
const schema = `copy_in_${randomBytes(4).toString('hex')}`;
const table = `${quoteIdent(schema)}.t`;
const frame = new CopyFrame(`COPY ${table} (id, doc) FROM STDIN WITH (FORMAT text)`);
const missing = new CopyFrame(`COPY ${quoteIdent(schema)}.nowhere (id) FROM STDIN WITH (FORMAT text)`);
let pool: PgPool;
let bouncer: PgBouncer | undefined;

const text = (lines: string[]) => Buffer.from(lines.map((l) => `${l}\n`).join(''));

beforeAll(async () => {
  pool = createPgPool(testDatabaseUrl(), { max: 2 });
  await pool.query(`CREATE SCHEMA ${quoteIdent(schema)}; CREATE TABLE ${table} (id int PRIMARY KEY, doc jsonb)`);
  bouncer = await startPgBouncer({ poolMode: 'transaction', defaultPoolSize: 1 });
});

afterAll(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
  await pool.end();
  await stopPgBouncer(bouncer);
});

async function exercise(p: PgPool, base: number): Promise<void> {
  await withClient(p, async (client) => {
    // Encoded in place, as the events sink does.
    const data = text([`${base + 1}\t{"a":1}`, `${base + 2}\t[]`]);
    const buf = Buffer.alloc(frame.size(data.length));
    data.copy(buf, frame.dataStart);
    expect(await copyIn(client, frame.frame(buf, data.length))).toBe(2);

    // A bad row: refused whole, and the connection answers the next statement.
    await expect(copyIn(client, frame.wrap(text([`${base + 3}\t{}`, `${base + 4}\tnot json`])))).rejects.toMatchObject({ code: '22P02' });
    expect((await client.query('SELECT 41 + 1 AS n')).rows[0].n).toBe(42);

    // A duplicate key (found at the end of the data): refused whole.
    await expect(copyIn(client, frame.wrap(text([`${base + 5}\t{}`, `${base + 1}\t{}`])))).rejects.toMatchObject({ code: '23505' });

    // A statement that fails before COPY starts: its data and CopyDone are ignored by the server.
    await expect(copyIn(client, missing.wrap(text(['1', '2'])))).rejects.toMatchObject({ code: '42P01' });
    expect(await copyIn(client, frame.wrap(text([`${base + 6}\t"s"`])))).toBe(1);
    // A large batch: several megabytes in one message.
    const many = Array.from({ length: 20_000 }, (_, i) => `${base + 100 + i}\t{"pad":"${'x'.repeat(200)}"}`);
    expect(await copyIn(client, frame.wrap(text(many)))).toBe(20_000);
  });
  const r = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE id > $1 AND id < $2`, [base, base + 1_000_000]);
  expect(r.rows[0]!.n).toBe(20_003);
}

describe('COPY in one write', () => {
  it('writes rows, refuses bad ones whole and stays in step with the server', async () => {
    await exercise(pool, 0);
  });

  it('works the same through PgBouncer in transaction pooling', async () => {
    const through = createPgPool(bouncer!.url, { max: 2 });
    try {
      await exercise(through, 1_000_000);
    } finally {
      await through.end();
    }
  });

  it('rejects when the connection is lost', async () => {
    const client = new pg.Client({ connectionString: withDefaultUser(testDatabaseUrl()) });
    await client.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    client.on('error', () => {});
    await pool.query('SELECT pg_terminate_backend($1)', [pid]);
    await expect(copyIn(client, frame.wrap(text(['9\t{}'])))).rejects.toBeInstanceOf(Error);
    await client.end().catch(() => {});
  });
});
