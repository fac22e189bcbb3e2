// Regenerates the README's generated sections from their sources:
//   <!-- bench:start --> ... <!-- bench:end -->    from bench/results/*.json
//   <!-- config:start --> ... <!-- config:end -->  from the config schema (scripts/config-docs.mjs)
//   <!-- errors:start --> ... <!-- errors:end -->  from the error catalogue (src/errors.ts)
// and rewrites .env.example. Run: npm run bench:report  (after npm run build)
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

// The bench section: built from every result file by src/bench/report.ts (drain, ceiling,
// sustained rate, produce, sweep with its SVG charts); the first drain files read as they are.
const { readResults } = await import('../dist/bench/result.js');
const { benchReadmeSection } = await import('../dist/bench/report.js');
const { configSchema } = await import('../dist/config/schema.js');
const results = readResults('bench/results');
// "Default settings" in the summary means the config schema's defaults.
// The grid of settings the engine's defaults were chosen from (its own directory: not a sitting of the summary).
const gridDir = 'bench/results/defaults-grid';
const benchSection = benchReadmeSection(results, 'bench/results', configSchema.parse({}), { dir: gridDir, results: readResults(gridDir) });

function replaceSection(text, name, body) {
  const re = new RegExp(`(<!-- ${name}:start -->\\n)[\\s\\S]*?(<!-- ${name}:end -->)`);
  if (!re.test(text)) throw new Error(`README has no ${name} markers`);
  return text.replace(re, (_m, start, end) => `${start}${body.trimEnd()}\n${end}`); // a function: `$` in the body must stay literal
}

async function errorTable() {
  const { ERRORS } = await import('../dist/errors.js');
  const rows = ['| Code | Retry helps | Meaning |', '|---|---|---|'];
  for (const [code, def] of Object.entries(ERRORS)) rows.push(`| \`${code}\` | ${def.retryable ? 'yes' : 'no'} | ${def.description.replace(/\|/g, '\\|')} |`);
  return rows.join('\n');
}

const docs = (mode) => execFileSync(process.execPath, ['scripts/config-docs.mjs', mode], { encoding: 'utf8' });
let readme = readFileSync('README.md', 'utf8');
readme = replaceSection(readme, 'bench', benchSection);
readme = replaceSection(readme, 'config', docs('table'));
readme = replaceSection(readme, 'errors', await errorTable());
writeFileSync('README.md', readme);
writeFileSync('.env.example', docs('env'));
const byKind = {};
for (const r of results) byKind[r.result.bench] = (byKind[r.result.bench] ?? 0) + 1;
console.log(`README.md: bench results ${JSON.stringify(byKind)}; configuration and error tables and .env.example regenerated`);
