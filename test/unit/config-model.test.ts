// SPDX-License-Identifier: Apache-2.0
import test from 'ava';
import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { exampleObject, renderModelDocs, renderSchemaFiles } from '../../src/config/docs.ts';
import { KIND_NAMES, kindFromUser } from '../../src/config/model/kinds.ts';
import { durationMs } from '../../src/config/model/common.ts';
import { referencesOf } from '../../src/config/objects.ts';
import { checkReferences, parseSource } from '../../src/config/validate.ts';

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
