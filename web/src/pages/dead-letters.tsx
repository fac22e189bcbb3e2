import { useState } from 'preact/hooks';
import { get, post, query, type ApiError } from '../api.js';
import { when } from '../format.js';
import { usePoll } from '../hooks.js';
import type { DeadLetterDetail, DeadLetterPage, DeadLetterRow, Info, RetryOutcome } from '../types.js';
import { ErrorBanner, Loading, Notice } from '../ui.js';
import { PipelineSelect, setHashParams } from './select.js';

interface Filters {
  type: string;
  code: string;
  since: string;
  until: string;
}

function describe(o: RetryOutcome): string {
  switch (o.status) {
    case 'retried':
      return `#${o.id} retried as ${o.newStreamId}`;
    case 'already_retried':
      return `#${o.id} already retried${o.retriedAs ? ` as ${o.retriedAs}` : ''}: nothing added`;
    case 'in_progress':
      return `#${o.id} is being retried elsewhere: nothing added`;
    case 'not_found':
      return `#${o.id} not found`;
    default:
      return `#${o.id} ${o.status.replace('_', ' ')}${o.reason ? `: ${o.reason}` : ''}`;
  }
}

function retried(r: DeadLetterRow): string {
  if (r.retryState === 'retried') return `as ${r.retriedAs}`;
  if (r.retryState === 'in_doubt') return 'in doubt';
  return 'no';
}

export function DeadLettersPage(props: { info: Info; params: URLSearchParams }) {
  const [stream, setStream] = useState(props.params.get('stream') || props.info.stream);
  const [group, setGroup] = useState(props.params.get('group') || props.info.group);
  const [draft, setDraft] = useState<Filters>({ type: '', code: '', since: '', until: '' });
  const [filters, setFilters] = useState<Filters>(draft);
  const [selected, setSelected] = useState<Set<number>>(new Set());
  const [openId, setOpenId] = useState<number | null>(null);
  const [message, setMessage] = useState<{ kind: 'ok' | 'warn'; text: string } | null>(null);
  const [actionError, setActionError] = useState<ApiError | null>(null);
  const [purge, setPurge] = useState<{ text: string; rows: number } | null>(null);
  const [busy, setBusy] = useState(false);
  const readOnly = props.info.readOnly;

  const { result, reload } = usePoll(
    () => get<DeadLetterPage>(`/api/dead-letters${query({ stream, group, limit: 100, ...filters })}`),
    2000,
    [stream, group, filters],
  );

  const act = async <T,>(run: () => Promise<{ ok: true; data: T } | { ok: false; error: ApiError }>, done: (data: T) => void) => {
    setBusy(true);
    setActionError(null);
    setMessage(null);
    const r = await run();
    setBusy(false);
    if (r.ok) done(r.data);
    else setActionError(r.error);
    reload();
  };
  const retry = (body: { ids: number[] } | { all: true; type?: string }) =>
    act(
      () => post<{ retried: number; outcomes: RetryOutcome[] }>('/api/dead-letters/retry', { stream, group, ...body }),
      (d) => {
        setSelected(new Set());
        setMessage({ kind: d.retried === d.outcomes.length ? 'ok' : 'warn', text: `retried ${d.retried} of ${d.outcomes.length}: ${d.outcomes.map(describe).join('; ')}` });
      },
    );
  return (
    <div data-testid="dead-letters-page">
      <div class="toolbar">
        <PipelineSelect
          stream={stream}
          group={group}
          onChange={(s, g) => {
            setStream(s);
            setGroup(g);
            setSelected(new Set());
            setOpenId(null);
            setHashParams('dead-letters', { stream: s, group: g });
          }}
        />
        <form
          class="filters"
          onSubmit={(e) => {
            e.preventDefault();
            setFilters({ ...draft });
          }}
        >
          <input placeholder="event type" value={draft.type} onInput={(e) => setDraft({ ...draft, type: (e.target as HTMLInputElement).value })} data-testid="filter-type" />
          <input placeholder="error code" value={draft.code} onInput={(e) => setDraft({ ...draft, code: (e.target as HTMLInputElement).value })} data-testid="filter-code" />
          <input placeholder="since (15m, 2d or ISO)" value={draft.since} onInput={(e) => setDraft({ ...draft, since: (e.target as HTMLInputElement).value })} data-testid="filter-since" />
          <input placeholder="until (ISO or 1h)" value={draft.until} onInput={(e) => setDraft({ ...draft, until: (e.target as HTMLInputElement).value })} data-testid="filter-until" />
          <button type="submit" data-testid="filter-apply">
            filter
          </button>
        </form>
      </div>
      {readOnly ? (
        <Notice testId="read-only-notice">Read-only: this server has no HTTP_TOKEN, so retry and purge are not offered.</Notice>
      ) : (
        <div class="actions" data-testid="dlq-actions">
          <button disabled={busy || selected.size === 0} onClick={() => retry({ ids: [...selected] })} data-testid="retry-selected">
            retry selected ({selected.size})
          </button>
          <button disabled={busy} onClick={() => retry({ all: true, ...(filters.type ? { type: filters.type } : {}) })} data-testid="retry-all">
            retry all not retried{filters.type ? ` of type ${filters.type}` : ''}
          </button>
          <button
            class="danger"
            disabled={busy}
            data-testid="purge"
            onClick={async () => {
              setBusy(true);
              setActionError(null);
              setMessage(null);
              // Without confirm the server deletes nothing and says what would go (409).
              const r = await post<{ rows: number }>('/api/dead-letters/purge', { stream, group });
              setBusy(false);
              if (r.ok) setMessage({ kind: 'ok', text: 'nothing to purge' });
              else if (r.error.code === 'TRIB_ERR_CONFIRMATION_REQUIRED') setPurge({ text: r.error.message, rows: Number(r.error.extra?.rows ?? 0) });
              else setActionError(r.error);
            }}
          >
            purge…
          </button>
        </div>
      )}
      {purge ? (
        <PurgeDialog
          text={purge.text}
          rows={purge.rows}
          onCancel={() => setPurge(null)}
          onConfirm={() => {
            setPurge(null);
            void act(
              () => post<{ rows: number; streamEntries: number }>('/api/dead-letters/purge', { stream, group, confirm: true }),
              (d) => setMessage({ kind: 'ok', text: `deleted ${d.rows} dead letters (${d.streamEntries} dead-letter stream entries)` }),
            );
          }}
        />
      ) : null}
      {message ? (
        <Notice kind={message.kind} testId="action-result">
          {message.text}
        </Notice>
      ) : null}
      {actionError ? <ErrorBanner error={actionError} /> : null}
      {result === undefined ? (
        <Loading what="dead letters" />
      ) : !result.ok ? (
        <ErrorBanner error={result.error} />
      ) : (
        <List
          page={result.data}
          readOnly={readOnly}
          selected={selected}
          onSelect={setSelected}
          openId={openId}
          onOpen={setOpenId}
          onRetry={(id) => retry({ ids: [id] })}
          busy={busy}
        />
      )}
      {openId !== null ? <Detail id={openId} stream={stream} group={group} onClose={() => setOpenId(null)} /> : null}
    </div>
  );
}

function List(props: {
  page: DeadLetterPage;
  readOnly: boolean;
  selected: Set<number>;
  onSelect: (s: Set<number>) => void;
  openId: number | null;
  onOpen: (id: number) => void;
  onRetry: (id: number) => void;
  busy: boolean;
}) {
  const { page, selected } = props;
  if (page.total === 0) {
    return (
      <Notice testId="no-dead-letters">
        No dead letters for stream <code>{page.stream}</code>, group <code>{page.group}</code> with these filters.
      </Notice>
    );
  }
  const toggle = (id: number) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    props.onSelect(next);
  };
  return (
    <>
      <div class="count" data-testid="dlq-count">
        {page.rows.length} of {page.total} dead letters · dead-letter stream <code>{page.deadLetterStream}</code>
      </div>
      <table class="rows" data-testid="dlq-table">
        <thead>
          <tr>
            {props.readOnly ? null : <th />}
            <th>ID</th>
            <th>failed at</th>
            <th>stream ID</th>
            <th>type</th>
            <th>code</th>
            <th class="num">deliveries</th>
            <th>retried</th>
            <th>error</th>
            {props.readOnly ? null : <th />}
          </tr>
        </thead>
        <tbody>
          {page.rows.map((r) => (
            <tr
              data-testid="dlq-row"
              data-id={r.id}
              data-state={r.retryState}
              class={`${r.retryState}${props.openId === r.id ? ' open' : ''}`}
              onClick={() => props.onOpen(r.id)}
            >
              {props.readOnly ? null : (
                <td onClick={(e) => e.stopPropagation()}>
                  <input type="checkbox" checked={selected.has(r.id)} disabled={r.retryState !== 'not_retried'} onChange={() => toggle(r.id)} data-testid="dlq-select" />
                </td>
              )}
              <td>{r.id}</td>
              <td>{when(r.failedAt)}</td>
              <td>{r.streamId ?? ''}</td>
              <td>{r.eventType ?? ''}</td>
              <td>{r.errorCode}</td>
              <td class="num">{r.deliveries}</td>
              <td data-testid="dlq-retried">{retried(r)}</td>
              <td class="error-text" title={r.error}>
                {r.error}
              </td>
              {props.readOnly ? null : (
                <td onClick={(e) => e.stopPropagation()}>
                  {r.retryState === 'not_retried' ? (
                    <button disabled={props.busy} onClick={() => props.onRetry(r.id)} data-testid="dlq-retry-one">
                      retry
                    </button>
                  ) : null}
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function Detail(props: { id: number; stream: string; group: string; onClose: () => void }) {
  const { result } = usePoll(() => get<DeadLetterDetail>(`/api/dead-letters/${props.id}${query({ stream: props.stream, group: props.group })}`), 5000, [props.id, props.stream, props.group]);
  return (
    <aside class="detail" data-testid="dlq-detail">
      <button class="close" onClick={props.onClose} aria-label="close">
        ×
      </button>
      {result === undefined ? (
        <Loading what={`dead letter #${props.id}`} />
      ) : !result.ok ? (
        <ErrorBanner error={result.error} />
      ) : (
        <>
          <h3>dead letter #{result.data.id}</h3>
          <dl>
            <dt>failed at</dt>
            <dd>{when(result.data.failedAt)}</dd>
            <dt>stream</dt>
            <dd>
              {result.data.streamKey} (group {result.data.group})
            </dd>
            <dt>stream ID</dt>
            <dd>{result.data.streamId}</dd>
            <dt>event ID</dt>
            <dd>{result.data.eventId}</dd>
            <dt>type</dt>
            <dd>{result.data.eventType}</dd>
            <dt>error code</dt>
            <dd>{result.data.errorCode}</dd>
            <dt>error</dt>
            <dd>{result.data.error}</dd>
            <dt>deliveries</dt>
            <dd>{result.data.deliveries}</dd>
            <dt>retried</dt>
            <dd>{result.data.retryState === 'retried' ? `at ${when(result.data.retriedAt)} as ${result.data.retriedAs}` : result.data.retryState.replace('_', ' ')}</dd>
            <dt>dead-letter stream entry</dt>
            <dd>{result.data.streamEntry ? result.data.streamEntry.id : 'none (retried, purged or trimmed)'}</dd>
          </dl>
          <h4>fields</h4>
          <pre data-testid="dlq-fields">{JSON.stringify(result.data.fields, null, 2)}</pre>
        </>
      )}
    </aside>
  );
}

/** Purge asks twice: the server's count of what would go, then the number typed back. */
function PurgeDialog(props: { text: string; rows: number; onCancel: () => void; onConfirm: () => void }) {
  const [typed, setTyped] = useState('');
  return (
    <div class="dialog-backdrop">
      <div class="dialog" role="dialog" aria-modal="true" data-testid="purge-dialog">
        <h3>Purge dead letters?</h3>
        <p>{props.text}</p>
        <p>
          This cannot be undone. Type <strong>{props.rows}</strong> to confirm.
        </p>
        <input value={typed} onInput={(e) => setTyped((e.target as HTMLInputElement).value)} data-testid="purge-confirm-input" autofocus />
        <div class="buttons">
          <button onClick={props.onCancel} data-testid="purge-cancel">
            cancel
          </button>
          <button class="danger" disabled={typed.trim() !== String(props.rows)} onClick={props.onConfirm} data-testid="purge-confirm">
            delete {props.rows}
          </button>
        </div>
      </div>
    </div>
  );
}
