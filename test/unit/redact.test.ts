/**
 * Issue 11, item 9: a password never appears in anything Tributary prints, logs or
 * serves. The pure parts: redactUrl, redactSecrets, and the config error that echoes a
 * setting's value.
 */
import { describe, expect, it } from 'vitest';
import { redactSecrets, redactUrl, resolveConfig } from '../../src/config/index.js';
import { TributaryError } from '../../src/errors.js';

const SECRET = 'hunter2';

describe('redactUrl', () => {
  it('masks the password of the user info', () => {
    expect(redactUrl(`postgres://app:${SECRET}@db.example:5432/x`)).toBe('postgres://app:***@db.example:5432/x');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });

  it('masks ?password= and ?sslpassword= query parameters, keeping the others', () => {
    const out = redactUrl(`postgres://app@db:5432/x?sslmode=require&password=${SECRET}&sslpassword=${SECRET}`);
    expect(out).not.toContain(SECRET);
    expect(out).toContain('sslmode=require');
    expect(out).toContain('password=***');
    expect(out).toContain('sslpassword=***');
  });

  it('masks a URL that does not parse instead of returning it whole', () => {
    for (const bad of [`postgres://app:${SECRET}@[bad/x`, `postgres://app:${SECRET}@host:notaport/x`, `postgres://app@[bad/x?password=${SECRET}`]) {
      const out = redactUrl(bad);
      expect(out, bad).not.toContain(SECRET);
      expect(out).toContain('***');
    }
  });
});

describe('redactSecrets', () => {
  it('masks every URL in a text and leaves URLs without secrets exactly as written', () => {
    const text = `cannot connect to redis://:${SECRET}@r:6379 or postgres://u:${SECRET}@p/x?password=${SECRET} (see http://127.0.0.1:9090)`;
    const out = redactSecrets(text);
    expect(out).not.toContain(SECRET);
    expect(out).toContain('redis://:***@r:6379');
    expect(out).toContain('(see http://127.0.0.1:9090)');
    expect(redactSecrets('no secret here: redis://127.0.0.1:6379, done')).toBe('no secret here: redis://127.0.0.1:6379, done');
  });

  it('masks libpq keyword strings (password=...)', () => {
    expect(redactSecrets(`host=db user=app password=${SECRET} dbname=x`)).toBe('host=db user=app password=*** dbname=x');
    expect(redactSecrets(`password='${SECRET} two'`)).not.toContain(SECRET);
  });
});

describe('config errors never echo a password (issue 11, item 9)', () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['a postgres URL with the wrong scheme', { databaseUrl: `mysql://app:${SECRET}@h/x` }],
    ['a postgres URL that does not parse', { databaseUrl: `postgres://app:${SECRET}@[bad/x` }],
    ['a redis URL with the wrong scheme', { redisUrl: `http://:${SECRET}@h:6379` }],
    ['a redis URL that does not parse', { redisUrl: `redis://:${SECRET}@h:port` }],
    ['?password= in a URL that does not parse', { databaseUrl: `postgres://app@[bad/x?password=${SECRET}` }],
  ];
  for (const [label, overrides] of cases) {
    it(label, () => {
      let err: unknown;
      try {
        resolveConfig({ envFile: false, overrides });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TributaryError);
      expect((err as TributaryError).code).toBe('TRIB_ERR_CONFIG_INVALID');
      expect((err as Error).message).toContain('(got "');
      expect((err as Error).message).not.toContain(SECRET);
    });
  }
});
