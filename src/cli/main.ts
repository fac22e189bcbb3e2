#!/usr/bin/env -S node --max-semi-space-size=32
// The flag above (also in run.sh and the drain bench): a 64 MiB young generation instead
// of 32. A draining engine holds thousands of read entries for tens of milliseconds,
// long enough to survive the default young generation and be copied, then promoted:
// scavenges took ~600 ms of a 300k-event drain. Measured: steady write rate +15-40%,
// peak RSS +25 MiB.
import { Command, CommanderError } from 'commander';
import { redactSecrets } from '../config/index.js';
import { detectRedisCluster } from '../redis/cluster.js';
import { configFrom } from './options.js';
import { isTributaryError, TributaryError } from '../errors.js';
import { registerBench } from './commands/bench.js';
import { registerClean } from './commands/clean.js';
import { registerConsumers } from './commands/consumers.js';
import { registerDemo } from './commands/demo.js';
import { registerDlq } from './commands/dlq.js';
import { registerMigrate } from './commands/migrate.js';
import { registerMonitor } from './commands/monitor.js';
import { registerOrders } from './commands/orders.js';
import { registerCheck, registerRun } from './commands/pipelines.js';
import { registerClaim, registerPending } from './commands/pending.js';
import { registerProduce } from './commands/produce.js';
import { registerReplay } from './commands/replay.js';
import { registerServe } from './commands/serve.js';
import { registerServices } from './commands/services.js';
import { registerStart } from './commands/start.js';
import { registerTail } from './commands/tail.js';
import { registerTrim } from './commands/trim.js';

const program = new Command();
program
  .name('tributary')
  .description('Kafka-style pipelines on Redis and Postgres: Redis Streams to Postgres, nothing lost, nothing duplicated')
  .version('0.1.0')
  .exitOverride()
  // Parse errors are printed once, coded, below (not also by commander).
  .configureOutput({ outputError: () => {} })
  // A command that talks to Redis first learns whether it is a Redis Cluster (INFO cluster),
  // so the connections it builds are cluster connections (src/redis/cluster.ts).
  .hook('preAction', async (_program, action) => {
    if (!action.options.some((o) => o.attributeName() === 'redisUrl')) return;
    let redisUrl: string;
    try {
      redisUrl = configFrom(action.optsWithGlobals()).redisUrl;
    } catch {
      return; // a bad setting: the command itself reports it
    }
    await detectRedisCluster(redisUrl);
  });

registerServices(program);
registerMigrate(program);
registerStart(program);
registerServe(program);
registerRun(program);
registerCheck(program);
registerProduce(program);
registerDemo(program);
registerDlq(program);
registerPending(program);
registerClaim(program);
registerConsumers(program);
registerMonitor(program);
registerTail(program);
registerTrim(program);
registerReplay(program);
registerBench(program);
registerClean(program);
registerOrders(program);

/** The sub-command path the arguments name (`orders process `), for the usage hint. */
function commandPath(argv: readonly string[]): string {
  const path: string[] = [];
  let cmd: Command = program;
  for (const arg of argv) {
    const sub = cmd.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (!sub) break;
    path.push(sub.name());
    cmd = sub;
  }
  return path.map((p) => `${p} `).join('');
}

/**
 * An unknown top-level command that is a sub-command of another (`init-cache` is
 * `orders init-cache`, as the original orders CLI had it at the top): the full command.
 */
function nestedCommand(root: Command, name: string): string | undefined {
  for (const parent of root.commands) {
    const sub = parent.commands.find((c) => c.name() === name || c.aliases().includes(name));
    if (sub) return `${parent.name()} ${sub.name()}`;
  }
  return undefined;
}

/** Commander's message, with a better "did you mean" where the command exists one level down. */
function usageMessage(err: CommanderError, argv: readonly string[]): string {
  let message = err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
  const unknown = /^unknown command '([^']+)'/.exec(message);
  if (err.code === 'commander.unknownCommand' && unknown && argv[0] === unknown[1]) {
    const nested = nestedCommand(program, unknown[1]!);
    if (nested) message = `unknown command '${unknown[1]}' (Did you mean \`tributary ${[nested, ...argv.slice(1)].join(' ')}\`?)`;
  }
  return message;
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here too, with exit code 0.
    if (err.exitCode === 0) process.exit(0);
    // Commander's message, with its "Did you mean ...?" where it has one, and the code.
    const usage = new TributaryError('TRIB_ERR_CLI_USAGE', [usageMessage(err, process.argv.slice(2)), commandPath(process.argv.slice(2))]);
    process.stderr.write(redactSecrets(`tributary: ${usage.code}: ${usage.message}\n`));
    process.exit(2);
  }
  if (isTributaryError(err)) {
    process.stderr.write(redactSecrets(`tributary: ${err.code}: ${err.message}\n`));
    process.exit(2);
  }
  process.stderr.write(redactSecrets(`tributary: ${(err as Error).stack ?? String(err)}\n`));
  process.exit(1);
}
