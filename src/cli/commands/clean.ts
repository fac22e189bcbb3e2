import type { Command } from 'commander';
import { TributaryError } from '../../errors.js';
import { clean, describeCleanPlan, isCleanPlanEmpty, planClean } from '../../ops/clean.js';
import { withConnections } from '../connect.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';

/** `tributary clean --yes`: the original's `./run.sh clean` (clear all data of the stream). */
export function registerClean(program: Command): void {
  withConfigOptions(
    program
      .command('clean')
      .description(
        'delete the stream (and its groups), its dead-letter stream, every row of the events table and the stream\'s dead_letter_queue rows; ' +
          'without --yes, says what it would delete and deletes nothing',
      )
      .option('--yes', 'delete (without it: show what would be deleted and exit 2)'),
  ).action(async (opts: Record<string, unknown>) => {
    const config = configFrom(opts);
    await withConnections(config, 'clean', { max: 2 }, async ({ redis, pool }) => {
      const target = { streamKey: config.streamKey, dlqStream: config.dlqStream, pgSchema: config.pgSchema, eventsTable: config.eventsTable };
      if (opts.yes !== true) {
        const plan = await planClean(redis, pool, target);
        if (isCleanPlanEmpty(plan)) {
          print(`nothing to clean: ${describeCleanPlan(plan).join('; ')}`);
          return;
        }
        throw new TributaryError('TRIB_ERR_CONFIRMATION_REQUIRED', [`delete ${describeCleanPlan(plan).join('; ')}`]);
      }
      const done = await clean(redis, pool, target);
      print(`deleted ${describeCleanPlan(done).join('; ')}`);
    });
  });
}
