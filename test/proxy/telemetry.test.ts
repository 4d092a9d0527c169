// SPDX-License-Identifier: Apache-2.0
// Istio-compatible metrics, the access log and the admin endpoint, from real requests.
import test from 'ava';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startAdmin } from '../../src/proxy/admin.ts';
import { AccessLog } from '../../src/proxy/telemetry/access-log.ts';
import { backend, endpoints, obj, proxy, service } from './helpers/fixtures.ts';
import { rawExchange } from './helpers/raw.ts';

test('requests are counted with Istio names and labels, and logged, and the admin endpoint serves them', async (t) => {
  const b = await backend(t, 'web-v1');
  const p = await proxy(
    t,
    [
      service('web', 'shop'),
      { ...endpoints('web', 'shop', [{ port: b.port, labels: { app: 'web', version: 'v1' } }]) },
      obj('Route', 'web', 'shop', { service: 'web', rules: [{ name: 'teapot', match: [{ path: { exact: '/tea' } }], action: { directResponse: { status: 418, body: 'short and stout' } } }, { name: 'default', action: { split: [{}] } }] }),
    ],
    'shop/web',
  );
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  p.server.core.accessLog = new AccessLog(pino(sink), 1);
  await rawExchange(p.port, 'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /status/503 HTTP/1.1\r\nHost: x\r\n\r\nGET /tea HTTP/1.1\r\nHost: x\r\nx-request-id: rid-1\r\nConnection: close\r\n\r\n');
  const admin = await startAdmin(p.server.core, 0);
  t.teardown(() => new Promise<void>((r) => admin.close(() => r())));
  const base = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const count = (code: number) => new RegExp(`istio_requests_total\\{[^}]*destination_service="web\\.shop\\.svc\\.cluster\\.local"[^}]*response_code="${code}"[^}]*\\} 1`).test(metrics);
  t.true(count(200), metrics);
  t.true(count(503));
  t.true(count(418));
  t.regex(metrics, /istio_requests_total\{reporter="source"[^}]*destination_app="web",destination_version="v1"/);
  t.regex(metrics, /istio_request_duration_milliseconds_bucket\{[^}]*le="0\.5"/);
  t.regex(metrics, /kernmesh_proxy_active_connections \d/);

  t.is(lines.length, 3);
  t.like(lines[2], { msg: 'access', method: 'GET', status: 418, route: 'teapot', requestId: 'rid-1', service: 'shop/web', request: { path: '/tea' } });
  t.like(lines[0], { status: 200, upstream: `127.0.0.1:${b.port}`, flags: '-' });
  // A request that came without an id is logged with the one the proxy made up and sent upstream.
  t.regex(String(lines[0]!.requestId), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.is(lines[0]!.requestId, b.seen[0]!.headers['x-request-id']);
  t.not(lines[1]!.requestId, lines[0]!.requestId);

  t.is((await fetch(`${base}/healthz`)).status, 200);
  t.is((await fetch(`${base}/readyz`)).status, 200);
  const dump = (await (await fetch(`${base}/config_dump`)).json()) as { version: number; services: Array<{ service: string; routes: string[] }> };
  t.is(dump.version, 1);
  t.deepEqual(dump.services[0]!.routes, ['teapot', 'default']);
});

test('local replies carry Envoy response flags: NR for no route, UH for no healthy upstream, UF for a failed connect', async (t) => {
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: 1 }]), service('empty', 'shop')], null);
  await rawExchange(p.port, 'GET / HTTP/1.1\r\nHost: nowhere\r\nConnection: close\r\n\r\n');
  await rawExchange(p.port, 'GET / HTTP/1.1\r\nHost: empty.shop.svc.cluster.local\r\nConnection: close\r\n\r\n');
  await rawExchange(p.port, 'GET / HTTP/1.1\r\nHost: web.shop.svc.cluster.local\r\nConnection: close\r\n\r\n');
  const metrics = await p.server.core.metrics.render();
  t.regex(metrics, /istio_requests_total\{[^}]*response_code="404"[^}]*response_flags="NR"|istio_requests_total\{[^}]*response_flags="NR"[^}]*response_code="404"/);
  t.regex(metrics, /kernmesh_proxy_local_replies_total\{response_flags="UH"\} 1/);
  t.regex(metrics, /kernmesh_proxy_local_replies_total\{response_flags="UF"\} 1/);
});
