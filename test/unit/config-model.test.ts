// SPDX-License-Identifier: Apache-2.0
import test from 'ava';
import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { exampleObject, renderModelDocs, renderSchemaFiles } from '../../src/config/docs.ts';
import { KIND_NAMES, kindFromUser } from '../../src/config/model/kinds.ts';
import { MAX_DURATION_MS, durationMs } from '../../src/config/model/common.ts';
import { referencesOf } from '../../src/config/objects.ts';
import { checkReferences, parseSource } from '../../src/config/validate.ts';
import { buildTable } from '../../src/proxy/routing/table.ts';

const root = new URL('../../', import.meta.url).pathname;

test('every kind has an example that validates', (t) => {
  for (const kind of KIND_NAMES) {
    const { objects, issues } = parseSource(stringify(exampleObject(kind)), `${kind}.yaml`);
    t.deepEqual(issues, [], kind);
    t.is(objects.length, 1);
  }
});

test('docs/model.md and docs/schemas are what the model generates (run npm run gen:docs)', (t) => {
  t.is(readFileSync(`${root}docs/model.md`, 'utf8'), renderModelDocs());
  for (const [name, body] of Object.entries(renderSchemaFiles())) t.is(readFileSync(`${root}docs/schemas/${name}`, 'utf8'), body, name);
});

test('every problem is named by source, document and path', (t) => {
  const text = [
    'kind: Service\nmetadata: {name: ok, namespace: shop}\nspec: {ports: [{port: 80}]}',
    'kind: Service\nmetadata: {name: Bad}\nspec: {ports: [{port: 70000, protocol: smtp}]}',
    'kind: Route\nmetadata: {name: r}\nspec: {service: ok, rules: [{action: {split: [{weight: 1}]}, timeout: soon}]}',
    'kind: Frobnicator\nmetadata: {name: x}',
    'kind: MeshSettings\nmetadata: {name: not-mesh}\nspec: {}',
    '{ not yaml: [',
  ].join('\n---\n');
  const { objects, issues } = parseSource(text, 'mesh.yaml');
  t.is(objects.length, 1);
  const lines = [...new Set(issues.map((i) => `${i.document} ${i.path}`))];
  t.deepEqual(lines, ['2 metadata.name', '2 spec.ports.0.port', '2 spec.ports.0.protocol', '3 spec.rules.0.timeout', '4 kind', '5 metadata.name', '6 ']);
  t.true(issues.every((i) => i.source === 'mesh.yaml' && i.message.length > 5));
  t.regex(issues.find((i) => i.path === 'spec.rules.0.timeout')!.message, /duration like 250ms/);
});

test('the same object twice in one apply is an error', (t) => {
  const doc = 'kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}';
  const { issues } = parseSource(`${doc}\n---\n${doc}`, 'x.yaml');
  t.is(issues.length, 1);
  t.regex(issues[0]!.message, /also defined in x.yaml document 1/);
});

test('a document with too many aliases is an issue naming it, and the other documents are still checked', (t) => {
  const bomb = 'a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]';
  const ok = 'kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}';
  const { objects, issues } = parseSource([ok, bomb, 'kind: Frobnicator\nmetadata: {name: x}'].join('\n---\n'), 'x.yaml');
  t.is(objects.length, 1);
  t.deepEqual(issues.map((i) => `${i.source} ${i.document} ${i.path}`), ['x.yaml 2 ', 'x.yaml 3 kind']);
  t.regex(issues[0]!.message, /too many aliases.*expand them/);
});

test('references resolve within the batch or the mesh, across namespaces', async (t) => {
  const { objects } = parseSource(
    [
      'kind: Route\nmetadata: {name: r, namespace: shop}\nspec: {service: reviews, rules: [{action: {split: [{service: billing/pay}]}, mirror: {service: shadow}}]}',
      'kind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {ports: [{port: 80}]}',
    ].join('\n---\n'),
    'r.yaml',
  );
  t.deepEqual(referencesOf(objects[0]!.object).map((r) => `${r.kind}/${r.key}`), ['Service/shop/reviews', 'Service/billing/pay', 'Service/shop/shadow']);
  const inMesh = new Set(['Service/billing/pay']);
  const issues = await checkReferences(objects, async (r) => inMesh.has(`${r.kind}/${r.key}`));
  t.deepEqual(issues.map((i) => i.message), ['refers to Service/shop/shadow, which does not exist']);
});

test('a List (what get prints) and a JSON array hold several objects; problems are named by item, and a version: is kept as a precondition', (t) => {
  const svc = (name: string, port: number | string, version?: number) => ({ kind: 'Service', metadata: { name, namespace: 'shop' }, spec: { ports: [{ port }] }, ...(version ? { version } : {}) });
  const list = JSON.stringify({ apiVersion: 'kernmesh.io/v1', kind: 'List', items: [svc('a', 80, 7), svc('b', 'x')] });
  const array = JSON.stringify([svc('c', 80), svc('d', 'x'), svc('c', 81)]);
  const { objects, issues } = parseSource([list, array].join('\n---\n'), 'get.json');
  t.deepEqual(
    objects.map((o) => [o.object.metadata.name, o.document, o.at, o.expectedVersion]),
    [
      ['a', 1, 'items.0', 7],
      ['c', 2, '[0]', undefined],
    ],
  );
  t.deepEqual(
    issues.map((i) => `${i.document} ${i.path}`),
    ['1 items.1.spec.ports.0.port', '2 [1].spec.ports.0.port', '2 [2].metadata.name'],
  );
  t.regex(issues[2]!.message, /also defined in get\.json document 2 \[0\]$/);
  t.deepEqual(parseSource('kind: List\nitems: {}', 'l.yaml').issues.map((i) => i.path), ['items']);
  t.deepEqual(parseSource('kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\nversion: 0', 'v.yaml').issues.map((i) => i.path), ['version']);
});

test('kinds are found by plural, case and short name', (t) => {
  t.is(kindFromUser('routes'), 'Route');
  t.is(kindFromUser('clusterpolicies'), 'ClusterPolicy');
  t.is(kindFromUser('svc'), 'Service');
  t.is(kindFromUser('Endpoints'), 'Endpoints');
  t.is(kindFromUser('nope'), undefined);
});

test('durations', (t) => {
  t.is(durationMs('250ms'), 250);
  t.is(durationMs('1.5s'), 1500);
  t.is(durationMs('2m'), 120_000);
  t.throws(() => durationMs('soon'));
});

test('every duration field refuses more than a timer keeps (2^31-1 ms), naming the maximum', (t) => {
  // Longer ones used to pass and then fire at once: setTimeout takes anything past 2^31-1 ms as 1 ms.
  const long = '600h';
  const text = [
    'kind: Service\nmetadata: {name: db, namespace: shop}\nspec: {ports: [{port: 5432}]}',
    `kind: ClusterPolicy\nmetadata: {name: db, namespace: shop}\nspec: {service: db, timeouts: {connect: ${long}, request: ${long}, idle: ${long}}, connectionPool: {idleTimeout: ${long}}, outlierDetection: {interval: ${long}, baseEjectionTime: ${long}, maxEjectionTime: ${long}}, retries: {perTryTimeout: ${long}, backoff: {base: ${long}, max: ${long}}}}`,
    `kind: Route\nmetadata: {name: db, namespace: shop}\nspec: {service: db, rules: [{action: {split: [{}]}, timeout: ${long}, fault: {delay: {percent: 1, fixed: ${long}}}}]}`,
    `kind: RateLimit\nmetadata: {name: db, namespace: shop}\nspec: {service: db, maxTokens: 1, fillInterval: ${long}}`,
    `kind: MeshSettings\nmetadata: {name: mesh}\nspec: {defaultTimeouts: {connect: ${long}, request: ${long}}}`,
  ].join('\n---\n');
  const { objects, issues } = parseSource(text, 'long.yaml');
  t.deepEqual(objects.map((o) => o.object.kind), ['Service']);
  t.deepEqual(
    issues.map((i) => `${i.document} ${i.path}`),
    [
      '2 spec.connectionPool.idleTimeout',
      '2 spec.outlierDetection.interval',
      '2 spec.outlierDetection.baseEjectionTime',
      '2 spec.outlierDetection.maxEjectionTime',
      '2 spec.timeouts.connect',
      '2 spec.timeouts.request',
      '2 spec.timeouts.idle',
      '2 spec.retries.perTryTimeout',
      '2 spec.retries.backoff.base',
      '2 spec.retries.backoff.max',
      '3 spec.rules.0.timeout',
      '3 spec.rules.0.fault.delay.fixed',
      '4 spec.fillInterval',
      '5 spec.defaultTimeouts.connect',
      '5 spec.defaultTimeouts.request',
    ],
  );
  for (const i of issues) t.regex(i.message, /must be at most 596h \(2147483647 ms, about 24\.8 days/);
  t.deepEqual(parseSource('kind: RateLimit\nmetadata: {name: r}\nspec: {service: db, maxTokens: 1, fillInterval: 596h}', 'ok.yaml').issues, [], '596h is the longest whole number of hours allowed');
});

test('timeouts, intervals and a token fill of 0 are refused (they would fire at once or spin); a delay or backoff of 0 is fine', (t) => {
  const text = [
    'kind: ClusterPolicy\nmetadata: {name: db, namespace: shop}\nspec: {service: db, timeouts: {connect: 0s, request: 0ms, idle: 0s}, connectionPool: {idleTimeout: 0s}, outlierDetection: {interval: 0s}, retries: {perTryTimeout: 0s, backoff: {base: 0ms, max: 0ms}}}',
    'kind: Route\nmetadata: {name: db, namespace: shop}\nspec: {service: db, rules: [{action: {split: [{}]}, timeout: 0s, fault: {delay: {percent: 1, fixed: 0s}}}]}',
    'kind: RateLimit\nmetadata: {name: db, namespace: shop}\nspec: {service: db, maxTokens: 1, fillInterval: 0s}',
    'kind: MeshSettings\nmetadata: {name: mesh}\nspec: {defaultTimeouts: {connect: 0s, request: 0s}}',
  ].join('\n---\n');
  const { issues } = parseSource(text, 'zero.yaml');
  t.deepEqual(
    issues.map((i) => `${i.document} ${i.path}`),
    [
      '1 spec.connectionPool.idleTimeout',
      '1 spec.outlierDetection.interval',
      '1 spec.timeouts.connect',
      '1 spec.timeouts.request',
      '1 spec.timeouts.idle',
      '1 spec.retries.perTryTimeout',
      '2 spec.rules.0.timeout',
      '3 spec.fillInterval',
      '4 spec.defaultTimeouts.connect',
      '4 spec.defaultTimeouts.request',
    ],
  );
  for (const i of issues) t.regex(i.message, /must be more than 0/);
});

test('a duration stored before that check still never becomes a timer that fires at once', (t) => {
  t.is(durationMs('600h'), MAX_DURATION_MS);
  t.is(durationMs('596h'), 596 * 3_600_000);
});

test('two Services claiming one VIP:port or host: every table routes it to the first by namespace/name, whatever the order or versions, and names the other', (t) => {
  // apply refuses this; objects written before that check, or by the Kubernetes sync, may still hold it.
  const svc = (name: string, spec: string) => parseSource(`kind: Service\nmetadata: {name: ${name}, namespace: shop}\nspec: ${spec}`, 'x.yaml').objects[0]!.object;
  const a = { version: 7, object: svc('a', '{ports: [{port: 80}], addresses: [10.96.1.1], hosts: [web.example]}') };
  const b = { version: 3, object: svc('b', '{ports: [{port: 80}, {port: 81}], addresses: [10.96.1.1]}') };
  const c = { version: 5, object: svc('c', '{ports: [{port: 90}], hosts: [web.example, b.shop]}') };
  const orders = [
    [a, b, c],
    [c, b, a],
    [b, a, c],
    // An edit (a new version) of either side never moves a claim.
    [{ ...a, version: 1 }, { ...b, version: 9 }, c],
  ];
  for (const order of orders) {
    const table = buildTable(9, order);
    t.is(table.byVip.get('10.96.1.1:80'), 'shop/a');
    t.is(table.byVip.get('10.96.1.1:81'), 'shop/b', 'unclaimed by anyone else');
    t.is(table.byHost.get('web.example'), 'shop/a');
    t.is(table.byHost.get('b.shop'), 'shop/b', "b's own name.namespace over c's host");
    t.deepEqual(
      [...table.conflicts].sort((x, y) => x.claim.localeCompare(y.claim)),
      [
        { claim: 'address 10.96.1.1:80', kept: 'shop/a', ignored: 'shop/b' },
        { claim: 'host b.shop', kept: 'shop/b', ignored: 'shop/c' },
        { claim: 'host web.example', kept: 'shop/a', ignored: 'shop/c' },
      ],
    );
  }
});

test('several Routes for one service are tried in name order, and two ClusterPolicies settle by name, whatever order they arrived in', (t) => {
  const doc = (kind: string, name: string, spec: string) => parseSource(`kind: ${kind}\nmetadata: {name: ${name}, namespace: shop}\nspec: ${spec}`, 'x.yaml').objects[0]!.object;
  const web = { version: 1, object: doc('Service', 'web', '{ports: [{port: 80}]}') };
  const r1 = { version: 9, object: doc('Route', 'a-first', '{service: web, rules: [{name: from-a, action: {split: [{}]}}]}') };
  const r2 = { version: 2, object: doc('Route', 'b-second', '{service: web, rules: [{name: from-b, action: {split: [{}]}}]}') };
  const p1 = { version: 3, object: doc('ClusterPolicy', 'p1', '{service: web, timeouts: {request: 1s}}') };
  const p2 = { version: 8, object: doc('ClusterPolicy', 'p2', '{service: web, timeouts: {request: 2s}}') };
  for (const order of [[web, r1, r2, p1, p2], [p2, r2, p1, web, r1]]) {
    const svc = buildTable(9, order).services.get('shop/web')!;
    t.deepEqual(svc.routes.map((r) => r.name), ['from-a', 'from-b']);
    t.is(svc.policy.requestTimeoutMs, 2000);
  }
});
