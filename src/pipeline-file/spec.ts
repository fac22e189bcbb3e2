/**
 * Pipeline files: a YAML (or JSON) file describing one pipeline from a Redis stream into
 * a table of the user's own, with typed columns. This module reads and checks a file
 * without connecting to anything: every problem is reported with the file, the line and
 * column, and the key (`sink.columns.user_id.type`), all at once.
 *
 *   name: page-views
 *   source: { stream: clicks }
 *   sink:
 *     table: analytics.page_views
 *     mode: upsert
 *     key: [session_id, url]
 *     columns:
 *       session_id: { from: payload.session.id, type: text, required: true }
 *       ...
 */
import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair, type YAMLMap } from 'yaml';
import { TributaryError } from '../errors.js';

export const COLUMN_TYPES = ['text', 'integer', 'bigint', 'numeric', 'double precision', 'boolean', 'timestamptz', 'date', 'uuid', 'jsonb', 'text[]'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];

/** Types a `version` column may have: ordered, and compared by Postgres as such. */
export const VERSION_TYPES: readonly ColumnType[] = ['integer', 'bigint', 'numeric', 'double precision', 'timestamptz', 'date'];

export const FIELD_ROOTS = ['event_id', 'event_type', 'produced_at', 'stream_id', 'payload'] as const;
export type FieldRoot = (typeof FIELD_ROOTS)[number];

export type SinkMode = 'insert' | 'upsert' | 'append';

/** Where a column's value comes from: an entry field, or a path into the payload. */
export interface FieldPath {
  root: FieldRoot;
  /** Keys (and array indexes, as digit strings) below `payload`; empty for the root itself. */
  path: string[];
  /** As written in the file (`payload.session.id`). */
  text: string;
}

export interface ColumnSpec {
  name: string;
  from: FieldPath;
  type: ColumnType;
  /** A message without a value here is rejected (key and version columns always are). */
  required: boolean;
}

export interface PipelineSpec {
  name: string;
  /** The file it came from, if any (for messages). */
  file?: string;
  source: {
    stream: string;
    group: string;
    /** Where a new group starts: `0`, `$` or an entry ID. */
    start: string;
  };
  batch: { count: number; bytes: number; periodMs: number };
  workers: number;
  /** A message delivered more often than this goes to the dead letters. */
  maxDeliveries: number;
  /** Only these event types are written; the rest are acknowledged and skipped. */
  filter?: { eventTypes: string[] };
  sink: {
    schema: string;
    table: string;
    mode: SinkMode;
    key: string[];
    version?: string;
    create: boolean;
    evolve: boolean;
    columns: ColumnSpec[];
  };
  deadLetters: { stream: string };
}

/** One problem in a pipeline file. */
export interface FileProblem {
  file: string;
  line: number;
  col: number;
  /** The key path (`sink.columns.user_id.type`), or '' for the file as a whole. */
  key: string;
  message: string;
}

export function formatProblem(p: FileProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.key ? `${p.key}: ` : ''}${p.message}`;
}

/** A pipeline file that does not check: every problem, each with its line and key. */
export class PipelineFileError extends TributaryError {
  constructor(readonly problems: readonly FileProblem[]) {
    super('TRIB_ERR_PIPELINE_FILE', [problems[0]?.file ?? '?', problems.length, problems.map(formatProblem).join('; ')]);
  }
}

export const SPEC_DEFAULTS = {
  batch: { count: 5000, bytes: 8 * 1024 * 1024, periodMs: 2000 },
  workers: 2,
  maxDeliveries: 5,
} as const;

/** Lower-case SQL identifiers only: used exactly as written (and quoted), no case surprises. */
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/i;
const STREAM_START = /^(\$|0|\d+(-\d+)?)$/;

const KEYS = {
  top: ['name', 'source', 'batch', 'workers', 'max_deliveries', 'filter', 'sink', 'dead_letters'],
  source: ['stream', 'group', 'start'],
  batch: ['count', 'bytes', 'period'],
  filter: ['event_type'],
  sink: ['table', 'mode', 'key', 'version', 'create', 'evolve', 'columns'],
  column: ['from', 'type', 'required'],
  deadLetters: ['stream'],
};

/** Reads and checks a pipeline file. Throws PipelineFileError with every problem found. */
export function loadPipelineFile(path: string): PipelineSpec {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PipelineFileError([{ file: path, line: 1, col: 1, key: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  return parsePipelineFile(text, path);
}

/** Checks a pipeline file's text (YAML or JSON). Pure. Throws PipelineFileError. */
export function parsePipelineFile(text: string, file = '<pipeline>'): PipelineSpec {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const c = new Checker(file, lines);
  if (doc.errors.length > 0) {
    // The first syntax error only: the rest are mostly its echoes.
    const e = doc.errors[0]!;
    const line = text.split('\n')[lines.linePos(e.pos[0]).line - 1] ?? '';
    const hint = /:\s*text\[\]/.test(line) ? ' (in YAML, [ starts a list: quote the type, "text[]")' : '';
    c.problemAt(e.pos[0], '', `YAML syntax: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}${hint}`);
    throw new PipelineFileError(c.problems);
  }
  const spec = c.pipeline(doc);
  c.problems.sort((a, b) => a.line - b.line || a.col - b.col);
  if (c.problems.length > 0 || spec === undefined) throw new PipelineFileError(c.problems);
  spec.file = file;
  return spec;
}

class Checker {
  readonly problems: FileProblem[] = [];

  constructor(
    private readonly file: string,
    private readonly lines: LineCounter,
  ) {}

  problemAt(offset: number, key: string, message: string): void {
    const { line, col } = this.lines.linePos(offset);
    this.problems.push({ file: this.file, line, col, key, message });
  }

  problem(node: Node | Pair | null | undefined, key: string, message: string): void {
    const range = (node as { range?: [number, number, number] } | null)?.range ?? ((node as Pair | null)?.key as Node | undefined)?.range;
    this.problemAt(range?.[0] ?? 0, key, message);
  }

  /** The map at `node`, with unknown keys reported (and a "did you mean" where one is close). */
  map(node: unknown, key: string, allowed: readonly string[] | null): YAMLMap<unknown, unknown> | undefined {
    if (!isMap(node)) {
      this.problem(node as Node, key, 'must be a mapping (key: value)');
      return undefined;
    }
    if (allowed !== null) {
      for (const pair of node.items) {
        const name = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        if (!allowed.includes(name)) {
          const near = closest(name, allowed);
          this.problem(pair.key as Node, join(key, name), `unknown key${near ? `; did you mean ${near}?` : ` (known: ${allowed.join(', ')})`}`);
        }
      }
    }
    return node;
  }

  pair(map: YAMLMap<unknown, unknown>, name: string): Pair<unknown, unknown> | undefined {
    return map.items.find((p) => (isScalar(p.key) ? p.key.value === name : p.key === name));
  }

  /** A scalar value (string, number or boolean), or undefined when absent. */
  scalar(map: YAMLMap<unknown, unknown>, name: string, key: string, required: boolean): { value: unknown; node: Node } | undefined {
    const pair = this.pair(map, name);
    if (pair === undefined || pair.value === null || (isScalar(pair.value) && pair.value.value === null)) {
      if (required) this.problem(pair ?? map, join(key, name), 'is required');
      return undefined;
    }
    if (!isScalar(pair.value)) {
      this.problem(pair.value as Node, join(key, name), 'must be a single value');
      return undefined;
    }
    return { value: pair.value.value, node: pair.value };
  }

  string(map: YAMLMap<unknown, unknown>, name: string, key: string, required: boolean, pattern?: { re: RegExp; what: string }): string | undefined {
    const s = this.scalar(map, name, key, required);
    if (s === undefined) return undefined;
    const text = typeof s.value === 'number' || typeof s.value === 'bigint' ? String(s.value) : s.value;
    if (typeof text !== 'string' || text === '') {
      this.problem(s.node, join(key, name), 'must be a non-empty string');
      return undefined;
    }
    if (pattern && !pattern.re.test(text)) {
      this.problem(s.node, join(key, name), `${pattern.what} (got ${JSON.stringify(text)})`);
      return undefined;
    }
    return text;
  }

  bool(map: YAMLMap<unknown, unknown>, name: string, key: string, fallback: boolean): boolean {
    const s = this.scalar(map, name, key, false);
    if (s === undefined) return fallback;
    if (typeof s.value !== 'boolean') {
      this.problem(s.node, join(key, name), `must be true or false (got ${JSON.stringify(s.value)})`);
      return fallback;
    }
    return s.value;
  }

  integer(map: YAMLMap<unknown, unknown>, name: string, key: string, fallback: number, max: number): number {
    const s = this.scalar(map, name, key, false);
    if (s === undefined) return fallback;
    const n = s.value;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > max) {
      this.problem(s.node, join(key, name), `must be a whole number from 1 to ${max} (got ${JSON.stringify(n)})`);
      return fallback;
    }
    return n;
  }

  /** A list of strings (a single string is a list of one). */
  strings(map: YAMLMap<unknown, unknown>, name: string, key: string): { values: string[]; node: Node } | undefined {
    const pair = this.pair(map, name);
    if (pair === undefined || pair.value === null) return undefined;
    const node = pair.value as Node;
    const items = isSeq(node) ? node.items : [node];
    const values: string[] = [];
    for (const item of items) {
      if (!isScalar(item) || typeof item.value !== 'string' || item.value === '') {
        this.problem(item as Node, join(key, name), 'must be a list of non-empty strings');
        return undefined;
      }
      values.push(item.value);
    }
    if (values.length === 0) {
      this.problem(node, join(key, name), 'must not be empty');
      return undefined;
    }
    return { values, node };
  }

  pipeline(doc: Document): PipelineSpec | undefined {
    const top = this.map(doc.contents, '', KEYS.top);
    if (top === undefined) return undefined;
    const name = this.string(top, 'name', '', true, { re: NAME, what: 'must be letters, digits, _ . - (up to 63, starting with a letter or digit)' });

    const sourceNode = this.pair(top, 'source')?.value;
    let source: PipelineSpec['source'] | undefined;
    if (sourceNode === undefined) this.problem(top, 'source', 'is required');
    else {
      const m = this.map(sourceNode, 'source', KEYS.source);
      if (m) {
        const stream = this.string(m, 'stream', 'source', true, { re: /^\S+$/, what: 'must not contain spaces' });
        const group = this.string(m, 'group', 'source', false, { re: /^\S+$/, what: 'must not contain spaces' }) ?? name;
        const start = this.string(m, 'start', 'source', false, { re: STREAM_START, what: 'must be 0 (the whole stream), $ (new entries only) or an entry ID' }) ?? '0';
        if (stream !== undefined && group !== undefined) source = { stream, group, start };
      }
    }

    const batch: PipelineSpec['batch'] = { ...SPEC_DEFAULTS.batch };
    const batchNode = this.pair(top, 'batch')?.value;
    if (batchNode !== undefined && batchNode !== null) {
      const m = this.map(batchNode, 'batch', KEYS.batch);
      if (m) {
        batch.count = this.integer(m, 'count', 'batch', batch.count, 1_000_000);
        const bytes = this.scalar(m, 'bytes', 'batch', false);
        if (bytes !== undefined) {
          const n = parseBytes(bytes.value);
          if (n === undefined) this.problem(bytes.node, 'batch.bytes', `must be a size such as 8MiB, 512KiB or 1000000 (got ${JSON.stringify(bytes.value)})`);
          else batch.bytes = n;
        }
        const period = this.scalar(m, 'period', 'batch', false);
        if (period !== undefined) {
          const ms = parseMs(period.value);
          if (ms === undefined) this.problem(period.node, 'batch.period', `must be a duration such as 500ms or 2s (got ${JSON.stringify(period.value)})`);
          else batch.periodMs = ms;
        }
      }
    }
    const workers = this.integer(top, 'workers', '', SPEC_DEFAULTS.workers, 1000);
    const maxDeliveries = this.integer(top, 'max_deliveries', '', SPEC_DEFAULTS.maxDeliveries, 1000);

    let filter: PipelineSpec['filter'];
    const filterNode = this.pair(top, 'filter')?.value;
    if (filterNode !== undefined && filterNode !== null) {
      const m = this.map(filterNode, 'filter', KEYS.filter);
      if (m) {
        const types = this.strings(m, 'event_type', 'filter');
        if (types) filter = { eventTypes: types.values };
        else if (this.pair(m, 'event_type') === undefined) this.problem(m, 'filter.event_type', 'is required in a filter (the event types to keep)');
      }
    }

    const sink = this.sink(top);

    let deadLetters = { stream: `${name ?? 'pipeline'}:dead` };
    const dlNode = this.pair(top, 'dead_letters')?.value;
    if (dlNode !== undefined && dlNode !== null) {
      const m = this.map(dlNode, 'dead_letters', KEYS.deadLetters);
      const stream = m && this.string(m, 'stream', 'dead_letters', false, { re: /^\S+$/, what: 'must not contain spaces' });
      if (stream) deadLetters = { stream };
    }
    if (source !== undefined && deadLetters.stream === source.stream) {
      this.problem(dlNode as Node ?? top, 'dead_letters.stream', `must not be the source stream ${source.stream}`);
    }

    if (name === undefined || source === undefined || sink === undefined) return undefined;
    return { name, source, batch, workers, maxDeliveries, filter, sink, deadLetters };
  }

  private sink(top: YAMLMap<unknown, unknown>): PipelineSpec['sink'] | undefined {
    const node = this.pair(top, 'sink')?.value;
    if (node === undefined || node === null) {
      this.problem(top, 'sink', 'is required');
      return undefined;
    }
    const m = this.map(node, 'sink', KEYS.sink);
    if (!m) return undefined;
    const table = this.string(m, 'table', 'sink', true);
    let schema = 'public';
    let tableName: string | undefined;
    if (table !== undefined) {
      const parts = table.split('.');
      const node = this.scalar(m, 'table', 'sink', false)!.node;
      if (parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p))) {
        this.problem(node, 'sink.table', `must be table or schema.table, each a lower-case name of letters, digits and _ (got ${JSON.stringify(table)})`);
      } else if (parts.length === 2) [schema, tableName] = parts as [string, string];
      else tableName = parts[0];
    }
    const modeText = this.string(m, 'mode', 'sink', false) ?? 'insert';
    let mode: SinkMode | undefined;
    if (modeText === 'insert' || modeText === 'upsert' || modeText === 'append') mode = modeText;
    else {
      const near = closest(modeText, ['insert', 'upsert', 'append']);
      this.problem(this.scalar(m, 'mode', 'sink', false)?.node, 'sink.mode', `must be insert, upsert or append (got ${JSON.stringify(modeText)}${near ? `; did you mean ${near}?` : ''})`);
    }

    const columns: ColumnSpec[] = [];
    /** Every column the file names, valid or not: a key or version naming a broken column is not "not a column". */
    const declared = new Set<string>();
    const colsNode = this.pair(m, 'columns')?.value;
    if (colsNode === undefined || colsNode === null) this.problem(m, 'sink.columns', 'is required (the table\'s columns and where each comes from)');
    else {
      const cols = this.map(colsNode, 'sink.columns', null);
      if (cols && cols.items.length === 0) this.problem(cols, 'sink.columns', 'must name at least one column');
      for (const pair of cols?.items ?? []) {
        const colName = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        declared.add(colName);
        const key = `sink.columns.${colName}`;
        if (!IDENTIFIER.test(colName)) {
          this.problem(pair.key as Node, key, 'a column name must be lower-case letters, digits and _ (up to 63, not starting with a digit)');
          continue;
        }
        const col = this.column(colName, pair.value, key, pair);
        if (col) columns.push(col);
      }
    }
    const byName = new Map(columns.map((c) => [c.name, c]));

    const keyList = this.strings(m, 'key', 'sink');
    const key = keyList?.values ?? [];
    for (const k of key) if (!declared.has(k) && declared.size > 0) this.problem(keyList!.node, 'sink.key', `names ${k}, which is not a column in sink.columns`);
    if (new Set(key).size !== key.length) this.problem(keyList!.node, 'sink.key', 'names a column twice');
    if ((mode === 'insert' || mode === 'upsert') && keyList === undefined && this.pair(m, 'key') === undefined) {
      this.problem(m, 'sink.key', `is required for mode ${mode} (the columns that identify a row; e.g. [event_id])`);
    }
    if (mode === 'append' && key.length > 0) this.problem(keyList!.node, 'sink.key', 'mode append writes every message as a new row: it takes no key (use insert to skip rows whose key exists)');
    for (const k of key) {
      const c = byName.get(k);
      if (c) c.required = true;
    }

    const version = this.string(m, 'version', 'sink', false);
    if (version !== undefined) {
      const vNode = this.scalar(m, 'version', 'sink', false)!.node;
      const c = byName.get(version);
      // A misspelt mode is reported once, not again as a version without upsert.
      if (mode !== 'upsert' && mode !== undefined) this.problem(vNode, 'sink.version', 'is for mode upsert only');
      else if (!declared.has(version)) this.problem(vNode, 'sink.version', `names ${version}, which is not a column in sink.columns`);
      else if (!c) {
        // The column itself has a problem, reported there.
      }
      else if (key.includes(version)) this.problem(vNode, 'sink.version', 'must not be a key column');
      else if (!VERSION_TYPES.includes(c.type)) this.problem(vNode, 'sink.version', `column ${version} is ${c.type}; a version must be one of ${VERSION_TYPES.join(', ')}`);
      else c.required = true;
    }
    const create = this.bool(m, 'create', 'sink', true);
    const evolve = this.bool(m, 'evolve', 'sink', false);
    if (tableName === undefined || mode === undefined || columns.length === 0) return undefined;
    return { schema, table: tableName, mode, key, version, create, evolve, columns };
  }

  private column(name: string, node: unknown, key: string, pair: Pair): ColumnSpec | undefined {
    if (node === null || node === undefined) {
      this.problem(pair, key, 'needs from and type ({ from: payload.x, type: text })');
      return undefined;
    }
    const m = this.map(node, key, KEYS.column);
    if (!m) return undefined;
    const fromText = this.string(m, 'from', key, true);
    const typeText = this.string(m, 'type', key, true);
    const required = this.bool(m, 'required', key, false);
    let from: FieldPath | undefined;
    if (fromText !== undefined) {
      const parsed = parseFieldPath(fromText);
      if (typeof parsed === 'string') this.problem(this.scalar(m, 'from', key, false)!.node, `${key}.from`, parsed);
      else from = parsed;
    }
    let type: ColumnType | undefined;
    if (typeText !== undefined) {
      const t = TYPE_ALIASES[typeText.toLowerCase().replace(/\s+/g, ' ')];
      if (t) type = t;
      else {
        const near = closest(typeText, COLUMN_TYPES);
        this.problem(this.scalar(m, 'type', key, false)!.node, `${key}.type`, `unknown type ${JSON.stringify(typeText)}${near ? `; did you mean ${near}?` : ''} (one of ${COLUMN_TYPES.join(', ')})`);
      }
    }
    if (from === undefined || type === undefined) return undefined;
    return { name, from, type, required };
  }
}

const TYPE_ALIASES: Record<string, ColumnType> = {
  ...Object.fromEntries(COLUMN_TYPES.map((t) => [t, t])),
  int: 'integer',
  int4: 'integer',
  int8: 'bigint',
  float8: 'double precision',
  double: 'double precision',
  bool: 'boolean',
  'timestamp with time zone': 'timestamptz',
};

/** `payload.a.b` → { root: payload, path: [a, b] }; an error text when it is not a field path. Pure. */
export function parseFieldPath(text: string): FieldPath | string {
  const parts = text.split('.');
  const root = parts[0] as FieldRoot;
  if (!FIELD_ROOTS.includes(root)) {
    const near = closest(root, FIELD_ROOTS);
    return `must start with one of ${FIELD_ROOTS.join(', ')} (got ${JSON.stringify(text)}${near ? `; did you mean ${[near, ...parts.slice(1)].join('.')}?` : ''})`;
  }
  const path = parts.slice(1);
  if (path.length > 0 && root !== 'payload') return `${root} has no parts: only payload takes a path (payload.a.b)`;
  if (path.some((p) => p === '')) return `has an empty part (got ${JSON.stringify(text)})`;
  return { root, path, text };
}

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1000, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** `8MiB`, `512KiB`, `1MB`, 1000000 → bytes; undefined when not a size. Pure. */
export function parseBytes(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?$/i.exec(value.trim());
  if (!m) return undefined;
  const n = Math.round(Number(m[1]) * BYTE_UNITS[(m[2] ?? '').toLowerCase()]!);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

const MS_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `500ms`, `2s`, `1m`, 250 → milliseconds; undefined when not a duration. Pure. */
export function parseMs(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(value.trim());
  if (!m) return undefined;
  const n = Math.round(Number(m[1]) * MS_UNITS[m[2]!]!);
  return n > 0 ? n : undefined;
}

function join(key: string, name: string): string {
  return key ? `${key}.${name}` : name;
}

/** The allowed word within edit distance 2 of `word`, if any. */
function closest(word: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const a of allowed) {
    const d = distance(word.toLowerCase(), a);
    if (d < bestD) [best, bestD] = [a, d];
  }
  return best;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}
