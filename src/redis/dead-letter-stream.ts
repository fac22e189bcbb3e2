import { RedisScript, type RedisConnection } from './client.js';

/** Where a stream's dead letters go. */
export interface DeadLetterTarget {
  streamKey: string;
  group: string;
  dlqStream: string;
}

/** One entry on its way to the dead-letter stream. */
export interface StreamDeadLetter {
  id: string;
  fields: Record<string, string>;
  /**
   * The entry's field/value pairs as the bytes Redis sent, copied as they are in place of
   * `fields` (an entry too large to decode as text: TRIB_ERR_ENTRY_TOO_LARGE).
   */
  raw?: readonly Buffer[];
  code: string;
  error: string;
  deliveries: number;
}

/** Above this many fields a dead letter's fields are stored as one `dlq_fields_json` field. */
export const MAX_STREAM_FIELDS = 3000;

const SCRIPT = new RedisScript('dead-letter');

/**
 * Acknowledges each entry and appends it to the dead-letter stream, atomically per entry
 * (one Lua script each, pipelined), only if it was still pending: repeating it after a
 * crash adds no second dead-letter entry. Returns how many were newly dead-lettered.
 */
export async function moveToDeadLetterStream(redis: RedisConnection, target: DeadLetterTarget, letters: readonly StreamDeadLetter[]): Promise<number> {
  const now = String(Date.now());
  const replies = await Promise.all(
    // Buffers travel as they are (node-redis takes them as arguments).
    letters.map((l) => SCRIPT.run(redis, [target.streamKey, target.dlqStream], [target.group, l.id, ...deadLetterFields(target, l, now)] as string[])),
  );
  return replies.filter((r) => r !== null).length;
}

/** The field/value pairs of `l`'s dead-letter entry (its fields, then where and why it failed). */
export function deadLetterFields(target: DeadLetterTarget, l: StreamDeadLetter, now: string): Array<string | Buffer> {
  const args: Array<string | Buffer> = [];
  const pairs = l.raw ? [] : Object.entries(l.fields);
  if (l.raw && l.raw.length <= 2 * MAX_STREAM_FIELDS) {
    for (let i = 0; i + 1 < l.raw.length; i += 2) args.push(l.raw[i]!, l.raw[i + 1]!);
  } else if (l.raw) {
    args.push('dlq_fields', `${l.raw.length / 2} fields, not copied (too many for one script call)`);
  } else if (pairs.length > MAX_STREAM_FIELDS) {
    // Lua's unpack() takes ~8,000 values: a very wide entry travels as one JSON field.
    args.push('dlq_fields_json', JSON.stringify(l.fields));
  } else {
    for (const [k, v] of pairs) args.push(k, v);
  }
  args.push(
    'dlq_source_stream', target.streamKey,
    'dlq_source_id', l.id,
    'dlq_group', target.group,
    'dlq_error_code', l.code,
    'dlq_error', l.error,
    'dlq_deliveries', String(l.deliveries),
    'dlq_failed_at', now,
  );
  return args;
}
