// SPDX-License-Identifier: Apache-2.0
/**
 * The proxy's admin endpoint, on localhost only: /metrics (Prometheus),
 * /healthz, /readyz (a routing table is loaded), /config_dump (the snapshot
 * version and what the proxy built from it), and POST /drain when the agent
 * offers it (the DaemonSet's preStop: stop intercepting before SIGTERM).
 * startMetrics serves /metrics alone on every address, for Prometheus.
 */
import { type Server, createServer } from 'node:http';
import type { ProxyCore } from './core.ts';

export interface AdminActions {
  drain?: () => Promise<void>;
  /** The exposition to serve (the agent's own plus its workers', added up); default: this process's. */
  metrics?: () => Promise<string>;
}

export function startAdmin(core: ProxyCore, port: number, host = '127.0.0.1', actions: AdminActions = {}): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    switch (req.url?.split('?')[0]) {
      case '/metrics':
        return sendMetrics(core, send, actions.metrics);
      case '/drain':
        if (!actions.drain) return send(404, 'text/plain', 'nothing to drain here\n');
        if (req.method !== 'POST') return send(405, 'text/plain', 'use POST /drain\n');
        void actions.drain().then(
          () => send(200, 'text/plain', 'drained: new connections are no longer intercepted\n'),
          (err: Error) => send(500, 'text/plain', `drain failed: ${err.message}\n`),
        );
        return;
      case '/healthz':
        return send(200, 'text/plain', 'ok\n');
      case '/readyz':
        return core.table.version > 0 ? send(200, 'text/plain', `ready (config version ${core.table.version})\n`) : send(503, 'text/plain', 'no configuration yet\n');
      case '/config_dump': {
        const t = core.table;
        const services = [...t.services.values()].map((s) => ({
          service: s.key,
          hosts: s.hosts,
          addresses: s.addresses,
          ports: s.ports,
          endpoints: s.endpoints.map((e) => `${e.address}:${e.port}`),
          subsets: [...s.subsets.keys()],
          routes: s.routes.map((r) => r.name ?? '(unnamed)'),
        }));
        return send(200, 'application/json', `${JSON.stringify({ version: t.version, services, pool: core.pool.sizes() }, null, 2)}\n`);
      }
      default:
        return send(404, 'text/plain', 'not found: try /metrics, /healthz, /readyz, /config_dump\n');
    }
  });
  return listen(server, port, host);
}

type Send = (status: number, type: string, body: string) => void;

function sendMetrics(core: ProxyCore, send: Send, render?: () => Promise<string>): void {
  core.metrics.upstreamPoolIdle.set(Object.values(core.pool.sizes()).reduce((a, b) => a + b, 0));
  void (render ?? (() => core.metrics.render()))().then(
    (text) => send(200, core.metrics.contentType, text),
    (err: Error) => send(500, 'text/plain', `metrics: ${err.message}\n`),
  );
}

/** /metrics alone, for a Prometheus scraping the node (nothing else is exposed beyond loopback). */
export function startMetrics(core: ProxyCore, port: number, host = '0.0.0.0', render?: () => Promise<string>): Promise<Server> {
  const server = createServer((req, res) => {
    const send: Send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.url?.split('?')[0] === '/metrics') return sendMetrics(core, send, render);
    send(404, 'text/plain', 'only /metrics is served here\n');
  });
  return listen(server, port, host);
}

function listen(server: Server, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
