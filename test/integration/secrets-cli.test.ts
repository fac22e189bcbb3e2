/**
 * Issue 11, item 9, from outside: what the built CLI prints and logs never holds a
 * password — a config error's echoed value, a URL that does not parse, a `?password=`
 * URL parameter in a connection error, and a password in any logged line.
 */
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, CLI, REPO } from '../helpers/child.js';

const SECRET = 'hunter2-s3cret';

function cli(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 12_000, env: { ...process.env, LOG_LEVEL: 'info' } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeAll(() => assertBuilt());

describe('the CLI never prints a password (issue 11, item 9)', () => {
  it('a config error echoes the value with its password masked', () => {
    const r = cli(['migrate', '--database-url', `mysql://app:${SECRET}@h/x`]);
    expect(r.status).toBe(2);
    expect(r.out).toContain('TRIB_ERR_CONFIG_INVALID');
    expect(r.out).toContain('mysql://app:***@h/x');
    expect(r.out).not.toContain(SECRET);
  });

  it('a URL that does not parse is masked, not printed whole', () => {
    const r = cli(['migrate', '--database-url', `postgres://app:${SECRET}@[bad/x`]);
    expect(r.status).toBe(2);
    expect(r.out).toContain('TRIB_ERR_CONFIG_INVALID');
    expect(r.out).not.toContain(SECRET);
  });

  it('a ?password= parameter is masked in a connection error', () => {
    const r = cli(['migrate', '--database-url', `postgres://app@127.0.0.1:1/x?password=${SECRET}`]);
    expect(r.status).toBe(2);
    expect(r.out).toContain('TRIB_ERR_POSTGRES_UNAVAILABLE');
    expect(r.out).toContain('password=***');
    expect(r.out).not.toContain(SECRET);
  });

  it('a logged line (message, error, field) has its passwords masked', () => {
    const output = pathToFileURL(resolve(REPO, 'dist/cli/output.js')).href;
    const script = `
      const { createLogger, print } = await import(${JSON.stringify(output)});
      const log = createLogger('info');
      log.error({ err: new Error('cannot reach postgres://u:${SECRET}@db/x'), url: 'redis://:${SECRET}@r:6379' }, 'lost postgres://u@db/x?password=${SECRET}');
      print('host=db password=${SECRET}');
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status).toBe(0);
    const out = `${r.stdout}${r.stderr}`;
    expect(out).toContain('lost postgres://u@db/x?password=***');
    expect(out).toContain('password=***');
    expect(out).not.toContain(SECRET);
  });
});
