/**
 * Helpers for the partitioned-stream tests: events routed to their partition by key (as a
 * producer does: partitionOf(key, N)), each carrying its key and a per-key sequence, and
 * the checks on what Postgres holds (every event once, per key in sequence order).
 */
import { quoteIdent, type PgPool } from '../../src/postgres/pool.js';
import { partitionFenceKey, partitionLeaseKey, partitionMembersKey, partitionOf, partitionStreamKey, partitionDeadLetterKey } from '../../src/redis/partitions.js';
import type { RedisConnection } from '../../src/redis/client.js';

export interface RoutedEvent {
  key: string;
  seq: number;
  eventId: string;
}

/** `count` events over `keys` keys, round-robin, each key's sequence counting from 1. */
export function keyedEvents(prefix: string, count: number, keys: number): RoutedEvent[] {
  const seqs = new Array<number>(keys).fill(0);
  return Array.from({ length: count }, (_, i) => {
    const k = i % keys;
    const seq = ++seqs[k]!;
    const key = `${prefix}-k${k}`;
    return { key, seq, eventId: `${key}-${seq}` };
  });
}

/**
 * XADDs the events to their partitions (`partitionOf(key, n)`), `chunk` at a time in
 * flight (node-redis pipelines them on its connection; one key's events stay in order).
 */
export async function produceRouted(redis: RedisConnection, stream: string, n: number, events: readonly RoutedEvent[], chunk = 1000): Promise<void> {
  for (let i = 0; i < events.length; i += chunk) {
    await Promise.all(
      events.slice(i, i + chunk).map((e) =>
        redis.sendCommand([
          'XADD',
          partitionStreamKey(stream, partitionOf(e.key, n), n),
          '*',
          'event_type',
          'keyed',
          'event_id',
          e.eventId,
          'payload',
          JSON.stringify({ key: e.key, seq: e.seq }),
        ]),
      ),
    );
  }
}

/**
 * Rows, distinct event IDs, and the keys whose rows were not written in sequence order:
 * the write order is ingested_at (the time of the batch's transaction), then the stream ID
 * (one key's events share a partition, so their stream IDs are comparable).
 */
export async function orderAudit(pool: PgPool, schema: string): Promise<{ rows: number; distinct: number; outOfOrder: string[]; keys: number }> {
  const r = await pool.query<{ event_id: string; key: string; seq: number; stream_id: string }>(
    `SELECT event_id, payload->>'key' AS key, (payload->>'seq')::int AS seq, stream_id FROM ${quoteIdent(schema)}.events ` +
      `ORDER BY ingested_at, split_part(stream_id, '-', 1)::bigint, split_part(stream_id, '-', 2)::bigint`,
  );
  const last = new Map<string, { seq: number; streamId: string }>();
  const outOfOrder: string[] = [];
  for (const row of r.rows) {
    const before = last.get(row.key);
    if (before && row.seq <= before.seq) outOfOrder.push(`${row.key}: seq ${before.seq} (${before.streamId}) written before seq ${row.seq} (${row.stream_id})`);
    last.set(row.key, { seq: row.seq, streamId: row.stream_id });
  }
  return { rows: r.rows.length, distinct: new Set(r.rows.map((x) => x.event_id)).size, outOfOrder, keys: last.size };
}

/** Entries pending in the group over every partition. */
export async function pendingAll(redis: RedisConnection, stream: string, group: string, n: number): Promise<number> {
  let total = 0;
  for (let i = 0; i < n; i++) {
    try {
      const reply = (await redis.sendCommand(['XPENDING', partitionStreamKey(stream, i, n), group])) as unknown[];
      total += Number(reply[0] ?? 0);
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('NOGROUP'))) throw err;
    }
  }
  return total;
}

/** Every key a partitioned stream leaves behind: partitions, their dead letters, leases, fences, members. */
export function partitionKeys(stream: string, group: string, n: number): string[] {
  const keys = [partitionMembersKey(stream, group)];
  for (let i = 0; i < n; i++) {
    keys.push(partitionStreamKey(stream, i, n), partitionDeadLetterKey(stream, '', i, n), partitionLeaseKey(stream, group, i, n), partitionFenceKey(stream, group, i, n));
  }
  return keys;
}
