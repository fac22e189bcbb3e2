import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { pipelineBenchEvents } from '../../src/bench/pipeline-drain.js';
import { configSchema } from '../../src/config/schema.js';
import { eventsPipelineSpec, shippedEventsSpec } from '../../src/pipeline-file/builtin.js';
import { isEventsLayout } from '../../src/pipeline-file/plan.js';
import { arrayLiteral, Bad, convert, copyField, isoFromMs, mapRow, type EntryValues } from '../../src/pipeline-file/mapping.js';
import { loadPipelineFile, parseBytes, parseFieldPath, parseMs, parsePipelineFile, PipelineFileError, SPEC_DEFAULTS, type ColumnSpec, type FileProblem } from '../../src/pipeline-file/spec.js';
import { baseType, copyText, setParams, tableProblems, tableSql, type TableColumnInfo } from '../../src/sinks/postgres-table.js';

const MINIMAL = `
name: pv
source:
  stream: clicks
sink:
  table: page_views
  key: [id]
  columns:
    id: { from: event_id, type: text }
`;

function problems(text: string): FileProblem[] {
  try {
    parsePipelineFile(text, 'f.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(PipelineFileError);
    expect((err as PipelineFileError).code).toBe('TRIB_ERR_PIPELINE_FILE');
    return [...(err as PipelineFileError).problems];
  }
  throw new Error('the file checked');
}

describe('pipeline files: reading', () => {
  it('fills the defaults of a minimal file', () => {
    const spec = parsePipelineFile(MINIMAL, 'f.yaml');
    expect(spec).toMatchObject({
      name: 'pv',
      file: 'f.yaml',
      source: { stream: 'clicks', group: 'pv', start: '0' },
      batch: SPEC_DEFAULTS.batch,
      workers: SPEC_DEFAULTS.workers,
      maxDeliveries: 5,
      sink: { schema: 'public', table: 'page_views', mode: 'insert', key: ['id'], create: true, evolve: false },
      deadLetters: { stream: 'pv:dead' },
    });
    expect(spec.sink.columns).toEqual([{ name: 'id', from: { root: 'event_id', path: [], text: 'event_id' }, type: 'text', required: true }]);
  });

  it('reads every key of a full file, JSON too', () => {
    const yaml = `
name: page-views
source: { stream: clicks, group: g1, start: $ }
batch: { count: 1000, bytes: 1MiB, period: 500ms }
workers: 4
max_deliveries: 3
filter: { event_type: [page_viewed, page_left] }
sink:
  table: analytics.page_views
  mode: upsert
  key: [session_id, url]
  version: seen_at
  create: false
  evolve: true
  columns:
    session_id: { from: payload.session.id, type: text }
    url: { from: payload.url, type: text }
    seen_at: { from: produced_at, type: timestamptz }
    tags: { from: payload.items.0.tags, type: "text[]", required: true }
dead_letters: { stream: pv-dead }
`;
    const spec = parsePipelineFile(yaml);
    expect(spec.source).toEqual({ stream: 'clicks', group: 'g1', start: '$' });
    expect(spec.batch).toEqual({ count: 1000, bytes: 1024 * 1024, periodMs: 500 });
    expect(spec.workers).toBe(4);
    expect(spec.maxDeliveries).toBe(3);
    expect(spec.filter).toEqual({ eventTypes: ['page_viewed', 'page_left'] });
    expect(spec.sink).toMatchObject({ schema: 'analytics', table: 'page_views', mode: 'upsert', version: 'seen_at', create: false, evolve: true });
    // Key and version columns are required whatever the file says.
    expect(spec.sink.columns.map((c) => [c.name, c.required])).toEqual([
      ['session_id', true],
      ['url', true],
      ['seen_at', true],
      ['tags', true],
    ]);
    expect(spec.sink.columns[3]!.from.path).toEqual(['items', '0', 'tags']);
    expect(spec.deadLetters.stream).toBe('pv-dead');
    const json = parsePipelineFile(JSON.stringify({ name: 'j', source: { stream: 's' }, sink: { table: 't', mode: 'append', columns: { a: { from: 'payload', type: 'jsonb' } } } }));
    expect(json.sink.mode).toBe('append');
  });

  it('names the line, the column and the key of every problem, in file order', () => {
    const found = problems(`name: x
source:
  stream: s
sink:
  table: Bad.Table
  mode: upsrt
  colums: {}
workerz: 3
`);
    expect(found.map((p) => [p.line, p.key])).toEqual([
      [5, 'sink.columns'],
      [5, 'sink.table'],
      [6, 'sink.mode'],
      [7, 'sink.colums'],
      [8, 'workerz'],
    ]);
    expect(found.find((p) => p.key === 'workerz')!.message).toBe('unknown key; did you mean workers?');
    expect(found.find((p) => p.key === 'sink.colums')!.message).toBe('unknown key; did you mean columns?');
    expect(found.find((p) => p.key === 'sink.mode')!.message).toBe('must be insert, upsert or append (got "upsrt"; did you mean upsert?)');
    expect(found[1]).toMatchObject({ file: 'f.yaml', line: 5, col: 10 });
  });

  it('a misspelt mode is one problem: its version is not also called a version without upsert', () => {
    const found = problems(`name: x
source: { stream: s }
sink:
  table: t
  mode: upsrt
  key: [k]
  version: v
  columns:
    k: { from: payload.k, type: text }
    v: { from: payload.v, type: bigint }
`);
    expect(found.map((p) => p.key)).toEqual(['sink.mode']);
  });

  it.each([
    ['name missing', MINIMAL.replace('name: pv', ''), '', 'name', 'is required'],
    ['source missing', MINIMAL.replace(/source:\n  stream: clicks\n/, ''), '', 'source', 'is required'],
    ['stream missing', MINIMAL.replace('stream: clicks', 'group: g'), '', 'source.stream', 'is required'],
    ['bad start', MINIMAL.replace('stream: clicks', 'stream: clicks\n  start: latest'), '', 'source.start', 'must be 0'],
    ['bad count', `${MINIMAL}batch: { count: 0 }\n`, '', 'batch.count', 'whole number from 1'],
    ['bad bytes', `${MINIMAL}batch: { bytes: lots }\n`, '', 'batch.bytes', 'must be a size'],
    ['bad period', `${MINIMAL}batch: { period: 2 weeks }\n`, '', 'batch.period', 'must be a duration'],
    ['bad workers', `${MINIMAL}workers: 1.5\n`, '', 'workers', 'whole number'],
    ['empty filter', `${MINIMAL}filter: { event_type: [] }\n`, '', 'filter.event_type', 'must not be empty'],
    ['unknown type', MINIMAL.replace('type: text', 'type: bigintt'), '', 'sink.columns.id.type', 'did you mean bigint?'],
    ['bad from', MINIMAL.replace('from: event_id', 'from: body.x'), '', 'sink.columns.id.from', 'must start with one of'],
    ['path on a field', MINIMAL.replace('from: event_id', 'from: event_id.x'), '', 'sink.columns.id.from', 'only payload takes a path'],
    ['bad column name', MINIMAL.replace('    id:', '    "Id; drop table x":').replace('[id]', '["Id; drop table x"]'), '', 'sink.columns.Id; drop table x', 'lower-case'],
    ['injection in table', MINIMAL.replace('table: page_views', 'table: \'x"; drop table y; --\''), '', 'sink.table', 'lower-case'],
    ['key not a column', MINIMAL.replace('key: [id]', 'key: [id2]'), '', 'sink.key', 'not a column'],
    ['key missing for insert', MINIMAL.replace('  key: [id]\n', ''), '', 'sink.key', 'is required for mode insert'],
    ['key on append', MINIMAL.replace('table: page_views', 'table: page_views\n  mode: append'), '', 'sink.key', 'takes no key'],
    ['version on insert', MINIMAL.replace('key: [id]', 'key: [id]\n  version: id'), '', 'sink.version', 'upsert only'],
    ['version of a bad type', MINIMAL.replace('key: [id]', 'mode: upsert\n  key: [id]\n  version: v').replace('    id:', '    v: { from: event_type, type: text }\n    id:'), '', 'sink.version', 'a version must be one of'],
    ['version is the key', MINIMAL.replace('key: [id]', 'mode: upsert\n  key: [id]\n  version: id'), '', 'sink.version', 'must not be a key column'],
    ['create not boolean', MINIMAL.replace('key: [id]', 'key: [id]\n  create: yes please'), '', 'sink.create', 'must be true or false'],
    ['duplicate key', MINIMAL.replace('name: pv', 'name: pv\nname: pw'), '', '', 'YAML syntax: Map keys must be unique'],
    ['dead letters on the source', `${MINIMAL}dead_letters: { stream: clicks }\n`, '', 'dead_letters.stream', 'must not be the source stream'],
  ])('%s', (_label, text, _unused, key, message) => {
    const found = problems(text);
    const p = found.find((f) => f.key === key);
    expect(p, JSON.stringify(found)).toBeDefined();
    expect(p!.message).toContain(message);
    expect(p!.line).toBeGreaterThan(0);
  });

  it('explains the unquoted text[] of a flow mapping', () => {
    const found = problems(MINIMAL.replace('type: text }', 'type: text[] }'));
    expect(found).toHaveLength(1);
    expect(found[0]!.message).toContain('quote the type, "text[]"');
    expect(found[0]!.line).toBe(9);
  });

  it('reports a file that cannot be read', () => {
    expect(() => loadPipelineFile('/nonexistent/p.yaml')).toThrow(/p\.yaml:1:1: cannot read: ENOENT/);
  });

  it('every shipped example and bench file checks', () => {
    for (const [dir, least] of [['examples/pipelines', 3], ['bench/pipelines', 2]] as const) {
      const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
      expect(files.length).toBeGreaterThanOrEqual(least);
      for (const f of files) expect(() => loadPipelineFile(`${dir}/${f}`)).not.toThrow();
    }
  });

  it('the pipeline bench repeats a tenth of its keys', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const { events, distinctKeys } = pipelineBenchEvents(10_000, 0.1, random);
    const keys = new Set(events.map((e) => (e.payload as { bench_key: string }).bench_key));
    expect(keys.size).toBe(distinctKeys);
    expect(distinctKeys / 10_000).toBeGreaterThan(0.88);
    expect(distinctKeys / 10_000).toBeLessThan(0.92);
    expect(events.map((e) => (e.payload as { bench_seq: number }).bench_seq)).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
  });

  it('parses sizes, durations and field paths', () => {
    expect([parseBytes('8MiB'), parseBytes('512 KiB'), parseBytes('1MB'), parseBytes(100), parseBytes('0'), parseBytes('x'), parseBytes(-1)]).toEqual([
      8 * 1024 * 1024, 512 * 1024, 1e6, 100, undefined, undefined, undefined,
    ]);
    expect([parseMs('500ms'), parseMs('2s'), parseMs('1.5s'), parseMs('1m'), parseMs(250), parseMs('2'), parseMs(0)]).toEqual([500, 2000, 1500, 60_000, 250, undefined, undefined]);
    expect(parseFieldPath('payload')).toEqual({ root: 'payload', path: [], text: 'payload' });
    expect(parseFieldPath('payload.a..b')).toContain('empty part');
  });
});

describe('pipeline files: converting values', () => {
  const ok: Array<[string, unknown, string]> = [
    ['text', 'héllo', 'héllo'],
    ['text', 12.5, '12.5'],
    ['text', true, 'true'],
    ['integer', 42, '42'],
    ['integer', ' -7 ', '-7'],
    ['integer', '+0012', '12'],
    ['integer', 2147483647, '2147483647'],
    ['bigint', '9223372036854775807', '9223372036854775807'],
    ['bigint', 9007199254740991, '9007199254740991'],
    ['numeric', 1.25, '1.25'],
    ['numeric', '123456789012345678901234.5', '123456789012345678901234.5'],
    ['numeric', '1e-7', '1e-7'],
    ['double precision', 0.1, '0.1'],
    ['double precision', 'NaN', 'NaN'],
    ['double precision', '-Infinity', '-Infinity'],
    ['boolean', true, 't'],
    ['boolean', 0, 'f'],
    ['boolean', 'Yes', 't'],
    ['boolean', 'off', 'f'],
    ['timestamptz', 1700000000123, '2023-11-14T22:13:20.123Z'],
    ['timestamptz', '1700000000123', '2023-11-14T22:13:20.123Z'],
    ['timestamptz', '2026-12-04T10:00:00Z', '2026-12-04 10:00:00+00:00'],
    ['timestamptz', '2026-12-04T10:00:00.123456+05:30', '2026-12-04 10:00:00.123456+05:30'],
    ['timestamptz', '2026-12-04 10:00-0800', '2026-12-04 10:00:00-08:00'],
    ['timestamptz', '2026-12-04', '2026-12-04 00:00:00+00:00'],
    ['timestamptz', '2024-02-29T23:59:59', '2024-02-29 23:59:59+00:00'],
    ['date', '2024-02-29', '2024-02-29'],
    ['uuid', '0190F3A1-0000-7000-8000-000000000001', '0190f3a1-0000-7000-8000-000000000001'],
    ['jsonb', { a: [1, 'x'] }, '{"a":[1,"x"]}'],
    ['jsonb', 'just text', '"just text"'],
    ['text[]', ['a', 'b "q"', 'c\\d', null, 3], '{"a","b \\"q\\"","c\\\\d",NULL,"3"}'],
    ['text[]', [], '{}'],
  ];
  it.each(ok)('%s takes %j', (type, value, expected) => {
    expect(convert(type as ColumnSpec['type'], value)).toBe(expected);
  });

  const bad: Array<[string, unknown, string]> = [
    ['text', { a: 1 }, 'an object is not text (map it to a jsonb column)'],
    ['text', ['a'], 'a list is not text'],
    ['text', 'a\u0000b', 'U+0000'],
    ['integer', 1.5, 'not a whole number'],
    ['integer', 2147483648, 'out of range for integer'],
    ['integer', '12abc', 'not a whole number'],
    ['integer', true, 'a boolean is not a number'],
    ['bigint', 9007199254740993, 'beyond 2^53'],
    ['bigint', '9223372036854775808', 'out of range for bigint'],
    ['numeric', 'twelve', 'a string is not a number'],
    ['numeric', 'NaN', 'not a number'],
    ['double precision', {}, 'an object is not a number'],
    ['boolean', 'maybe', 'not true or false'],
    ['boolean', 2, 'not true or false'],
    ['timestamptz', 'yesterday', 'not ISO 8601'],
    ['timestamptz', '2026-02-30T00:00:00Z', 'no such date'],
    ['timestamptz', '2026-12-04T24:00:00Z', 'no such time of day'],
    ['timestamptz', '2026-12-04T10:00:00+16:00', 'no such UTC offset'],
    ['timestamptz', 1e17, 'within years 1 to 9999'],
    ['timestamptz', true, 'a boolean is not a time'],
    ['date', '2023-02-29', 'no such date'],
    ['date', '04/12/2026', 'not a date'],
    ['date', 20261204, 'a number is not a date'],
    ['uuid', 'not-a-uuid', 'not a UUID'],
    ['jsonb', 'a\u0000b', 'jsonb cannot hold \\u0000'],
    ['text[]', 'a,b', 'a string is not a list'],
    ['text[]', [['a']], 'a list of lists or objects'],
  ];
  it.each(bad)('%s refuses %j', (type, value, reason) => {
    const r = convert(type as ColumnSpec['type'], value);
    expect(r).toBeInstanceOf(Bad);
    expect((r as Bad).reason).toContain(reason);
  });

  it('escapes COPY text and writes NULL as \\N', () => {
    expect(copyField(null)).toBe('\\N');
    expect(copyField('plain')).toBe('plain');
    expect(copyField('a\tb\nc\rd\\e')).toBe('a\\tb\\nc\\rd\\\\e');
  });

  const columns: ColumnSpec[] = [
    { name: 'id', from: { root: 'event_id', path: [], text: 'event_id' }, type: 'text', required: true },
    { name: 'n', from: { root: 'payload', path: ['a', 'n'], text: 'payload.a.n' }, type: 'integer', required: false },
    { name: 'first', from: { root: 'payload', path: ['items', '0'], text: 'payload.items.0' }, type: 'text', required: false },
    { name: 'at', from: { root: 'produced_at', path: [], text: 'produced_at' }, type: 'timestamptz', required: false },
    { name: 'doc', from: { root: 'payload', path: [], text: 'payload' }, type: 'jsonb', required: false },
  ];
  const entry = (payloadText: string, producedAt: number | null = 1700000000000): EntryValues => ({
    eventId: 'e1',
    eventType: 't',
    streamId: '1-0',
    producedAt,
    payloadText,
    payload: JSON.parse(payloadText),
  });

  it('maps an entry to its column values, missing optional values as NULL, the whole payload as sent', () => {
    const text = '{"a":{"n":5},"items":["x\\ty"],"big":12345678901234567890}';
    expect(mapRow(columns, entry(text))).toEqual({ values: ['e1', '5', 'x\ty', '2023-11-14T22:13:20.000Z', text] });
    expect(mapRow(columns, entry('{"a":null}', null))).toEqual({ values: ['e1', null, null, null, '{"a":null}'] });
    expect(mapRow(columns, entry('{"items":{"0":"k"}}'))).toMatchObject({ values: ['e1', null, 'k', expect.any(String), expect.any(String)] });
  });

  it('formats ms since epoch exactly as Date#toISOString does, the cached second included', () => {
    const samples = [0, 1, 999, 1000, 1700000000000, 1700000000999, 1700000000000.7, -1, -999.5, -1000, -62135596800000, 253402300799999];
    for (let i = 0; i < 2000; i++) samples.push((Math.random() - 0.3) * 2.5e14, 1700000000000 + Math.floor(Math.random() * 3000));
    for (const ms of samples) expect(isoFromMs(ms), String(ms)).toBe(new Date(ms).toISOString());
  });

  it('encodes rows as COPY text and as one array literal per column', () => {
    const rows = [{ values: ['a\tb', null, 'c\\d'] }, { values: ['x"y', '1', '{"q","r"}'] }].map((body, i) => ({ id: `${i}-0`, body, deliveries: 1, bytes: 1 }));
    expect(copyText(rows).toString()).toBe('a\\tb\t\\N\tc\\\\d\nx"y\t1\t{"q","r"}\n');
    expect(setParams(rows, 3)).toEqual(['{"a\tb","x\\"y"}', '{NULL,"1"}', '{"c\\\\d","{\\"q\\",\\"r\\"}"}']);
    expect(arrayLiteral([])).toBe('{}');
  });

  it('rejects a missing required value and a value that does not convert, naming the column and the value', () => {
    const required = [{ ...columns[1]!, required: true }];
    expect(mapRow(required, entry('{}'))).toEqual({ code: 'TRIB_ERR_MAP_REQUIRED', args: ['1-0', 'n', 'payload.a.n'] });
    expect(mapRow(columns, entry('{"a":{"n":"x".repeat(1)}}'.replace('"x".repeat(1)', `"${'x'.repeat(100)}"`)))).toEqual({
      code: 'TRIB_ERR_MAP_TYPE',
      args: ['1-0', 'n', 'integer', `"${'x'.repeat(56)}...`, 'not a whole number'],
    });
    expect(mapRow(columns, entry('{"s":"\\u0000"}'))).toMatchObject({ code: 'TRIB_ERR_MAP_TYPE', args: ['1-0', 'doc', 'jsonb', expect.any(String), 'jsonb cannot hold \\u0000'] });
  });
});

describe('pipeline files: table SQL and checks', () => {
  const spec = (extra: string) =>
    parsePipelineFile(`
name: t
source: { stream: s }
sink:
  table: a.b
${extra}
  columns:
    k: { from: payload.k, type: text }
    v: { from: produced_at, type: timestamptz }
    n: { from: payload.n, type: bigint }
`).sink;

  it('builds quoted SQL for each mode', () => {
    const upsert = tableSql(spec('  mode: upsert\n  key: [k]\n  version: v'));
    expect(upsert.create[1]).toBe('CREATE TABLE IF NOT EXISTS "a"."b" ("k" text NOT NULL, "v" timestamptz, "n" bigint, PRIMARY KEY ("k"))');
    const rows = '(SELECT s.c0 AS "k", s.c1 AS "v", s.c2 AS "n", s."_trib_seq" FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) WITH ORDINALITY AS s(c0, c1, c2, "_trib_seq")) AS r';
    expect(upsert.apply).toBe(
      `INSERT INTO "a"."b" AS cur ("k", "v", "n") SELECT DISTINCT ON ("k") "k", "v", "n" FROM ${rows} ORDER BY "k", "v" DESC NULLS LAST, "_trib_seq" ON CONFLICT ("k") DO UPDATE SET "v" = EXCLUDED."v", "n" = EXCLUDED."n" WHERE cur."v" IS NULL OR EXCLUDED."v" > cur."v"`,
    );
    expect(tableSql(spec('  mode: upsert\n  key: [k]')).apply).toContain('ORDER BY "k", "_trib_seq" DESC ON CONFLICT ("k") DO UPDATE SET "v" = EXCLUDED."v", "n" = EXCLUDED."n"');
    expect(tableSql(spec('  mode: insert\n  key: [k, n]')).apply).toContain('ORDER BY "k", "n", "_trib_seq" ON CONFLICT ("k", "n") DO NOTHING');
    const append = tableSql(spec('  mode: append'));
    expect(append.create[1]).not.toContain('PRIMARY KEY');
    expect(append.apply).toMatch(/ORDER BY "_trib_seq"$/);
    expect(append.copyDirect).toBe('COPY "a"."b" ("k", "v", "n") FROM STDIN');
    // A column of the user's named like the position column moves it aside; text[] travels as text.
    const clash = { ...spec('  mode: append'), columns: [{ ...spec('  mode: append').columns[0]!, name: '_trib_seq', type: 'text[]' as const }] };
    expect(tableSql(clash).apply).toBe(
      'INSERT INTO "a"."b" ("_trib_seq") SELECT "_trib_seq" FROM (SELECT s.c0::text[] AS "_trib_seq", s."_trib_seq_" FROM unnest($1::text[]) WITH ORDINALITY AS s(c0, "_trib_seq_")) AS r ORDER BY "_trib_seq_"',
    );
  });

  it('finds every way an existing table does not fit', () => {
    const sink = spec('  mode: upsert\n  key: [k]');
    const cols = (...c: Array<[string, string, boolean?, boolean?]>): TableColumnInfo[] => c.map(([name, type, notNull = false, hasDefault = false]) => ({ name, type, notNull, hasDefault }));
    expect(tableProblems(sink, cols(['k', 'character varying(20)'], ['v', 'timestamp with time zone'], ['n', 'numeric(20,0)']), [['k']])).toEqual({ problems: [], missing: [] });
    const r = tableProblems(sink, cols(['k', 'integer'], ['n', 'bigint'], ['extra', 'text', true]), []);
    expect(r.missing).toEqual(['v']);
    expect(r.problems).toEqual([
      'column k is integer, which cannot hold the mapped text (make it one of text, character varying, or map another type)',
      'column v missing (add it, or set evolve: true to add nullable columns at start)',
      'column extra is NOT NULL without a default, and the pipeline does not map it',
      'no unique index or primary key on exactly (k), which ON CONFLICT needs (CREATE UNIQUE INDEX ON a.b (k))',
    ]);
    const evolving = { ...sink, evolve: true };
    expect(tableProblems(evolving, cols(['k', 'text'], ['n', 'bigint']), [['k']])).toEqual({ problems: [], missing: ['v'] });
    expect(baseType('character varying(20)[]')).toBe('character varying[]');
  });
});

describe('the built-in events pipeline file', () => {
  it('holds the settings\' defaults, and the settings lay over it', () => {
    const d = configSchema.parse({});
    expect(eventsPipelineSpec(d)).toEqual({ ...shippedEventsSpec() });
    const shipped = shippedEventsSpec();
    expect(shipped).toMatchObject({
      source: { stream: d.streamKey, group: d.group, start: d.groupStartId },
      batch: { count: d.batchSize, bytes: d.batchMaxBytes, periodMs: d.batchTimeoutMs },
      workers: d.numWorkers,
      maxDeliveries: d.maxDeliveries,
      sink: { schema: d.pgSchema, table: d.eventsTable, mode: 'insert', key: ['event_id'], create: false },
      deadLetters: { stream: d.dlqStream },
    });
    const c = configSchema.parse({ streamKey: 's', group: 'g', numWorkers: 2, batchSize: 9, pgSchema: 'x', eventsTable: 'y', dlqStream: 'dl' });
    expect(eventsPipelineSpec(c)).toMatchObject({ source: { stream: 's', group: 'g' }, workers: 2, batch: { count: 9 }, sink: { schema: 'x', table: 'y' }, deadLetters: { stream: 'dl' } });
  });

  it('its layout, in a file of any column order, takes the events write path; any change takes the mapped one', () => {
    const spec = shippedEventsSpec();
    expect(isEventsLayout(spec)).toBe(true);
    expect(isEventsLayout({ ...spec, sink: { ...spec.sink, columns: [...spec.sink.columns].reverse() } })).toBe(true);
    expect(isEventsLayout({ ...spec, filter: { eventTypes: ['a'] } })).toBe(false);
    expect(isEventsLayout({ ...spec, sink: { ...spec.sink, mode: 'upsert' } })).toBe(false);
    expect(isEventsLayout({ ...spec, sink: { ...spec.sink, columns: spec.sink.columns.slice(1) } })).toBe(false);
    const retyped = spec.sink.columns.map((c) => (c.name === 'payload' ? { ...c, type: 'text' as const } : c));
    expect(isEventsLayout({ ...spec, sink: { ...spec.sink, columns: retyped } })).toBe(false);
    const moved = spec.sink.columns.map((c) => (c.name === 'payload' ? { ...c, from: { root: 'payload' as const, path: ['x'], text: 'payload.x' } } : c));
    expect(isEventsLayout({ ...spec, sink: { ...spec.sink, columns: moved } })).toBe(false);
  });
});
