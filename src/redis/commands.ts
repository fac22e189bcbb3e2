/**
 * Pure argument builders and reply parsers for the stream commands the engine
 * sends raw (RESP2 replies: arrays of strings, null for nil). Each has a spec in
 * test/unit/redis-commands.test.ts that checks the exact array.
 */

/** A stream entry as Redis holds it: its ID and its field/value pairs. */
export interface StreamEntry {
  id: string;
  fields: Record<string, string>;
}

export type RawReply = string | number | null | RawReply[];

export interface XReadGroupOptions {
  group: string;
  consumer: string;
  key: string;
  /** `>` for new entries, or an ID to read the consumer's own history. */
  id?: string;
  count: number;
  /** Omit for a non-blocking read. Never 0: BLOCK 0 blocks forever. */
  blockMs?: number;
}

export function xreadgroupArgs(o: XReadGroupOptions): string[] {
  const args = ['XREADGROUP', 'GROUP', o.group, o.consumer, 'COUNT', String(o.count)];
  if (o.blockMs !== undefined) {
    if (o.blockMs <= 0) throw new RangeError('blockMs must be positive; omit it for a non-blocking read');
    args.push('BLOCK', String(Math.ceil(o.blockMs)));
  }
  args.push('STREAMS', o.key, o.id ?? '>');
  return args;
}

/** Field/value array → object (a repeated field keeps its last value). */
export function fieldsToObject(raw: RawReply): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(raw)) return out;
  for (let i = 0; i + 1 < raw.length; i += 2) out[String(raw[i])] = String(raw[i + 1]);
  return out;
}

export interface ParsedEntries {
  entries: StreamEntry[];
  /** IDs whose entry no longer exists (returned as `[id, nil]`). */
  deletedIds: string[];
}

/** Parses a list of `[id, [f, v, ...]]` items; `[id, nil]` items are deleted entries. */
export function parseEntryList(raw: RawReply): ParsedEntries & { nilCount: number } {
  const entries: StreamEntry[] = [];
  const deletedIds: string[] = [];
  let nilCount = 0;
  if (!Array.isArray(raw)) return { entries, deletedIds, nilCount };
  for (const item of raw) {
    if (!Array.isArray(item)) {
      nilCount++; // Redis 6.2 X[AUTO]CLAIM: a deleted entry is a bare nil
      continue;
    }
    const id = String(item[0]);
    if (item[1] === null || item[1] === undefined) deletedIds.push(id);
    else entries.push({ id, fields: fieldsToObject(item[1]) });
  }
  return { entries, deletedIds, nilCount };
}

/** XREADGROUP / XREAD reply (nil on timeout) for a single stream. */
export function parseStreamReadReply(raw: RawReply): ParsedEntries {
  if (!Array.isArray(raw) || raw.length === 0) return { entries: [], deletedIds: [] };
  const stream = raw[0];
  if (!Array.isArray(stream)) return { entries: [], deletedIds: [] };
  const { entries, deletedIds } = parseEntryList(stream[1] ?? null);
  return { entries, deletedIds };
}

/**
 * A stream entry read on the engine's hot path: field names and values stay the bytes
 * Redis sent (no UTF-8 decoding), so the batch can be written to Postgres without
 * turning every payload into a string and back. `fields` decodes them (as node-redis
 * would: UTF-8, invalid bytes become U+FFFD) on first use, for the paths that need text
 * (dead letters, logs).
 */
export class RawStreamEntry implements StreamEntry {
  private decoded: Record<string, string> | undefined;
  private measured = -1;
  private views: readonly Buffer[] | undefined;
  /**
   * Times handed out: a first read (XREADGROUP `>`). With `body` and `bytes`, this makes
   * the entry a pipeline message itself: the hot path allocates no wrapper per entry.
   */
  deliveries = 1;
  /**
   * The packed form (stream-reply.ts): the reply's bytes, and the [start, end) offsets of
   * this entry's `packedCount` fields (names and values) from `packedFirst` on.
   */
  packedBuf: Buffer | undefined = undefined;
  packedOffsets: Int32Array | undefined = undefined;
  packedFirst = 0;
  packedCount = 0;

  constructor(
    readonly id: string,
    /** Field/value pairs, flat: name, value, name, value, ... */
    raw?: readonly Buffer[],
  ) {
    this.views = raw;
  }

  /** An entry whose fields are offsets into a reply's buffer: no Buffer per field until asked. */
  static packed(id: string, buf: Buffer, offsets: Int32Array, first: number, count: number): RawStreamEntry {
    const e = new RawStreamEntry(id);
    e.packedBuf = buf;
    e.packedOffsets = offsets;
    e.packedFirst = first;
    e.packedCount = count;
    return e;
  }

  /** Field/value pairs, flat: name, value, name, value, ... (views of the bytes Redis sent). */
  get raw(): readonly Buffer[] {
    if (this.views === undefined) {
      if (this.packedOffsets === undefined) return (this.views = []);
      const out = new Array<Buffer>(this.packedCount);
      const o = this.packedOffsets!;
      for (let i = 0, at = this.packedFirst; i < out.length; i++, at += 2) out[i] = this.packedBuf!.subarray(o[at], o[at + 1]);
      this.views = out;
    }
    return this.views;
  }

  /** The entry, as a message's body. */
  get body(): this {
    return this;
  }

  /** Bytes of field names and values, measured once. */
  get bytes(): number {
    if (this.measured < 0) this.measured = this.size;
    return this.measured;
  }

  get fields(): Record<string, string> {
    if (this.decoded === undefined) {
      const raw = this.raw;
      const out: Record<string, string> = {};
      for (let i = 0; i + 1 < raw.length; i += 2) out[raw[i]!.toString()] = raw[i + 1]!.toString();
      this.decoded = out;
    }
    return this.decoded;
  }

  /** Bytes of field names and values (what BATCH_MAX_BYTES counts). */
  get size(): number {
    let n = 0;
    if (this.views === undefined && this.packedOffsets !== undefined) {
      const o = this.packedOffsets;
      for (let i = 0, at = this.packedFirst; i < this.packedCount; i++, at += 2) n += o[at + 1]! - o[at]!;
      return n;
    }
    const raw = this.raw;
    for (let i = 0; i < raw.length; i++) n += raw[i]!.length;
    return n;
  }
}

/** A reply read with blob strings mapped to Buffers. */
export type RawBufferReply = Buffer | number | null | RawBufferReply[];

/**
 * XREADGROUP reply (blob strings as Buffers, nil on timeout) for a single stream.
 * History reads can return `[id, nil]` for a deleted entry: its ID goes to `deletedIds`.
 */
export function parseRawStreamReadReply(raw: RawBufferReply): { entries: RawStreamEntry[]; deletedIds: string[] } {
  const entries: RawStreamEntry[] = [];
  const deletedIds: string[] = [];
  if (!Array.isArray(raw) || raw.length === 0) return { entries, deletedIds };
  const stream = raw[0];
  if (!Array.isArray(stream) || !Array.isArray(stream[1])) return { entries, deletedIds };
  for (const item of stream[1]) {
    if (!Array.isArray(item)) continue;
    const id = String(item[0]);
    const fields = item[1];
    if (Array.isArray(fields)) entries.push(new RawStreamEntry(id, fields as Buffer[]));
    else deletedIds.push(id);
  }
  return { entries, deletedIds };
}

/**
 * A list of `[id, [f, v, ...]]` items read with blob strings as Buffers (XCLAIM,
 * XAUTOCLAIM's second element): entries stay bytes (no decoding of a field that could be
 * larger than a JS string may be); `[id, nil]` items are deleted entries, bare nils
 * counted (Redis 6.2).
 */
export function parseRawEntryList(raw: RawBufferReply): { entries: RawStreamEntry[]; deletedIds: string[]; nilCount: number } {
  const entries: RawStreamEntry[] = [];
  const deletedIds: string[] = [];
  let nilCount = 0;
  if (!Array.isArray(raw)) return { entries, deletedIds, nilCount };
  for (const item of raw) {
    if (!Array.isArray(item)) {
      nilCount++;
      continue;
    }
    const id = String(item[0]);
    if (Array.isArray(item[1])) entries.push(new RawStreamEntry(id, item[1] as Buffer[]));
    else deletedIds.push(id);
  }
  return { entries, deletedIds, nilCount };
}

/** parseAutoClaimReply for a reply read with blob strings as Buffers: entries stay RawStreamEntries. */
export function parseRawAutoClaimReply(raw: RawBufferReply): { cursor: string; entries: RawStreamEntry[]; deletedIds: string[]; nilCount: number } {
  if (!Array.isArray(raw) || raw.length < 2) throw new TypeError('unexpected XAUTOCLAIM reply');
  const parsed = parseRawEntryList(raw[1] ?? null);
  if (Array.isArray(raw[2])) for (const id of raw[2]) parsed.deletedIds.push(String(id));
  return { cursor: String(raw[0]), ...parsed };
}

export interface XAutoClaimOptions {
  key: string;
  group: string;
  consumer: string;
  minIdleMs: number;
  start: string;
  count: number;
}

export function xautoclaimArgs(o: XAutoClaimOptions): string[] {
  return ['XAUTOCLAIM', o.key, o.group, o.consumer, String(o.minIdleMs), o.start, 'COUNT', String(o.count)];
}

export interface AutoClaimResult {
  /** Cursor for the next call; `0-0` when the scan is complete. */
  cursor: string;
  entries: StreamEntry[];
  /** IDs removed from the PEL because their entry was deleted (Redis 7.x third element). */
  deletedIds: string[];
  /** Redis 6.2 replies a bare nil for a deleted entry and keeps it pending: the caller must clean up. */
  nilCount: number;
}

/** Handles both shapes: 6.2 `[cursor, entries]` and 7.x `[cursor, entries, deletedIds]`. */
export function parseAutoClaimReply(raw: RawReply): AutoClaimResult {
  if (!Array.isArray(raw) || raw.length < 2) throw new TypeError('unexpected XAUTOCLAIM reply');
  const parsed = parseEntryList(raw[1] ?? null);
  const deletedIds = [...parsed.deletedIds];
  if (Array.isArray(raw[2])) for (const id of raw[2]) deletedIds.push(String(id));
  return { cursor: String(raw[0]), entries: parsed.entries, deletedIds, nilCount: parsed.nilCount };
}

export interface XPendingRangeOptions {
  key: string;
  group: string;
  start?: string;
  end?: string;
  count: number;
  consumer?: string;
  minIdleMs?: number;
}

export function xpendingRangeArgs(o: XPendingRangeOptions): string[] {
  const args = ['XPENDING', o.key, o.group];
  if (o.minIdleMs !== undefined) args.push('IDLE', String(o.minIdleMs));
  args.push(o.start ?? '-', o.end ?? '+', String(o.count));
  if (o.consumer !== undefined) args.push(o.consumer);
  return args;
}

export interface PendingEntry {
  id: string;
  consumer: string;
  idleMs: number;
  deliveries: number;
}

export function parsePendingRangeReply(raw: RawReply): PendingEntry[] {
  if (!Array.isArray(raw)) return [];
  return raw.filter(Array.isArray).map((row) => ({
    id: String(row[0]),
    consumer: String(row[1]),
    idleMs: Number(row[2]),
    deliveries: Number(row[3]),
  }));
}

export type TrimOption =
  | { maxLen: number; exact?: boolean }
  | { minId: string; exact?: boolean };

export function xaddArgs(key: string, fields: Record<string, string>, trim?: TrimOption, id = '*'): string[] {
  const args = ['XADD', key];
  if (trim) {
    if ('maxLen' in trim) args.push('MAXLEN', trim.exact ? '=' : '~', String(trim.maxLen));
    else args.push('MINID', trim.exact ? '=' : '~', trim.minId);
  }
  args.push(id);
  for (const [f, v] of Object.entries(fields)) args.push(f, v);
  return args;
}

export function xackArgs(key: string, group: string, ids: readonly string[]): string[] {
  return ['XACK', key, group, ...ids];
}

/** Compares two stream IDs (`ms-seq`); negative when a < b. */
export function compareStreamIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

/** Redis error replies are matched by their leading word, here and nowhere else. */
export function redisErrorIs(err: unknown, prefix: 'BUSYGROUP' | 'NOGROUP' | 'NOSCRIPT' | 'ERR'): boolean {
  const message = err instanceof Error ? err.message : String(err);
  return message.startsWith(prefix);
}
