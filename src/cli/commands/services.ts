import type { Command } from 'commander';
import { join } from 'node:path';
import { readEnvFile, redactUrl } from '../../config/index.js';
import { servicesDown, servicesUp } from '../../services/index.js';
import { print } from '../output.js';

export function registerServices(program: Command): void {
  program
    .command('up')
    .description('find or start Redis and Postgres (REDIS_URL/DATABASE_URL, else local defaults, else project-local servers under .tributary/)')
    .action(async () => {
      const result = await servicesUp({ env: envWithDotenv(), onProgress: (m) => print(m) });
      print(`redis:    ${redactUrl(result.redis.url)} (${result.redis.source}${result.redis.managed ? ', started by tributary up' : ''})`);
      print(`postgres: ${redactUrl(result.postgres.url)} (${result.postgres.source}${result.postgres.managed ? ', started by tributary up' : ''})`);
    });
  program
    .command('down')
    .description('stop the servers that `tributary up` started (never others)')
    .action(async () => {
      const result = await servicesDown({ env: envWithDotenv(), onProgress: (m) => print(m) });
      print(result.stopped.length > 0 ? `stopped ${result.stopped.join(', ')}` : 'nothing to stop: no server was started by tributary up');
    });
}

/** The environment with `.env` underneath it, as resolveConfig sees it. */
export function envWithDotenv(): NodeJS.ProcessEnv {
  return { ...readEnvFile(join(process.cwd(), '.env')), ...process.env };
}
