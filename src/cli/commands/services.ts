import type { Command } from 'commander';
import { join } from 'node:path';
import { readEnvFile, redactUrl, resolveConfig } from '../../config/index.js';
import { checkRedisEviction } from '../../redis/eviction.js';
import { servicesDown, servicesUp } from '../../services/index.js';
import { print } from '../output.js';

export function registerServices(program: Command): void {
  program
    .command('up')
    .description('find or start Redis and Postgres (--redis-url/--database-url or REDIS_URL/DATABASE_URL, else local defaults, else project-local servers under .tributary/)')
    .option('--redis-url <url>', 'use this Redis (it must answer; nothing is started for a URL you give) [REDIS_URL]')
    .option('--database-url <url>', 'use this Postgres, creating the database it names if missing [DATABASE_URL]')
    .action(async (opts: { redisUrl?: string; databaseUrl?: string }) => {
      const result = await servicesUp({ env: envWithDotenv(), urls: givenUrls(opts), onProgress: (m) => print(m) });
      print(`redis:    ${redactUrl(result.redis.url)} (${result.redis.source}${result.redis.managed ? ', started by tributary up' : ''})`);
      print(`postgres: ${redactUrl(result.postgres.url)} (${result.postgres.source}${result.postgres.managed ? ', started by tributary up' : ''})`);
      const eviction = await checkRedisEviction(result.redis.url);
      if (eviction) print(`warning: ${eviction}`);
    });
  program
    .command('down')
    .description('stop the servers that `tributary up` started (never others)')
    .action(async () => {
      const result = await servicesDown({ env: envWithDotenv(), onProgress: (m) => print(m) });
      print(result.stopped.length > 0 ? `stopped ${result.stopped.join(', ')}` : 'nothing to stop: no server was started by tributary up');
    });
}

/**
 * The server URLs given as flags (`--redis-url`, `--database-url`), checked like any
 * setting (TRIB_ERR_CONFIG_INVALID naming the flag); absent ones stay undefined.
 */
export function givenUrls(opts: { redisUrl?: unknown; databaseUrl?: unknown }): { redisUrl?: string; databaseUrl?: string } {
  if (opts.redisUrl === undefined && opts.databaseUrl === undefined) return {};
  const checked = resolveConfig({ envFile: false, env: {}, useServicesState: false, overrides: { redisUrl: opts.redisUrl, databaseUrl: opts.databaseUrl } });
  return {
    redisUrl: opts.redisUrl === undefined ? undefined : checked.redisUrl,
    databaseUrl: opts.databaseUrl === undefined ? undefined : checked.databaseUrl,
  };
}

/** The environment with `.env` underneath it, as resolveConfig sees it. */
export function envWithDotenv(): NodeJS.ProcessEnv {
  return { ...readEnvFile(join(process.cwd(), '.env')), ...process.env };
}
