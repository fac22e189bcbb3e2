import { TributaryError } from '../errors.js';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `90s`, `30m`, `12h`, `7d`, `500ms` → milliseconds. Throws TRIB_ERR_CONFIG_INVALID naming `what`. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [what, `must be a duration such as 90s, 30m, 12h or 7d (got ${JSON.stringify(text)})`]);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/** A stream entry ID (`1700000000000-0` or `1700000000000`). */
export const STREAM_ID = /^\d+(-\d+)?$/;

/**
 * A point in a stream given by the user: a stream entry ID, an ISO time
 * (`2026-11-22T10:00:00Z`), or a duration ago (`15m`). Returns a stream ID
 * (`<ms>-0` for times) usable in XRANGE / XGROUP / XTRIM MINID.
 */
export function parseStreamPoint(text: string, what = 'point', now = Date.now()): string {
  const t = text.trim();
  if (STREAM_ID.test(t)) return t.includes('-') ? t : `${t}-0`;
  if (/^\d+(ms|s|m|h|d)$/.test(t)) return `${now - parseDuration(t, what)}-0`;
  const ms = Date.parse(t);
  if (Number.isNaN(ms) || !/^\d{4}-\d{2}-\d{2}/.test(t)) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [what, `must be a stream entry ID, an ISO time or a duration ago such as 15m (got ${JSON.stringify(text)})`]);
  }
  return `${ms}-0`;
}

/** An ISO time or a duration ago (`7d`) → Date, for SQL filters. */
export function parseTime(text: string, what = 'time', now = Date.now()): Date {
  const t = text.trim();
  if (/^\d+(ms|s|m|h|d)$/.test(t)) return new Date(now - parseDuration(t, what));
  const ms = Date.parse(t);
  if (Number.isNaN(ms) || !/^\d{4}-\d{2}-\d{2}/.test(t)) {
    throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [what, `must be an ISO time or a duration ago such as 7d (got ${JSON.stringify(text)})`]);
  }
  return new Date(ms);
}

/** The millisecond part of a stream ID. */
export function streamIdTime(id: string): number {
  return Number(id.split('-')[0]);
}
