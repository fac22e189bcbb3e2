import type { ComponentChildren } from 'preact';
import type { ApiError } from './api.js';

/** What to do, per error code (the server's message says it too; this adds the command). */
const HINTS: Record<string, string> = {
  TRIB_ERR_REDIS_UNAVAILABLE: 'Start Redis and Postgres with `tributary up`, or point REDIS_URL at your Redis, then reload.',
  TRIB_ERR_REDIS_AUTH: 'Check the password in REDIS_URL.',
  TRIB_ERR_POSTGRES_UNAVAILABLE: 'Start Postgres with `tributary up`, or point DATABASE_URL at your Postgres.',
  TRIB_ERR_POSTGRES_AUTH: 'Check the user and password in DATABASE_URL.',
  TRIB_ERR_POSTGRES_TABLE_MISSING: 'Run `tributary migrate`, or start the engine (`tributary start`), which migrates.',
  TRIB_ERR_GROUP_NOT_FOUND: 'Start the engine: `tributary start` creates the consumer group.',
  TRIB_ERR_HTTP_READ_ONLY: 'This server has no HTTP_TOKEN: restart it with HTTP_TOKEN set (16 characters or more) to allow actions.',
  TRIB_ERR_HTTP_UNAUTHORIZED: 'Enter the server\'s HTTP_TOKEN in the token field at the top right.',
  NETWORK: 'Check that the server still runs; the page retries by itself.',
};

export function ErrorBanner(props: { error: ApiError }) {
  const { error } = props;
  return (
    <div class="banner error" role="alert" data-testid="error-banner" data-code={error.code}>
      <strong>{error.message}</strong>
      {HINTS[error.code] ? <div class="hint">{HINTS[error.code]}</div> : null}
      <div class="code">{error.code}</div>
    </div>
  );
}

export function Notice(props: { kind?: 'info' | 'warn' | 'ok'; children: ComponentChildren; testId?: string }) {
  return (
    <div class={`banner ${props.kind ?? 'info'}`} data-testid={props.testId}>
      {props.children}
    </div>
  );
}

export function Loading(props: { what: string }) {
  return (
    <div class="loading" data-testid="loading">
      Loading {props.what}…
    </div>
  );
}

export function Tile(props: { label: string; value: ComponentChildren; sub?: ComponentChildren; warn?: boolean; testId?: string }) {
  return (
    <div class={`tile${props.warn ? ' warn' : ''}`} data-testid={props.testId}>
      <div class="label">{props.label}</div>
      <div class="value">{props.value}</div>
      {props.sub ? <div class="sub">{props.sub}</div> : null}
    </div>
  );
}
