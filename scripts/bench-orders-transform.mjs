// Times the orders transform in plain TypeScript against nodejs-polars and writes
// bench/results/orders-transform-<timestamp>.json (src/bench/orders-transform.ts).
// Run: npm run bench:orders-transform [-- --rounds 7 --batch-sizes 100,500,1000,5000,10000 --orders-per-round 50000]
// (after npm run build; no servers needed). On a shared machine run it 2-3 times and compare.
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string' },
    'warmup-rounds': { type: 'string' },
    'batch-sizes': { type: 'string' },
    'orders-per-round': { type: 'string' },
    seed: { type: 'string' },
  },
});
const int = (name) => (values[name] === undefined ? undefined : Number(values[name]));
const { runTransformBench } = await import('../dist/bench/orders-transform.js');

const fmt = (v) => Math.round(v).toLocaleString('en-US');
console.log('batch size | TypeScript orders/s (min–max) | nodejs-polars orders/s (min–max) | TypeScript ÷ Polars');
const { result, path } = await runTransformBench({
  rounds: int('rounds'),
  warmupRounds: int('warmup-rounds'),
  ordersPerRound: int('orders-per-round'),
  seed: int('seed'),
  batchSizes: values['batch-sizes']?.split(',').map(Number),
  onPoint: (p) =>
    console.log(
      `${String(p.batchSize).padStart(10)} | ${fmt(p.typescript.medianOrdersPerSec)} (${fmt(p.typescript.minOrdersPerSec)}–${fmt(p.typescript.maxOrdersPerSec)})` +
        ` | ${fmt(p.polars.medianOrdersPerSec)} (${fmt(p.polars.minOrdersPerSec)}–${fmt(p.polars.maxOrdersPerSec)}) | ${p.typescriptSpeedup}×`,
    ),
});
console.log(`faster: ${result.figures.faster}; load average at start ${result.machine.loadAvg1}; wall ${result.wallSecs}s`);
console.log(`wrote ${path}`);
