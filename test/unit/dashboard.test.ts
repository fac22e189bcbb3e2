import { describe, expect, it } from 'vitest';
import { ClientOfflineError } from '@redis/client';
import { TributaryError } from '../../src/errors.js';
import { dashboardError, deadLettersGrowing, type SeriesPoint } from '../../src/http/dashboard.js';
import { HttpError } from '../../src/http/errors.js';
import { groupStreamKeys } from '../../src/observability/discover.js';

describe('groupStreamKeys', () => {
  it('puts partition keys under their logical stream, in partition order', () => {
    expect(groupStreamKeys(['orders', 'events:p1', 'events:p0', 'events:p2'])).toEqual([
      { stream: 'events', keys: ['events:p0', 'events:p1', 'events:p2'], partitioned: true },
      { stream: 'orders', keys: ['orders'], partitioned: false },
    ]);
  });

  it('leaves alone a key that only looks like a partition: the base is a stream itself, or the suffix is not a partition number', () => {
    expect(groupStreamKeys(['a', 'a:p0', 'b:p01', 'c:px'])).toEqual([
      { stream: 'a', keys: ['a'], partitioned: false },
      { stream: 'a:p0', keys: ['a:p0'], partitioned: false },
      { stream: 'b:p01', keys: ['b:p01'], partitioned: false },
      { stream: 'c:px', keys: ['c:px'], partitioned: false },
    ]);
  });
});

describe('dashboardError', () => {
  const url = 'postgres://root:hunter2-secret@db.internal:5432/tributary';

  it('answers an outage with 503, its code and what to do; never the driver text, host or password', () => {
    const cases: Array<[unknown, string]> = [
      [new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', ['cannot connect to redis://:pw@host:6379: connect ECONNREFUSED']), 'TRIB_ERR_REDIS_UNAVAILABLE'],
      [new ClientOfflineError(), 'TRIB_ERR_REDIS_UNAVAILABLE'],
      [Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), { code: 'ECONNREFUSED' }), 'TRIB_ERR_POSTGRES_UNAVAILABLE'],
      [Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }), 'TRIB_ERR_POSTGRES_UNAVAILABLE'],
      [Object.assign(new Error('password authentication failed for user "root"'), { code: '28P01' }), 'TRIB_ERR_POSTGRES_AUTH'],
      [Object.assign(new Error('relation "x.dead_letter_queue" does not exist'), { code: '42P01' }), 'TRIB_ERR_POSTGRES_TABLE_MISSING'],
    ];
    for (const [err, code] of cases) {
      const e = dashboardError(err, url)!;
      expect(e.code, String(err)).toBe(code);
      expect(e.status).toBe(503);
      expect(e.message).not.toMatch(/ECONNREFUSED|hunter2|db\.internal|10\.0\.0\.5|relation|password authentication/);
    }
  });

  it('a missing group is 404 with the command to run; a bad setting 400; a dead letter not found 404', () => {
    expect(dashboardError(new TributaryError('TRIB_ERR_GROUP_NOT_FOUND', ['g', 's']), url)).toMatchObject({ status: 404, message: expect.stringContaining('tributary start') });
    expect(dashboardError(new TributaryError('TRIB_ERR_CONFIG_INVALID', ['--idle', 'must be a number']), url)).toMatchObject({ status: 400, code: 'TRIB_ERR_HTTP_BAD_REQUEST' });
    expect(dashboardError(new TributaryError('TRIB_ERR_DLQ_NOT_FOUND', [7, 's', 'g', 'public']), url)).toMatchObject({ status: 404, code: 'TRIB_ERR_DLQ_NOT_FOUND' });
  });

  it('passes an HttpError through and leaves an unknown failure to the server (500, logged)', () => {
    const http = new HttpError(400, 'TRIB_ERR_HTTP_BAD_REQUEST', ['x']);
    expect(dashboardError(http, url)).toBe(http);
    expect(dashboardError(new TypeError('x is undefined'), url)).toBeUndefined();
  });
});

describe('deadLettersGrowing', () => {
  const point = (t: number, deadLetters: number): SeriesPoint => ({ t, produced: null, written: null, lag: null, deadLetters });

  it('stays on for a minute after a rise, then goes off', () => {
    const rise = [point(0, 1), point(1000, 1), point(2000, 3)];
    expect(deadLettersGrowing(rise, 2000)).toBe(true);
    expect(deadLettersGrowing([...rise, point(61_000, 3)], 61_000)).toBe(true); // the 1 at 1 s is still in the last minute
    expect(deadLettersGrowing([...rise, point(62_000, 3)], 62_000)).toBe(false);
  });

  it('a flat line, a fall (a purge) or no points is no growth', () => {
    expect(deadLettersGrowing([point(0, 5), point(1000, 5)], 1000)).toBe(false);
    expect(deadLettersGrowing([point(0, 5), point(1000, 0)], 1000)).toBe(false);
    expect(deadLettersGrowing([], 0)).toBe(false);
  });
});
