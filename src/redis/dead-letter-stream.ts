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
    letters.map((l) => {
      const args = [target.group, l.id];
      const pairs = Object.entries(l.fields);
      if (pairs.length > MAX_STREAM_FIELDS) {
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
      return SCRIPT.run(redis, [target.streamKey, target.dlqStream], args);
    }),
  );
  return replies.filter((r) => r !== null).length;
}
