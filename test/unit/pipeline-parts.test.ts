/**
 * The pure parts of the pipeline API: the validate-event stage, the function sink, and
 * the option checks of pipeline(), consume() and the stream source (no server needed:
 * every one of these throws before connecting).
 */
import { describe, expect, it } from 'vitest';
import { consume, pipeline } from '../../src/api.js';
import type { BatchContext, Message } from '../../src/core/contracts.js';
import { isTributaryError } from '../../src/errors.js';
import { RawStreamEntry, type StreamEntry } from '../../src/redis/commands.js';
import { functionSink } from '../../src/sinks/function.js';
import { RedisStreamSource } from '../../src/sources/redis-stream.js';
import { validateEvents } from '../../src/stages/validate-event.js';

const ctx = (): BatchContext => ({ consumer: 'c-1', signal: new AbortController().signal, attempt: 0, state: {} });

function raw(id: string, fields: Record<string, string>): RawStreamEntry {
  return new RawStreamEntry(id, Object.entries(fields).flatMap(([k, v]) => [Buffer.from(k), Buffer.from(v)]));
}

function msg(entry: StreamEntry, deliveries = 1): Message<StreamEntry> {
  return { id: entry.id, body: entry, deliveries, bytes: 10 };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isTributaryError(err) ? err.code : `not coded: ${String(err)}`;
  }
  return undefined;
}

describe('validate-event stage', () => {
  const stage = validateEvents('s');

  it('first reads stay raw bytes for COPY; redeliveries are parsed as text with their JSON checked', async () => {
    const first = raw('1-0', { event_type: 't', payload: '{"a":1}', produced_at: '1700000000000' });
    const again: StreamEntry = { id: '2-0', fields: { event_type: 't', payload: '{"b":2}' } };
    const out = await stage.run([msg(first), msg(again, 2)], ctx());
    expect(out.rejected).toEqual([]);
    expect(out.keep.map((m) => m.id)).toEqual(['1-0', '2-0']);
    expect(Buffer.isBuffer(out.keep[0]!.body.payload)).toBe(true);
    expect(out.keep[0]!.producedAt).toBe(1_700_000_000_000);
    expect(out.keep[1]!.body).toMatchObject({ eventId: 's/2-0', eventType: 't', payload: '{"b":2}', producedAt: null });
  });

  it('rejects what breaks the contract with its code, keeps the rest in order', async () => {
    const batch = [
      msg(raw('1-0', { payload: '{}' })),
      msg(raw('2-0', { event_type: 't', payload: '{}' })),
      msg({ id: '3-0', fields: { event_type: 't', payload: 'nope' } }, 3),
      msg(raw('4-0', { event_type: 't', payload: '{}', produced_at: 'soon' })),
    ];
    const out = await stage.run(batch, ctx());
    expect(out.keep.map((m) => m.id)).toEqual(['2-0']);
    expect(out.rejected!.map((r) => [r.id, r.code])).toEqual([
      ['1-0', 'TRIB_ERR_ENTRY_MISSING_FIELD'],
      ['3-0', 'TRIB_ERR_ENTRY_BAD_PAYLOAD'],
      ['4-0', 'TRIB_ERR_ENTRY_BAD_FIELD'],
    ]);
  });
});

describe('function sink', () => {
  it('hands the batch to the handler in the view it asks for; rejected messages come back coded, the rest count as written', async () => {
    const seen: string[][] = [];
    const sink = functionSink<string, { id: string; text: string }>(
      async (batch, c) => {
        seen.push(batch.map((m) => m.text));
        c.reject(batch[1]!, new Error('no good'));
        c.reject('c', 'also bad');
      },
      (m) => ({ id: m.id, text: m.body }),
    );
    const r = await sink.write(
      ['a', 'b', 'c'].map((id) => ({ id, body: id.toUpperCase(), deliveries: 1, bytes: 1 })),
      ctx(),
    );
    expect(seen).toEqual([['A', 'B', 'C']]);
    expect(r.written).toBe(1);
    expect(r.rejected).toEqual([
      { id: 'b', code: 'TRIB_ERR_HANDLER_REJECTED', error: 'the handler rejected message b: no good' },
      { id: 'c', code: 'TRIB_ERR_HANDLER_REJECTED', error: 'the handler rejected message c: also bad' },
    ]);
  });

  it('rejecting a message that is not in the batch is an error (the batch is retried, nothing half-done)', async () => {
    const sink = functionSink<string, string>((_b, c) => c.reject('zz', 'x'), (m) => m.body);
    await expect(sink.write([{ id: 'a', body: 'a', deliveries: 1, bytes: 1 }], ctx())).rejects.toMatchObject({ code: 'TRIB_ERR_CONFIG_INVALID' });
  });

  it('a handler error is thrown to the runner (which retries)', async () => {
    const sink = functionSink<string, string>(() => Promise.reject(new Error('db down')), (m) => m.body);
    await expect(sink.write([{ id: 'a', body: 'a', deliveries: 1, bytes: 1 }], ctx())).rejects.toThrow('db down');
  });
});

describe('options are checked when a part is built, naming the option', () => {
  const source = () => new RedisStreamSource({ redisUrl: 'redis://127.0.0.1:1', key: 'k', group: 'g' });
  const sink = functionSink(() => {}, (m) => m);

  it('redis-stream source', () => {
    expect(codeOf(() => new RedisStreamSource({ redisUrl: 'redis://x', key: '', group: 'g' }))).toBe('TRIB_ERR_CONFIG_INVALID');
    expect(codeOf(() => new RedisStreamSource({ redisUrl: 'redis://x', key: 'k', group: 'g', startId: 'latest' }))).toBe('TRIB_ERR_CONFIG_INVALID');
  });

  it('pipeline()', () => {
    expect(codeOf(() => pipeline({ source: source(), sink, workers: 0 }))).toBe('TRIB_ERR_CONFIG_INVALID');
    expect(codeOf(() => pipeline({ source: source(), sink, consumer: 'has space' }))).toBe('TRIB_ERR_CONFIG_INVALID');
    expect(codeOf(() => pipeline({ source: source(), sink, batch: { maxCount: 0 } }))).toBe('TRIB_ERR_CONFIG_INVALID');
    expect(codeOf(() => pipeline({ source: source(), sink, blockMs: -1 }))).toBe('TRIB_ERR_CONFIG_INVALID');
    expect(codeOf(() => pipeline({ source: undefined as never, sink }))).toBe('TRIB_ERR_CONFIG_INVALID');
    expect(codeOf(() => pipeline({ source: source(), sink, workers: 3 }))).toBeUndefined();
  });

  it('consume() rejects before connecting', async () => {
    await expect(consume({ stream: '', group: 'g', redisUrl: 'redis://127.0.0.1:1' }, () => {})).rejects.toMatchObject({ code: 'TRIB_ERR_CONFIG_INVALID' });
    await expect(consume({ stream: 's', group: 'g', redisUrl: 'redis://127.0.0.1:1', batchSize: 0 }, () => {})).rejects.toMatchObject({ code: 'TRIB_ERR_CONFIG_INVALID' });
    await expect(consume({ stream: 's', group: 'g', redisUrl: 'redis://127.0.0.1:1' }, 'nope' as never)).rejects.toMatchObject({ code: 'TRIB_ERR_CONFIG_INVALID' });
  });
});
