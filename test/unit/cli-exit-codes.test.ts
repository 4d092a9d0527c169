// SPDX-License-Identifier: Apache-2.0
// Exit codes a script can rely on: the README's tables and the code agree, and the
// command-line mistakes that need no Redis, root or kernel give the documented code.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT, EXIT_FOR_ERROR, exitCodeFor } from '../../src/cli/exit-codes.ts';
import { ERROR_CODES, KmError } from '../../src/errors.ts';

const root = new URL('../../', import.meta.url).pathname;
const cli = join(root, 'src/cli/main.ts');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

function kernmesh(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

test('the README gives each error code the exit code the CLI exits with', (t) => {
  for (const code of Object.keys(ERROR_CODES) as Array<keyof typeof ERROR_CODES>) {
    const row = new RegExp(`^\\| \`${code}\` \\| (\\d) \\|`, 'm').exec(readme);
    t.truthy(row, `README's error table has no exit code for ${code}`);
    t.is(Number(row?.[1]), EXIT_FOR_ERROR[code], code);
    t.is(exitCodeFor(new KmError(code, 'x')), EXIT_FOR_ERROR[code]);
  }
  // What each exit code means: a no-Kubernetes-configuration failure is a configuration problem, not the host's.
  t.is(exitCodeFor(new KmError('KM_ERR_KUBECONFIG', 'x')), EXIT.INVALID);
  t.is(exitCodeFor(new KmError('KM_ERR_BPFFS', 'x')), EXIT.HOST);
});

test('demo traffic --seconds takes a whole number of seconds from 1: anything else is a usage error (2)', async (t) => {
  const bads = ['abc', '0', '-3', '1.5', '', '86401'];
  const results = await Promise.all(bads.map((bad) => kernmesh(['demo', 'traffic', '--seconds', bad])));
  for (const [i, bad] of bads.entries()) {
    const r = results[i]!;
    t.is(r.code, EXIT.USAGE, `--seconds ${JSON.stringify(bad)}: ${r.stderr}`);
    t.regex(r.stderr, /argument .* is invalid\. give a whole number of seconds from 1 to 86400/, bad);
    t.notRegex(r.stderr, /TimeoutNegativeWarning/);
    t.is(r.stdout, '', 'no summary');
  }
});

test('controller: no source, or both, is a usage error (2); no kubeconfig is a configuration error (3)', async (t) => {
  const none = await kernmesh(['controller', '--redis', 'unix:///nonexistent/kernmesh.sock']);
  t.is(none.code, EXIT.USAGE, none.stderr);
  t.regex(none.stderr, /say where services come from: --kubernetes, or --registry FILE/);
  const both = await kernmesh(['controller', '--kubernetes', '--registry', 'x.yaml', '--redis', 'unix:///nonexistent/kernmesh.sock']);
  t.is(both.code, EXIT.USAGE, both.stderr);

  // Not in a pod, no KUBECONFIG, no ~/.kube/config.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'KUBECONFIG' && !k.startsWith('KUBERNETES_')));
  const home = mkdtempSync(join(tmpdir(), 'kernmesh-home-'));
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const noKube = await kernmesh(['controller', '--kubernetes', '--redis', 'unix:///nonexistent/kernmesh.sock'], { ...env, HOME: home });
  t.is(noKube.code, EXIT.INVALID, noKube.stderr);
  t.regex(noKube.stderr, /KM_ERR_KUBECONFIG/);
});

test('--redis with a scheme kernmesh does not speak: refused (3), naming the forms it takes', async (t) => {
  const r = await kernmesh(['get', 'services', '--redis', 'http://127.0.0.1:6379']);
  t.is(r.code, EXIT.INVALID, r.stderr);
  t.regex(r.stderr, /Redis URL "http:\/\/127\.0\.0\.1:6379": unsupported scheme "http"; use redis:\/\/.*rediss:\/\/.*unix:\/\/\/path/);
  t.notRegex(r.stderr, /ENOENT/);
});
