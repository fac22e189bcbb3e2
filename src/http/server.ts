import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
/** Anything that can say whether it is ready (a pipeline). */
export interface Probed {
  probe(): Promise<{ ready: boolean }>;
}

export interface OpsServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/**
 * A pipeline's HTTP surface: `/metrics` (Prometheus text), `/healthz` (the process is
 * alive: always 200 while it serves), `/readyz` (200 when the pipeline's probe says ready
 * — its servers answer, its group exists — else 503 with the failing checks as JSON).
 */
export async function startOpsServer(engine: Probed, registry: Registry, port: number, host = '0.0.0.0'): Promise<OpsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'text/plain', 'method not allowed\n');
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => reply(200, registry.contentType, text),
        (err: Error) => reply(500, 'text/plain', `metrics failed: ${err.message}\n`),
      );
    } else if (path === '/healthz') {
      reply(200, 'application/json', '{"status":"ok"}\n');
    } else if (path === '/readyz') {
      engine.probe().then((p) => reply(p.ready ? 200 : 503, 'application/json', `${JSON.stringify({ status: p.ready ? 'ready' : 'not ready', ...p })}\n`));
    } else {
      reply(404, 'text/plain', 'not found: try /metrics, /healthz or /readyz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
