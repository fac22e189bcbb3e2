import { get } from '../api.js';
import { Chart } from '../chart.js';
import { ms, n } from '../format.js';
import { usePoll } from '../hooks.js';
import type { Info, Overview, Pipeline } from '../types.js';
import { ErrorBanner, Loading, Notice, Tile } from '../ui.js';

export function OverviewPage(props: { info: Info }) {
  const { result } = usePoll(() => get<Overview>('/api/overview'), props.info.refreshMs);
  if (result === undefined) return <Loading what="the pipelines" />;
  if (!result.ok) return <ErrorBanner error={result.error} />;
  const o = result.data;
  return (
    <div data-testid="overview">
      <div class="updated" data-testid="updated">
        updated {new Date(o.takenAt).toLocaleTimeString()} · every {o.refreshMs / 1000} s · charts keep {Math.round(o.historyMs / 60_000)} min
      </div>
      {o.pipelines.length === 0 ? <Notice testId="no-pipelines">No stream with a consumer group on this Redis yet: start the engine (`tributary start`).</Notice> : null}
      {o.pipelines.map((p) => (
        <PipelineCard p={p} key={p.id} />
      ))}
      {o.orders.present ? (
        <Notice>
          The orders pipeline (prefix <code>{o.orders.prefix}</code>) runs on this Redis: see <a href="#/orders">Orders pipeline</a>.
        </Notice>
      ) : null}
    </div>
  );
}

function PipelineCard(props: { p: Pipeline }) {
  const { p } = props;
  const t = p.totals;
  const times = p.series.map((s) => s.t);
  const dlqLink = `#/dead-letters?stream=${encodeURIComponent(p.parts[0]!.key)}&group=${encodeURIComponent(p.group ?? '')}`;
  return (
    <section class="card" data-testid="pipeline" data-stream={p.stream}>
      <h2>
        {p.stream}
        {p.partitioned ? <span class="tag">{p.parts.length} partitions</span> : null}
        {p.group ? <span class="tag">group {p.group}</span> : <span class="tag warn">no group</span>}
        {p.configured ? <span class="tag muted">STREAM_KEY</span> : null}
      </h2>
      {p.group === null ? (
        <Notice kind="warn" testId="no-group">
          No consumer group on <code>{p.stream}</code> yet: start the engine (<code>tributary start</code>) and it appears here.
        </Notice>
      ) : null}
      {p.warnings.filter((w) => !w.startsWith('no consumer group')).map((w) => (
        <Notice kind="warn" testId="warning">
          {w}
        </Notice>
      ))}
      <div class="tiles">
        <Tile label="stream length" value={n(t.length)} testId="stream-length" />
        <Tile label="lag" value={n(t.lag)} testId="lag" />
        <Tile label="pending" value={n(t.pending)} testId="pending" />
        <Tile label="produced/s" value={n(t.producedPerSec, 1)} testId="produced-rate" />
        <Tile label="written/s" value={n(t.writtenPerSec, 1)} testId="written-rate" sub={p.configured ? 'events table' : 'engine counters'} />
        <Tile label="latency p50 / p99" value={p.latencyMs ? `${ms(p.latencyMs.p50)} / ${ms(p.latencyMs.p99)}` : '–'} sub={p.latencyMs ? `${n(p.latencyMs.samples)} rows, last minute` : 'events table of STREAM_KEY only'} testId="latency" />
        <Tile
          label="dead letters"
          value={<a href={dlqLink}>{n(t.deadLetters)}</a>}
          sub={t.deadLettersGrowing ? 'growing!' : undefined}
          warn={t.deadLettersGrowing}
          testId="dead-letters"
        />
        {p.events ? <Tile label={`rows in ${p.events.table}`} value={`${p.events.estimated ? '~' : ''}${n(p.events.rows)}`} sub={p.events.exists ? undefined : 'table missing: tributary migrate'} warn={!p.events.exists} testId="events-rows" /> : null}
      </div>
      <div class="charts">
        <div>
          <h3>produced/s and written/s</h3>
          <Chart
            testId="rate-chart"
            times={times}
            series={[
              { label: 'produced/s', color: '#3b82f6', values: p.series.map((s) => s.produced) },
              { label: 'written/s', color: '#10b981', values: p.series.map((s) => s.written) },
            ]}
          />
        </div>
        <div>
          <h3>lag and dead letters</h3>
          <Chart
            testId="lag-chart"
            times={times}
            series={[
              { label: 'lag', color: '#f59e0b', values: p.series.map((s) => s.lag) },
              { label: 'dead letters', color: '#ef4444', values: p.series.map((s) => s.deadLetters) },
            ]}
          />
        </div>
      </div>
      <div class="columns">
        <div>
          <h3>groups and consumers</h3>
          <table data-testid="consumers">
            <thead>
              <tr>
                <th>group / consumer</th>
                <th class="num">pending</th>
                <th class="num">idle</th>
                <th class="num">lag</th>
              </tr>
            </thead>
            <tbody>
              {p.parts.flatMap((part) =>
                part.snapshot.groups.flatMap((g) => [
                  <tr class="group-row">
                    <td>
                      <strong>{g.name}</strong>
                      {p.partitioned ? <span class="muted"> · {part.key}</span> : null}
                    </td>
                    <td class="num">{n(g.pending)}</td>
                    <td />
                    <td class="num">{n(g.lag)}</td>
                  </tr>,
                  ...g.consumers.map((c) => (
                    <tr data-testid="consumer-row">
                      <td class="indent">{c.name}</td>
                      <td class="num">{n(c.pending)}</td>
                      <td class="num">{ms(c.idleMs)}</td>
                      <td />
                    </tr>
                  )),
                ]),
              )}
            </tbody>
          </table>
        </div>
        <div>
          <h3>batches</h3>
          {p.batches.published ? (
            <table data-testid="batches">
              <tbody>
                <tr>
                  <td>batches</td>
                  <td class="num">{n(p.batches.batches)}</td>
                </tr>
                <tr>
                  <td>rows</td>
                  <td class="num">{n(p.batches.rows)}</td>
                </tr>
                <tr>
                  <td>average size</td>
                  <td class="num">{n(p.batches.avgSize, 1)}</td>
                </tr>
                {Object.entries(p.batches.flushReasons)
                  .sort((a, b) => b[1] - a[1])
                  .map(([reason, count]) => (
                    <tr>
                      <td>flushed: {reason}</td>
                      <td class="num">{n(count)}</td>
                    </tr>
                  ))}
              </tbody>
            </table>
          ) : (
            <p class="muted">The engine has published no batch counters for this group yet.</p>
          )}
          {p.partitioned ? (
            <>
              <h3>partitions</h3>
              <table data-testid="partitions">
                <thead>
                  <tr>
                    <th>key</th>
                    <th class="num">length</th>
                    <th class="num">pending</th>
                    <th class="num">dead</th>
                  </tr>
                </thead>
                <tbody>
                  {p.parts.map((part) => (
                    <tr>
                      <td>{part.key}</td>
                      <td class="num">{n(part.snapshot.stream.length)}</td>
                      <td class="num">{n(part.snapshot.groups.find((g) => g.name === p.group)?.pending ?? 0)}</td>
                      <td class="num">{n(part.snapshot.deadLetters.rows)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          ) : null}
        </div>
      </div>
    </section>
  );
}
