/**
 * The table sink of pipeline files: rows mapped to the user's own table, in one of three
 * modes, COPY-fast and idempotent:
 *
 * - insert: a row whose key exists is skipped. Batches read for the first time go by one
 *   COPY straight into the table; a batch Postgres refuses (a key already there, a bad
 *   row) and every redelivery take the set path with ON CONFLICT DO NOTHING.
 * - upsert: the set path: one INSERT ... SELECT DISTINCT ON (key) ... FROM unnest(one
 *   typed array per column) ... ON CONFLICT (key) DO UPDATE, one statement (and so one
 *   transaction and one round trip) per batch. With a version
 *   column, a row is replaced only by a strictly newer version, whatever order messages
 *   arrive in and however many writers there are (Postgres re-checks the condition on
 *   the latest row version under its row lock).
 * - append: every message a new row (COPY; the set path after a refusal). No key: a batch
 *   a crash interrupted between its commit and its acknowledgement is appended again
 *   (at least once).
 *
 * The set path replaced a COPY into a temporary staging table: BEGIN, COPY, INSERT ...
 * SELECT and COMMIT were four round trips, and the temporary table cost Postgres more
 * CPU than parsing the arrays (bench drain --pipeline, upsert).
 *
 * A part Postgres refuses for its content is split in halves until the refused rows
 * stand alone; they are rejected (dead letters), the rest written. Parts already
 * committed are remembered across retries of the batch, so a retry redoes nothing.
 */
import { CopyFrame, copyIn } from '../postgres/copy-in.js';
import type { BatchContext, Message, Rejected, Sink, WriteResult } from '../core/contracts.js';
import { TributaryError } from '../errors.js';
import { arrayLiteral, copyField, type MappedRow } from '../pipeline-file/mapping.js';
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
  /**
   * The set path: one INSERT ... SELECT from unnest($1, $2, ...), one array parameter
   * per column in sink.columns order (see {@link setParams}), by mode.
   */
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
  // The rows of the batch: each column an array parameter of its type (text[] columns
  // travel as text elements and are cast: unnest would flatten a two-dimensional array),
  // numbered by their position in the batch.
  const names = new Set(sink.columns.map((c) => c.name));
  let seqName = '_trib_seq';
  while (names.has(seqName)) seqName += '_';
  const seq = q(seqName);
  const arrays = sink.columns.map((c, i) => `$${i + 1}::${c.type === 'text[]' ? 'text' : pgType(c.type)}[]`).join(', ');
  const aliases = sink.columns.map((_, i) => `c${i}`).join(', ');
  const picks = sink.columns.map((c, i) => `s.c${i}${c.type === 'text[]' ? '::text[]' : ''} AS ${q(c.name)}`).join(', ');
  const rows = `(SELECT ${picks}, s.${seq} FROM unnest(${arrays}) WITH ORDINALITY AS s(${aliases}, ${seq})) AS r`;
  let apply: string;
  if (sink.mode === 'append') {
    apply = `INSERT INTO ${table} (${cols}) SELECT ${cols} FROM ${rows} ORDER BY ${seq}`;
  } else if (sink.mode === 'insert') {
    // The first of a key in the batch wins, as if the rows came one by one. Key order: concurrent writers lock rows in one order.
    apply = `INSERT INTO ${table} (${cols}) SELECT ${cols} FROM ${rows} ORDER BY ${keys}, ${seq} ON CONFLICT (${keys}) DO NOTHING`;
  } else {
    const v = sink.version === undefined ? undefined : q(sink.version);
    // One row per key (DO UPDATE may not touch a row twice): the highest version (the
    // first of equal versions, as if one by one), or without a version the last in the stream.
    const order = v === undefined ? `${keys}, ${seq} DESC` : `${keys}, ${v} DESC NULLS LAST, ${seq}`;
    const others = sink.columns.filter((c) => !sink.key.includes(c.name));
    const onConflict =
      others.length === 0
        ? 'DO NOTHING'
        : `DO UPDATE SET ${others.map((c) => `${q(c.name)} = EXCLUDED.${q(c.name)}`).join(', ')}` +
          (v === undefined ? '' : ` WHERE cur.${v} IS NULL OR EXCLUDED.${v} > cur.${v}`);
    apply = `INSERT INTO ${table} AS cur (${cols}) SELECT DISTINCT ON (${keys}) ${cols} FROM ${rows} ORDER BY ${order} ON CONFLICT (${keys}) ${onConflict}`;
  }
  return {
    table,
    create,
    copyDirect: `COPY ${table} (${cols}) FROM STDIN`,
    apply,
  };
}

/** The parameters of the set path: one array literal per column. Pure. */
export function setParams(rows: readonly Message<MappedRow>[], columns: number): string[] {
  const params = new Array<string>(columns);
  const column = new Array<string | null>(rows.length);
  for (let c = 0; c < columns; c++) {
    for (let i = 0; i < rows.length; i++) column[i] = rows[i]!.body.values[c] ?? null;
    params[c] = arrayLiteral(column);
  }
  return params;
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

/** A sink writing mapped rows to a table (see the module comment). */
export class TableSink implements Sink<MappedRow> {
  readonly server = 'postgres' as const;
  /** A batch failing for its size (a statement timeout, 54000) is split by the runner: every part is its own idempotent statement. */
  readonly splittable = true;
  readonly sql: TableSql;
  private readonly copyFrame: CopyFrame;
  private readonly direct: boolean;
  private readonly columns: number;

  constructor(
    private readonly pool: PgPool,
    spec: PipelineSpec['sink'],
  ) {
    this.sql = tableSql(spec);
    this.copyFrame = new CopyFrame(this.sql.copyDirect);
    this.columns = spec.columns.length;
    // Upsert always needs the set path's DISTINCT ON and ON CONFLICT.
    this.direct = spec.mode !== 'upsert';
  }

  async write(batch: Message<MappedRow>[], ctx: BatchContext): Promise<WriteResult> {
    if (batch.length === 0) return { written: 0, duplicates: 0, rejected: [] };
    let statements = (ctx.state.statements as number | undefined) ?? 0;
    if (this.direct && ctx.state.staged !== true && batch.every((m) => m.deliveries <= 1)) {
      ctx.state.statements = ++statements;
      const copied = await this.copyDirect(batch);
      if (copied !== null) return { written: copied, duplicates: batch.length - copied, rejected: [], statements };
      // Refused (a key already there, a bad row, a deadlock): the set path, from now on for this batch.
      ctx.state.staged = true;
    }
    const done = (ctx.state.done as Map<string, PartResult> | undefined) ?? new Map<string, PartResult>();
    ctx.state.done = done;
    const r = await isolateByHalving<Message<MappedRow>[], PartResult>(batch, 'batch', {
      attempt: (part) => this.applySet(part),
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
    // The statement, the rows and CopyDone in one buffer, sent in one write (copy-in.ts).
    const body = copyLines(batch);
    const bytes = Buffer.byteLength(body);
    const message = Buffer.allocUnsafe(this.copyFrame.size(bytes));
    message.write(body, this.copyFrame.dataStart);
    const framed = this.copyFrame.frame(message, bytes);
    return withClient(this.pool, async (client) => {
      try {
        return await copyIn(client, framed);
      } catch (err) {
        if (isRowContentError(err) || (err as { code?: unknown }).code === DEADLOCK_DETECTED) return null;
        throw err;
      }
    });
  }

  /** One statement (its own transaction): the part's rows as arrays, applied by mode. */
  private async applySet(part: readonly Message<MappedRow>[]): Promise<PartResult> {
    const res = await this.pool.query(this.sql.apply, setParams(part, this.columns));
    const written = res.rowCount ?? 0;
    return { written, unchanged: part.length - written, rejected: [], statements: 1 };
  }
}

/** The rows as COPY text, one line each. Pure. */
export function copyText(rows: readonly Message<MappedRow>[]): Buffer {
  return Buffer.from(copyLines(rows));
}

/** copyText as a string. Pure. */
function copyLines(rows: readonly Message<MappedRow>[]): string {
  const lines = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const values = rows[i]!.body.values;
    let line = '';
    for (let c = 0; c < values.length; c++) line += (c === 0 ? '' : '\t') + copyField(values[c] ?? null);
    lines[i] = `${line}\n`;
  }
  return lines.join('');
}
