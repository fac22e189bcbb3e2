/**
 * The Host-header check against DNS rebinding, on a real server with the dashboard and
 * the ingest API: requests sent with node:http and a forged Host header (what a browser
 * sends after attacker.example was re-pointed at 127.0.0.1) are refused with 403 on
 * every route, loopback and listed names are answered, each refused Host is logged once.
 */
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { dashboardRoutes } from '../../src/http/dashboard.js';
import { startHttpServer, type HttpLogger, type HttpServer, type HttpServerOptions } from '../../src/http/server.js';
import { send } from '../../src/redis/client.js';
import { assertBuilt, CLI, EngineProcess, killChildren, REPO } from '../helpers/child.js';
import { testEnvs, type TestEnv } from '../helpers/env.js';

const envs = testEnvs();
const TOKEN = 'hosts-test-token-0123456789abcdef';
afterEach(killChildren);

interface Line {
  level: string;
  obj: Record<string, unknown>;
  msg: string;
}

function memoryLog(lines: Line[]): HttpLogger {
  const at = (level: string) => (obj: object, msg: string) => void lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

async function serve(env: TestEnv, more: Partial<HttpServerOptions> = {}): Promise<HttpServer> {
  const server = await startHttpServer({
    port: 0,
    token: TOKEN,
    ingest: {
      redisUrl: env.config.redisUrl,
      streams: [{ stream: env.config.streamKey, groups: [env.config.group] }],
      maxLag: 100_000,
      maxBodyBytes: 1024 * 1024,
      maxEvents: 1000,
    },
    routes: [dashboardRoutes({ config: env.config })],
    ...more,
  });
  envs.defer(() => server.close());
  return server;
}

interface Reply {
  status: number;
  json: any;
}

/** One request to 127.0.0.1:<port> with `host` as its Host header (undefined: none sent). */
function call(server: Pick<HttpServer, 'port'>, method: 'GET' | 'POST', path: string, host: string | undefined, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
    if (host !== undefined) headers.host = host;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const req = request({ host: '127.0.0.1', port: server.port, method, path, headers, setHost: false, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const events = (id: string) => JSON.stringify([{ event_type: 'host.test', payload: { ok: true }, event_id: id }]);

describe('HTTP server: the Host check (DNS rebinding)', () => {
  it('bound to 127.0.0.1: refuses evil.example on the dashboard, ingest, probes and metrics; answers 127.0.0.1, localhost and [::1]', async () => {
    const env = await envs.setup('hosts_default', {}, { migrate: false });
    await send(env.redis, ['XGROUP', 'CREATE', env.config.streamKey, env.config.group, '0', 'MKSTREAM']);
    const lines: Line[] = [];
    const server = await serve(env, { log: memoryLog(lines) });
    const evil = `evil.example:${server.port}`;

    const info = await call(server, 'GET', '/api/info', evil);
    expect(info.status).toBe(403);
    expect(info.json.error.code).toBe('TRIB_ERR_HTTP_HOST_NOT_ALLOWED');
    expect(info.json.error.message).toContain('HTTP_ALLOWED_HOSTS');
    expect(info.json.readOnly).toBeUndefined();
    for (const path of ['/api/overview', '/api/dead-letters', '/healthz', '/readyz', '/metrics', '/', '/no/such/route']) {
      expect((await call(server, 'GET', path, evil)).status, path).toBe(403);
    }
    // Ingest with the right token but a forged Host: refused, nothing added.
    const refused = await call(server, 'POST', `/v1/streams/${encodeURIComponent(env.config.streamKey)}/events`, evil, events('h-0'));
    expect(refused.status).toBe(403);
    expect(refused.json.error.code).toBe('TRIB_ERR_HTTP_HOST_NOT_ALLOWED');
    expect(await send(env.redis, ['XLEN', env.config.streamKey])).toBe(0);
    // An empty Host, one that is not a host: refused. No Host at all: Node's HTTP/1.1 parser answers 400 before any route.
    for (const host of ['', 'evil example']) expect((await call(server, 'GET', '/api/info', host)).status, host).toBe(403);
    const none = await call(server, 'GET', '/api/info', undefined);
    expect(none.status).toBe(400);
    expect(none.json).toBeUndefined();

    for (const host of [`127.0.0.1:${server.port}`, `localhost:${server.port}`, `LOCALHOST.:${server.port}`, `[::1]:${server.port}`, '127.0.0.1']) {
      const ok = await call(server, 'GET', '/api/info', host);
      expect(ok.status, host).toBe(200);
      expect(ok.json.stream).toBe(env.config.streamKey);
    }
    const added = await call(server, 'POST', `/v1/streams/${encodeURIComponent(env.config.streamKey)}/events`, `localhost:${server.port}`, events('h-1'));
    expect(added.status).toBe(202);
    expect(await send(env.redis, ['XLEN', env.config.streamKey])).toBe(1);

    // One warning per distinct refused Host (evil.example:port, "", "evil example"), whatever the number of requests, without a body.
    const warned = lines.filter((l) => l.level === 'warn' && /refused a request with Host/.test(l.msg));
    expect(warned.map((l) => l.obj.host)).toEqual([JSON.stringify(evil), '""', '"evil example"']);
    expect(JSON.stringify(warned)).not.toContain('host.test');
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);

    // At most 100 refused Hosts are remembered and logged: a flood of names cannot grow the set.
    for (let i = 0; i < 110; i++) expect((await call(server, 'GET', '/healthz', `n${i}.evil.example`)).status).toBe(403);
    expect(lines.filter((l) => l.level === 'warn' && /refused a request with Host/.test(l.msg))).toHaveLength(100);
  });

  it('answers a listed name (any port, or the one listed), still refuses others; * turns the check off', async () => {
    const env = await envs.setup('hosts_listed', {}, { migrate: false });
    const server = await serve(env, { allowedHosts: ['dash.example.com', 'ops.example.com:9999'] });
    expect((await call(server, 'GET', '/api/info', `dash.example.com:${server.port}`)).status).toBe(200);
    expect((await call(server, 'GET', '/api/info', 'Dash.Example.com')).status).toBe(200);
    expect((await call(server, 'GET', '/api/info', 'ops.example.com:9999')).status).toBe(200);
    expect((await call(server, 'GET', '/api/info', `ops.example.com:${server.port}`)).status).toBe(403);
    expect((await call(server, 'GET', '/api/info', `evil.example:${server.port}`)).status).toBe(403);
    expect((await call(server, 'GET', '/api/info', `10.9.8.7:${server.port}`)).status).toBe(403);

    const open = await serve(env, { allowedHosts: '*' });
    expect((await call(open, 'GET', '/api/info', `evil.example:${open.port}`)).status).toBe(200);
    expect((await call(open, 'GET', '/healthz', '')).status).toBe(200);
  });

  it('bound to 0.0.0.0: any IP address (the machine\'s, a pod IP) and localhost, not other names', async () => {
    const env = await envs.setup('hosts_any', {}, { migrate: false });
    const server = await serve(env, { host: '0.0.0.0' });
    for (const host of [`10.9.8.7:${server.port}`, `192.168.1.20:${server.port}`, `[fd00::1]:${server.port}`, `localhost:${server.port}`]) {
      expect((await call(server, 'GET', '/readyz', host)).status, host).toBe(200);
    }
    expect((await call(server, 'GET', '/api/info', `evil.example:${server.port}`)).status).toBe(403);
    expect((await call(server, 'GET', '/metrics', `myhost:${server.port}`)).status).toBe(403);
  });

  it('refuses to start with a list entry that is not a host', async () => {
    const env = await envs.setup('hosts_bad', {}, { migrate: false });
    await expect(serve(env, { allowedHosts: ['http://dash.example.com'] })).rejects.toMatchObject({ code: 'TRIB_ERR_CONFIG_INVALID' });
  });
});

describe('the CLI: --http-allowed-hosts / HTTP_ALLOWED_HOSTS', () => {
  it('serve answers a listed name, refuses another (logged once at warn), and says at start which names it answers', async () => {
    assertBuilt();
    const env = await envs.setup('hosts_cli', {}, { migrate: false });
    const childEnv: NodeJS.ProcessEnv = { ...env.childEnv, NO_COLOR: '1', LOG_LEVEL: 'info' };
    for (const k of ['HTTP_TOKEN', 'HTTP_PORT', 'HTTP_HOST', 'HTTP_ALLOWED_HOSTS', 'METRICS_PORT', 'INGEST_STREAMS']) delete childEnv[k];
    const child = new EngineProcess(childEnv, 'serve-hosts', ['serve', '--port', '0', '--http-allowed-hosts', 'dash.example.com,ops.example.com:9443']);
    await child.waitForLog(/listening on http:\/\/127\.0\.0\.1:\d+/, 15_000);
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(child.output)![1]);
    await child.waitForLog(/answers the Host names/, 5000);
    expect(child.output).toContain('answers the Host names localhost, 127.0.0.1, [::1], dash.example.com, ops.example.com:9443 (others: 403');
    expect((await call({ port }, 'GET', '/api/info', `dash.example.com:${port}`)).status).toBe(200);
    expect((await call({ port }, 'GET', '/api/info', `127.0.0.1:${port}`)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await call({ port }, 'GET', '/api/info', `evil.example:${port}`)).status).toBe(403);
    await child.waitForLog(/refused a request with Host/, 5000);
    child.kill('SIGTERM');
    expect((await child.waitExit(10_000))?.code, child.output).toBe(0);
    expect(child.output.match(/refused a request with Host/g)).toHaveLength(1);
  });

  it('serve refuses a list that is not host names with a coded error naming the setting', async () => {
    assertBuilt();
    const env = await envs.setup('hosts_cli_bad', {}, { migrate: false });
    const child = new EngineProcess({ ...env.childEnv, NO_COLOR: '1' }, 'serve-hosts-bad', ['serve', '--port', '0', '--http-allowed-hosts', 'http://dash.example.com']);
    expect((await child.waitExit(10_000))?.code).toBe(2);
    expect(child.output).toContain('TRIB_ERR_CONFIG_INVALID');
    expect(child.output).toContain('HTTP_ALLOWED_HOSTS');
  });

  it('serve, start, run and orders process take the flag', async () => {
    assertBuilt();
    const run = promisify(execFile);
    for (const args of [['serve'], ['start'], ['run'], ['orders', 'process']]) {
      const { stdout } = await run(process.execPath, [CLI, ...args, '--help'], { cwd: REPO });
      expect(stdout, args.join(' ')).toContain('--http-allowed-hosts');
    }
  });
});
