/**
 * The orders benchmark's text: the CLI's table (`formatOrdersBench`) and the README's
 * orders section (`ordersBenchSection`, called from report.ts), both from result
 * files only. Pure.
 */
import type { OrdersBenchFigures, ResultOf } from './result.js';

interface ResultFileLike {
  file: string;
  result: { bench: string };
}

type OrdersResult = ResultOf<'orders', OrdersBenchFigures>;

const n = (v: number | null | undefined) => (v === null || v === undefined ? '–' : Math.round(v).toLocaleString('en-US'));
const pad = (text: string, width: number) => text.padEnd(width);
const left = (text: string, width: number) => text.padStart(width);

const TARGET_ROWS = [
  ['ingestion', 'ingest (LPUSH)'],
  ['processing', 'take + parse + dedup + enrich + transform'],
  ['staging', 'stage (one COPY per batch)'],
  ['promotion', 'promote (one transaction per batch)'],
] as const;

/** `met` / `NOT met (62%)`. */
function verdict(value: number, target: number): string {
  return value >= target ? 'met' : `NOT met (${Math.round((100 * value) / target)}%)`;
}

/** What `tributary orders benchmark` prints. */
export function formatOrdersBench(result: OrdersResult, path?: string): string {
  const f = result.figures;
  const s = result.settings as { total: number; workers: number; batchSize: number };
  const lines: string[] = [];
  lines.push(
    `orders benchmark: ${n(s.total)} orders, ${s.workers} ${s.workers === 1 ? 'worker' : 'workers'} × batch ${n(s.batchSize)}; ` +
      `${result.machine.cores} cores, load average ${result.machine.loadAvg1 ?? '?'} at start`,
  );
  lines.push('');
  lines.push(`${pad('STAGE', 10)} ${left('ORDERS', 11)} ${left('SECONDS', 8)} ${left('ORDERS/S', 10)}  ${pad('CPU s node / postgres / redis', 30)} HOST BUSY`);
  for (const st of f.stages) {
    const cpu = st.cpuSecs ? `${st.cpuSecs.node.toFixed(1)} / ${st.cpuSecs.postgres.toFixed(1)} / ${st.cpuSecs.redis.toFixed(1)}` : '–';
    lines.push(
      `${pad(st.stage, 10)} ${left(n(st.orders), 11)} ${left(st.secs.toFixed(2), 8)} ${left(n(st.ordersPerSec), 10)}  ${pad(cpu, 30)} ${st.hostBusyPct === null ? '–' : `${st.hostBusyPct.toFixed(0)}%`}`,
    );
  }
  lines.push('');
  lines.push('Targets (orders/s):');
  for (const [key, what] of TARGET_ROWS) {
    lines.push(`  ${pad(key, 11)} ${left(n(f.summary[key]), 9)}  target ${left(n(f.targets[key]), 7)}  ${pad(verdict(f.summary[key], f.targets[key]), 16)} ${what}`);
  }
  lines.push(`Overall, stage by stage (ingest → refresh): ${n(f.summary.overall)} orders/s (${f.overallSecs.toFixed(2)} s for ${n(f.orders.total)})`);
  if (f.pipeline) {
    const p = f.pipeline;
    lines.push(
      `End to end (OrdersPipeline, ${p.workers} ${p.workers === 1 ? 'worker' : 'workers'} × ${n(p.batchSize)}, all stages overlapping): ${n(p.ordersPerSec)} orders/s ` +
        `(${n(p.orders)} orders in ${p.secs.toFixed(2)} s, start-up included; CPU s node ${p.cpuSecs.node} / postgres ${p.cpuSecs.postgres ?? '–'})`,
    );
  }
  const o = f.orders;
  const reasons = Object.entries(o.rejected)
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');
  lines.push(
    `Outcome: ${n(o.promoted)} promoted, ${n(o.duplicatesDropped)} duplicates dropped by the window, ${n(o.pgDuplicates)} caught by the primary key, ` +
      `${n(o.rejectedTotal)} rejected (${reasons || 'none'}); orders table ${n(o.inOrders)}, rejects ${n(o.inRejected)}, staging left ${n(o.stagingLeft)}, queue depth left ${n(o.queueLeft)}`,
  );
  lines.push(`Views refreshed: ${f.views.map((v) => `${v.view} ${n(v.rows)} rows in ${v.ms.toFixed(0)} ms`).join(', ')}`);
  if (path) lines.push(`result: ${path}`);
  return lines.join('\n');
}

function machineText(r: OrdersResult): string {
  const m = r.machine;
  return `${m.cores} cores, Node ${m.node}, Redis ${m.redis}, PostgreSQL ${String(m.postgres).split(' ')[0]}, load ${m.loadAvg1 ?? '?'}`;
}

/**
 * The README's orders benchmark lines (empty when there is no orders result): a table of
 * every result's headline figures, then the newest result's stages.
 */
export function ordersBenchSection(results: readonly ResultFileLike[], dir: string): string[] {
  const rows = results.filter((r) => r.result.bench === 'orders') as unknown as Array<{ file: string; result: OrdersResult }>;
  if (rows.length === 0) return [];
  const out = [
    '**Orders pipeline** (`tributary orders benchmark --total N`): N orders (5% duplicates, 1% invalid) generated and pushed, then every stage run over every batch before the next stage starts (several batches at a time), then the two views refreshed; processing is take + parse + dedup + enrich + transform, overall is N over ingest through refresh. End to end: N more orders drained by `OrdersPipeline` with every stage overlapping. Targets: ingestion 250,000, processing 100,000, staging 150,000, promotion 100,000 orders/s.',
    '',
    '| Result file | Orders | Workers × batch | Ingestion | Processing | Staging | Promotion | Overall (stage by stage) | End to end (pipeline) | Machine |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const { file, result: r } of rows) {
    const f = r.figures;
    const s = r.settings as { total: number; workers: number; batchSize: number };
    out.push(
      `| [${file}](${dir}/${file}) | ${n(s.total)} | ${s.workers} × ${n(s.batchSize)} | ${n(f.summary.ingestion)} | ${n(f.summary.processing)} | ${n(f.summary.staging)} | ${n(f.summary.promotion)} | ${n(f.summary.overall)} | ${f.pipeline ? n(f.pipeline.ordersPerSec) : '–'} | ${machineText(r)} |`,
    );
  }
  const latest = rows[rows.length - 1]!;
  out.push('', `Stages of [${latest.file}](${dir}/${latest.file}) (orders/s; CPU seconds of this process, Postgres and Redis while the stage ran):`, '');
  out.push('| Stage | Orders | Seconds | Orders/s | CPU s node / postgres / redis | Host busy |', '|---|---|---|---|---|---|');
  for (const st of latest.result.figures.stages) {
    const cpu = st.cpuSecs ? `${st.cpuSecs.node.toFixed(1)} / ${st.cpuSecs.postgres.toFixed(1)} / ${st.cpuSecs.redis.toFixed(1)}` : '–';
    out.push(`| ${st.stage} | ${n(st.orders)} | ${st.secs.toFixed(2)} | ${n(st.ordersPerSec)} | ${cpu} | ${st.hostBusyPct === null ? '–' : `${st.hostBusyPct.toFixed(0)}%`} |`);
  }
  out.push('');
  return out;
}
