// SPDX-License-Identifier: Apache-2.0
// Routing from Route and ClusterPolicy objects, each feature with a request that needs it.
import test, { type ExecutionContext } from 'ava';
import { backend, endpoints, obj, proxy, service, table } from './helpers/fixtures.ts';
import { rawExchange, statuses } from './helpers/raw.ts';

async function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET') {
  const h = Object.entries({ Host: 'web.shop.svc.cluster.local', ...headers })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const { text } = await rawExchange(port, `${method} ${path} HTTP/1.1\r\n${h}Connection: close\r\n\r\n`);
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  let json: { backend?: string; url?: string; headers?: Record<string, string> } = {};
  try {
    json = JSON.parse(body);
  } catch {
    /* not JSON */
  }
  return { status: statuses(text)[0], text, body, ...json };
}

async function canaryMesh(t: ExecutionContext, rules: unknown[]) {
  const v1 = await backend(t, 'v1');
  const v2 = await backend(t, 'v2');
  const other = await backend(t, 'other');
  const objects = [
    service('web', 'shop'),
    endpoints('web', 'shop', [
      { port: v1.port, labels: { version: 'v1' } },
      { port: v2.port, labels: { version: 'v2' } },
    ]),
    service('other', 'shop'),
    endpoints('other', 'shop', [{ port: other.port }]),
    obj('ClusterPolicy', 'web', 'shop', { service: 'web', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] }),
    obj('Route', 'web', 'shop', { service: 'web', rules }),
  ];
  return { p: await proxy(t, objects, null), v1, v2, other };
}

test('header, method, query and regex path matches pick the rule; first match wins', async (t) => {
  const { p } = await canaryMesh(t, [
    { match: [{ headers: { 'x-canary': { exact: 'yes' } } }], action: { split: [{ subset: 'v2' }] } },
    { match: [{ method: 'DELETE' }, { query: { debug: { exact: '1' } } }], action: { split: [{ service: 'other' }] } },
    { match: [{ path: { regex: '/items/[0-9]+' } }], action: { split: [{ subset: 'v2' }] } },
    { action: { split: [{ subset: 'v1' }] } },
  ]);
  t.is((await get(p.port, '/', { 'x-canary': 'yes' })).backend, 'v2');
  t.is((await get(p.port, '/', { 'x-canary': 'no' })).backend, 'v1');
  t.is((await get(p.port, '/x', {}, 'DELETE')).backend, 'other');
  t.is((await get(p.port, '/x?debug=1')).backend, 'other');
  t.is((await get(p.port, '/items/42')).backend, 'v2');
  t.is((await get(p.port, '/items/abc')).backend, 'v1');
});

test('host matches ignore case and port; a query match needs the parameter; a Route with a port routes only that port', async (t) => {
  const { p } = await canaryMesh(t, [
    { match: [{ host: { exact: 'web.shop.svc.cluster.local' }, path: { prefix: '/host' } }], action: { split: [{ subset: 'v2' }] } },
    { match: [{ query: { debug: { regex: '.*' } } }], action: { split: [{ service: 'other' }] } },
    { action: { split: [{ subset: 'v1' }] } },
  ]);
  t.is((await get(p.port, '/host', { Host: 'Web.Shop.svc.cluster.local:80' })).backend, 'v2');
  t.is((await get(p.port, '/x')).backend, 'v1', 'no debug parameter: no match');
  t.is((await get(p.port, '/x?debug=')).backend, 'other');

  const v1 = await backend(t, 'v1');
  const admin = await backend(t, 'admin');
  const twoPorts = await proxy(
    t,
    [
      service('web', 'shop', { ports: [{ port: 80, targetPort: 80, protocol: 'http' }, { port: 8080, targetPort: 8080, protocol: 'http' }] }),
      endpoints('web', 'shop', [{ port: v1.port }]),
      service('admin', 'shop'),
      endpoints('admin', 'shop', [{ port: admin.port }]),
      obj('Route', 'web-admin-port', 'shop', { service: 'web', port: 8080, rules: [{ action: { split: [{ service: 'admin' }] } }] }),
      obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] } }] }),
    ],
    null,
  );
  t.is((await get(twoPorts.port, '/', { Host: 'web.shop.svc.cluster.local:8080' })).backend, 'admin');
  t.is((await get(twoPorts.port, '/', { Host: 'web.shop.svc.cluster.local:80' })).backend, 'v1', 'the port-8080 Route does not apply to port 80');
});

test('a weighted split sends traffic to both sides; weight 0 sends none', async (t) => {
  const { p, v1, v2 } = await canaryMesh(t, [{ match: [{ path: { prefix: '/both' } }], action: { split: [{ subset: 'v1', weight: 1 }, { subset: 'v2', weight: 1 }] } }, { action: { split: [{ subset: 'v1', weight: 100 }, { subset: 'v2', weight: 0 }] } }]);
  for (let i = 0; i < 40; i++) await get(p.port, '/both');
  t.true(v1.seen.length > 0 && v2.seen.length > 0, `v1 ${v1.seen.length}, v2 ${v2.seen.length}`);
  const before = v2.seen.length;
  for (let i = 0; i < 20; i++) t.is((await get(p.port, '/')).backend, 'v1');
  t.is(v2.seen.length, before);
});

test('direct responses, redirects, and path and host rewrites', async (t) => {
  const { p, v1 } = await canaryMesh(t, [
    { match: [{ path: { exact: '/healthz' } }], action: { directResponse: { status: 200, body: 'ok from the mesh' } } },
    { match: [{ path: { prefix: '/old' } }], action: { redirect: { path: '/new', code: 301 } } },
    { match: [{ path: { prefix: '/api/v1/' } }], action: { split: [{ subset: 'v1' }] }, rewrite: { prefix: '/v1/', host: 'internal.example' } },
    { match: [{ path: { exact: '/legacy' } }], action: { split: [{ subset: 'v1' }] }, rewrite: { prefix: '/modern' } },
    { match: [{ headers: { 'x-tenant': { exact: 'a' } } }], action: { split: [{ subset: 'v1' }] }, rewrite: { prefix: '/tenants/a/' } },
  ]);
  const direct = await get(p.port, '/healthz');
  t.is(direct.status, 200);
  t.is(direct.body, 'ok from the mesh');
  const redirect = await get(p.port, '/old/page');
  t.is(redirect.status, 301);
  t.regex(redirect.text, /location: http:\/\/web\.shop\.svc\.cluster\.local\/new/i);
  const rewritten = await get(p.port, '/api/v1/items?x=1');
  t.is(rewritten.url, '/v1/items?x=1');
  t.is(v1.seen.at(-1)!.headers.host, 'internal.example');
  t.is((await get(p.port, '/legacy?q=2')).url, '/modern?q=2', 'an exact match: the whole path');
  t.is((await get(p.port, '/orders/7', { 'x-tenant': 'a' })).url, '/tenants/a/orders/7', 'no path match: the leading /');
});

test('Workloads outside Kubernetes are endpoints of the services that select or name them', async (t) => {
  const vm = await backend(t, 'vm');
  const vmService = (name: string, extra: Record<string, unknown>) => service(name, 'shop', { ports: [{ port: 80, targetPort: vm.port, protocol: 'http' }], ...extra });
  const p = await proxy(
    t,
    [
      vmService('legacy', { selector: { app: 'billing' } }),
      vmService('named', {}),
      obj('Workload', 'billing-vm-1', 'shop', { address: '127.0.0.1', labels: { app: 'billing' }, identity: 'spiffe://corp/billing' }),
      obj('Workload', 'batch-vm', 'shop', { address: '127.0.0.1', labels: { app: 'batch' }, service: 'named' }),
      obj('Workload', 'elsewhere', 'other', { address: '127.0.0.2', labels: { app: 'billing' } }),
    ],
    null,
  );
  t.is((await get(p.port, '/a', { Host: 'legacy.shop.svc.cluster.local' })).backend, 'vm', 'selected by labels');
  t.is((await get(p.port, '/b', { Host: 'named.shop.svc.cluster.local' })).backend, 'vm', 'named by the Workload');
  const legacy = p.server.core.table.services.get('shop/legacy')!;
  t.deepEqual(legacy.endpoints.map((e) => e.address), ['127.0.0.1'], 'a Workload of another namespace is not selected');
  t.is(legacy.endpoints[0]!.identity, 'spiffe://corp/billing');

  // An address an Endpoints object lists as not ready stays out, Workload or not; an empty selector selects nothing.
  const t2 = table([
    vmService('legacy', { selector: { app: 'billing' } }),
    obj('Endpoints', 'legacy', 'shop', { endpoints: [{ address: '127.0.0.1', ready: false }] }),
    vmService('everything', { selector: {} }),
    obj('Workload', 'billing-vm-1', 'shop', { address: '127.0.0.1', labels: { app: 'billing' } }),
  ]);
  t.deepEqual(t2.services.get('shop/legacy')!.endpoints, []);
  t.deepEqual(t2.services.get('shop/everything')!.endpoints, []);
});

test('requests for an unknown host get a 404; a service without endpoints a 503', async (t) => {
  const p = await proxy(t, [service('empty', 'shop')], null);
  t.is((await get(p.port, '/', { Host: 'nowhere.example' })).status, 404);
  t.is((await get(p.port, '/', { Host: 'empty.shop.svc.cluster.local' })).status, 503);
});

test('a new table applies to the next request without dropping open connections', async (t) => {
  const a = await backend(t, 'a');
  const b = await backend(t, 'b');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: a.port }])], null);
  const { connect } = await import('node:net');
  const sock = connect(p.port, '127.0.0.1');
  const ask = () =>
    new Promise<string>((resolve) => {
      sock.once('data', (c) => resolve(c.toString()));
      sock.write('GET / HTTP/1.1\r\nHost: web.shop.svc.cluster.local\r\n\r\n');
    });
  t.regex(await ask(), /"backend":"a"/);
  p.server.core.setTable(table([service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }])], 2));
  t.regex(await ask(), /"backend":"b"/, 'same client connection, new routing');
  sock.destroy();
});
