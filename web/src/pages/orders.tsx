import { get } from '../api.js';
import { Chart } from '../chart.js';
import { bytes, ms, n, usd, when } from '../format.js';
import { usePoll } from '../hooks.js';
import type { Info, OrdersStats } from '../types.js';
import { ErrorBanner, Loading, Notice, Tile } from '../ui.js';

export function OrdersPage(props: { info: Info }) {
  const { result } = usePoll(() => get<OrdersStats>('/api/orders'), props.info.refreshMs);
  if (result === undefined) return <Loading what="the orders pipeline" />;
  if (!result.ok) return <ErrorBanner error={result.error} />;
  const s = result.data;
  const q = s.redis.queue;
  const share = Math.min(1, q.depth / Math.max(1, s.backpressure.maxQueueDepth));
  const now = Date.parse(s.takenAt);
  const idle = q.depth === 0 && s.pipeline.batches === 0 && q.workers.length === 0;
  return (
    <div data-testid="orders-page">
      <div class="updated">
        prefix <code>{s.prefix}</code> · schema <code>{s.schema}</code> · updated {new Date(s.takenAt).toLocaleTimeString()}
      </div>
      {idle ? (
        <Notice testId="orders-empty">
          No orders pipeline has run with prefix <code>{s.prefix}</code> yet: queue orders with <code>tributary orders generate</code> and process them with{' '}
          <code>tributary orders process</code>.
        </Notice>
      ) : null}
      {s.postgresError ? (
        <Notice kind="warn" testId="orders-pg-missing">
          {s.postgresError}
        </Notice>
      ) : null}
      <div class="tiles">
        <Tile
          label="queue depth"
          value={
            <span data-testid="orders-depth">
              {n(q.depth)} <span class="muted">/ {n(s.backpressure.maxQueueDepth)}</span>
            </span>
          }
          sub={
            <div class="bar">
              <div style={{ width: `${(share * 100).toFixed(1)}%` }} class={s.backpressure.engaged ? 'full' : ''} />
            </div>
          }
          warn={s.backpressure.engaged}
        />
        <Tile label="queued" value={n(q.length)} testId="orders-queued" />
        <Tile label="in processing" value={n(q.processing)} testId="orders-processing" />
        <Tile label="orders/s" value={n(s.throughput.ordersPerSec, 1)} sub={`last ${n(s.throughput.windowSecs, 0)} s`} testId="orders-rate" />
        <Tile label="taken" value={n(s.pipeline.taken)} testId="orders-taken" />
        <Tile label="promoted" value={n(s.pipeline.promoted)} testId="orders-promoted" />
        <Tile label="duplicates dropped" value={n(s.pipeline.duplicates)} sub={`${n(s.pipeline.pgDuplicates)} already in orders`} />
        <Tile label="rejected" value={n(s.pipeline.rejected)} testId="orders-rejected" />
      </div>
      <div class="charts">
        <div>
          <h3>queue depth</h3>
          <Chart testId="orders-depth-chart" times={s.series.map((p) => p.t)} series={[{ label: 'depth', color: '#3b82f6', values: s.series.map((p) => p.depth) }]} />
        </div>
        <div>
          <h3>orders/s</h3>
          <Chart testId="orders-rate-chart" times={s.series.map((p) => p.t)} series={[{ label: 'orders/s', color: '#10b981', values: s.series.map((p) => p.ordersPerSec) }]} />
        </div>
      </div>
      <div class="columns">
        <div>
          <h3>workers</h3>
          {q.workers.length === 0 ? (
            <p class="muted">No worker has a heartbeat or a processing list.</p>
          ) : (
            <table data-testid="orders-workers">
              <thead>
                <tr>
                  <th>worker</th>
                  <th class="num">processing</th>
                  <th class="num">heartbeat</th>
                </tr>
              </thead>
              <tbody>
                {q.workers.map((w) => (
                  <tr>
                    <td>{w.worker}</td>
                    <td class="num">{n(w.processing)}</td>
                    <td class="num">{w.heartbeatAgeMs === null ? 'none (orphan list)' : `${ms(w.heartbeatAgeMs)} ago`}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <h3>dedup window, cache, revenue</h3>
          <table>
            <tbody>
              <tr>
                <td>dedup window</td>
                <td class="num" data-testid="orders-dedup">
                  {n(s.redis.dedup.size)} order IDs over {ms(s.redis.dedup.windowSeconds * 1000)} ({s.redis.dedup.buckets} buckets)
                </td>
              </tr>
              <tr>
                <td>cache version</td>
                <td class="num" data-testid="orders-cache">
                  {s.redis.cache.version === null
                    ? 'none published (tributary orders init-cache)'
                    : `v${s.redis.cache.version}, published ${s.redis.cache.publishedAt ? `${ms(now - s.redis.cache.publishedAt)} ago` : '?'}${s.redis.cache.expired ? ' (expired!)' : ''}`}
                </td>
              </tr>
              <tr>
                <td>revenue, last {ms(s.redis.revenue.windowMs)}</td>
                <td class="num" data-testid="orders-revenue">
                  {s.redis.revenue.exact ? '' : '~'}{usd(s.redis.revenue.revenueUsd)} from {n(s.redis.revenue.orders)} orders
                </td>
              </tr>
              <tr>
                <td>last batch</td>
                <td class="num">{s.pipeline.lastBatchAt ? `${ms(now - s.pipeline.lastBatchAt)} ago` : '–'}</td>
              </tr>
              {Object.entries(s.pipeline.flushReasons).map(([reason, count]) => (
                <tr>
                  <td>batches flushed: {reason}</td>
                  <td class="num">{n(count)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <div>
          <h3>Postgres</h3>
          {s.postgres === null ? (
            <p class="muted">Not migrated yet.</p>
          ) : (
            <>
              <table>
                <tbody>
                  <tr>
                    <td>orders</td>
                    <td class="num" data-testid="orders-pg-orders">
                      {n(s.postgres.orders)}
                    </td>
                  </tr>
                  <tr>
                    <td>staging</td>
                    <td class="num">{n(s.postgres.staging)}</td>
                  </tr>
                  <tr>
                    <td>rejected</td>
                    <td class="num">{n(s.postgres.rejectedTotal)}</td>
                  </tr>
                  {Object.entries(s.postgres.rejected).map(([reason, count]) => (
                    <tr data-testid="orders-reject-reason">
                      <td class="indent">{reason}</td>
                      <td class="num">{n(count)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <h3>views</h3>
              <table data-testid="orders-views">
                <thead>
                  <tr>
                    <th>view</th>
                    <th class="num">rows</th>
                    <th class="num">size</th>
                    <th class="num">refreshed</th>
                  </tr>
                </thead>
                <tbody>
                  {s.postgres.views.map((v) => (
                    <tr>
                      <td>{v.view}</td>
                      <td class="num">{v.populated ? n(v.rows) : 'not populated'}</td>
                      <td class="num">{bytes(v.sizeBytes)}</td>
                      <td class="num" title={v.lastRefreshedAt ? when(v.lastRefreshedAt) : ''}>
                        {v.lastRefreshedAt ? `${ms(now - Date.parse(v.lastRefreshedAt))} ago` : 'never'}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
        </div>
      </div>
    </div>
  );
}
