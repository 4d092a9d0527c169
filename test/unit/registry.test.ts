// SPDX-License-Identifier: Apache-2.0
// What `kernmesh controller --registry` says of a registry file it cannot use: every problem, each at its place.
import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { readRegistry } from '../../src/controller/local.ts';

const dir = mkdtempSync(join(tmpdir(), 'kernmesh-registry-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (body: string) => {
  const path = join(dir, `${++n}`, 'reg-bad.yaml');
  mkdirSync(dirname(path));
  writeFileSync(path, body);
  return path;
};

test('an unknown key at the top level is named at (root), never at an empty path', (t) => {
  const path = file('service:\n  - name: reviews\n');
  const err = t.throws(() => readRegistry(path));
  t.is(err?.message, `${path}: (root): Unrecognized key: "service"; nothing was written`);
});

test('every problem is named, each with its path in the file', (t) => {
  const path = file('services:\n  - name: reviews\n    ports: [{ port: 80 }]\n    endpoints: [{ adress: 10.0.0.1 }]\n  - name: Ratings\n    ports: []\n');
  const err = t.throws(() => readRegistry(path));
  t.regex(err?.message ?? '', /services\.0\.endpoints\.0: Unrecognized key: "adress"/);
  t.regex(err?.message ?? '', /services\.0\.endpoints\.0\.address: /);
  t.regex(err?.message ?? '', /services\.1\.name: must be lowercase/);
  t.regex(err?.message ?? '', /services\.1\.ports: /);
  t.notRegex(err?.message ?? '', /: : /);
});
