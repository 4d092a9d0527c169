// SPDX-License-Identifier: Apache-2.0
// What `kernmesh delete` takes, planned on plain objects (src/config/delete.ts).
import test from 'ava';
import { planDelete } from '../../src/config/delete.ts';
import type { MeshObject } from '../../src/config/objects.ts';
import { refString } from '../../src/config/objects.ts';
import { parseSource } from '../../src/config/validate.ts';

const obj = (kind: string, name: string, spec: string): MeshObject => {
  const { objects, issues } = parseSource(`kind: ${kind}\nmetadata: {name: ${name}, namespace: shop}\nspec: ${spec}`, 'x.yaml');
  if (issues.length) throw new Error(issues[0]!.message);
  return objects[0]!.object;
};
const svc = (name: string) => obj('Service', name, '{ports: [{port: 80}]}');
const refs = (ds: Array<{ ref: { kind: string; key: string } }>) => ds.map((d) => refString(d.ref as never));

const mesh = [
  svc('reviews'),
  svc('front'),
  obj('Endpoints', 'reviews', '{endpoints: [{address: 10.0.0.1}]}'),
  obj('ClusterPolicy', 'reviews', '{service: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}'),
  obj('ClusterPolicy', 'reviews-also-v1', '{service: reviews, subsets: [{name: v1, labels: {version: v1}}]}'),
  // front's route sends a share to reviews v2: it needs both the Service and the subset.
  obj('Route', 'front', '{service: front, rules: [{action: {split: [{weight: 9}, {service: reviews, subset: v2}]}}]}'),
  // Already broken before any delete: no ClusterPolicy defines v9.
  obj('Route', 'stale', '{service: front, rules: [{action: {split: [{service: reviews, subset: v9}]}}]}'),
  obj('Route', 'pinned', '{service: reviews, rules: [{action: {split: [{subset: v1}]}}]}'),
];

test('an object others need is blocked, naming each and what it needs; one nothing needs goes alone', (t) => {
  const plan = planDelete(mesh, { kind: 'ClusterPolicy', key: 'shop/reviews' })!;
  t.deepEqual(refs(plan.blockers), ['Route/shop/front'], 'v1 is still defined by reviews-also-v1; v9 never was');
  t.deepEqual(plan.blockers[0]!.needs, ['sends traffic to subset v2 of Service/shop/reviews (at spec.rules.0.action.split.1.subset), which ClusterPolicy/shop/reviews defines']);
  const alone = planDelete(mesh, { kind: 'ClusterPolicy', key: 'shop/reviews-also-v1' })!;
  t.deepEqual(alone.blockers, []);
  t.deepEqual(refs(alone.deletes), ['ClusterPolicy/shop/reviews-also-v1']);
  t.is(planDelete(mesh, { kind: 'Route', key: 'default/front' }), undefined, 'not there');
});

test("a Service takes its Endpoints along; with cascade, everything that needs it, needers first and the Service last", (t) => {
  const blocked = planDelete(mesh, { kind: 'Service', key: 'shop/reviews' })!;
  t.deepEqual(refs(blocked.blockers), ['ClusterPolicy/shop/reviews', 'ClusterPolicy/shop/reviews-also-v1', 'Route/shop/front', 'Route/shop/pinned', 'Route/shop/stale']);
  const all = planDelete(mesh, { kind: 'Service', key: 'shop/reviews' }, { cascade: true })!;
  t.deepEqual(all.blockers, []);
  t.deepEqual(refs(all.deletes), ['ClusterPolicy/shop/reviews', 'ClusterPolicy/shop/reviews-also-v1', 'Route/shop/front', 'Route/shop/pinned', 'Route/shop/stale', 'Endpoints/shop/reviews', 'Service/shop/reviews']);
  t.is(all.deletes.find((d) => d.ref.kind === 'Endpoints')!.why, 'the endpoints of Service/shop/reviews');
  const lone = planDelete([svc('web'), obj('Endpoints', 'web', '{}')], { kind: 'Service', key: 'shop/web' })!;
  t.deepEqual([refs(lone.deletes), lone.blockers], [['Endpoints/shop/web', 'Service/shop/web'], []], 'no --cascade needed for its own Endpoints');
});
