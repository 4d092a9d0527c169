// SPDX-License-Identifier: Apache-2.0
// Kubernetes Services and EndpointSlices as mesh objects (meshObjectsFor), on
// plain data: a named targetPort is resolved per pod, so the numbers come
// from each endpoint's slice, and pods of two versions may differ.
import test from 'ava';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { EndpointsSpec } from '../../src/config/model/service.ts';
import { meshObjectsFor } from '../../src/kube/mesh-objects.ts';
import { k8sService, slice } from '../kube/helpers/objects.ts';

type Eps = { endpoints: Array<{ address: string; port?: number; ports?: Record<string, number> }> };

// A rollout under way: v1 pods name 8080 "web" and 9090 "prom", v2 pods 8081 and 9091; "admin" is a number.
const web = k8sService('shop', 'web', '10.96.0.20', [
  { name: 'http', port: 80, targetPort: 'web' },
  { name: 'metrics', port: 9100, targetPort: 'prom' },
  { name: 'admin', port: 8443, targetPort: 8443 },
]) as V1Service;
const v1 = slice('shop', 'web', 'web-v1', [{ name: 'http', port: 8080 }, { name: 'metrics', port: 9090 }, { name: 'admin', port: 8443 }], [{ ip: '10.244.1.5' }, { ip: '10.244.1.6' }]);
const v2 = slice('shop', 'web', 'web-v2', [{ name: 'http', port: 8081 }, { name: 'metrics', port: 9091 }, { name: 'admin', port: 8443 }], [{ ip: '10.244.2.5' }, { ip: '10.244.1.6' }]);

test('a Service with several named targetPorts: each endpoint carries its own slice’s numbers for them, in a valid Endpoints object', (t) => {
  const [svc, eps] = meshObjectsFor(web, [v1, v2] as V1EndpointSlice[]);
  // The Service's numbers are one slice's (the first by name); the endpoints say where each pod listens.
  t.like(svc!.spec, { ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'metrics', port: 9100, targetPort: 9090 }, { name: 'admin', port: 8443, targetPort: 8443 }] });
  const spec = eps!.spec as Eps;
  t.deepEqual(
    spec.endpoints.map((e) => ({ address: e.address, port: e.port, ports: e.ports })),
    [
      { address: '10.244.1.5', port: undefined, ports: { http: 8080, metrics: 9090 } },
      // Listed by both slices: the first by name gives its numbers.
      { address: '10.244.1.6', port: undefined, ports: { http: 8080, metrics: 9090 } },
      { address: '10.244.2.5', port: undefined, ports: { http: 8081, metrics: 9091 } },
    ],
    'a numeric targetPort is the same for every pod: no entry for admin',
  );
  t.true(EndpointsSpec.safeParse(spec).success, 'the model takes what the sync writes');
});

test('the objects do not depend on the order the slices were listed in', (t) => {
  t.deepEqual(meshObjectsFor(web, [v2, v1] as V1EndpointSlice[]), meshObjectsFor(web, [v1, v2] as V1EndpointSlice[]));
});

test('a Service with one port keeps each slice’s number as the endpoint’s port, with no ports of its own', (t) => {
  const one = k8sService('shop', 'reviews', '10.96.0.21', [{ name: 'http', port: 80, targetPort: 'http' }]) as V1Service;
  const slices = [slice('shop', 'reviews', 'reviews-v1', { name: 'http', port: 9080 }, [{ ip: '10.244.1.7' }]), slice('shop', 'reviews', 'reviews-v2', { name: 'http', port: 9081 }, [{ ip: '10.244.2.7' }])];
  const spec = meshObjectsFor(one, slices as V1EndpointSlice[])[1]!.spec as Eps;
  t.deepEqual(
    spec.endpoints.map((e) => ({ address: e.address, port: e.port, ports: e.ports })),
    [
      { address: '10.244.1.7', port: 9080, ports: undefined },
      { address: '10.244.2.7', port: 9081, ports: undefined },
    ],
  );
});
