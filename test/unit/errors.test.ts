// SPDX-License-Identifier: Apache-2.0
import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES, KmError } from '../../src/errors.ts';

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const root = new URL('../../', import.meta.url).pathname;
const readme = readFileSync(join(root, 'README.md'), 'utf8');

test('every error code is documented in the catalogue and in the README', (t) => {
  for (const [code, text] of Object.entries(ERROR_CODES)) {
    t.regex(code, /^KM_ERR_[A-Z0-9_]+$/);
    t.true(text.length > 10, `${code} needs a description`);
    t.true(readme.includes(code), `README.md does not document ${code}`);
  }
});

test('every code raised in src/ is in the catalogue', (t) => {
  const used = new Set(sources(join(root, 'src')).flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/'(KM_ERR_[A-Z0-9_]+)'/g)].map((m) => m[1]!)));
  t.true(used.size > 5);
  for (const code of used) t.true(code in ERROR_CODES, `${code} is raised but not catalogued`);
  for (const code of Object.keys(ERROR_CODES)) t.true(used.has(code), `${code} is catalogued but never raised`);
});

test('KmError carries its code and cause', (t) => {
  const cause = new Error('low level');
  const e = new KmError('KM_ERR_MAP_FULL', 'full', { cause });
  t.is(e.code, 'KM_ERR_MAP_FULL');
  t.is(e.cause, cause);
  t.true(e instanceof Error);
});

test('exit codes: each documented one is what its errors give, and the README lists every code', async (t) => {
  const { EXIT, exitCodeFor } = await import('../../src/cli/exit-codes.ts');
  t.is(exitCodeFor(new Error('bug')), EXIT.FAILED);
  t.is(exitCodeFor(new KmError('KM_ERR_INVALID_CONFIG', 'x')), 3);
  t.is(exitCodeFor(new KmError('KM_ERR_NOT_FOUND', 'x')), 4);
  t.is(exitCodeFor(new KmError('KM_ERR_REDIS', 'x')), 5);
  t.is(exitCodeFor(new KmError('KM_ERR_MAP_FULL', 'x')), 6);
  // Retryable, so a script can tell it from a real failure.
  t.is(exitCodeFor(new KmError('KM_ERR_CONFLICT', 'x')), 7);
  const listed = /Exit codes: (.*?)\n\n/s.exec(readme)?.[1] ?? '';
  for (const code of Object.values(EXIT)) t.regex(listed, new RegExp(`\\b${code} `), `README's exit codes miss ${code}`);
});
