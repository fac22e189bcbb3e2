import { describe, expect, it } from 'vitest';
import { parseEntry } from '../../src/core/entry.js';

const entry = (fields: Record<string, string>, id = '1700000000000-0') => ({ id, fields });

describe('parseEntry (the stream contract)', () => {
  it('accepts a full entry and keeps the payload text as given', () => {
    const payload = '{"order_id":"o1","total":12.5}';
    const parsed = parseEntry(entry({ event_type: 'order_placed', payload, event_id: 'e-1', produced_at: '1700000000123' }), 'events');
    expect(parsed).toEqual({
      ok: true,
      row: { eventId: 'e-1', eventType: 'order_placed', payload, streamId: '1700000000000-0', producedAt: 1700000000123 },
      // The payload as parsed once while checking it, for stages that map it.
      value: { order_id: 'o1', total: 12.5 },
    });
  });

  it('keys an entry without event_id by its stream and entry ID, and null produced_at when absent', () => {
    const parsed = parseEntry(entry({ event_type: 't', payload: '[]' }, '5-3'), 'events:eu');
    expect(parsed.ok && parsed.row).toMatchObject({ eventId: 'events:eu/5-3', streamId: '5-3', producedAt: null });
    // The same entry ID on another stream is another event.
    const other = parseEntry(entry({ event_type: 't', payload: '[]' }, '5-3'), 'events:us');
    expect(other.ok && other.row.eventId).toBe('events:us/5-3');
  });

  it('accepts any JSON value as payload', () => {
    for (const payload of ['1', '"s"', 'null', 'true', '[1,2]', ' {"a":1} ']) {
      expect(parseEntry(entry({ event_type: 't', payload }), 'events').ok).toBe(true);
    }
  });

  it.each([
    [{ payload: '{}' }, 'TRIB_ERR_ENTRY_MISSING_FIELD', /event_type/],
    [{ event_type: '', payload: '{}' }, 'TRIB_ERR_ENTRY_MISSING_FIELD', /event_type/],
    [{ event_type: 't' }, 'TRIB_ERR_ENTRY_MISSING_FIELD', /payload/],
    [{ event_type: 't', payload: '' }, 'TRIB_ERR_ENTRY_MISSING_FIELD', /payload/],
    [{ event_type: 't', payload: '{not json' }, 'TRIB_ERR_ENTRY_BAD_PAYLOAD', /JSON|property/],
    [{ event_type: 't', payload: '{}', produced_at: 'yesterday' }, 'TRIB_ERR_ENTRY_BAD_FIELD', /produced_at/],
    [{ event_type: 't', payload: '{}', produced_at: '-5' }, 'TRIB_ERR_ENTRY_BAD_FIELD', /produced_at/],
    [{ event_type: 't', payload: '{}', produced_at: '1e20' }, 'TRIB_ERR_ENTRY_BAD_FIELD', /produced_at/],
    [{ event_type: 't', payload: '{}', event_id: '' }, 'TRIB_ERR_ENTRY_BAD_FIELD', /event_id/],
    [{ event_type: 't', payload: '{}', event_id: 'x'.repeat(513) }, 'TRIB_ERR_ENTRY_BAD_FIELD', /event_id/],
  ])('rejects %j with %s', (fields, code, text) => {
    const parsed = parseEntry(entry(fields as Record<string, string>), 'events');
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.problem.code).toBe(code);
      expect(parsed.problem.args.join(' ')).toMatch(text);
    }
  });
});

describe('replay chunking', () => {
  it('splits rows into statements of at most maxBytes, a larger row alone', async () => {
    const { chunksByBytes } = await import('../../src/ops/replay.js');
    const row = (n: number, size: number) => ({ eventId: `e${n}`, eventType: 't', payload: 'x'.repeat(size), streamId: `${n}-0`, producedAt: null });
    const rows = [row(1, 40), row(2, 40), row(3, 40), row(4, 500), row(5, 10)];
    const chunks = chunksByBytes(rows, 100);
    expect(chunks.map((c) => c.map((r) => r.eventId))).toEqual([['e1', 'e2'], ['e3'], ['e4'], ['e5']]);
    expect(chunksByBytes([], 100)).toEqual([]);
    expect(chunksByBytes(rows, 1e9)).toHaveLength(1);
  });
});
