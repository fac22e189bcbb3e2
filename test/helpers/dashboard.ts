/**
 * The dashboard in tests: an HTTP server with its routes on a test's config, and one
 * headless Debian Chromium per file (playwright-core; run.sh test installs chromium).
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { join } from 'node:path';
import { dashboardRoutes, defaultWebRoot, type DashboardConfig, type DashboardOptions } from '../../src/http/dashboard.js';
import { startHttpServer, type HttpServer } from '../../src/http/server.js';

export const TOKEN = 'dashboard-test-token-0123456789';
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** A server with the dashboard on `config`; with `token`, writes need it, without, it is read-only. */
export async function serveDashboard(config: DashboardConfig, o: { token?: string } & Partial<DashboardOptions> = {}): Promise<HttpServer> {
  const { token, ...rest } = o;
  return startHttpServer({ port: 0, ...(token ? { token } : {}), routes: [dashboardRoutes({ config, ...rest })] });
}

/** The page is served from dist/web: built by `npm run build`. */
export function assertWebBuilt(): void {
  const index = join(defaultWebRoot(), 'index.html');
  if (!existsSync(index)) throw new Error(`${index} is missing: run \`npm run build\` before these tests`);
}

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (run.sh test installs it)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
}

export interface Reply {
  status: number;
  text: string;
  json: any;
}

export async function call(server: HttpServer, method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}
