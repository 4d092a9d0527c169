// SPDX-License-Identifier: Apache-2.0
// Regular expressions in route matches run on input clients choose: apply
// takes only what can run in linear time, and a pattern that backtracks
// badly on some input still finishes (V8 moves the match to its linear engine).
import test from 'ava';
import { execFile } from 'node:child_process';
import { parseSource } from '../../src/config/validate.ts';
import { regexProblem } from '../../src/config/model/regex.ts';

test('apply refuses patterns that cannot run in linear time, and says what to leave out', (t) => {
  for (const ok of ['/api/v[0-9]+/.*', '(?<v>v[0-9]+)', '[^/]+\\.(png|jpg)', '.*?x', '(a+)+b', '(?<!x)y']) t.is(regexProblem(ok), undefined, ok);
  for (const slow of ['(a)\\1', '(?<x>a)\\k<x>', '/api(?=/v1)', 'x(?!y)', '(?i:abc)']) t.regex(regexProblem(slow) ?? '', /linear in the input: leave out backreferences/, slow);
  t.regex(regexProblem('(') ?? '', /^must be a valid regular expression \(/);

  const route = (regex: string) => `kind: Route\nmetadata: {name: r, namespace: shop}\nspec: {service: web, rules: [{match: [{path: {regex: '${regex}'}}], action: {split: [{}]}}]}\n`;
  t.deepEqual(parseSource(route('/a(?=b)'), 'r.yaml').issues.map((i) => i.path), ['spec.rules.0.match.0.path.regex']);
  t.deepEqual(parseSource(route('/items/[0-9]+'), 'r.yaml').issues, []);
});

test('a route pattern that backtracks without end on a crafted path still answers, no match', async (t) => {
  // In a child process with a deadline: a backtracking engine would take about 2^40 steps here (hours).
  const table = new URL('../../src/proxy/routing/table.ts', import.meta.url).href;
  const script = `
    const { buildTable } = await import(${JSON.stringify(table)});
    const o = (kind, spec) => ({ version: 1, object: { apiVersion: 'kernmesh.io/v1', kind, metadata: { name: 'web', namespace: 'shop' }, spec } });
    const svc = buildTable(1, [
      o('Service', { hosts: ['web'], addresses: [], ports: [{ port: 80 }] }),
      o('Route', { service: 'web', rules: [{ match: [{ path: { regex: '/(a+)+b' } }], action: { split: [{}] } }] }),
    ]).services.get('shop/web');
    const path = svc.routes[0].matches[0].path;
    console.log(JSON.stringify({ crafted: path('/' + 'a'.repeat(40) + 'c'), ordinary: path('/aaab') }));`;
  const r = await new Promise<{ signal: string | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => resolve({ signal: err?.signal ?? null, stdout, stderr }));
  });
  t.is(r.signal, null, 'the match finished');
  t.is(r.stderr, '');
  t.deepEqual(JSON.parse(r.stdout), { crafted: false, ordinary: true });
});
