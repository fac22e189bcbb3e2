// Regenerates the README's generated sections from their sources:
//   <!-- bench:start --> ... <!-- bench:end -->    from bench/results/*.json
//   <!-- config:start --> ... <!-- config:end -->  from the config schema (scripts/config-docs.mjs)
//   <!-- errors:start --> ... <!-- errors:end -->  from the error catalogue (src/errors.ts)
// and rewrites .env.example. Run: npm run bench:report  (after npm run build)
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

const results = readdirSync('bench/results')
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => ({ file: f, ...JSON.parse(readFileSync(`bench/results/${f}`, 'utf8')) }));

const drain = results.filter((r) => r.bench === 'drain');
const lines = [];
if (drain.length === 0) {
  lines.push('_No benchmark results yet: run `node bench/drain.mjs 100000`, then `npm run bench:report`._');
} else {
  lines.push('Drain: N events pre-loaded into the stream, then `tributary start` with default settings; time from spawning the engine to the last row committed.', '');
  lines.push('| Result file | Events | Workers × batch | Drain (events/s, incl. start-up) | Steady write rate (events/s) | Engine peak RSS | Machine |');
  lines.push('|---|---|---|---|---|---|---|');
  for (const r of drain) {
    const m = r.machine;
    lines.push(
      `| [${r.file}](bench/results/${r.file}) | ${r.figures.rows.toLocaleString('en-US')} | ${r.settings.numWorkers} × ${r.settings.batchSize} | ${r.figures.drainEventsPerSec.toLocaleString('en-US')} | ${r.figures.ingestEventsPerSec.toLocaleString('en-US')} | ${r.figures.enginePeakRssMiB} MiB | ${m.cores} cores, Node ${m.node}, Redis ${m.redis}, PostgreSQL ${String(m.postgres).split(' ')[0]} |`,
    );
  }
}

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
readme = replaceSection(readme, 'bench', lines.join('\n'));
readme = replaceSection(readme, 'config', docs('table'));
readme = replaceSection(readme, 'errors', await errorTable());
writeFileSync('README.md', readme);
writeFileSync('.env.example', docs('env'));
console.log(`README.md: ${drain.length} drain results; configuration and error tables and .env.example regenerated`);
