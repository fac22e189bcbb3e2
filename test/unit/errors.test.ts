import { describe, expect, it } from 'vitest';
import { ERRORS, TributaryError } from '../../src/errors.js';

describe('error catalogue', () => {
  it('names every code TRIB_ERR_<AREA>_<WHAT> and documents it', () => {
    for (const [code, def] of Object.entries(ERRORS)) {
      expect(code).toMatch(/^TRIB_ERR_[A-Z]+_[A-Z_]+$/);
      expect(def.description.length).toBeGreaterThan(10);
      expect(def.message.length).toBeGreaterThan(5);
    }
  });

  it('fills message templates and carries code and retryability', () => {
    const err = new TributaryError('TRIB_ERR_ENTRY_MISSING_FIELD', ['1-0', 'payload']);
    expect(err.message).toBe('entry 1-0 has no payload field');
    expect(err.code).toBe('TRIB_ERR_ENTRY_MISSING_FIELD');
    expect(err.retryable).toBe(false);
    expect(new TributaryError('TRIB_ERR_POSTGRES_UNAVAILABLE', ['x']).retryable).toBe(true);
  });
});
