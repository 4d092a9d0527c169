// SPDX-License-Identifier: Apache-2.0
// The routing table across rebuilds: an endpoint change anywhere rebuilds it
// on every node, so what did not change is reused (endpoint lists, claims,
// compiled routes and policies), and what did change must still show. And
// addresses are matched in the one form the kernel reports them in, and an
// endpoint's ports in the numbers of its own (Endpoint.ports).
import test from 'ava';
import type { MeshObject } from '../../src/config/objects.ts';
import { checkClaims } from '../../src/config/validate.ts';
import { endpointPort, peerOf, serviceByEndpoint, serviceFor, servicePortAt, servicesByEndpoint } from '../../src/proxy/routing/select.ts';
import { type EndpointInfo, type RoutingTable, type ServicePortInfo, buildTable } from '../../src/proxy/routing/table.ts';

const obj = (kind: MeshObject['kind'], name: string, spec: Record<string, unknown>): MeshObject => ({ apiVersion: 'kernmesh.io/v1', kind, metadata: { name, namespace: 'shop' }, spec });
const service = (name: string, addresses: string[], port = 80) => obj('Service', name, { hosts: [`${name}.example`], addresses, ports: [{ port, targetPort: 8080, protocol: 'http' }] });
const endpoints = (name: string, ...addresses: string[]) => obj('Endpoints', name, { endpoints: addresses.map((address) => ({ address, port: 8080, labels: { app: name }, ready: true })) });
const build = (objects: MeshObject[], previous?: RoutingTable) => buildTable(1, objects.map((object, i) => ({ version: i + 1, object })), previous);

test('IPv6 addresses are routed, found and compared in canonical form, however they were written', (t) => {
  const table = build([service('web', ['FD00:0::10']), endpoints('web', 'fd00:0:0::0005'), service('api', ['fd00::1']), service('shadow', ['FD00:0:0::1'])]);
  t.is(serviceFor(table, { address: 'fd00::10', port: 80 }, null)?.key, 'shop/web', 'the original destination as the kernel reports it');
  t.is(serviceByEndpoint(table, 'fd00::5', 8080)?.key, 'shop/web', 'an inbound connection to the pod');
  t.is(peerOf(table, 'fd00::5')?.app, 'web', 'a caller at that address');
  t.deepEqual(table.conflicts, [{ claim: 'address fd00::1:80', kept: 'shop/api', ignored: 'shop/shadow' }], 'one address, two spellings');
  const issues = checkClaims([{ object: service('shadow', ['FD00:0:0::1']), source: 'shadow.yaml', document: 0 }], [service('api', ['fd00::1'])]);
  t.is(issues.length, 1);
  t.regex(issues[0]!.message, /claims address fd00::1:80, which Service\/shop\/api/);
});

test('a rebuild after an endpoint change reuses what did not change, and shows what did', (t) => {
  const mesh = obj('MeshSettings', 'mesh', { defaultTimeouts: { connect: '2s' } });
  const policy = obj('ClusterPolicy', 'web', { service: 'web', loadBalancer: { type: 'maglev' } });
  const route = obj('Route', 'web', { service: 'web', rules: [{ match: [{ path: { prefix: '/a' } }], action: { split: [{}] } }] });
  const base = [mesh, service('web', ['10.96.0.1']), endpoints('web', '10.0.0.1', '10.0.0.2'), service('api', ['10.96.0.2']), endpoints('api', '10.0.1.1'), policy, route];
  const t1 = build(base);

  // api's endpoints change: web's list is the same array (the balancer's maglev table and round-robin
  // position are kept by list), and the claims are the same maps; api's list is the new one.
  const t2 = build([...base.slice(0, 4), endpoints('api', '10.0.1.1', '10.0.1.2'), policy, route], t1);
  t.is(t2.services.get('shop/web')!.endpoints, t1.services.get('shop/web')!.endpoints);
  t.is(t2.services.get('shop/web')!.routes[0], t1.services.get('shop/web')!.routes[0]);
  t.is(t2.byVip, t1.byVip);
  t.deepEqual(t2.services.get('shop/api')!.endpoints.map((e) => e.address), ['10.0.1.1', '10.0.1.2']);
  t.deepEqual(peerOf(t2, '10.0.1.2')?.app, 'api', 'the new endpoint is found by address');
  t.is(peerOf(t1, '10.0.1.2'), null, 'and the old table is left as it was');

  // web moves to another VIP: the old one no longer routes to it.
  const t3 = build([mesh, service('web', ['10.96.0.9']), ...base.slice(2)], t2);
  t.is(serviceFor(t3, { address: '10.96.0.9', port: 80 }, null)?.key, 'shop/web');
  t.is(serviceFor(t3, { address: '10.96.0.1', port: 80 }, null), undefined);
  t.is(t3.services.get('shop/web')!.lb.type, 'maglev');

  // A new MeshSettings changes the defaults the unchanged ClusterPolicy compiled with.
  t.is(t3.services.get('shop/web')!.policy.connectTimeoutMs, 2000);
  const t4 = build([obj('MeshSettings', 'mesh', { defaultTimeouts: { connect: '3s' } }), ...base.slice(1)], t3);
  t.is(t4.services.get('shop/web')!.policy.connectTimeoutMs, 3000);

  // A service that goes away takes its claims with it, though every other object is the same.
  const t5 = build(base.filter((o) => !(o.kind === 'Service' && o.metadata.name === 'api')), t4);
  t.is(serviceFor(t5, { address: '10.96.0.2', port: 80 }, null), undefined);
  t.is(serviceFor(t5, { address: '10.96.0.1', port: 80 }, null)?.key, 'shop/web');
});

test('Workloads are matched by canonical address against what Endpoints list, in their own namespace only', (t) => {
  const svc = { ...service('web', []), spec: { ...(service('web', []).spec as object), selector: { app: 'web' } } } as MeshObject;
  const vm = (name: string, address: string, namespace = 'shop') => ({ ...obj('Workload', name, { address, ports: [8080], labels: { app: 'web' } }), metadata: { name, namespace } }) as MeshObject;
  const table = build([svc, endpoints('web', 'fd00::7'), vm('listed', 'FD00:0::7'), vm('vm-1', '192.0.2.10'), vm('elsewhere', '192.0.2.11', 'other')]);
  t.deepEqual(table.services.get('shop/web')!.endpoints.map((e) => e.address), ['fd00::7', '192.0.2.10']);
});

test("an endpoint's port for a service port: its own for that port's name, else its port, else the targetPort; and back from a pod's port", (t) => {
  const ports = [
    { name: 'http', port: 80, targetPort: 8080, protocol: 'http' },
    { name: 'metrics', port: 9100, targetPort: 9090, protocol: 'http' },
  ];
  const eps = obj('Endpoints', 'web', {
    endpoints: [
      { address: '10.0.0.1', ports: { http: 8081, metrics: 8080 } },
      { address: '10.0.0.2', port: 7000, ports: { http: 7001 } },
      { address: '10.0.0.3' },
    ],
  });
  const table = build([obj('Service', 'web', { hosts: [], addresses: [], ports }), eps]);
  const svc = table.services.get('shop/web')!;
  const [own, mixed, plain] = svc.endpoints as [EndpointInfo, EndpointInfo, EndpointInfo];
  const [http, metrics] = svc.ports as [ServicePortInfo, ServicePortInfo];
  t.deepEqual([endpointPort(own, http), endpointPort(own, metrics)], [8081, 8080]);
  t.deepEqual([endpointPort(mixed, http), endpointPort(mixed, metrics)], [7001, 7000]);
  t.deepEqual([endpointPort(plain, http), endpointPort(plain, metrics)], [8080, 9090]);
  // 8080 is this pod's metrics port, though it is the Service's targetPort for http.
  t.is(servicePortAt(table, svc, '10.0.0.1', 8080)?.port, 9100);
  t.is(servicePortAt(table, svc, '10.0.0.3', 8080)?.port, 80);
  t.deepEqual(servicesByEndpoint(table, '10.0.0.2', 7000), [svc]);
  // Compiled once per object: a rebuild keeps the same endpoint list.
  t.is(build([obj('Service', 'web', { hosts: [], addresses: [], ports }), eps], table).services.get('shop/web')!.endpoints, svc.endpoints);
});
