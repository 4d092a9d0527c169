// SPDX-License-Identifier: Apache-2.0
// What objects need of each other, kept whole by apply and delete: a Route's
// subsets must be defined by a ClusterPolicy of their Service, and nothing
// another object still needs is deleted (unless --cascade takes both).
import test from 'ava';
import { stringify } from 'yaml';
import { exampleObject } from '../../src/config/docs.ts';
import { KIND_NAMES } from '../../src/config/model/kinds.ts';
import { MeshStore } from '../../src/config/store.ts';
import { kernmesh } from './helpers/cli.ts';
import { RedisServer } from './helpers/redis-server.ts';

async function setup(t: { teardown: (fn: () => Promise<void> | void) => void }): Promise<{ server: RedisServer; store: MeshStore }> {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  return { server, store: new MeshStore(server.client()) };
}

const doc = (kind: string, name: string, spec: string) => `kind: ${kind}\nmetadata: {name: ${name}, namespace: shop}\nspec: ${spec}\n`;
const svc = (name: string) => doc('Service', name, '{ports: [{port: 80}]}');
const policy = (name: string, service: string, subsets: string[]) => doc('ClusterPolicy', name, `{service: ${service}, subsets: [${subsets.map((s) => `{name: ${s}, labels: {version: ${s}}}`).join(', ')}]}`);
const route = (name: string, service: string, split: string) => doc('Route', name, `{service: ${service}, rules: [{action: {split: ${split}}}]}`);
/** Every kind's example: a Service and everything that refers to it. */
const examples = KIND_NAMES.map((k) => stringify(exampleObject(k))).join('---\n');

test('a Route naming a subset its Service does not define is refused, naming the service, the subset and the subsets there are', async (t) => {
  const { server, store } = await setup(t);
  t.is((await kernmesh(server.url, ['apply', '-f', '-'], { input: [svc('reviews'), svc('ratings'), policy('reviews', 'reviews', ['v1', 'v2'])].join('---\n') })).code, 0);

  // It used to be accepted, and then every request it sent there was "503 no healthy upstream ... subset v9".
  const r = await kernmesh(server.url, ['apply', '-f', '-'], { input: route('canary', 'reviews', '[{subset: v1, weight: 9}, {subset: v9}]') });
  t.is(r.code, 3, r.stderr);
  t.true(
    r.stderr.includes(
      '<stdin>: document 1 at spec.rules.0.action.split.1.subset: sends traffic to subset v9 of Service/shop/reviews, which has no such subset (ClusterPolicy/shop/reviews defines v1, v2): name one of those, or add v9 to spec.subsets of ClusterPolicy/shop/reviews',
    ),
    r.stderr,
  );
  t.notRegex(r.stderr, /subset v1 /, 'a defined subset is no problem');

  // A destination on another service is checked against that one's subsets; none at all says where to define them.
  const other = await kernmesh(server.url, ['apply', '-f', '-'], { input: route('canary', 'reviews', '[{service: ratings, subset: v1}]') });
  t.is(other.code, 3, other.stderr);
  t.regex(other.stderr, /at spec\.rules\.0\.action\.split\.0\.subset: sends traffic to subset v1 of Service\/shop\/ratings, which has no subsets: define v1 under spec\.subsets of a ClusterPolicy with service: shop\/ratings/);
  t.is(await store.version(), 3, 'nothing was written');

  // A ClusterPolicy in the same apply defines it; so does a second ClusterPolicy of the same service.
  const together = await kernmesh(server.url, ['apply', '-f', '-'], { input: [route('canary', 'reviews', '[{service: ratings, subset: v1}, {subset: v3}]'), policy('ratings', 'ratings', ['v1']), policy('reviews-v3', 'reviews', ['v3'])].join('---\n') });
  t.is(together.code, 0, together.stderr);
  // A missing Service is said once, not again as a missing subset.
  const ghost = await kernmesh(server.url, ['apply', '-f', '-'], { input: route('ghost', 'reviews', '[{service: ghost, subset: v1}]') });
  t.is(ghost.code, 3);
  t.regex(ghost.stderr, /refers to Service\/shop\/ghost, which does not exist \[/);
});

test("a ClusterPolicy change that takes a subset away from Routes in the mesh is refused, naming them", async (t) => {
  const { server, store } = await setup(t);
  const base = [svc('reviews'), policy('reviews', 'reviews', ['v1', 'v2']), route('canary', 'reviews', '[{subset: v1}, {subset: v2}]'), route('pin', 'reviews', '[{subset: v2}]')].join('---\n');
  t.is((await kernmesh(server.url, ['apply', '-f', '-'], { input: base })).code, 0);

  const r = await kernmesh(server.url, ['apply', '-f', '-'], { input: policy('reviews', 'reviews', ['v1']) });
  t.is(r.code, 3, r.stderr);
  t.true(
    r.stderr.includes(
      '<stdin>: document 1 at spec.subsets: takes subset v2 away from Service/shop/reviews, which Route/shop/canary (at spec.rules.0.action.split.1.subset), Route/shop/pin (at spec.rules.0.action.split.0.subset) in the mesh still use: change those Routes (first, or in this same apply), or keep the subset',
    ),
    r.stderr,
  );
  // Pointing the policy at another service takes its subsets away just the same.
  const moved = await kernmesh(server.url, ['apply', '-f', '-'], { input: [svc('ratings'), policy('reviews', 'ratings', ['v1', 'v2'])].join('---\n') });
  t.is(moved.code, 3, moved.stderr);
  t.regex(moved.stderr, /takes subset v1 away from Service\/shop\/reviews, which Route\/shop\/canary/);
  t.is(await store.version(), 4, 'nothing was written');

  // Another ClusterPolicy still defining it, or the Routes changed in the same apply: no problem.
  const fixed = await kernmesh(server.url, ['apply', '-f', '-'], { input: [policy('reviews', 'reviews', ['v1']), route('canary', 'reviews', '[{subset: v1}]'), route('pin', 'reviews', '[{subset: v1}]')].join('---\n') });
  t.is(fixed.code, 0, fixed.stderr);
});

test('delete refuses, naming them, while other objects refer to what it deletes; --cascade deletes them too in one write', async (t) => {
  const { server, store } = await setup(t);
  t.is((await kernmesh(server.url, ['apply', '-f', '-'], { input: examples })).code, 0);
  const version = await store.version();

  // It used to succeed, leaving Endpoints, Route, ClusterPolicy, ... pointing at nothing.
  const r = await kernmesh(server.url, ['delete', 'service', 'reviews', '-n', 'shop']);
  t.is(r.code, 3, r.stderr);
  t.is(
    r.stderr,
    [
      'kernmesh: Service/shop/reviews is still used by 5 other objects; nothing was deleted:',
      '  AuthorizationPolicy/shop/deny-delete refers to Service/shop/reviews',
      '  ClusterPolicy/shop/reviews refers to Service/shop/reviews',
      '  RateLimit/shop/reviews refers to Service/shop/reviews',
      '  Route/shop/reviews-canary refers to Service/shop/reviews',
      '  Workload/shop/reviews-vm-1 refers to Service/shop/reviews',
      'delete or change them first, or pass --cascade to delete them along with Service/shop/reviews [KM_ERR_INVALID_CONFIG]',
      '',
    ].join('\n'),
  );
  t.is(await store.version(), version, 'nothing was deleted');

  // A ClusterPolicy whose subsets a Route uses is needed too.
  const cp = await kernmesh(server.url, ['delete', 'cp', 'reviews', '-n', 'shop']);
  t.is(cp.code, 3, cp.stderr);
  t.regex(cp.stderr, /Route\/shop\/reviews-canary sends traffic to subset v2 of Service\/shop\/reviews \(at spec\.rules\.0\.action\.split\.0\.subset\), which ClusterPolicy\/shop\/reviews defines/);

  const dry = await kernmesh(server.url, ['delete', 'service', 'reviews', '-n', 'shop', '--cascade', '--dry-run']);
  t.is(dry.code, 0, dry.stderr);
  t.is(await store.version(), version, 'a dry run deletes nothing');
  const all = await kernmesh(server.url, ['delete', 'service', 'reviews', '-n', 'shop', '--cascade']);
  t.is(all.code, 0, all.stderr);
  t.deepEqual(all.stdout.trim().split('\n'), [
    `AuthorizationPolicy/shop/deny-delete deleted (version ${version + 1}): refers to Service/shop/reviews`,
    `ClusterPolicy/shop/reviews deleted (version ${version + 2}): refers to Service/shop/reviews`,
    `RateLimit/shop/reviews deleted (version ${version + 3}): refers to Service/shop/reviews`,
    `Route/shop/reviews-canary deleted (version ${version + 4}): refers to Service/shop/reviews`,
    `Workload/shop/reviews-vm-1 deleted (version ${version + 5}): refers to Service/shop/reviews`,
    `Endpoints/shop/reviews deleted (version ${version + 6}): the endpoints of Service/shop/reviews`,
    `Service/shop/reviews deleted (version ${version + 7})`,
  ]);
  t.is(dry.stdout.replaceAll(' (dry run)', ''), all.stdout.replace(/ \(version \d+\)/g, ''), 'the dry run showed what went');
  t.deepEqual((await store.list()).map((o) => o.object.kind), ['MeshSettings'], 'only what does not refer to it is left');
});

test("deleting a Service takes its Endpoints along, without --cascade; what nothing refers to just goes", async (t) => {
  const { server, store } = await setup(t);
  const endpoints = doc('Endpoints', 'web', '{endpoints: [{address: 10.0.0.1}]}');
  t.is((await kernmesh(server.url, ['apply', '-f', '-'], { input: [svc('web'), endpoints, route('web', 'web', '[{}]')].join('---\n') })).code, 0);
  t.is((await kernmesh(server.url, ['delete', 'route', 'web', '-n', 'shop'])).stdout, 'Route/shop/web deleted (version 4)\n');
  const r = await kernmesh(server.url, ['delete', 'svc', 'shop/web']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'Endpoints/shop/web deleted (version 5): the endpoints of Service/shop/web\nService/shop/web deleted (version 6)\n');
  t.deepEqual(await store.list(), []);
  // What used to be refused after the delete that left it dangling: re-applying it (with its Service) works.
  t.is((await kernmesh(server.url, ['apply', '-f', '-'], { input: [svc('web'), endpoints].join('---\n') })).code, 0);
});
