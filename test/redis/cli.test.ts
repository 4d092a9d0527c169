// SPDX-License-Identifier: Apache-2.0
// `kernmesh apply/get/delete` as a script would run them: exit codes and output.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { exampleObject } from '../../src/config/docs.ts';
import { MeshStore } from '../../src/config/store.ts';
import { probeFeatures } from '../../src/datapath/index.ts';
import { RedisServer } from './helpers/redis-server.ts';

const cli = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function kernmesh(url: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [cli, ...args], { env: { ...process.env, REDIS_URL: url } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

test('apply, get, dry run, delete: output and exit codes', async (t) => {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  const store = new MeshStore(server.client());
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-cli-'));
  writeFileSync(join(dir, '1-service.yaml'), stringify(exampleObject('Service')));
  writeFileSync(join(dir, '2-policy.yaml'), stringify(exampleObject('ClusterPolicy')));
  writeFileSync(join(dir, '3-route.yaml'), stringify(exampleObject('Route')));
  writeFileSync(join(dir, 'README.txt'), 'not config');

  const applied = await kernmesh(server.url, ['apply', '-f', dir]);
  t.is(applied.code, 0, applied.stderr);
  t.regex(applied.stdout, /Service\/shop\/reviews created \(version 1\)\nClusterPolicy\/shop\/reviews created \(version 2\)\nRoute\/shop\/reviews-canary created \(version 3\)/);

  const again = await kernmesh(server.url, ['apply', '-f', dir]);
  t.regex(again.stdout, /unchanged.*\n.*unchanged.*\n.*unchanged/);
  t.is(await store.version(), 3, 'an unchanged apply writes nothing');

  const changed = stringify(exampleObject('Service')).replace('port: 80', 'port: 8080');
  const dry = await kernmesh(server.url, ['apply', '-f', '-', '--dry-run'], changed);
  t.is(dry.code, 0);
  t.regex(dry.stdout, /configured \(dry run\)[\s\S]*-    - port: 80\n\+    - port: 8080/);
  t.is(await store.version(), 3, 'a dry run writes nothing');

  // A listing is a List (kubectl's shape) however many objects it has; one object by name is itself.
  const got = await kernmesh(server.url, ['get', 'routes', '-o', 'json']);
  t.is(got.code, 0);
  t.like(JSON.parse(got.stdout), { apiVersion: 'kernmesh.io/v1', kind: 'List', items: [{ metadata: { name: 'reviews-canary' }, version: 3 }] });
  const one = await kernmesh(server.url, ['get', 'route', 'reviews-canary', '-n', 'shop', '-o', 'json']);
  t.like(JSON.parse(one.stdout), { kind: 'Route', metadata: { name: 'reviews-canary' }, version: 3 });
  const table = await kernmesh(server.url, ['get', 'svc']);
  t.regex(table.stdout, /^KIND +NAMESPACE +NAME +VERSION +SUMMARY\nService +shop +reviews +1 +ports 80\/http vip 10\.96\.0\.20$/m);

  t.is((await kernmesh(server.url, ['get', 'route', 'nope', '-n', 'shop'])).code, 4);
  t.is((await kernmesh(server.url, ['delete', 'route', 'reviews-canary', '-n', 'shop'])).code, 0);
  const missing = await kernmesh(server.url, ['delete', 'route', 'reviews-canary', '-n', 'shop']);
  t.is(missing.code, 4);
  t.regex(missing.stderr, /does not exist; nothing was deleted/);
  t.is((await kernmesh(server.url, ['frobnicate'])).code, 2);
});

test('usage mistakes exit 2, listing what is valid: an unknown kind or output format', async (t) => {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  // They used to exit 3, "invalid configuration", which scripts read as a refused apply.
  const kinds = 'one of MeshSettings, Service, Endpoints, Workload, Route, ClusterPolicy, AuthorizationPolicy, RateLimit';
  for (const args of [['get', 'bogus'], ['delete', 'frobs', 'x'], ['schema', 'Bogus'], ['schema', 'Bogus', '--example']]) {
    const r = await kernmesh(server.url, args);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.true(r.stderr.includes(`unknown kind "${args[1]}": ${kinds}`), r.stderr);
  }
  const xml = await kernmesh(server.url, ['get', 'route', '-o', 'xml']);
  t.is(xml.code, 2, xml.stderr);
  t.regex(xml.stderr, /argument 'xml' is invalid\. Allowed choices are table, wide, json, yaml/);
});

test('messages: a YAML error shows the line it is on; an object missing from the namespace asked is found in the others', async (t) => {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  // It used to end in "at line 4, column 3:" with nothing after the colon.
  const bad = await kernmesh(server.url, ['apply', '-f', '-'], 'kind: Service\nmetadata:\n  name: web\n  namespace shop\nspec: {ports: [{port: 80}]}\n');
  t.is(bad.code, 3);
  t.true(bad.stderr.includes('<stdin>: document 1: not valid YAML/JSON: Implicit map keys need to be followed by map values at line 4, column 3: "  namespace shop"'), bad.stderr);
  const open = await kernmesh(server.url, ['apply', '-f', '-'], 'kind: Service\nmetadata: {name: web}\nspec: {ports: [\n');
  t.regex(open.stderr, /must be sufficiently indented and end with a \] at line 4, column 1 \(the end of the input\)\n/);
  t.notRegex(bad.stderr + open.stderr, /column \d+:\s*(\n|\[)/, 'no colon with nothing after it');

  const objects = ['shop', 'books'].map((ns) => `kind: Service\nmetadata: {name: web, namespace: ${ns}}\nspec: {ports: [{port: 80}]}\n`);
  t.is((await kernmesh(server.url, ['apply', '-f', '-'], objects[0])).code, 0);
  const missing = await kernmesh(server.url, ['get', 'svc', 'web']);
  t.is(missing.code, 4);
  t.is(missing.stderr, 'kernmesh: Service/default/web does not exist (found in namespace shop: use -n shop) [KM_ERR_NOT_FOUND]\n');
  t.is((await kernmesh(server.url, ['apply', '-f', '-'], objects[1])).code, 0);
  t.regex((await kernmesh(server.url, ['get', 'svc', 'web', '-n', 'default'])).stderr, /\(found in namespaces books, shop: use -n NAMESPACE\)/);
  t.regex((await kernmesh(server.url, ['delete', 'svc', 'web'])).stderr, /Service\/default\/web does not exist \(found in namespaces books, shop: use -n NAMESPACE\); nothing was deleted/);
  t.regex((await kernmesh(server.url, ['get', 'svc', 'nope', '-n', 'shop'])).stderr, /Service\/shop\/nope does not exist \[/, 'no hint when there is none');
});

test('invalid documents are rejected with every problem named, and nothing is written', async (t) => {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  const store = new MeshStore(server.client());
  const bad = [stringify(exampleObject('Service')), 'kind: Route\nmetadata: {name: r, namespace: shop}\nspec: {service: ghost, rules: [{action: {split: [{}]}}]}', 'kind: Service\nmetadata: {name: x}\nspec: {ports: []}'].join('\n---\n');
  const r = await kernmesh(server.url, ['apply', '-f', '-'], bad);
  t.is(r.code, 3);
  t.regex(r.stderr, /<stdin>: document 3 at spec\.ports: /);
  t.regex(r.stderr, /<stdin>: document 2 at spec: refers to Service\/shop\/ghost, which does not exist/);
  t.is(await store.version(), 0, 'the valid document in the batch was not written either');
});

test('Redis unreachable: a clear message and exit code 5', async (t) => {
  const r = await kernmesh('unix:///nonexistent/kernmesh.sock', ['get', 'services']);
  t.is(r.code, 5);
  t.regex(r.stderr, /cannot reach Redis at unix:\/\/\/nonexistent\/kernmesh\.sock/);
});

test('kernmesh check includes Redis: reachable, or a clear failure and exit code 5 (6 when the host fails too)', async (t) => {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  const good = await kernmesh(server.url, ['check', '--json']);
  const report = JSON.parse(good.stdout) as { checks: Array<{ name: string; ok: boolean; detail: string }> };
  t.like(report.checks.find((c) => c.name === 'redis'), { ok: true });
  t.regex(report.checks.find((c) => c.name === 'redis')!.detail, /mesh version 0/);
  const bad = await kernmesh('unix:///nonexistent/kernmesh.sock', ['check', '--json']);
  t.is(bad.code, probeFeatures().every((f) => f.ok) ? 5 : 6, 'Redis unreachable; a host problem outranks it');
  t.like((JSON.parse(bad.stdout) as { checks: Array<{ name: string; ok: boolean }> }).checks.find((c) => c.name === 'redis'), { ok: false });
});

test('re-applying an object written another way (labels reordered, the default namespace spelled out) is unchanged: no new version', async (t) => {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  const store = new MeshStore(server.client());
  // Each used to be "configured": a new version with a diff of nothing but order, and every agent rebuilt its table.
  const first = 'kind: Service\nmetadata: {name: web, labels: {team: a, tier: b}}\nspec: {ports: [{port: 80}], selector: {app: web, version: v1}}\n';
  const spelled = 'kind: Service\nmetadata: {namespace: default, name: web, labels: {team: a, tier: b}}\nspec: {ports: [{port: 80}], selector: {app: web, version: v1}}\n';
  const reordered = 'kind: Service\nmetadata: {name: web, namespace: default, labels: {tier: b, team: a}}\nspec: {selector: {version: v1, app: web}, ports: [{port: 80}]}\n';
  t.is((await kernmesh(server.url, ['apply', '-f', '-'], first)).code, 0);
  for (const text of [spelled, reordered]) {
    const dry = await kernmesh(server.url, ['apply', '-f', '-', '--dry-run'], text);
    t.is(dry.stdout.trim(), 'Service/default/web unchanged (dry run)', 'no diff to show');
    const r = await kernmesh(server.url, ['apply', '-f', '-'], text);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /^Service\/default\/web unchanged/);
  }
  t.is(await store.version(), 1, 'one write was needed');
  // A real change is still one, and its diff shows only what changed.
  const changed = await kernmesh(server.url, ['apply', '-f', '-', '--dry-run'], reordered.replace('tier: b', 'tier: c'));
  t.regex(changed.stdout, /configured \(dry run\)/);
  t.deepEqual(changed.stdout.split('\n').filter((l) => /^[-+] /.test(l)), ['-    tier: b', '+    tier: c']);
});
