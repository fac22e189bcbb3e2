import { describe, expect, it } from 'vitest';
import { TokenCheck } from '../../src/http/auth.js';
import { nestsDeeperThan } from '../../src/http/ingest.js';
import { mergeExposition } from '../../src/http/server.js';

describe('HTTP server parts', () => {
  it('nestsDeeperThan counts nesting of arrays and objects, and stops at the limit', () => {
    expect(nestsDeeperThan(1, 0)).toBe(false);
    expect(nestsDeeperThan('[[[', 0)).toBe(false);
    expect(nestsDeeperThan({}, 0)).toBe(true);
    expect(nestsDeeperThan({ a: [1, { b: 2 }] }, 3)).toBe(false);
    expect(nestsDeeperThan({ a: [1, { b: 2 }] }, 2)).toBe(true);
    expect(nestsDeeperThan([1, 2, [3, [4]]], 3)).toBe(false);
    expect(nestsDeeperThan([1, 2, [3, [4]]], 2)).toBe(true);
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(nestsDeeperThan(deep, 64)).toBe(true);
  });

  it('a token is accepted only whole, as a Bearer credential; none configured refuses all', () => {
    const check = new TokenCheck('s3cret-token-0123456789');
    expect(check.readOnly).toBe(false);
    expect(check.allows('Bearer s3cret-token-0123456789')).toBe(true);
    expect(check.allows('bearer  s3cret-token-0123456789 ')).toBe(true);
    for (const h of [undefined, '', 'Bearer', 'Bearer s3cret-token-012345678', 'Bearer s3cret-token-01234567890', 'Basic s3cret-token-0123456789', 's3cret-token-0123456789', 'Bearer s3cret-token-0123456789 extra']) {
      expect(check.allows(h), String(h)).toBe(false);
    }
    const none = new TokenCheck(undefined);
    expect(none.readOnly).toBe(true);
    expect(none.allows('Bearer anything')).toBe(false);
    expect(new TokenCheck('').readOnly).toBe(true);
  });

  it('mergeExposition keeps each metric family together with its HELP and TYPE once', () => {
    const a = '# HELP x_total X.\n# TYPE x_total counter\nx_total{pipeline="a"} 1\n# HELP y Y.\n# TYPE y gauge\ny{pipeline="a"} 2\n';
    const b = '# HELP x_total X.\n# TYPE x_total counter\nx_total{pipeline="b"} 3\n# HELP y Y.\n# TYPE y gauge\ny{pipeline="b"} 4\n';
    expect(mergeExposition([a, b])).toBe(
      '# HELP x_total X.\n# TYPE x_total counter\nx_total{pipeline="a"} 1\nx_total{pipeline="b"} 3\n# HELP y Y.\n# TYPE y gauge\ny{pipeline="a"} 2\ny{pipeline="b"} 4\n',
    );
  });
});
