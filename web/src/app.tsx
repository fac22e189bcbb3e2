import { useEffect, useState } from 'preact/hooks';
import { get, getToken, setToken } from './api.js';
import type { Info } from './types.js';
import { ErrorBanner, Loading } from './ui.js';
import { usePoll } from './hooks.js';
import { OverviewPage } from './pages/overview.js';
import { DeadLettersPage } from './pages/dead-letters.js';
import { PendingPage } from './pages/pending.js';
import { OrdersPage } from './pages/orders.js';

const PAGES = [
  { path: 'overview', title: 'Overview' },
  { path: 'dead-letters', title: 'Dead letters' },
  { path: 'pending', title: 'Pending' },
  { path: 'orders', title: 'Orders pipeline' },
] as const;
type PagePath = (typeof PAGES)[number]['path'];

/** `#/dead-letters?stream=x&group=y` → page and parameters. */
function parseHash(): { page: PagePath; params: URLSearchParams } {
  const [path, q] = location.hash.replace(/^#\/?/, '').split('?');
  const page = (PAGES.find((p) => p.path === path)?.path ?? 'overview') as PagePath;
  return { page, params: new URLSearchParams(q ?? '') };
}

export function App() {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  // /api/info rarely changes: every 30 s (a restart with or without HTTP_TOKEN shows).
  const { result: info } = usePoll(() => get<Info>('/api/info'), 30_000);

  return (
    <div class="app">
      <header>
        <div class="brand">Tributary</div>
        <nav>
          {PAGES.map((p) => (
            <a href={`#/${p.path}`} class={route.page === p.path ? 'active' : ''} data-testid={`nav-${p.path}`}>
              {p.title}
            </a>
          ))}
        </nav>
        {info?.ok ? <Access info={info.data} /> : null}
      </header>
      <main>
        {info === undefined ? (
          <Loading what="the server's settings" />
        ) : !info.ok ? (
          <ErrorBanner error={info.error} />
        ) : route.page === 'overview' ? (
          <OverviewPage info={info.data} />
        ) : route.page === 'dead-letters' ? (
          <DeadLettersPage info={info.data} params={route.params} />
        ) : route.page === 'pending' ? (
          <PendingPage info={info.data} params={route.params} />
        ) : (
          <OrdersPage info={info.data} />
        )}
      </main>
    </div>
  );
}

/** Read-only badge, or the token field: actions send it as a bearer token (kept in this tab only, never in a cookie). */
function Access(props: { info: Info }) {
  const [token, setValue] = useState(getToken());
  const [saved, setSaved] = useState(getToken() !== '');
  if (props.info.readOnly) {
    return (
      <div class="access readonly" data-testid="read-only" title="The server has no HTTP_TOKEN: it serves reads only and refuses every action.">
        read-only
      </div>
    );
  }
  return (
    <form
      class="access"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(token.trim());
        setSaved(token.trim() !== '');
      }}
    >
      <input
        type="password"
        placeholder="HTTP_TOKEN for actions"
        value={token}
        onInput={(e) => {
          setValue((e.target as HTMLInputElement).value);
          setSaved(false);
        }}
        data-testid="token-input"
        autocomplete="off"
      />
      <button type="submit" data-testid="token-save">
        {saved ? 'saved' : 'use'}
      </button>
    </form>
  );
}
