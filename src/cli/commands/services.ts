import type { Command } from 'commander';
import { servicesDown, servicesUp } from '../../services/index.js';
import { print } from '../output.js';

export function registerServices(program: Command): void {
  program
    .command('up')
    .description('find or start Redis and Postgres (REDIS_URL/DATABASE_URL, else local defaults, else project-local servers under .tributary/)')
    .action(async () => {
      const result = await servicesUp({ onProgress: (m) => print(m) });
      print(`redis:    ${result.redis.url} (${result.redis.source}${result.redis.managed ? ', started by tributary up' : ''})`);
      print(`postgres: ${result.postgres.url} (${result.postgres.source}${result.postgres.managed ? ', started by tributary up' : ''})`);
    });
  program
    .command('down')
    .description('stop the servers that `tributary up` started (never others)')
    .action(async () => {
      const result = await servicesDown({ onProgress: (m) => print(m) });
      print(result.stopped.length > 0 ? `stopped ${result.stopped.join(', ')}` : 'nothing to stop: no server was started by tributary up');
    });
}
