/**
 * README's "Coming from the originals" (issue 10): every command of the two projects
 * Tributary replaces has a row, and every Tributary command in it exists, with the flags
 * it shows (checked against the built CLI's --help) or as a verb of ./run.sh.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, CLI, REPO } from '../helpers/child.js';

const run = promisify(execFile);

/** The originals' commands, as their READMEs give them. */
const ORIGINALS = [
  // The Python Redis Streams engine.
  './run.sh start', './run.sh produce 1000', './run.sh monitor', './run.sh monitor 10', './run.sh test',
  './run.sh benchmark 10000 60', './run.sh clean', 'docker-compose up -d', 'docker-compose down', 'docker-compose logs -f streaming-app',
  'uv sync', 'uv run python -m src.main', 'uv run pytest tests/ -v', 'redis-cli XLEN events', 'redis-cli XINFO GROUPS events',
  'SELECT COUNT(*) FROM events;', 'SELECT * FROM dead_letter_queue ORDER BY failed_at DESC LIMIT 10;',
  'producer.produce(...)', 'producer.produce_batch(...)', 'monitor.get_stream_length()',
  // The Redis + Postgres orders pipeline.
  './run.sh demo', './run.sh benchmark', './run.sh benchmark 500000', 'python -m src.cli init-cache --all',
  'python -m src.cli generate --count 10000 --duplicates 0.05', 'python -m src.cli generate --count 5000 --burst',
  'python -m src.cli process --workers 1 --iterations 10', 'python -m src.cli process --iterations 5 --batch-size 1000',
  'python -m src.cli promote', 'python -m src.cli stats', 'stats --watch', 'python -m src.cli benchmark --total 100000 --batch-size 5000',
  'python -m src.cli clear --cache', '--dedup', '--all', 'SHOW POOLS;',
];

/** The run.sh verbs it handles itself; any other is passed to the CLI. */
const RUN_SH_VERBS = ['', 'demo', 'orders-demo', 'test', 'help'];

function tableRows(): { original: string; ours: string }[] {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const start = readme.indexOf('### Coming from the originals');
  expect(start, 'README has a "Coming from the originals" section').toBeGreaterThan(0);
  const section = readme.slice(start, readme.indexOf('\n## ', start));
  return section
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => {
      const cells = l.replace(/\\\|/g, '\u0000').split(' | ').map((c) => c.replace(/\u0000/g, '|'));
      return { original: cells[0]!.slice(2), ours: cells[1]! };
    });
}

const spans = (text: string) => [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

beforeAll(() => assertBuilt());

describe('README: the originals mapped to Tributary', () => {
  it('has a row for every original command', () => {
    const originals = tableRows().map((r) => r.original).join('\n');
    for (const command of ORIGINALS) expect(originals, `no row for ${command}`).toContain(command);
  });

  it('every Tributary command in it exists with the flags it shows', async () => {
    const commands = tableRows().flatMap((r) => spans(r.ours)).filter((c) => /^(tributary|\.\/run\.sh)(\s|$)/.test(c));
    expect(commands.length).toBeGreaterThan(20);
    const runSh = readFileSync(join(REPO, 'run.sh'), 'utf8');
    // The flags each command path is shown with; each path's --help is read once.
    const flagsByPath = new Map<string, Set<string>>();
    for (const command of commands) {
      const words = command.split(/\s+/);
      if (words[0] === './run.sh' && RUN_SH_VERBS.includes(words[1] ?? '')) {
        const verb = words[1] ?? '';
        expect(runSh, `run.sh handles ${verb}`).toContain(verb === '' ? "  '')" : `  ${verb})`);
        continue;
      }
      const args = words.slice(1);
      // Positional numbers (produce 1000) and flag values (--workers 1) are not part of the path.
      const path = args.filter((a) => !a.startsWith('-') && !/^[\d.]+$/.test(a)).join(' ');
      const flags = flagsByPath.get(path) ?? new Set<string>();
      for (const a of args) if (a.startsWith('--')) flags.add(a);
      flagsByPath.set(path, flags);
    }
    await Promise.all(
      [...flagsByPath].map(async ([path, flags]) => {
        const { stdout } = await run(process.execPath, [CLI, ...path.split(' ').filter(Boolean), '--help'], { cwd: REPO });
        const usage = path === 'benchmark' ? 'bench|benchmark' : path;
        expect(stdout.split('\n')[0], path).toMatch(new RegExp(`^Usage: tributary ${usage.replace(/\|/g, '\\|')}( |$)`));
        for (const flag of flags) expect(stdout, `${path}: ${flag}`).toMatch(new RegExp(`${flag}\\b`));
      }),
    );
  });
});
