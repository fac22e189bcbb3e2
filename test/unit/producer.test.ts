import { describe, expect, it } from 'vitest';
import { parseEntry } from '../../src/core/entry.js';
import { isTributaryError } from '../../src/errors.js';
import { eventFields } from '../../src/producer/producer.js';
import { sampleEvent, SAMPLE_EVENT_TYPES } from '../../src/producer/sample.js';

describe('eventFields', () => {
  it('fills a UUIDv7 event_id and produced_at, and round-trips through the consumer parser', () => {
    const f = eventFields('order_placed', { total: 1 }, { producedAt: 1700000000000 });
    expect(f.event_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(f.produced_at).toBe('1700000000000');
    const parsed = parseEntry({ id: '1-0', fields: f }, 'events');
    expect(parsed.ok && parsed.row).toMatchObject({ eventType: 'order_placed', payload: '{"total":1}', producedAt: 1700000000000 });
  });

  it('UUIDv7 IDs sort by time', () => {
    const a = eventFields('t', {}).event_id!;
    const b = eventFields('t', {}).event_id!;
    expect(a < b).toBe(true);
  });

  it.each([
    ['', {}],
    ['t', undefined],
    ['t', () => 1],
  ])('rejects type %j / payload %s', (type, payload) => {
    try {
      eventFields(type, payload);
      throw new Error('expected an error');
    } catch (err) {
      expect(isTributaryError(err, 'TRIB_ERR_PRODUCE_INVALID')).toBe(true);
    }
  });

  it('rejects a circular payload with a coded error', () => {
    const a: Record<string, unknown> = {};
    a.self = a;
    expect(() => eventFields('t', a)).toThrow(/JSON-serialisable/);
  });
});

describe('sampleEvent', () => {
  it('produces all five types with JSON payloads', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const e = sampleEvent();
      seen.add(e.type);
      expect(JSON.parse(JSON.stringify(e.payload))).toEqual(e.payload);
    }
    expect([...seen].sort()).toEqual([...SAMPLE_EVENT_TYPES].sort());
  });
});
