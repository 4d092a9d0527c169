// SPDX-License-Identifier: Apache-2.0
// The balancer over narrowed endpoint lists (a subset, the healthy ones, this zone's), and outlier
// detection over a fake clock: consecutive failures eject, each ejection of an endpoint lasts longer
// than the last, and no more than maxEjectionPercent of a service is ever out at once.
import test from 'ava';
import { execFile } from 'node:child_process';
import { endpointsOf } from '../../src/proxy/routing/select.ts';
import { type EndpointInfo, buildTable } from '../../src/proxy/routing/table.ts';
import { Balancer } from '../../src/proxy/upstream/balancer.ts';
import type { MeshObject } from '../../src/config/objects.ts';

const meta = (kind: MeshObject['kind'], spec: Record<string, unknown>): MeshObject => ({ apiVersion: 'kernmesh.io/v1', kind, metadata: { name: 'web', namespace: 'shop' }, spec });

const svcOf = (objects: MeshObject[]) => buildTable(1, objects.map((object, i) => ({ version: i + 1, object }))).services.get('shop/web')!;
const serviceObj = meta('Service', { hosts: ['web.shop.svc.cluster.local'], addresses: [], ports: [{ port: 80, targetPort: 80, protocol: 'http' }] });
const count = (ports: number[]) => ports.reduce<Record<number, number>>((m, p) => ((m[p] = (m[p] ?? 0) + 1), m), {});

test('round robin takes turns within a subset and within this zone, not always the first endpoint', (t) => {
  const svc = svcOf([
    serviceObj,
    meta('Endpoints', {
      endpoints: [
        { address: '10.0.0.1', port: 1, labels: { version: 'v1' }, zone: 'b' },
        { address: '10.0.0.1', port: 2, labels: { version: 'v2' }, zone: 'a' },
        { address: '10.0.0.1', port: 3, labels: { version: 'v2' }, zone: 'a' },
      ].map((e) => ({ ...e, weight: 1, ready: true })),
    }),
    meta('ClusterPolicy', { service: 'web', subsets: [{ name: 'v2', labels: { version: 'v2' } }], loadBalancer: { type: 'round_robin', locality: { enabled: true, failover: [] } } }),
  ]);
  const b = new Balancer();
  t.deepEqual(count(Array.from({ length: 40 }, () => b.pick(svc, endpointsOf(svc, 'v2'), null, '')!.port)), { 2: 20, 3: 20 });
  b.zone = 'a';
  t.deepEqual(count(Array.from({ length: 40 }, () => b.pick(svc, svc.endpoints, null, '')!.port)), { 2: 20, 3: 20 });
  b.zone = 'b';
  t.deepEqual(count(Array.from({ length: 4 }, () => b.pick(svc, svc.endpoints, null, '')!.port)), { 1: 4 }, 'a zone change is seen');
});

test('random and least request honour endpoint weights', (t) => {
  const objects = (type: string) => [
    serviceObj,
    meta('Endpoints', { endpoints: [{ port: 1, weight: 1 }, { port: 2, weight: 3 }].map((e) => ({ address: '10.0.0.1', labels: {}, ready: true, ...e })) }),
    meta('ClusterPolicy', { service: 'web', loadBalancer: { type } }),
  ];
  const random = svcOf(objects('random'));
  const b = new Balancer();
  const n = count(Array.from({ length: 4000 }, () => b.pick(random, random.endpoints, null, '')!.port));
  t.true(n[2]! / n[1]! > 2.4 && n[2]! / n[1]! < 3.6, `weight 3 against 1 picked ${n[2]} against ${n[1]}`);
  const least = svcOf(objects('least_request'));
  const [light, heavy] = least.endpoints as [EndpointInfo, EndpointInfo];
  b.begin(least, light);
  b.begin(least, heavy);
  b.begin(least, heavy);
  // 2 active on weight 3 is less loaded than 1 on weight 1: every pick of the pair goes to the heavy one.
  t.deepEqual(count(Array.from({ length: 20 }, () => b.pick(least, least.endpoints, null, '')!.port)), { 2: 20 });
});

test('ejections grow with each repeat, end on time, and stop at the ejected-share cap', (t) => {
  const svc = svcOf([
    serviceObj,
    meta('Endpoints', { endpoints: [1, 2, 3, 4].map((port) => ({ address: '10.0.0.1', port, labels: {}, weight: 1, ready: true })) }),
    meta('ClusterPolicy', { service: 'web', outlierDetection: { consecutive5xx: 2, baseEjectionTime: '10s', maxEjectionTime: '25s', interval: '1h', maxEjectionPercent: 50 } }),
  ]);
  const eps = svc.endpoints;
  const b = new Balancer();
  const realNow = Date.now;
  let now = 1_000_000;
  Date.now = () => now;
  t.teardown(() => (Date.now = realNow));
  const fail = (port: number, times = 2) => {
    for (let i = 0; i < times; i++) b.report(svc, eps, eps[port - 1]!, 503);
  };
  const picked = () => new Set(Array.from({ length: 40 }, () => b.pick(svc, eps, null, '')!.port));

  fail(1, 1);
  b.report(svc, eps, eps[0]!, 200);
  fail(1, 1);
  t.is(b.ejectedNow(svc, eps), 0, 'a success in between resets the count');
  fail(1);
  t.is(b.ejectedNow(svc, eps), 1);
  t.false(picked().has(1));
  fail(2);
  fail(3);
  t.is(b.ejectedNow(svc, eps), 2, 'the third is not ejected: 50% of four are out already');
  t.deepEqual(count(Array.from({ length: 40 }, () => b.pick(svc, eps, null, '')!.port)), { 3: 20, 4: 20 }, 'the rest take turns');

  now += 10_001;
  t.is(b.ejectedNow(svc, eps), 0, 'the first ejections last the base time');
  fail(1);
  now += 15_000;
  t.false(picked().has(1), 'a second ejection lasts twice the base');
  now += 5_001;
  t.true(picked().has(1));
  fail(1);
  now += 24_999;
  t.false(picked().has(1), 'a third lasts three times the base, cut to the 25 s maximum');
  now += 2;
  t.true(picked().has(1));
  t.is(b.ejectionsTotal, 4);
});

test('the ejection count decays: one off for every interval without an ejection', (t) => {
  const svc = svcOf([
    serviceObj,
    meta('Endpoints', { endpoints: [1, 2].map((port) => ({ address: '10.0.0.1', port, labels: {}, weight: 1, ready: true })) }),
    meta('ClusterPolicy', { service: 'web', outlierDetection: { consecutive5xx: 1, baseEjectionTime: '10s', interval: '60s', maxEjectionPercent: 50 } }),
  ]);
  const b = new Balancer();
  const realNow = Date.now;
  let now = 1_000_000;
  Date.now = () => now;
  t.teardown(() => (Date.now = realNow));
  const eject = () => b.report(svc, svc.endpoints, svc.endpoints[0]!, 503);
  const outFor = () => {
    const start = now;
    while (b.ejectedNow(svc, svc.endpoints) > 0) now += 1000;
    return now - start;
  };
  eject();
  t.is(outFor(), 10_000);
  eject();
  t.is(outFor(), 20_000, 'right after: twice the base');
  now += 120_000;
  eject();
  t.is(outFor(), 10_000, 'two quiet intervals later: the count is back to nothing before this one');
});

test('maglev over endpoints of weight 0 places none of them and picks nothing, rather than spinning', async (t) => {
  // In a child process with a deadline: the fault was an endless loop, which would hang this whole test run.
  const table = new URL('../../src/proxy/routing/table.ts', import.meta.url).href;
  const balancer = new URL('../../src/proxy/upstream/balancer.ts', import.meta.url).href;
  const objects = (weights: number[]) => [
    serviceObj,
    meta('Endpoints', { endpoints: weights.map((weight, i) => ({ address: '10.0.0.1', port: i + 1, labels: {}, weight, ready: true })) }),
    meta('ClusterPolicy', { service: 'web', loadBalancer: { type: 'maglev' } }),
  ];
  const script = `
    const { buildTable } = await import(${JSON.stringify(table)});
    const { Balancer } = await import(${JSON.stringify(balancer)});
    const pick = (objects) => {
      const svc = buildTable(1, objects.map((object, i) => ({ version: i + 1, object }))).services.get('shop/web');
      const b = new Balancer();
      return [...new Set(Array.from({ length: 50 }, (_, i) => b.pick(svc, svc.endpoints, null, '10.1.1.' + i)?.port ?? null))];
    };
    console.log(JSON.stringify({ none: pick(${JSON.stringify(objects([0, 0]))}), some: pick(${JSON.stringify(objects([0, 2, -1]))}) }));`;
  const r = await new Promise<{ signal: string | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 }, (err, stdout, stderr) => resolve({ signal: err?.signal ?? null, stdout, stderr }));
  });
  t.is(r.signal, null, 'building the table finished');
  t.is(r.stderr, '');
  t.deepEqual(JSON.parse(r.stdout), { none: [null], some: [2] }, 'no endpoint to pick (the proxy answers 503), or only the one of positive weight');
});
