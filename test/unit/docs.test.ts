import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../../src/config/schema.js';
import { ERRORS } from '../../src/errors.js';

const readme = readFileSync('README.md', 'utf8');
const envExample = readFileSync('.env.example', 'utf8');

describe('documentation stays true', () => {
  it('README and .env.example document every setting', () => {
    for (const spec of Object.values(SETTINGS)) {
      expect(readme, `README lacks ${spec.env}`).toContain(`| \`${spec.env}\` |`);
      expect(envExample, `.env.example lacks ${spec.env}`).toMatch(new RegExp(`^# ${spec.env}=`, 'm'));
    }
  });

  it('README lists every error code with its retryability and description', () => {
    for (const [code, def] of Object.entries(ERRORS)) {
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
      expect(row, `README lacks ${code}`).toBeDefined();
      expect(row).toContain(`| ${def.retryable ? 'yes' : 'no'} |`);
    }
    const documented = [...readme.matchAll(/^\| `(TRIB_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(ERRORS).sort());
  });

  it('README links only to files inside the repository, and they exist', () => {
    const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^(https?:|mailto:|#)/.test(t));
    expect(targets.length).toBeGreaterThan(0);
    for (const t of targets) {
      const path = t.split('#')[0]!;
      expect(path.startsWith('../') || path.startsWith('/'), `README links outside the repository: ${t}`).toBe(false);
      expect(existsSync(path), `README links to a missing file: ${t}`).toBe(true);
    }
  });

  it('README quick start shows the two commands', () => {
    expect(readme).toContain('./run.sh demo');
    expect(readme).toContain('./run.sh test');
  });
});
