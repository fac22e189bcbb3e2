// Prints the configuration documentation generated from src/config/schema.ts (built into dist/):
//   node scripts/config-docs.mjs env    -> .env.example
//   node scripts/config-docs.mjs table  -> the README's configuration table
import { configSchema, SECRET_SETTINGS, SETTINGS } from '../dist/config/schema.js';

const defaults = configSchema.parse({});
const shown = (key) => (key === 'consumerName' ? '(host-pid-random)' : defaults[key] === undefined ? '(unset)' : String(defaults[key]));
const mode = process.argv[2];
if (mode === 'env') {
  const lines = ['# Tributary settings. Copy to .env and uncomment what you change; real environment variables win over this file.', ''];
  for (const [key, spec] of Object.entries(SETTINGS)) {
    lines.push(SECRET_SETTINGS.includes(key) ? `# ${spec.doc}` : `# ${spec.doc} Flag: --${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
    lines.push(`# ${spec.env}=${key === 'consumerName' || defaults[key] === undefined ? '' : shown(key)}`, '');
  }
  process.stdout.write(lines.join('\n'));
} else if (mode === 'table') {
  const rows = ['| Variable | Flag | Default | Meaning |', '|---|---|---|---|'];
  for (const [key, spec] of Object.entries(SETTINGS)) {
    const flag = SECRET_SETTINGS.includes(key) ? '(none)' : `\`--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}\``;
    rows.push(`| \`${spec.env}\` | ${flag} | \`${shown(key)}\` | ${spec.doc.replace(/\|/g, '\\|')} |`);
  }
  process.stdout.write(rows.join('\n') + '\n');
} else {
  console.error('usage: node scripts/config-docs.mjs env|table');
  process.exit(2);
}
