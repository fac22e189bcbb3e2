import { useState } from 'preact/hooks';
import { get, post, query, type ApiError } from '../api.js';
import { ms, n } from '../format.js';
import { usePoll } from '../hooks.js';
import type { ClaimResult, Info, PendingSummary } from '../types.js';
import { ErrorBanner, Loading, Notice, Tile } from '../ui.js';
import { PipelineSelect, setHashParams } from './select.js';

export function PendingPage(props: { info: Info; params: URLSearchParams }) {
  const [stream, setStream] = useState(props.params.get('stream') || props.info.stream);
  const [group, setGroup] = useState(props.params.get('group') || props.info.group);
  const { result, reload } = usePoll(() => get<PendingSummary>(`/api/pending${query({ stream, group, limit: 50 })}`), 2000, [stream, group]);
  return (
    <div data-testid="pending-page">
      <div class="toolbar">
        <PipelineSelect
          stream={stream}
          group={group}
          onChange={(s, g) => {
            setStream(s);
            setGroup(g);
            setHashParams('pending', { stream: s, group: g });
          }}
        />
      </div>
      {props.info.readOnly ? null : <ClaimForm stream={stream} group={group} consumers={result?.ok ? result.data.consumers.map((c) => c.name) : []} onDone={reload} />}
      {result === undefined ? (
        <Loading what="pending entries" />
      ) : !result.ok ? (
        <ErrorBanner error={result.error} />
      ) : (
        <Summary s={result.data} />
      )}
    </div>
  );
}

function Summary(props: { s: PendingSummary }) {
  const { s } = props;
  return (
    <>
      <div class="tiles">
        <Tile label="pending" value={n(s.total)} testId="pending-total" />
        <Tile label="oldest ID" value={s.smallestId ?? '–'} />
        <Tile label="newest ID" value={s.largestId ?? '–'} />
      </div>
      {s.total === 0 ? (
        <Notice kind="ok" testId="no-pending">
          Nothing pending on stream <code>{s.streamKey}</code>, group <code>{s.group}</code>: every delivered entry was acknowledged.
        </Notice>
      ) : (
        <div class="columns">
          <div>
            <h3>per consumer</h3>
            <table>
              <thead>
                <tr>
                  <th>consumer</th>
                  <th class="num">pending</th>
                </tr>
              </thead>
              <tbody>
                {s.consumers.map((c) => (
                  <tr>
                    <td>{c.name}</td>
                    <td class="num">{n(c.pending)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <div>
            <h3>oldest {s.oldest.length}</h3>
            <table data-testid="pending-table">
              <thead>
                <tr>
                  <th>ID</th>
                  <th>consumer</th>
                  <th class="num">idle</th>
                  <th class="num">deliveries</th>
                </tr>
              </thead>
              <tbody>
                {s.oldest.map((p) => (
                  <tr data-testid="pending-row">
                    <td>{p.id}</td>
                    <td>{p.consumer}</td>
                    <td class="num">{ms(p.idleMs)}</td>
                    <td class="num">{p.deliveries}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      )}
    </>
  );
}

/** Claim entries idle at least so long to one consumer (tributary claim). */
function ClaimForm(props: { stream: string; group: string; consumers: string[]; onDone: () => void }) {
  const [idle, setIdle] = useState('60000');
  const [consumer, setConsumer] = useState('');
  const [count, setCount] = useState('');
  const [done, setDone] = useState<ClaimResult | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  return (
    <form
      class="claim"
      data-testid="claim-form"
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        setDone(null);
        const r = await post<ClaimResult>('/api/pending/claim', {
          stream: props.stream,
          group: props.group,
          minIdleMs: Number(idle),
          consumer,
          ...(count ? { count: Number(count) } : {}),
        });
        if (r.ok) setDone(r.data);
        else setError(r.error);
        props.onDone();
      }}
    >
      <strong>claim</strong> entries idle at least <input value={idle} onInput={(e) => setIdle((e.target as HTMLInputElement).value)} size={8} data-testid="claim-idle" /> ms to consumer{' '}
      <input value={consumer} onInput={(e) => setConsumer((e.target as HTMLInputElement).value)} list="consumers" placeholder="name" data-testid="claim-consumer" />
      <datalist id="consumers">
        {props.consumers.map((c) => (
          <option value={c} />
        ))}
      </datalist>{' '}
      at most <input value={count} onInput={(e) => setCount((e.target as HTMLInputElement).value)} size={6} placeholder="all" data-testid="claim-count" />{' '}
      <button type="submit" data-testid="claim-submit">
        claim
      </button>
      <div class="muted">Each claim counts as a delivery; entries delivered more than MAX_DELIVERIES times are dead-lettered by the engine.</div>
      {done ? (
        <Notice kind="ok" testId="claim-result">
          claimed {done.claimed.length} entr{done.claimed.length === 1 ? 'y' : 'ies'} to {done.consumer}
        </Notice>
      ) : null}
      {error ? <ErrorBanner error={error} /> : null}
    </form>
  );
}
