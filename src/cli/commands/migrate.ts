import type { Command } from 'commander';
import { migrate } from '../../postgres/migrate.js';
import { createPgPool } from '../../postgres/pool.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';

export function registerMigrate(program: Command): void {
  withConfigOptions(program.command('migrate').description('apply the numbered SQL migrations (safe to run concurrently)')).action(
    async (opts: Record<string, unknown>) => {
      const config = configFrom(opts);
      const pool = createPgPool(config.databaseUrl, { max: 1 });
      try {
        const result = await migrate(pool, config.pgSchema);
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
