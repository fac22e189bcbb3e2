/**
 * Typed column mapping: a stream entry (the stream contract: event_type, JSON payload,
 * optional event_id and produced_at) becomes one line of COPY text for the user's table,
 * each column converted to its type here, in Node. A value that does not convert, or a
 * required value that is missing, rejects that message alone with a coded error naming
 * the column, the value (shortened) and the reason; its batch-mates go on. Nothing
 * reaches Postgres that its type input would refuse, so a batch's COPY is not failed by
 * one bad row.
 */
import type { Message, Rejected, Stage, StageResult } from '../core/contracts.js';
import { parseEntry } from '../core/entry.js';
import { TributaryError } from '../errors.js';
import type { StreamEntry } from '../redis/commands.js';
import { rejection } from '../stages/validate-event.js';
import type { ColumnSpec, ColumnType, PipelineSpec } from './spec.js';

/** Why a value does not convert. */
export class Bad {
  constructor(readonly reason: string) {}
}

/** A converted value: its text for Postgres' type input, null for NULL, or why not. */
export type Converted = string | null | Bad;

/**
 * A message mapped to its table row: each column's value as the text Postgres' input
 * function for the column type takes (null for NULL), in the order of sink.columns. The
 * sink encodes them for its path (COPY text, or typed arrays for one INSERT ... SELECT).
 */
export interface MappedRow {
  values: (string | null)[];
}

const INT = /^[+-]?\d+$/;
const NUMERIC = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?)?\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$/;
const INT32 = 2_147_483_647;
const INT64_MAX = 9_223_372_036_854_775_807n;
const INT64_MIN = -9_223_372_036_854_775_808n;
/** Years 1 to 9999, in ms since epoch (what an ISO string can say). */
const MIN_MS = -62_135_596_800_000;
const MAX_MS = 253_402_300_799_999;
const BOOLEAN_TEXT: Record<string, string> = { true: 't', t: 't', yes: 't', y: 't', on: 't', '1': 't', false: 'f', f: 'f', no: 'f', n: 'f', off: 'f', '0': 'f' };

function kind(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function integerText(v: unknown, min: bigint, max: bigint, what: string): Converted {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return new Bad(`not a whole number`);
    if (!Number.isSafeInteger(v)) return new Bad('beyond 2^53, a JSON number loses digits: send it as a string');
    if (BigInt(v) < min || BigInt(v) > max) return new Bad(`out of range for ${what}`);
    return String(v);
  }
  if (typeof v === 'string') {
    const t = v.trim();
    if (!INT.test(t)) return new Bad('not a whole number');
    const n = BigInt(t);
    if (n < min || n > max) return new Bad(`out of range for ${what}`);
    return n.toString();
  }
  return new Bad(`${kind(v)} is not a number`);
}

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function validDate(y: number, mo: number, d: number): boolean {
  return y >= 1 && mo >= 1 && mo <= 12 && d >= 1 && d <= daysIn(y, mo);
}

let isoSecond = NaN;
let isoPrefix = '';
const MS_TEXT = Array.from({ length: 1000 }, (_, i) => `.${String(i).padStart(3, '0')}Z`);

/**
 * `new Date(ms).toISOString()` (ms already within years 1 to 9999), formatting only the
 * milliseconds when the second is the one of the last call: the events of a batch are
 * mostly produced within one second, and toISOString was a tenth of the mapping's time.
 */
export function isoFromMs(ms: number): string {
  const t = Math.trunc(ms); // as Date does
  const second = Math.floor(t / 1000);
  if (second !== isoSecond) {
    isoPrefix = new Date(second * 1000).toISOString().slice(0, -5); // without '.000Z'
    isoSecond = second;
  }
  return isoPrefix + MS_TEXT[t - second * 1000]!;
}

function timestampText(v: unknown): Converted {
  if (typeof v === 'string' && /^\d+$/.test(v.trim())) v = Number(v.trim());
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < MIN_MS || v > MAX_MS) return new Bad('not ms since epoch within years 1 to 9999');
    return isoFromMs(v);
  }
  if (typeof v !== 'string') return new Bad(`${kind(v)} is not a time (ISO 8601 text or ms since epoch)`);
  const m = TIMESTAMP.exec(v.trim());
  if (!m) return new Bad('not ISO 8601 (2026-12-04T10:00:00Z) or ms since epoch');
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', zone] = m;
  if (!validDate(Number(y), Number(mo), Number(d))) return new Bad('no such date');
  if (Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return new Bad('no such time of day');
  let offset = '+00:00';
  if (zone !== undefined && zone !== 'Z' && zone !== 'z') {
    const oh = zone.slice(1, 3);
    const om = zone.length > 3 ? zone.slice(-2) : '00';
    if (Number(oh) > 15 || Number(om) > 59) return new Bad('no such UTC offset');
    offset = `${zone[0]}${oh}:${om}`;
  }
  // No offset means UTC (not the server's time zone): the same text lands the same everywhere.
  return `${y}-${mo}-${d} ${h}:${mi}:${s}${frac}${offset}`;
}

function arrayElement(e: unknown): string | Bad {
  if (e === null) return 'NULL';
  if (typeof e === 'object') return new Bad('a list of lists or objects is not text[]');
  const s = String(e);
  if (s.includes('\u0000')) return new Bad('text cannot hold the character U+0000');
  return `"${s.replace(/["\\]/g, '\\$&')}"`;
}

/** Converts a (non-null) JSON value to the text Postgres' input for `type` takes. Pure. */
export function convert(type: ColumnType, v: unknown): Converted {
  switch (type) {
    case 'text': {
      if (typeof v === 'string') return v.includes('\u0000') ? new Bad('text cannot hold the character U+0000') : v;
      if (typeof v === 'number' || typeof v === 'boolean') return String(v);
      return new Bad(`${kind(v)} is not text (map it to a jsonb column)`);
    }
    case 'integer':
      return integerText(v, BigInt(-INT32 - 1), BigInt(INT32), 'integer');
    case 'bigint':
      return integerText(v, INT64_MIN, INT64_MAX, 'bigint');
    case 'numeric':
      if (typeof v === 'number') return Number.isFinite(v) ? String(v) : new Bad('not a finite number');
      if (typeof v === 'string' && NUMERIC.test(v.trim())) return v.trim();
      return new Bad(`${kind(v)} is not a number`);
    case 'double precision':
      if (typeof v === 'number') return String(v);
      if (typeof v === 'string' && (NUMERIC.test(v.trim()) || /^[+-]?(infinity|nan)$/i.test(v.trim()))) return v.trim();
      return new Bad(`${kind(v)} is not a number`);
    case 'boolean':
      if (typeof v === 'boolean') return v ? 't' : 'f';
      if (v === 1 || v === 0) return v === 1 ? 't' : 'f';
      if (typeof v === 'string' && BOOLEAN_TEXT[v.trim().toLowerCase()] !== undefined) return BOOLEAN_TEXT[v.trim().toLowerCase()]!;
      return new Bad('not true or false');
    case 'timestamptz':
      return timestampText(v);
    case 'date': {
      if (typeof v !== 'string') return new Bad(`${kind(v)} is not a date (YYYY-MM-DD)`);
      const m = DATE.exec(v.trim());
      if (!m) return new Bad('not a date (YYYY-MM-DD)');
      return validDate(Number(m[1]), Number(m[2]), Number(m[3])) ? v.trim() : new Bad('no such date');
    }
    case 'uuid':
      if (typeof v === 'string' && UUID.test(v.trim())) return v.trim().toLowerCase();
      return new Bad('not a UUID (8-4-4-4-12 hex digits)');
    case 'jsonb': {
      const text = JSON.stringify(v);
      // Postgres' jsonb refuses the escape \u0000 (its text type cannot hold U+0000).
      return text.includes('\\u0000') ? new Bad('jsonb cannot hold \\u0000') : text;
    }
    case 'text[]': {
      if (!Array.isArray(v)) return new Bad(`${kind(v)} is not a list`);
      const parts = new Array<string>(v.length);
      for (let i = 0; i < v.length; i++) {
        const e = arrayElement(v[i]);
        if (e instanceof Bad) return e;
        parts[i] = e;
      }
      return `{${parts.join(',')}}`;
    }
  }
}

const SPECIAL = /[\\\n\r\t]/;

/** A value as a field of COPY text format (backslash escapes; `\N` is NULL). Pure. */
export function copyField(value: string | null): string {
  if (value === null) return '\\N';
  if (!SPECIAL.test(value)) return value;
  return value.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

/**
 * Values as one Postgres array literal (`{"a",NULL,"b\"c"}`), the text a typed array
 * parameter takes: every element quoted (backslash and double quote escaped), NULL bare. Pure.
 */
export function arrayLiteral(values: readonly (string | null)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    out += v === null || v === undefined ? 'NULL' : ARRAY_SPECIAL.test(v) ? `"${v.replace(/["\\]/g, '\\$&')}"` : `"${v}"`;
  }
  return `${out}}`;
}

const ARRAY_SPECIAL = /["\\]/;

function shorten(v: unknown): string {
  const text = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** The value at `path` below `root`, or undefined when a step is missing. */
function walk(root: unknown, path: readonly string[]): unknown {
  let v = root;
  for (let i = 0; i < path.length; i++) {
    if (v === null || typeof v !== 'object') return undefined;
    const step = path[i]!;
    if (Array.isArray(v)) {
      if (!/^\d+$/.test(step)) return undefined;
      v = v[Number(step)];
    } else {
      v = Object.prototype.hasOwnProperty.call(v, step) ? (v as Record<string, unknown>)[step] : undefined;
    }
  }
  return v;
}

/** The fields of one checked entry a column may read. */
export interface EntryValues {
  eventId: string;
  eventType: string;
  streamId: string;
  producedAt: number | null;
  /** The payload as sent (JSON text). */
  payloadText: string;
  /** The payload parsed. */
  payload: unknown;
}

/** One row's column values for `columns`, or the reason the message is rejected. Pure. */
export function mapRow(columns: readonly ColumnSpec[], e: EntryValues): MappedRow | { code: 'TRIB_ERR_MAP_REQUIRED' | 'TRIB_ERR_MAP_TYPE'; args: string[] } {
  const values = new Array<string | null>(columns.length);
  for (let i = 0; i < columns.length; i++) {
    const c = columns[i]!;
    let value: unknown;
    let converted: Converted;
    switch (c.from.root) {
      case 'event_id':
        value = e.eventId;
        break;
      case 'event_type':
        value = e.eventType;
        break;
      case 'stream_id':
        value = e.streamId;
        break;
      case 'produced_at':
        value = e.producedAt;
        break;
      case 'payload':
        value = c.from.path.length === 0 ? e.payload : walk(e.payload, c.from.path);
        break;
    }
    if (value === undefined || value === null) {
      if (c.required) return { code: 'TRIB_ERR_MAP_REQUIRED', args: [e.streamId, c.name, c.from.text] };
      converted = null;
    } else if (c.type === 'jsonb' && c.from.root === 'payload' && c.from.path.length === 0) {
      // The whole payload: the text as sent (JSON.parse would round numbers past 2^53).
      converted = e.payloadText.includes('\\u0000') ? new Bad('jsonb cannot hold \\u0000') : e.payloadText;
    } else {
      converted = convert(c.type, value);
    }
    if (converted instanceof Bad) return { code: 'TRIB_ERR_MAP_TYPE', args: [e.streamId, c.name, c.type, shorten(value), converted.reason] };
    values[i] = converted;
  }
  return { values };
}

/**
 * The mapping stage of a pipeline file: checks each entry against the stream contract,
 * drops the event types the filter does not keep (acknowledged, not written), and maps
 * the rest to rows. Rejected messages go to the dead letters with their coded reason.
 */
export function mapColumns(spec: PipelineSpec): Stage<StreamEntry, MappedRow> {
  const keep = spec.filter ? new Set(spec.filter.eventTypes) : undefined;
  const columns = spec.sink.columns;
  const streamKey = spec.source.stream;
  return {
    name: 'map',
    run(batch: Message<StreamEntry>[]): StageResult<MappedRow> {
      const out: Message<MappedRow>[] = [];
      const rejected: Rejected[] = [];
      for (let i = 0; i < batch.length; i++) {
        const m = batch[i]!;
        const parsed = parseEntry(m.body, streamKey);
        if (!parsed.ok) {
          rejected.push(rejection(m.id, parsed.problem));
          continue;
        }
        const row = parsed.row;
        if (keep !== undefined && !keep.has(row.eventType)) continue;
        const mapped = mapRow(columns, {
          eventId: row.eventId,
          eventType: row.eventType,
          streamId: row.streamId,
          producedAt: row.producedAt,
          payloadText: row.payload,
          payload: parsed.value,
        });
        if ('values' in mapped) {
          out.push({ id: m.id, body: mapped, deliveries: m.deliveries, bytes: m.bytes, producedAt: row.producedAt });
        } else {
          const err = new TributaryError(mapped.code, mapped.args);
          rejected.push({ id: m.id, code: err.code, error: err.message });
        }
      }
      return { keep: out, rejected };
    },
  };
}
