// SPDX-License-Identifier: Apache-2.0
/** Real servers on loopback port 0 for the proxy tests, closed in teardown. */
import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { type IncomingMessage, type Server as HttpServer, type ServerResponse, createServer } from 'node:http';
import { type AddressInfo, type Socket, createServer as createTcpServer } from 'node:net';
import type { MeshObject } from '../../../src/config/objects.ts';
import { ProxyCore } from '../../../src/proxy/core.ts';
import { buildTable } from '../../../src/proxy/routing/table.ts';
import { type ListenerOptions, ProxyServer } from '../../../src/proxy/server.ts';

export interface Seen {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  bodyBytes: number;
  bodySha: string;
}

/** An HTTP backend that answers JSON describing what it received, tagged with its name. */
export async function backend(t: ExecutionContext, name: string): Promise<{ port: number; seen: Seen[]; server: HttpServer }> {
  const seen: Seen[] = [];
  const flakyCounts = new Map<string, number>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    req.on('end', () => {
      const s: Seen = { method: req.method!, url: req.url!, headers: req.headers, bodyBytes: bytes, bodySha: hash.digest('hex') };
      seen.push(s);
      if (req.url === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('hello ');
        res.write('chunked ');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end('world');
        return;
      }
      const slow = /^\/slow\/(\d+)/.exec(req.url!);
      if (slow) {
        setTimeout(() => {
          res.writeHead(200, { 'content-length': 4 });
          res.end('slow');
        }, Number(slow[1]));
        return;
      }
      // The first request with this key is answered after the delay, every later one at once.
      const hangFirst = /^\/hang-first\/(\w+)\/(\d+)/.exec(req.url!);
      if (hangFirst) {
        const n = (flakyCounts.get(hangFirst[1]!) ?? 0) + 1;
        flakyCounts.set(hangFirst[1]!, n);
        const body = n === 1 ? 'late' : 'fast';
        setTimeout(() => res.writeHead(200, { 'content-length': 4 }).end(body), n === 1 ? Number(hangFirst[2]) : 0);
        return;
      }
      const flaky = /^\/flaky\/(\w+)\/(\d+)/.exec(req.url!);
      if (flaky) {
        const n = (flakyCounts.get(flaky[1]!) ?? 0) + 1;
        flakyCounts.set(flaky[1]!, n);
        const ok = n > Number(flaky[2]);
        res.writeHead(ok ? 200 : 503, { 'content-length': ok ? 2 : 4 });
        res.end(ok ? 'ok' : 'fail');
        return;
      }
      const m = /^\/status\/(\d{3})/.exec(req.url!);
      const body = JSON.stringify({ backend: name, ...s });
      res.writeHead(m ? Number(m[1]) : 200, { 'content-type': 'application/json', 'x-backend': name, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  });
  server.on('upgrade', (_req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n');
    if (head.length) socket.write(head);
    socket.pipe(socket); // echo
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));
  return { port: (server.address() as AddressInfo).port, seen, server };
}

/** A raw TCP upstream, for what a Node HTTP server will not send: its port. */
export async function rawUpstream(t: ExecutionContext, onConn: (s: Socket) => void, options: { allowHalfOpen?: boolean } = {}): Promise<number> {
  const server = createTcpServer({ allowHalfOpen: options.allowHalfOpen ?? false }, onConn);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

export function service(name: string, ns: string, extra: Record<string, unknown> = {}): MeshObject {
  return { apiVersion: 'kernmesh.io/v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { hosts: [`${name}.${ns}.svc.cluster.local`], addresses: [], ports: [{ port: 80, targetPort: 80, protocol: 'http' }], ...extra } };
}

export function endpoints(name: string, ns: string, eps: Array<{ port: number; labels?: Record<string, string> }>): MeshObject {
  return { apiVersion: 'kernmesh.io/v1', kind: 'Endpoints', metadata: { name, namespace: ns }, spec: { endpoints: eps.map((e) => ({ address: '127.0.0.1', port: e.port, labels: e.labels ?? {}, weight: 1, ready: true })) } };
}

export function obj(kind: MeshObject['kind'], name: string, ns: string, spec: Record<string, unknown>): MeshObject {
  return { apiVersion: 'kernmesh.io/v1', kind, metadata: { name, namespace: ns }, spec };
}

export function table(objects: MeshObject[], version = 1) {
  return buildTable(version, objects.map((object, i) => ({ version: i + 1, object })));
}

/** A proxy on 127.0.0.1:0, bound to one service (or routing by Host when bound is null). */
export async function proxy(t: ExecutionContext, objects: MeshObject[], bound: string | null, options: ListenerOptions = {}): Promise<{ port: number; server: ProxyServer }> {
  const core = new ProxyCore();
  core.setTable(table(objects));
  const server = new ProxyServer(core);
  const s = await server.listen({ port: 0, host: '127.0.0.1' }, { ...options, ...(bound ? { service: bound } : {}) });
  t.teardown(() => server.close());
  return { port: (s.address() as AddressInfo).port, server };
}
