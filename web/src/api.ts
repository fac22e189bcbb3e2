/** The dashboard's calls to /api: JSON in and out, the bearer token (kept for this tab only) on writes. */

export interface ApiError {
  status: number;
  code: string;
  message: string;
  extra?: Record<string, unknown>;
}

export type Result<T> = { ok: true; data: T } | { ok: false; error: ApiError };

const TOKEN_KEY = 'tributary.token';

export function getToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

export function setToken(token: string): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Result<T>> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method === 'POST') {
    headers['content-type'] = 'application/json';
    const token = getToken();
    if (token) headers.authorization = `Bearer ${token}`;
  }
  let res: Response;
  try {
    res = await fetch(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }), cache: 'no-store' });
  } catch {
    return { ok: false, error: { status: 0, code: 'NETWORK', message: 'the dashboard server does not answer: is tributary serve (or start --http-port) still running?' } };
  }
  let json: unknown;
  try {
    json = await res.json();
  } catch {
    json = undefined;
  }
  if (res.ok) return { ok: true, data: json as T };
  const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
  const { code, message, ...extra } = (e ?? {}) as Record<string, unknown>;
  return { ok: false, error: { status: res.status, code: String(code ?? `HTTP_${res.status}`), message: String(message ?? res.statusText), extra } };
}

export const get = <T>(path: string) => call<T>('GET', path);
export const post = <T>(path: string, body: unknown) => call<T>('POST', path, body);

/** `?a=1&b=x` from the defined, non-empty values. */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
