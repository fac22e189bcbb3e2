import type { Command } from 'commander';
import { redactUrl } from '../../config/index.js';
import { isTributaryError, TributaryError } from '../../errors.js';
import { migrate } from '../../postgres/migrate.js';
import { createPgPool, isConnectionError, postgresRefusal } from '../../postgres/pool.js';
import { checkPostgres } from '../connect.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';

export function registerMigrate(program: Command): void {
  withConfigOptions(program.command('migrate').description('apply the numbered SQL migrations (safe to run concurrently)')).action(
    async (opts: Record<string, unknown>) => {
      const config = configFrom(opts);
      const pool = createPgPool(config.databaseUrl, { max: 1, queryTimeoutMs: config.pgQueryTimeoutMs });
      try {
        // One-shot: a server that does not answer, or refuses the URL, is a coded error within seconds (exit 2).
        await checkPostgres(pool, config.databaseUrl);
        let result: Awaited<ReturnType<typeof migrate>>;
        try {
          result = await migrate(pool, config.pgSchema);
        } catch (err) {
          if (isTributaryError(err)) throw err;
          const refusal = postgresRefusal(err, config.databaseUrl);
          if (refusal) throw refusal;
          if (isConnectionError(err)) {
            throw new TributaryError('TRIB_ERR_POSTGRES_UNAVAILABLE', [`lost the connection to ${redactUrl(config.databaseUrl)}: ${(err as Error).message}`], { cause: err });
          }
          throw err;
        }
        print(
          result.applied.length > 0
            ? `applied ${result.applied.join(', ')} in schema ${config.pgSchema}`
            : `schema ${config.pgSchema} is up to date (version ${result.current})`,
        );
      } finally {
        await pool.end();
      }
    },
  );
}
