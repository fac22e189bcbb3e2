/**
 * The table sink of pipeline files: rows mapped to the user's own table, in one of three
 * modes, COPY-fast and idempotent:
 *
 * - insert: a row whose key exists is skipped. Batches read for the first time go by one
 *   COPY straight into the table; a batch Postgres refuses (a key already there, a bad
 *   row) and every redelivery take the staged path with ON CONFLICT DO NOTHING.
 * - upsert: COPY into a temporary staging table, then one INSERT ... SELECT DISTINCT ON
 *   (key) ... ON CONFLICT (key) DO UPDATE, in one transaction per batch. With a version
 *   column, a row is replaced only by a strictly newer version, whatever order messages
 *   arrive in and however many writers there are (Postgres re-checks the condition on
 *   the latest row version under its row lock).
 * - append: every message a new row (COPY). No key: a batch a crash interrupted between
 *   its commit and its acknowledgement is appended again (at least once).
 *
 * A part Postgres refuses for its content is split in halves until the refused rows
 * stand alone; they are rejected (dead letters), the rest written. Parts already
 * committed are remembered across retries of the batch, so a retry redoes nothing.
 */
import { createHash } from 'node:crypto';
import copyStreams from 'pg-copy-streams';
import type pg from 'pg';
import type { BatchContext, Message, Rejected, Sink, WriteResult } from '../core/contracts.js';
import { TributaryError } from '../errors.js';
import type { MappedRow } from '../pipeline-file/mapping.js';
import type { ColumnType, PipelineSpec } from '../pipeline-file/spec.js';
import { isRowContentError, quoteIdent, withClient, type PgPool } from '../postgres/pool.js';
import { halves, isolateByHalving } from './isolate.js';

type SinkSpec = PipelineSpec['sink'];

const q = quoteIdent;

/** The SQL of a table sink. Pure. */
export interface TableSql {
  table: string;
  create: string[];
  /** COPY straight into the table (insert and append, first reads). */
  copyDirect: string;
  /** Creates the session's staging table when missing (rows go at commit). */
  stageCreate: string;
  stageCopy: string;
  /** Moves the staged rows into the table, by mode. */
  apply: string;
}

export function pgType(type: ColumnType): string {
  return type;
}

export function tableSql(sink: SinkSpec): TableSql {
  const table = `${q(sink.schema)}.${q(sink.table)}`;
  const cols = sink.columns.map((c) => q(c.name)).join(', ');
  const keys = sink.key.map(q).join(', ');
  const defs = sink.columns.map((c) => `${q(c.name)} ${pgType(c.type)}${sink.key.includes(c.name) ? ' NOT NULL' : ''}`);
  const create = [
    `CREATE SCHEMA IF NOT EXISTS ${q(sink.schema)}`,
    `CREATE TABLE IF NOT EXISTS ${table} (${defs.join(', ')}${sink.key.length > 0 ? `, PRIMARY KEY (${keys})` : ''})`,
  ];
  // One staging table per column layout: a pooled server connection (PgBouncer) may still
  // hold one of an earlier layout under another name.
  const layout = createHash('sha256').update(JSON.stringify(sink.columns.map((c) => [c.name, c.type]))).digest('hex').slice(0, 12);
  const stage = `pg_temp.${q(`trib_stage_${sink.table.slice(0, 30)}_${layout}`)}`;
  const stageCreate =
    `CREATE TEMP TABLE IF NOT EXISTS ${stage.slice('pg_temp.'.length)} (_trib_seq integer, ` +
    `${sink.columns.map((c) => `${q(c.name)} ${pgType(c.type)}`).join(', ')}) ON COMMIT DELETE ROWS`;
  let apply: string;
  if (sink.mode === 'append') {
    apply = `INSERT INTO ${table} (${cols}) SELECT ${cols} FROM ${stage} ORDER BY _trib_seq`;
  } else if (sink.mode === 'insert') {
    // The first of a key in the batch wins, as if the rows came one by one. Key order: concurrent writers lock rows in one order.
    apply = `INSERT INTO ${table} (${cols}) SELECT ${cols} FROM ${stage} ORDER BY ${keys}, _trib_seq ON CONFLICT (${keys}) DO NOTHING`;
  } else {
    const v = sink.version === undefined ? undefined : q(sink.version);
    // One row per key (DO UPDATE may not touch a row twice): the highest version (the
    // first of equal versions, as if one by one), or without a version the last in the stream.
    const order = v === undefined ? `${keys}, _trib_seq DESC` : `${keys}, ${v} DESC, _trib_seq`;
    const others = sink.columns.filter((c) => !sink.key.includes(c.name));
    const onConflict =
      others.length === 0
        ? 'DO NOTHING'
        : `DO UPDATE SET ${others.map((c) => `${q(c.name)} = EXCLUDED.${q(c.name)}`).join(', ')}` +
          (v === undefined ? '' : ` WHERE cur.${v} IS NULL OR EXCLUDED.${v} > cur.${v}`);
    apply = `INSERT INTO ${table} AS cur (${cols}) SELECT DISTINCT ON (${keys}) ${cols} FROM ${stage} ORDER BY ${order} ON CONFLICT (${keys}) ${onConflict}`;
  }
  return {
    table,
    create,
    copyDirect: `COPY ${table} (${cols}) FROM STDIN`,
    stageCreate,
    stageCopy: `COPY ${stage} (_trib_seq, ${cols}) FROM STDIN`,
    apply,
  };
}

/** Existing column types (format_type, without modifiers) that can hold each mapped type. */
const HOLDS: Record<ColumnType, readonly string[]> = {
  text: ['text', 'character varying'],
  integer: ['integer', 'bigint', 'numeric', 'double precision'],
  bigint: ['bigint', 'numeric'],
  numeric: ['numeric'],
  'double precision': ['double precision'],
  boolean: ['boolean'],
  timestamptz: ['timestamp with time zone'],
  date: ['date', 'timestamp with time zone'],
  uuid: ['uuid'],
  jsonb: ['jsonb', 'json'],
  'text[]': ['text[]', 'character varying[]'],
};

/** `character varying(20)[]` → `character varying[]`. Pure. */
export function baseType(formatted: string): string {
  return formatted.replace(/\([^)]*\)/g, '');
}

export interface TableColumnInfo {
  name: string;
  /** format_type() of the column. */
  type: string;
  notNull: boolean;
  hasDefault: boolean;
}

/**
 * What keeps an existing table from taking the pipeline's rows: mapped columns missing
 * (unless evolve adds them), types that cannot hold the mapped one, NOT NULL columns the
 * mapping leaves empty, no unique index on the key. Pure.
 */
export function tableProblems(sink: SinkSpec, columns: readonly TableColumnInfo[], uniqueIndexes: readonly string[][]): { problems: string[]; missing: string[] } {
  const problems: string[] = [];
  const missing: string[] = [];
  const byName = new Map(columns.map((c) => [c.name, c]));
  for (const c of sink.columns) {
    const existing = byName.get(c.name);
    if (!existing) {
      missing.push(c.name);
      continue;
    }
    if (!HOLDS[c.type].includes(baseType(existing.type))) {
      problems.push(`column ${c.name} is ${existing.type}, which cannot hold the mapped ${c.type} (make it one of ${HOLDS[c.type].join(', ')}, or map another type)`);
    }
  }
  if (!sink.evolve && missing.length > 0) {
    problems.push(`column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} missing (add ${missing.length > 1 ? 'them' : 'it'}, or set evolve: true to add nullable columns at start)`);
  }
  const mapped = new Set(sink.columns.map((c) => c.name));
  for (const c of columns) {
    if (!mapped.has(c.name) && c.notNull && !c.hasDefault) problems.push(`column ${c.name} is NOT NULL without a default, and the pipeline does not map it`);
  }
  if (sink.key.length > 0) {
    const want = [...sink.key].sort().join(',');
    if (!uniqueIndexes.some((ix) => [...ix].sort().join(',') === want)) {
      problems.push(`no unique index or primary key on exactly (${sink.key.join(', ')}), which ON CONFLICT needs (CREATE UNIQUE INDEX ON ${sink.schema}.${sink.table} (${sink.key.join(', ')}))`);
    }
  }
  return { problems, missing };
}

/**
 * Creates the table when missing (create: true), then checks it against the mapping;
 * with evolve: true adds missing columns (nullable). Throws TRIB_ERR_TABLE_MISMATCH
 * naming every problem; a server failure is thrown as is (the caller retries).
 */
export async function ensureTable(pool: PgPool, spec: PipelineSpec): Promise<{ created: boolean; added: string[] }> {
  const sink = spec.sink;
  const sql = tableSql(sink);
  const where = `${sink.schema}.${sink.table}`;
  const find = async () =>
    (
      await pool.query<{ oid: number }>(
        `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
        [sink.schema, sink.table],
      )
    ).rows[0]?.oid;
  let oid = await find();
  let created = false;
  if (oid === undefined) {
    if (!sink.create) throw new TributaryError('TRIB_ERR_TABLE_MISMATCH', [where, spec.name, 'it does not exist (create: false): create it, or set create: true']);
    for (const statement of sql.create) await pool.query(statement);
    oid = await find();
    created = true;
  }
  const columns = (
    await pool.query<{ name: string; type: string; not_null: boolean; has_default: boolean }>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
              (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default
         FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`,
      [oid],
    )
  ).rows.map((r) => ({ name: r.name, type: r.type, notNull: r.not_null, hasDefault: r.has_default }));
  const indexes = (
    await pool.query<{ cols: string[] }>(
      `SELECT array_agg(a.attname::text) AS cols FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL GROUP BY i.indexrelid`,
      [oid],
    )
  ).rows.map((r) => r.cols);
  const { problems, missing } = tableProblems(sink, columns, indexes);
  if (problems.length > 0) throw new TributaryError('TRIB_ERR_TABLE_MISMATCH', [where, spec.name, problems.join('; ')]);
  for (const name of missing) {
    const c = sink.columns.find((col) => col.name === name)!;
    await pool.query(`ALTER TABLE ${sql.table} ADD COLUMN IF NOT EXISTS ${q(c.name)} ${pgType(c.type)}`);
  }
  return { created, added: missing };
}

/** The outcome of one part's transaction. */
interface PartResult {
  written: number;
  unchanged: number;
  rejected: Rejected[];
  statements: number;
}

const DEADLOCK_DETECTED = '40P01';

/** A sink writing mapped rows to a table by COPY (see the module comment). */
export class TableSink implements Sink<MappedRow> {
  readonly server = 'postgres' as const;
  readonly sql: TableSql;
  private readonly direct: boolean;

  constructor(
    private readonly pool: PgPool,
    spec: PipelineSpec['sink'],
  ) {
    this.sql = tableSql(spec);
    // Upsert always needs the staging table's DISTINCT ON and ON CONFLICT.
    this.direct = spec.mode !== 'upsert';
  }

  async write(batch: Message<MappedRow>[], ctx: BatchContext): Promise<WriteResult> {
    if (batch.length === 0) return { written: 0, duplicates: 0, rejected: [] };
    let statements = (ctx.state.statements as number | undefined) ?? 0;
    if (this.direct && ctx.state.staged !== true && batch.every((m) => m.deliveries <= 1)) {
      ctx.state.statements = ++statements;
      const copied = await this.copyDirect(batch);
      if (copied !== null) return { written: copied, duplicates: batch.length - copied, rejected: [], statements };
      // Refused (a key already there, a bad row, a deadlock): the staged path, from now on for this batch.
      ctx.state.staged = true;
    }
    const done = (ctx.state.done as Map<string, PartResult> | undefined) ?? new Map<string, PartResult>();
    ctx.state.done = done;
    const r = await isolateByHalving<Message<MappedRow>[], PartResult>(batch, 'batch', {
      attempt: (part) => this.staged(part),
      isContentError: isRowContentError,
      size: (part) => part.length,
      split: (part) => halves(part),
      alone: async (part, _path, err) => {
        const e = err as { code: string; message: string };
        const rejected = new TributaryError('TRIB_ERR_ENTRY_REJECTED', [part[0]!.id, e.code, e.message]);
        return { written: 0, unchanged: 0, rejected: [{ id: part[0]!.id, code: rejected.code, error: rejected.message }], statements: 1 };
      },
      combine: (a, b) => ({
        written: a.written + b.written,
        unchanged: a.unchanged + b.unchanged,
        rejected: [...a.rejected, ...b.rejected],
        statements: a.statements + b.statements,
      }),
      done,
    });
    return { written: r.written, duplicates: r.unchanged, rejected: r.rejected, statements: statements + r.statements };
  }

  /** One COPY straight into the table; null when Postgres refused the batch for its content. */
  private copyDirect(batch: readonly Message<MappedRow>[]): Promise<number | null> {
    const data = copyText(batch, false);
    return withClient(this.pool, async (client) => {
      try {
        return await runCopy(client, this.sql.copyDirect, data);
      } catch (err) {
        if (isRowContentError(err) || (err as { code?: unknown }).code === DEADLOCK_DETECTED) return null;
        throw err;
      }
    });
  }

  /** One transaction: COPY the part into the staging table, then apply it to the table. */
  private staged(part: readonly Message<MappedRow>[]): Promise<PartResult> {
    const data = copyText(part, true);
    return withClient(this.pool, async (client) => {
      await client.query(`BEGIN; ${this.sql.stageCreate}`);
      try {
        await runCopy(client, this.sql.stageCopy, data);
        const res = await client.query(this.sql.apply);
        await client.query('COMMIT');
        const written = res.rowCount ?? 0;
        return { written, unchanged: part.length - written, rejected: [], statements: 1 };
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    });
  }
}

function runCopy(client: pg.PoolClient, sql: string, data: Buffer): Promise<number> {
  const stream = client.query(copyStreams.from(sql));
  return new Promise<number>((resolve, reject) => {
    stream.on('finish', () => resolve(stream.rowCount));
    stream.on('error', reject);
    stream.end(data);
  });
}

/** The rows as COPY text, each line prefixed with its position when staged. Pure. */
export function copyText(rows: readonly Message<MappedRow>[], withSeq: boolean): Buffer {
  const lines = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) lines[i] = withSeq ? `${i}\t${rows[i]!.body.line}\n` : `${rows[i]!.body.line}\n`;
  return Buffer.from(lines.join(''));
}
