/**
 * Errors that are not outages (issue 11, item 5): the pure classification of a
 * Postgres error by SQLSTATE, and how server health reports a fault (once per cause).
 */
import { describe, expect, it } from 'vitest';
import { faultOf, isFault } from '../../src/core/faults.js';
import { ServerHealth } from '../../src/core/retry.js';
import { evictionWarning } from '../../src/redis/eviction.js';
import { ERRORS, TributaryError } from '../../src/errors.js';

const pgError = (code: string, message = `error ${code}`) => Object.assign(new Error(message), { code });

describe('faultOf', () => {
  it.each([
    ['42P01', 'TRIB_ERR_POSTGRES_TABLE_MISSING'],
    ['3F000', 'TRIB_ERR_POSTGRES_TABLE_MISSING'],
    ['42501', 'TRIB_ERR_POSTGRES_PERMISSION'],
    ['25006', 'TRIB_ERR_POSTGRES_READ_ONLY'],
    ['53100', 'TRIB_ERR_POSTGRES_DISK_FULL'],
  ])('SQLSTATE %s from Postgres is %s, retryable (held, not dead-lettered), naming the server message and SQLSTATE', (sqlstate, code) => {
    const fault = faultOf('postgres', pgError(sqlstate, 'relation "events" does not exist'));
    expect(fault?.code).toBe(code);
    expect(fault?.retryable).toBe(true);
    expect(fault?.message).toContain('relation "events" does not exist');
    expect(fault?.message).toContain(`[SQLSTATE ${sqlstate}]`);
    expect(isFault(fault)).toBe(true);
    expect(ERRORS[fault!.code].retryable).toBe(true);
  });

  it('is not a fault: an outage (no SQLSTATE, class 08, 57P01), a row-content error, a deadlock, another server', () => {
    expect(faultOf('postgres', new Error('Connection terminated unexpectedly'))).toBeUndefined();
    expect(faultOf('postgres', pgError('08006'))).toBeUndefined();
    expect(faultOf('postgres', pgError('57P01'))).toBeUndefined();
    expect(faultOf('postgres', pgError('22P02'))).toBeUndefined();
    expect(faultOf('postgres', pgError('40P01'))).toBeUndefined();
    // Only errors of a step attributed to Postgres: Redis has no SQLSTATEs.
    expect(faultOf('redis', pgError('42501'))).toBeUndefined();
    expect(faultOf(undefined, pgError('42501'))).toBeUndefined();
    expect(faultOf('postgres', null)).toBeUndefined();
    expect(isFault(new TributaryError('TRIB_ERR_POSTGRES_UNAVAILABLE', ['down']))).toBe(false);
  });

  it('keeps an error already coded as a fault as it is', () => {
    const coded = new TributaryError('TRIB_ERR_POSTGRES_DISK_FULL', ['x', '53100']);
    expect(faultOf('redis', coded)).toBe(coded);
  });
});

describe('ServerHealth with faults', () => {
  it('reports a fault once with its code, again only when the cause changes, and up once it is cured', () => {
    const events: Array<{ up: boolean; code?: string }> = [];
    const health = new ServerHealth(({ up, error }) => events.push({ up, code: (error as { code?: string } | undefined)?.code }));
    health.failed('postgres', new Error('Connection terminated unexpectedly')); // an outage first
    expect(health.fault('postgres')).toBeUndefined();
    health.failed('postgres', pgError('25006')); // it answers again, read-only
    health.failed('postgres', pgError('25006'));
    health.failed('postgres', new Error('Connection terminated unexpectedly')); // no new report for an outage
    expect(health.fault('postgres')?.code).toBe('TRIB_ERR_POSTGRES_READ_ONLY');
    health.failed('postgres', pgError('42501'));
    health.ok('postgres');
    expect(health.fault('postgres')).toBeUndefined();
    expect(events).toEqual([
      { up: false, code: undefined },
      { up: false, code: 'TRIB_ERR_POSTGRES_READ_ONLY' },
      { up: false, code: 'TRIB_ERR_POSTGRES_PERMISSION' },
      { up: true, code: undefined },
    ]);
  });
});

describe('evictionWarning', () => {
  it('warns for allkeys-* policies (any key may go, unread streams included), not for noeviction or volatile-*', () => {
    expect(evictionWarning('allkeys-lru', 1024)).toMatch(/^Redis maxmemory-policy is allkeys-lru: at maxmemory \(1024 bytes\) Redis may evict any key/);
    expect(evictionWarning('allkeys-random', 0)).toMatch(/once maxmemory is set/);
    expect(evictionWarning('allkeys-lfu', 1)).toContain('use noeviction');
    expect(evictionWarning('noeviction', 1024)).toBeUndefined();
    expect(evictionWarning('volatile-lru', 1024)).toBeUndefined();
    expect(evictionWarning('volatile-ttl', 0)).toBeUndefined();
  });
});
