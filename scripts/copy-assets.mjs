// Copies non-TypeScript assets (SQL migrations, Lua scripts, the built-in pipeline file) next to the compiled code.
import { cpSync, mkdirSync } from 'node:fs';
for (const dir of ['postgres/migrations', 'redis/scripts', 'orders/migrations', 'pipeline-file/builtin']) {
  mkdirSync(`dist/${dir}`, { recursive: true });
  cpSync(`src/${dir}`, `dist/${dir}`, { recursive: true });
}
