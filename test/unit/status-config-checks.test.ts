// SPDX-License-Identifier: Apache-2.0
// What `kernmesh status` says of objects in Redis that cannot work, on plain data.
import test from 'ava';
import type { MeshObject } from '../../src/config/objects.ts';
import { KINDS } from '../../src/config/model/kinds.ts';
import { configProblems } from '../../src/status/config-checks.ts';

const obj = (kind: MeshObject['kind'], name: string, ns: string, spec: Record<string, unknown>): MeshObject => ({ apiVersion: 'kernmesh.io/v1', kind, metadata: { name, namespace: ns }, spec });
const svc = (name: string, ns = 'shop') => obj('Service', name, ns, { hosts: [], addresses: [], ports: [{ port: 80 }] });
const texts = (objects: MeshObject[]) => configProblems(objects).map((p) => `${p.level} ${p.text}`);

test('a consistent mesh (every kind\'s documented example) has nothing to say', (t) => {
  const examples = Object.entries(KINDS).map(([kind, info]) => obj(kind as MeshObject['kind'], info.example.metadata.name, info.example.metadata.namespace ?? 'shop', info.example.spec as Record<string, unknown>));
  // The examples refer to reviews and to the subsets v1 and v2 the ClusterPolicy example defines.
  t.deepEqual(texts([...examples, svc('reviews'), svc('billing')]), []);
});

test('every object naming a Service that does not exist is one warning, naming the object, the service and the field', (t) => {
  const objects = [
    svc('reviews'),
    obj('Endpoints', 'ratings', 'shop', { endpoints: [] }),
    obj('Workload', 'vm-1', 'shop', { address: '192.0.2.1', service: 'billing' }),
    obj('ClusterPolicy', 'ratings', 'shop', { service: 'ratings', subsets: [{ name: 'v1', labels: { version: 'v1' } }] }),
    obj('AuthorizationPolicy', 'deny', 'shop', { service: 'other/ratings', action: 'DENY', rules: [{}] }),
    obj('AuthorizationPolicy', 'ns-wide', 'shop', { action: 'ALLOW', rules: [{}] }),
    obj('RateLimit', 'ratings', 'shop', { service: 'ratings', maxTokens: 1, fillInterval: '1s' }),
    obj('Route', 'ratings', 'shop', { service: 'ratings', rules: [{ action: { split: [{}] } }] }),
    obj('Route', 'reviews', 'shop', {
      service: 'reviews',
      rules: [
        { action: { split: [{ service: 'ratings', subset: 'v1', weight: 1 }, { weight: 9 }] }, mirror: { service: 'ratings' } },
        { action: { split: [{ service: 'shadow/reviews' }] } },
      ],
    }),
  ];
  // In namespace/name order, then kind.
  t.deepEqual(texts(objects), [
    'warn AuthorizationPolicy shop/deny refers to Service other/ratings, which does not exist (spec.service): it denies nothing',
    'warn ClusterPolicy shop/ratings refers to Service shop/ratings, which does not exist (spec.service): it applies to nothing',
    'warn Endpoints shop/ratings refers to Service shop/ratings, which does not exist (metadata.name): its endpoints are not used',
    'warn RateLimit shop/ratings refers to Service shop/ratings, which does not exist (spec.service): it limits nothing',
    'warn Route shop/ratings refers to Service shop/ratings, which does not exist (spec.service): its rules are never used',
    // One line for one missing service, however many fields name it; the subset of a missing service is moot.
    'warn Route shop/reviews refers to Service shop/ratings, which does not exist (spec.rules.0.action.split.0.service, spec.rules.0.mirror.service): every request sent there gets 503 (service not known); nothing is mirrored there',
    'warn Route shop/reviews refers to Service shadow/reviews, which does not exist (spec.rules.1.action.split.0.service): every request sent there gets 503 (service not known)',
    'warn Workload shop/vm-1 refers to Service shop/billing, which does not exist (spec.service): it is no endpoint of it',
  ]);
  const fixes = configProblems(objects).map((p) => p.fix);
  t.is(fixes[2], 'create Service shop/ratings, or delete the Endpoints (kernmesh delete endpoints shop/ratings)');
  t.is(fixes[4], 'create Service shop/ratings, or point the Route at an existing one (kernmesh apply), or delete it (kernmesh delete route shop/ratings)');
});

test('a Route destination naming a subset no ClusterPolicy of its service defines: every request there gets 503 UH', (t) => {
  const objects = [
    svc('reviews'),
    svc('ratings'),
    // Two policies for one service: their subsets add up, as in the routing table.
    obj('ClusterPolicy', 'reviews-a', 'shop', { service: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }] }),
    obj('ClusterPolicy', 'reviews-b', 'shop', { service: 'shop/reviews', subsets: [{ name: 'v2', labels: { version: 'v2' } }] }),
    obj('Route', 'reviews', 'shop', {
      service: 'reviews',
      rules: [
        { action: { split: [{ subset: 'v1' }, { subset: 'v2' }, { subset: 'v3' }] } },
        { action: { split: [{ subset: 'v3' }, { service: 'ratings', subset: 'v1' }] } },
      ],
    }),
  ];
  const problems = configProblems(objects);
  t.deepEqual(
    problems.map((p) => p.text),
    [
      'Route shop/reviews sends requests to subset v3 of Service shop/reviews (spec.rules.0.action.split.2.subset, spec.rules.1.action.split.0.subset), which no ClusterPolicy for shop/reviews defines: every request sent there gets 503 (UH)',
      'Route shop/reviews sends requests to subset v1 of Service shop/ratings (spec.rules.1.action.split.1.subset), which no ClusterPolicy for shop/ratings defines: every request sent there gets 503 (UH)',
    ],
  );
  t.true(problems.every((p) => p.level === 'warn'));
  t.is(problems[0]!.fix, 'define subset v3 in a ClusterPolicy for shop/reviews (spec.subsets), or change the Route\'s destination (kernmesh apply)');
});

test('a route-scoped RateLimit naming no rule of its service\'s Routes limits nothing', (t) => {
  const objects = [
    svc('reviews'),
    svc('ratings'),
    obj('Route', 'reviews', 'shop', { service: 'reviews', rules: [{ name: 'limited', action: { split: [{}] } }] }),
    obj('Route', 'ratings', 'shop', { service: 'ratings', rules: [{ name: 'slow', action: { split: [{}] } }] }),
    obj('RateLimit', 'ok', 'shop', { service: 'reviews', route: 'limited', maxTokens: 1, fillInterval: '1s' }),
    // A rule of another service's Route does not count: limits see their own service's rules only.
    obj('RateLimit', 'elsewhere', 'shop', { service: 'reviews', route: 'slow', maxTokens: 1, fillInterval: '1s' }),
  ];
  t.deepEqual(texts(objects), ['warn RateLimit shop/elsewhere limits requests matched by route rule slow (spec.route), which no Route of Service shop/reviews has: it limits nothing']);
});

test('objects too old or damaged for the model are read as far as they go, never thrown on', (t) => {
  const objects = [svc('reviews'), obj('Route', 'odd', 'shop', { service: 'reviews', rules: 'none' }), obj('Route', 'odder', 'shop', { rules: [{ action: null }] }), obj('ClusterPolicy', 'x', 'shop', { service: 'reviews', subsets: 'v1' })];
  t.deepEqual(texts(objects), []);
});
