import { send, type RedisConnection } from './client.js';
import { redisErrorIs, type RawReply } from './commands.js';

/**
 * Parsers for the XINFO replies (RESP2: flat field/value arrays), shared by `monitor`,
 * `tail` and retention. Fields a server version does not report are null.
 */

/** A flat `[field, value, field, value, ...]` reply → object keyed by field. */
export function infoPairs(raw: RawReply): Record<string, RawReply> {
  const out: Record<string, RawReply> = {};
  if (!Array.isArray(raw)) return out;
  for (let i = 0; i + 1 < raw.length; i += 2) out[String(raw[i])] = raw[i + 1] ?? null;
  return out;
}

const num = (v: RawReply | undefined): number | null => (v === undefined || v === null || Array.isArray(v) ? null : Number(v));
const str = (v: RawReply | undefined): string | null => (v === undefined || v === null || Array.isArray(v) ? null : String(v));

/** One consumer group, from XINFO GROUPS. */
export interface GroupInfo {
  name: string;
  consumers: number;
  /** Entries delivered to the group and not yet acknowledged. */
  pending: number;
  lastDeliveredId: string;
  /** Redis ≥ 7.0; null when unknown (older server, or a group created with no ENTRIESREAD). */
  entriesRead: number | null;
  /** Redis ≥ 7.0; entries not yet delivered to the group, null when Redis cannot tell. */
  lag: number | null;
}

export function parseXinfoGroups(raw: RawReply): GroupInfo[] {
  if (!Array.isArray(raw)) return [];
  return raw.filter(Array.isArray).map((g) => {
    const o = infoPairs(g);
    return {
      name: String(o.name),
      consumers: num(o.consumers) ?? 0,
      pending: num(o.pending) ?? 0,
      lastDeliveredId: str(o['last-delivered-id']) ?? '0-0',
      entriesRead: num(o['entries-read']),
      lag: num(o.lag),
    };
  });
}

/** One consumer of a group, from XINFO CONSUMERS. */
export interface ConsumerInfo {
  name: string;
  pending: number;
  /** Since the consumer's last attempted interaction (read, claim, ack). */
  idleMs: number;
  /** Redis ≥ 7.2: since its last successful interaction; null before. */
  inactiveMs: number | null;
}

export function parseXinfoConsumers(raw: RawReply): ConsumerInfo[] {
  if (!Array.isArray(raw)) return [];
  return raw.filter(Array.isArray).map((c) => {
    const o = infoPairs(c);
    return { name: String(o.name), pending: num(o.pending) ?? 0, idleMs: num(o.idle) ?? 0, inactiveMs: num(o.inactive) };
  });
}

/** A stream, from XINFO STREAM. */
export interface StreamInfo {
  length: number;
  lastGeneratedId: string;
  /** Redis ≥ 7.0: every entry ever added (XADD), trimmed or not. */
  entriesAdded: number | null;
  /** Redis ≥ 7.0: the largest ID deleted by XDEL (trimming does not move it). */
  maxDeletedEntryId: string | null;
  firstEntryId: string | null;
  lastEntryId: string | null;
  groups: number;
}

export function parseXinfoStream(raw: RawReply): StreamInfo {
  const o = infoPairs(raw);
  const entryId = (v: RawReply | undefined) => (Array.isArray(v) && v.length > 0 ? String(v[0]) : null);
  return {
    length: num(o.length) ?? 0,
    lastGeneratedId: str(o['last-generated-id']) ?? '0-0',
    entriesAdded: num(o['entries-added']),
    maxDeletedEntryId: str(o['max-deleted-entry-id']),
    firstEntryId: entryId(o['first-entry']),
    lastEntryId: entryId(o['last-entry']),
    groups: num(o.groups) ?? 0,
  };
}

/** XINFO GROUPS, with a missing stream read as "no groups". */
export async function readGroups(redis: RedisConnection, key: string): Promise<GroupInfo[]> {
  try {
    return parseXinfoGroups(await send(redis, ['XINFO', 'GROUPS', key]));
  } catch (err) {
    if (redisErrorIs(err, 'ERR')) return []; // ERR no such key
    throw err;
  }
}
