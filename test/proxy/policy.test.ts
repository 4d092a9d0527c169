// SPDX-License-Identifier: Apache-2.0
// Authorization, rate limits, quotas, fault injection and mirroring, from the mesh's objects.
import test, { type ExecutionContext } from 'ava';
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import type { MeshObject } from '../../src/config/objects.ts';
import type { Peer } from '../../src/proxy/telemetry/metrics.ts';
import { buildTable } from '../../src/proxy/routing/table.ts';
import { backend, endpoints, obj, proxy, service } from './helpers/fixtures.ts';
import { rawExchange, statuses } from './helpers/raw.ts';
import { until } from './helpers/wait.ts';

const frontend: Peer = { workload: 'frontend', namespace: 'shop', app: 'frontend' };
const intruder: Peer = { workload: 'scraper', namespace: 'outside', app: 'scraper' };

async function ask(port: number, path = '/', method = 'GET'): Promise<number> {
  const { text } = await rawExchange(port, `${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 3000);
  return statuses(text)[0] ?? 0;
}

/** Two listeners on one proxy core: one per calling workload. */
async function mesh(t: ExecutionContext, extra: MeshObject[]) {
  const b = await backend(t, 'web');
  const objects = [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), ...extra];
  const p = await proxy(t, objects, 'shop/web', { source: frontend });
  const other = await p.server.listen({ port: 0, host: '127.0.0.1' }, { service: 'shop/web', source: intruder });
  return { b, p, fromFrontend: p.port, fromIntruder: (other.address() as AddressInfo).port };
}

test('DENY refuses what it matches (403); ALLOW admits only its sources', async (t) => {
  const m = await mesh(t, [
    obj('AuthorizationPolicy', 'no-delete', 'shop', { service: 'web', action: 'DENY', rules: [{ to: { methods: ['DELETE'] } }] }),
    obj('AuthorizationPolicy', 'only-frontend', 'shop', { service: 'web', action: 'ALLOW', rules: [{ from: { workloads: ['shop/frontend'] } }] }),
  ]);
  t.is(await ask(m.fromFrontend), 200);
  t.is(await ask(m.fromFrontend, '/x', 'DELETE'), 403);
  t.is(await ask(m.fromIntruder), 403, 'not in the ALLOW list');
  t.is(m.b.seen.length, 1, 'denied requests never reach the service');
  t.regex(await m.p.server.core.metrics.render(), /response_code="403"[^}]*response_flags="RBAC"/);
});

test("a split to another service applies that service's authorization and rate limits too", async (t) => {
  const admin = await backend(t, 'admin');
  const m = await mesh(t, [
    service('admin', 'shop'),
    endpoints('admin', 'shop', [{ port: admin.port }]),
    obj('Route', 'web', 'shop', { service: 'web', rules: [{ match: [{ path: { prefix: '/admin' } }], action: { split: [{ service: 'admin' }] } }, { action: { split: [{}] } }] }),
    obj('AuthorizationPolicy', 'admin-insiders', 'shop', { service: 'admin', action: 'DENY', rules: [{ from: { namespaces: ['outside'] } }] }),
    obj('RateLimit', 'admin', 'shop', { service: 'admin', maxTokens: 2, fillInterval: '1h' }),
  ]);
  t.is(await ask(m.fromIntruder, '/public'), 200, "web's own policy lets the outsider in");
  t.is(await ask(m.fromIntruder, '/admin/users'), 403, "admin's DENY holds when admin is reached through web's split");
  t.deepEqual(admin.seen, [], 'the denied request never reached admin');
  t.is(await ask(m.fromFrontend, '/admin/a'), 200);
  t.is(await ask(m.fromFrontend, '/admin/b'), 200);
  t.is(await ask(m.fromFrontend, '/admin/c'), 429, "admin's bucket counts requests that came through the split");
  t.is(await ask(m.fromFrontend, '/public'), 200, "web has no limit of its own");
  t.regex(await m.p.server.core.metrics.render(), /destination_service_name="admin"[^}]*response_code="403"[^}]*response_flags="RBAC"|response_code="403"[^}]*destination_service_name="admin"[^}]*response_flags="RBAC"/);
});

test('a rewritten path meets the destination\'s authorization as rewritten, through a split or on the same service', async (t) => {
  const admin = await backend(t, 'admin');
  const m = await mesh(t, [
    service('admin', 'shop'),
    endpoints('admin', 'shop', [{ port: admin.port }]),
    obj('Route', 'web', 'shop', {
      service: 'web',
      rules: [
        { match: [{ path: { prefix: '/console/' } }], action: { split: [{ service: 'admin' }] }, rewrite: { prefix: '/internal/' } },
        { match: [{ path: { prefix: '/p/' } }], action: { split: [{}] }, rewrite: { prefix: '/secret/' } },
        { action: { split: [{}] } },
      ],
    }),
    obj('AuthorizationPolicy', 'admin-no-internal', 'shop', { service: 'admin', action: 'DENY', rules: [{ to: { paths: [{ prefix: '/internal' }] } }] }),
    obj('AuthorizationPolicy', 'web-no-secret', 'shop', { service: 'web', action: 'DENY', rules: [{ to: { paths: [{ prefix: '/secret' }] } }] }),
  ]);
  t.is(await ask(m.fromFrontend, '/console/x'), 403, "admin's DENY on /internal, reached as /console through web's rewrite");
  t.is(await ask(m.fromFrontend, '/p/x'), 403, "web's DENY on /secret, reached as /p through its own rewrite");
  t.is(await ask(m.fromFrontend, '/secret/x'), 403);
  t.is(await ask(m.fromFrontend, '/public'), 200);
  t.deepEqual(admin.seen, []);
  t.is(m.b.seen.length, 1, 'only the allowed request reached web');
});

test('a namespace-wide DENY by source namespace', async (t) => {
  const m = await mesh(t, [obj('AuthorizationPolicy', 'no-outsiders', 'shop', { action: 'DENY', rules: [{ from: { namespaces: ['outside'] }, to: { paths: [{ prefix: '/admin' }] } }] })]);
  t.is(await ask(m.fromIntruder, '/admin/users'), 403);
  t.is(await ask(m.fromIntruder, '/public'), 200);
  t.is(await ask(m.fromFrontend, '/admin/users'), 200);
});

test('a token bucket answers 429 when empty; per source, each caller has its own', async (t) => {
  const shared = await mesh(t, [obj('RateLimit', 'web', 'shop', { service: 'web', maxTokens: 3, tokensPerFill: 3, fillInterval: '1h' })]);
  const codes = [];
  for (let i = 0; i < 4; i++) codes.push(await ask(shared.fromFrontend));
  t.deepEqual(codes, [200, 200, 200, 429]);
  t.is(await ask(shared.fromIntruder), 429, 'one bucket for everyone');

  const perSource = await mesh(t, [obj('RateLimit', 'web', 'shop', { service: 'web', maxTokens: 1, fillInterval: '1h', perSource: true })]);
  t.is(await ask(perSource.fromFrontend), 200);
  t.is(await ask(perSource.fromFrontend), 429);
  t.is(await ask(perSource.fromIntruder), 200, 'another caller, another bucket');
});

test('authorization applies to TCP connections: by source and port; HTTP-only conditions err on the restrictive side', async (t) => {
  const echo = createServer((s: Socket) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => echo.close(() => r())));
  const port = (echo.address() as AddressInfo).port;
  /** True when a line sent through the proxy comes back; false when the proxy closes the connection. */
  const echoes = (to: number) =>
    new Promise<boolean>((resolve) => {
      const c = connect(to, '127.0.0.1');
      c.on('error', () => resolve(false));
      c.once('data', () => (c.destroy(), resolve(true)));
      c.once('close', () => resolve(false));
      c.write('hello\n');
    });
  const tcpMesh = async (policies: MeshObject[]) => {
    const p = await proxy(t, [service('db', 'shop', { ports: [{ port: 5432, targetPort: port, protocol: 'tcp' }] }), endpoints('db', 'shop', [{ port }]), ...policies], 'shop/db', { source: frontend });
    const other = await p.server.listen({ port: 0, host: '127.0.0.1' }, { service: 'shop/db', source: intruder });
    return { p, fromFrontend: p.port, fromIntruder: (other.address() as AddressInfo).port };
  };
  const allow = await tcpMesh([obj('AuthorizationPolicy', 'only-frontend', 'shop', { service: 'db', action: 'ALLOW', rules: [{ from: { workloads: ['shop/frontend'] }, to: { ports: [5432] } }] })]);
  t.true(await echoes(allow.fromFrontend));
  t.false(await echoes(allow.fromIntruder), 'not allowed');
  t.regex(await allow.p.server.core.metrics.render(), /istio_tcp_connections_closed_total\{[^}]*response_flags="RBAC"[^}]*\} 1/);
  // A DENY rule about paths cannot look at TCP: it denies on its other conditions.
  const deny = await tcpMesh([obj('AuthorizationPolicy', 'no-admin', 'shop', { service: 'db', action: 'DENY', rules: [{ from: { namespaces: ['outside'] }, to: { paths: [{ prefix: '/admin' }] } }] })]);
  t.false(await echoes(deny.fromIntruder));
  t.true(await echoes(deny.fromFrontend));
  // An ALLOW rule about methods never matches TCP: nothing is allowed by it.
  const allowGet = await tcpMesh([obj('AuthorizationPolicy', 'get-only', 'shop', { service: 'db', action: 'ALLOW', rules: [{ to: { methods: ['GET'] } }] })]);
  t.false(await echoes(allowGet.fromFrontend));
});

test('each RateLimit keeps its own bucket across routing-table swaps; a route limit counts only its rule', async (t) => {
  const limits = [
    obj('Route', 'web', 'shop', { service: 'web', rules: [{ name: 'search', match: [{ path: { prefix: '/search' } }], action: { split: [{}] } }, { name: 'rest', action: { split: [{}] } }] }),
    obj('RateLimit', 'loose', 'shop', { service: 'web', maxTokens: 10, fillInterval: '1h' }),
    obj('RateLimit', 'tight', 'shop', { service: 'web', maxTokens: 4, fillInterval: '1h' }),
    obj('RateLimit', 'search', 'shop', { service: 'web', route: 'search', maxTokens: 1, fillInterval: '1h' }),
  ];
  const m = await mesh(t, limits);
  t.is(await ask(m.fromFrontend, '/search'), 200);
  // Endpoint churn rebuilds the table: every limit must carry on from where it was, each with its own bucket.
  const core = m.p.server.core;
  const objects = [service('web', 'shop'), endpoints('web', 'shop', [{ port: m.b.port }]), ...limits];
  core.setTable(buildTable(2, objects.map((object, i) => ({ version: i + 1, object })), core.table));
  t.is(await ask(m.fromFrontend, '/search'), 429, "the search rule's one token is gone");
  const codes = [];
  for (let i = 0; i < 4; i++) codes.push(await ask(m.fromFrontend, '/other'));
  // tight's other three tokens (the refused request took none); loose, in its own bucket, has more.
  t.deepEqual(codes, [200, 200, 200, 429]);
});

test('a retry is the same request: rate limits count it once', async (t) => {
  const m = await mesh(t, [
    obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, retries: { attempts: 3, retryOn: ['5xx'], backoff: { base: '1ms', max: '2ms' } } }] }),
    obj('RateLimit', 'web', 'shop', { service: 'web', maxTokens: 2, fillInterval: '1h' }),
  ]);
  t.is(await ask(m.fromFrontend, '/flaky/a/2'), 200, 'two failures, then success on the third try, all on one token');
  t.is(await ask(m.fromFrontend, '/flaky/b/1'), 200);
  t.is(await ask(m.fromFrontend, '/c'), 429);
});

test('a quota limits one caller per interval regardless of the bucket', async (t) => {
  const m = await mesh(t, [obj('RateLimit', 'web', 'shop', { service: 'web', maxTokens: 1000, fillInterval: '1h', quotas: { 'shop/frontend': 2 } })]);
  t.deepEqual([await ask(m.fromFrontend), await ask(m.fromFrontend), await ask(m.fromFrontend)], [200, 200, 429]);
  t.is(await ask(m.fromIntruder), 200);
});

test('fault injection: an abort answers the configured status; a delay holds the request', async (t) => {
  const m = await mesh(t, [
    obj('Route', 'web', 'shop', {
      service: 'web',
      rules: [
        { match: [{ path: { prefix: '/abort' } }], action: { split: [{}] }, fault: { abort: { percent: 100, status: 418 } } },
        { match: [{ path: { prefix: '/delay' } }], action: { split: [{}] }, fault: { delay: { percent: 100, fixed: '300ms' } } },
        { action: { split: [{}] } },
      ],
    }),
  ]);
  t.is(await ask(m.fromFrontend, '/abort'), 418);
  const start = Date.now();
  t.is(await ask(m.fromFrontend, '/delay'), 200);
  t.true(Date.now() - start >= 290, `took ${Date.now() - start} ms`);
  const metrics = await m.p.server.core.metrics.render();
  t.regex(metrics, /response_code="418"[^}]*response_flags="FI"/);
  t.regex(metrics, /response_code="200"[^}]*response_flags="DI"/);
});

test('mirroring copies requests to a shadow service and drops its answers', async (t) => {
  const shadow = await backend(t, 'shadow');
  const m = await mesh(t, [service('shadow', 'shop'), endpoints('shadow', 'shop', [{ port: shadow.port }]), obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, mirror: { service: 'shadow', percent: 100 } }] })]);
  t.is(await ask(m.fromFrontend, '/copied'), 200);
  for (let i = 0; i < 200 && shadow.seen.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  t.deepEqual(shadow.seen.map((s) => [s.url, s.headers.host]), [['/copied', 'x-shadow']]);
  t.deepEqual(m.b.seen.map((s) => s.url), ['/copied']);
});

/** A shadow that reads requests and never answers; the connections it holds open now, and the most at once. */
async function silentShadow(t: ExecutionContext) {
  const open = new Set<Socket>();
  const s = { port: 0, open, accepted: 0, peak: 0 };
  const server = createServer((c) => {
    open.add(c);
    s.accepted++;
    s.peak = Math.max(s.peak, open.size);
    c.on('close', () => open.delete(c));
    c.on('error', () => {});
    c.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => (open.forEach((c) => c.destroy()), server.close(() => r()))));
  s.port = (server.address() as AddressInfo).port;
  return s;
}

const mirrorTo = (shadowPort: number, shadowPolicy: Record<string, unknown>) => [
  service('shadow', 'shop'),
  endpoints('shadow', 'shop', [{ port: shadowPort }]),
  obj('ClusterPolicy', 'shadow', 'shop', { service: 'shadow', ...shadowPolicy }),
  obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, mirror: { service: 'shadow', percent: 100 } }] }),
];

test("a mirror copy that the shadow never answers is given up after the shadow's request timeout: no connection kept", async (t) => {
  const shadow = await silentShadow(t);
  const m = await mesh(t, mirrorTo(shadow.port, { timeouts: { request: '200ms' } }));
  const start = Date.now();
  for (let i = 0; i < 3; i++) t.is(await ask(m.fromFrontend, `/copied/${i}`), 200);
  t.true(Date.now() - start < 1000, 'the real requests did not wait for the shadow');
  t.true(await until(() => shadow.accepted === 3, 2000), `the shadow got ${shadow.accepted} copies`);
  t.true(await until(() => shadow.open.size === 0, 2000), `${shadow.open.size} shadow connections still open`);
  const svc = m.p.server.core.table.services.get('shop/shadow')!;
  t.is(svc.live.connections, 0);
  t.falsy(m.p.server.core.pool.sizes()[`127.0.0.1:${shadow.port}`], 'none went back to the pool');
});

test("mirror copies open no more shadow connections than the shadow's maxConnections; the rest are dropped", async (t) => {
  const shadow = await silentShadow(t);
  const m = await mesh(t, mirrorTo(shadow.port, { timeouts: { request: '400ms' }, connectionPool: { maxConnections: 2 } }));
  const codes = await Promise.all(Array.from({ length: 6 }, (_, i) => ask(m.fromFrontend, `/burst/${i}`)));
  t.deepEqual(codes, [200, 200, 200, 200, 200, 200], 'the real requests are not limited by the shadow');
  t.true(await until(() => shadow.accepted >= 2, 2000), `the shadow got ${shadow.accepted} copies`);
  await new Promise((r) => setTimeout(r, 100));
  t.is(shadow.accepted, 2, 'two copies went out, four were dropped');
  t.is(shadow.peak, 2);
  t.regex(await m.p.server.core.metrics.render(), /kernmesh_proxy_mirrored_requests_total 2\n/, 'only the copies sent are counted (as on HTTP/2)');
  // Once the request timeout has closed those two, there is room again.
  t.true(await until(() => shadow.open.size === 0, 2000));
  t.is(await ask(m.fromFrontend, '/later'), 200);
  t.true(await until(() => shadow.accepted === 3, 2000), 'a later copy gets a connection');
});
