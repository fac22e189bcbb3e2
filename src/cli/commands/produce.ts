import type { Command } from 'commander';
import { sleep } from '../../core/backoff.js';
import { TributaryError } from '../../errors.js';
import { Producer } from '../../producer/producer.js';
import { sampleEvent } from '../../producer/sample.js';
import { configFrom, withConfigOptions } from '../options.js';
import { print } from '../output.js';

export function parsePositiveInt(name: string, value: string): number {
  const n = Number(value);
  // Safe integers only: 1e16 is an integer, but past 2^53 counts are inexact (and later throw uncoded RangeErrors).
  if (!Number.isSafeInteger(n) || n < 1) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', [name, `must be a positive integer (got ${JSON.stringify(value)})`]);
  return n;
}

export interface ProduceSamplesResult {
  count: number;
  elapsedMs: number;
}

/** Produces `count` sample events in pipelined batches, paced to `rate` events/s when given. */
export async function produceSamples(producer: Producer, count: number, batch: number, rate?: number, onProgress?: (done: number) => void): Promise<ProduceSamplesResult> {
  const started = performance.now();
  let done = 0;
  while (done < count) {
    const n = Math.min(batch, count - done);
    await producer.produceBatch(Array.from({ length: n }, () => sampleEvent()));
    done += n;
    onProgress?.(done);
    if (rate) {
      const due = started + (done / rate) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
    }
  }
  return { count, elapsedMs: performance.now() - started };
}

export function registerProduce(program: Command): void {
  withConfigOptions(
    program
      .command('produce')
      .description('produce sample events (user_created, order_placed, payment_processed, product_viewed, order_shipped)')
      .argument('<count>', 'number of events')
      .option('--rate <events/s>', 'target rate (default: as fast as possible)')
      .option('--batch <n>', 'events per pipelined round trip', '500'),
  ).action(async (countArg: string, opts: Record<string, unknown>) => {
    const count = parsePositiveInt('count', countArg);
    const batch = parsePositiveInt('--batch', String(opts.batch));
    const rate = opts.rate === undefined ? undefined : parsePositiveInt('--rate', String(opts.rate));
    const config = configFrom(opts);
    const producer = new Producer({ redisUrl: config.redisUrl, streamKey: config.streamKey, partitions: config.partitions, partitionKey: config.partitionKey });
    try {
      let lastReport = 0;
      const result = await produceSamples(producer, count, Math.min(batch, rate ?? batch), rate, (done) => {
        if (done - lastReport >= 10_000 || done === count) {
          lastReport = done;
          process.stderr.write(`produced ${done}/${count}\n`);
        }
      });
      const secs = result.elapsedMs / 1000;
      const to = config.partitions > 1 ? `${config.streamKey} (${config.partitions} partitions ${config.streamKey}:p<i> by ${config.partitionKey})` : config.streamKey;
      print(`produced ${count} events to ${to} in ${secs.toFixed(2)} s (${Math.round(count / secs)} events/s)`);
    } finally {
      await producer.close();
    }
  });
}
