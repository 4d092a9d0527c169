// SPDX-License-Identifier: Apache-2.0
// Load balancing algorithms, locality and outlier detection, against several real backends.
import test, { type ExecutionContext } from 'ava';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { backend, endpoints, obj, proxy, service } from './helpers/fixtures.ts';
import { rawExchange } from './helpers/raw.ts';

async function hit(port: number, path = '/', headers = ''): Promise<string> {
  const { text } = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: x\r\n${headers}Connection: close\r\n\r\n`, 3000);
  return /"backend":"([^"]+)"/.exec(text)?.[1] ?? /HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? '?';
}

async function cluster(t: ExecutionContext, n: number, policy: Record<string, unknown>, eps: (ports: number[]) => Array<{ port: number; labels?: Record<string, string> }> = (ports) => ports.map((port) => ({ port })), extraEp: Record<string, unknown>[] = []) {
  const bs = await Promise.all(Array.from({ length: n }, (_, i) => backend(t, `b${i}`)));
  const epObj = endpoints('web', 'shop', eps(bs.map((b) => b.port)));
  (epObj.spec as { endpoints: Array<Record<string, unknown>> }).endpoints.forEach((e, i) => Object.assign(e, extraEp[i] ?? {}));
  const p = await proxy(t, [service('web', 'shop'), epObj, obj('ClusterPolicy', 'web', 'shop', { service: 'web', ...policy })], 'shop/web');
  return { bs, p };
}

const tally = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ((m[x] = (m[x] ?? 0) + 1), m), {});

test('round robin spreads evenly; weights are honoured smoothly', async (t) => {
  const { p } = await cluster(t, 3, { loadBalancer: { type: 'round_robin' } });
  const got = [];
  for (let i = 0; i < 30; i++) got.push(await hit(p.port));
  t.deepEqual(tally(got), { b0: 10, b1: 10, b2: 10 });
  const weighted = await cluster(t, 2, { loadBalancer: { type: 'round_robin' } }, undefined, [{ weight: 1 }, { weight: 3 }]);
  const w = [];
  for (let i = 0; i < 40; i++) w.push(await hit(weighted.p.port));
  t.deepEqual(tally(w), { b0: 10, b1: 30 });
});

test('least request (power of two choices) steers around a busy endpoint', async (t) => {
  const { p, bs } = await cluster(t, 2, { loadBalancer: { type: 'least_request' } });
  // Busy for longer than ten quick requests take, even on a loaded machine.
  const slow = hit(p.port, '/slow/3000');
  for (let i = 0; i < 200 && bs.every((b) => b.seen.length === 0); i++) await new Promise((r) => setTimeout(r, 5));
  const busy = bs.findIndex((b) => b.seen.length === 1);
  const got = [];
  for (let i = 0; i < 10; i++) got.push(await hit(p.port));
  t.deepEqual(tally(got), { [`b${1 - busy}`]: 10 }, 'every quick request went to the idle endpoint');
  await slow;
});

test('ring hash and maglev keep a key on one endpoint and spread different keys', async (t) => {
  for (const type of ['ring_hash', 'maglev'] as const) {
    const byHeader = await cluster(t, 4, { loadBalancer: { type, hashOn: { header: 'x-user' } } });
    const same = new Set<string>();
    for (let i = 0; i < 8; i++) same.add(await hit(byHeader.p.port, '/', 'x-user: alice\r\n'));
    t.is(same.size, 1, `${type}: one user, one endpoint`);
    const spread = new Set<string>();
    for (let i = 0; i < 40; i++) spread.add(await hit(byHeader.p.port, '/', `x-user: user-${i}\r\n`));
    t.true(spread.size >= 3, `${type}: 40 users over ${spread.size} endpoints`);
  }
  const byCookie = await cluster(t, 4, { loadBalancer: { type: 'maglev', hashOn: { cookie: 'session' } } });
  const sticky = new Set<string>();
  for (let i = 0; i < 8; i++) sticky.add(await hit(byCookie.p.port, '/', 'Cookie: theme=dark; session=abc123\r\n'));
  t.is(sticky.size, 1, 'a session cookie is sticky');
  const bySource = await cluster(t, 4, { loadBalancer: { type: 'ring_hash', hashOn: { sourceIp: true } } });
  const one = new Set<string>();
  for (let i = 0; i < 8; i++) one.add(await hit(bySource.p.port));
  t.is(one.size, 1, 'one source address, one endpoint');
});

test('random uses every endpoint', async (t) => {
  const { p } = await cluster(t, 3, { loadBalancer: { type: 'random' } });
  const got = new Set<string>();
  for (let i = 0; i < 60; i++) got.add(await hit(p.port));
  t.is(got.size, 3);
});

test('locality: this zone first, then the configured failover zone', async (t) => {
  const zoned = await cluster(t, 2, { loadBalancer: { type: 'round_robin', locality: { enabled: true, failover: [] } } }, undefined, [{ zone: 'z1' }, { zone: 'z2' }]);
  zoned.p.server.core.balancer.zone = 'z1';
  const got = [];
  for (let i = 0; i < 6; i++) got.push(await hit(zoned.p.port));
  t.deepEqual(tally(got), { b0: 6 });
  const failover = await cluster(t, 2, { loadBalancer: { type: 'round_robin', locality: { enabled: true, failover: [{ from: 'z1', to: 'z3' }] } } }, undefined, [{ zone: 'z2' }, { zone: 'z3' }]);
  failover.p.server.core.balancer.zone = 'z1';
  const f = [];
  for (let i = 0; i < 6; i++) f.push(await hit(failover.p.port));
  t.deepEqual(tally(f), { b1: 6 }, 'no endpoint in z1: the failover zone z3, not z2');
});

test('outlier detection ejects an endpoint after consecutive 5xx, and traffic goes to the rest', async (t) => {
  const good = await backend(t, 'good');
  const bad = createServer((_req, res) => {
    res.writeHead(503, { 'content-length': 3 });
    res.end('bad');
  });
  await new Promise<void>((r) => bad.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => (bad.closeAllConnections(), bad.close(() => r()))));
  const badPort = (bad.address() as AddressInfo).port;
  const p = await proxy(
    t,
    [
      service('web', 'shop'),
      endpoints('web', 'shop', [{ port: good.port }, { port: badPort }]),
      obj('ClusterPolicy', 'web', 'shop', { service: 'web', outlierDetection: { consecutive5xx: 2, baseEjectionTime: '1m', maxEjectionPercent: 50 } }),
    ],
    'shop/web',
  );
  const got = [];
  for (let i = 0; i < 12; i++) got.push(await hit(p.port));
  t.deepEqual(tally(got), { good: 10, '503': 2 }, 'two failures, then the bad endpoint is out');
  t.is(p.server.core.balancer.ejectionsTotal, 1);
  t.regex(await p.server.core.metrics.render(), /kernmesh_proxy_outlier_ejections_total\{destination_service="shop\/web"\} 1/);
});
