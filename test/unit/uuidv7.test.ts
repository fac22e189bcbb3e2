import { describe, expect, it, vi } from 'vitest';
import { uuidv7, writeUuidv7 } from '../../src/producer/uuidv7.js';

const SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('uuidv7', () => {
  it('has the RFC 9562 layout: version 7, variant 10, the time in the first 48 bits', () => {
    const before = Date.now();
    const id = uuidv7();
    const after = Date.now();
    expect(id).toMatch(SHAPE);
    const ms = Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);
    expect(ms).toBeGreaterThanOrEqual(before);
    expect(ms).toBeLessThanOrEqual(after + 1);
  });

  it('is strictly increasing and unique over 200,000 IDs (several random-pool refills)', () => {
    let last = '';
    let outOfOrder = 0;
    const seen = new Set<string>();
    for (let i = 0; i < 200_000; i++) {
      const id = uuidv7();
      if (!(id > last)) outOfOrder++;
      seen.add(id);
      last = id;
    }
    expect(outOfOrder).toBe(0);
    expect(seen.size).toBe(200_000);
  });

  it('stays increasing when more than 4,096 IDs fall in one millisecond, or the clock steps back', () => {
    const now = vi.spyOn(Date, 'now').mockReturnValue(4_102_444_800_000); // 2100-01-01
    try {
      const ids = Array.from({ length: 10_000 }, () => uuidv7());
      now.mockReturnValue(4_102_444_799_000); // a second back
      ids.push(uuidv7());
      for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true);
      for (const id of ids) expect(id).toMatch(SHAPE);
    } finally {
      now.mockRestore();
    }
  });

  it('writeUuidv7 writes the same 36 characters into a buffer, nothing around them', () => {
    const buf = Buffer.alloc(40, 0x2e);
    expect(writeUuidv7(buf, 2)).toBe(38);
    expect(buf.toString('latin1', 2, 38)).toMatch(SHAPE);
    expect(buf.toString('latin1', 0, 2) + buf.toString('latin1', 38)).toBe('....');
  });
});
