import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { uuidv7 } from '../../producer/uuidv7.js';
import { redactUrl } from '../../config/index.js';
import { sleep } from '../../core/backoff.js';
import { Engine } from '../../pipelines/events.js';
import { TributaryError } from '../../errors.js';
import { quoteIdent } from '../../postgres/pool.js';
import { createPgPool } from '../../postgres/pool.js';
import { Producer } from '../../producer/producer.js';
import { sampleEvent } from '../../producer/sample.js';
import { send } from '../../redis/client.js';
import { createRedisConnection, destroyQuietly } from '../../redis/client.js';
import { servicesUp } from '../../services/index.js';
import { envWithDotenv, givenUrls } from './services.js';
import { configFrom, withConfigOptions } from '../options.js';
import { createLogger, plural, print } from '../output.js';
import { parsePositiveInt } from './produce.js';
import { attachEngineLogging } from './start.js';
import { collectMonitorSnapshot, formatMonitor } from '../../observability/monitor.js';

/** The demo's last lines: the three commands a user runs next (`./run.sh` in a clone, `tributary` elsewhere). */
export function nextSteps(cli: string): string {
  const rows = [
    [`${cli} start`, 'run the engine until Ctrl-C (in this terminal)'],
    [`${cli} produce 1000`, 'in a second terminal: 1,000 more sample events'],
    [`${cli} monitor`, 'in a third: the dashboard, live (q quits)'],
  ];
  const width = Math.max(...rows.map(([c]) => c!.length));
  return ['Next:', ...rows.map(([c, what]) => `  ${c!.padEnd(width)}   ${what}`)].join('\n');
}

export function registerDemo(program: Command): void {
  withConfigOptions(
    program
      .command('demo')
      .description('bring services up, start the engine, produce sample events, wait until they are in Postgres, print a summary')
      .option('--count <n>', 'events to produce', '5000')
      .option('--timeout <s>', 'give up waiting after this many seconds', '120'),
  ).action(async (opts: Record<string, unknown>) => {
    const count = parsePositiveInt('--count', String(opts.count));
    const timeoutMs = parsePositiveInt('--timeout', String(opts.timeout)) * 1000;
    const log = createLogger(process.env.LOG_LEVEL ?? "info");
    configFrom(opts); // every setting checked before anything is set up
    // The set-up (`tributary up`) works on the servers the engine will use: the flags' URLs first.
    await servicesUp({ env: envWithDotenv(), urls: givenUrls(opts), onProgress: (m) => print(m) });
    const config = configFrom(opts);
    print(`redis ${redactUrl(config.redisUrl)}, postgres ${redactUrl(config.databaseUrl)}, stream ${config.streamKey}, group ${config.group}`);

    const engine = new Engine(config);
    const stopLogging = attachEngineLogging(engine, log, 60_000);
    await engine.start();
    print(`engine started: ${plural(config.numWorkers, 'worker')}, batch ${config.batchSize} / ${config.batchTimeoutMs} ms`);

    const producer = new Producer({ redisUrl: config.redisUrl, streamKey: config.streamKey });
    const pool = createPgPool(config.databaseUrl, { max: 2 });
    const redis = createRedisConnection(config.redisUrl, { failFast: false });
    try {
      const ids: string[] = [];
      const started = performance.now();
      for (let done = 0; done < count; ) {
        const n = Math.min(500, count - done);
        const events = Array.from({ length: n }, () => {
          const e = sampleEvent();
          const eventId = uuidv7();
          ids.push(eventId);
          return { type: e.type, payload: e.payload, eventId };
        });
        await producer.produceBatch(events);
        done += n;
      }
      const producedMs = performance.now() - started;
      print(`produced ${count} events in ${(producedMs / 1000).toFixed(2)} s`);

      const s = quoteIdent(config.pgSchema);
      let written = 0;
      let dead = 0;
      while (written + dead < count) {
        if (performance.now() - started > timeoutMs) throw new TributaryError('TRIB_ERR_WAIT_TIMEOUT', [timeoutMs, `${count} events in Postgres (have ${written})`]);
        await sleep(50);
        const r = await pool.query<{ w: string; d: string }>(
          `SELECT (SELECT count(*) FROM ${s}.${quoteIdent(config.eventsTable)} WHERE event_id = ANY($1)) AS w,
                  (SELECT count(*) FROM ${s}.dead_letter_queue WHERE event_id = ANY($1)) AS d`,
          [ids],
        );
        written = Number(r.rows[0]!.w);
        dead = Number(r.rows[0]!.d);
      }
      const elapsedMs = performance.now() - started;
      await engine.close();
      stopLogging();

      const lat = await pool.query<{ p50: number; p99: number }>(
        `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99
           FROM (SELECT extract(epoch FROM ingested_at - produced_at) * 1000 AS ms FROM ${s}.${quoteIdent(config.eventsTable)} WHERE event_id = ANY($1)) t`,
        [ids],
      );
      await redis.connect();
      const pending = await send(redis, ['XPENDING', config.streamKey, config.group]);
      const pendingCount = Array.isArray(pending) ? Number(pending[0]) : 0;
      const p = lat.rows[0]!;
      print('');
      print('DEMO SUMMARY');
      print(`  Events produced:    ${count}`);
      print(`  Events written:     ${written}`);
      print(`  Pending:            ${pendingCount}`);
      print(`  Dead letters:       ${dead}`);
      print(`  Throughput:         ${Math.round((written / elapsedMs) * 1000)} events/s (produce to last row committed, ${(elapsedMs / 1000).toFixed(2)} s)`);
      print(`  End-to-end latency: p50 ${Number(p.p50).toFixed(1)} ms, p99 ${Number(p.p99).toFixed(1)} ms (ingested_at - produced_at)`);
      print('');
      // The summary ends with what `tributary monitor --once` shows.
      print(formatMonitor(await collectMonitorSnapshot(redis, pool, config), { color: false, width: 100 }));
      print('');
      print(nextSteps(existsSync('run.sh') ? './run.sh' : 'tributary'));
      if (written !== count || pendingCount !== 0) process.exitCode = 1;
    } finally {
      await engine.close();
      await producer.close();
      destroyQuietly(redis);
      await pool.end();
    }
  });
}
