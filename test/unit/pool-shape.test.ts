// SPDX-License-Identifier: Apache-2.0
// The upstream pool's idle sweep stamps connections with Date.now(). If the
// stamp field started as a small integer, that first stamp would reshape
// every UpstreamConn and throw away the optimised code that reads them, a
// few seconds into the proxy's life and in the middle of its traffic (it
// showed as milliseconds of stall in the bench's latency tail). V8's own
// map check, in a child process that allows it, says whether it still does.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const SCRIPT = fileURLToPath(new URL('./helpers/pool-shape.mjs', import.meta.url));

test("the pool's idle sweep stamps a connection without changing its shape", async (t) => {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--allow-natives-syntax', SCRIPT], { timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
  const result = JSON.parse(out.trim().split('\n').pop()!) as { sameShape: boolean; stampedAt: number };
  t.true(result.stampedAt > 1e12, `the sweep stamped the idle connection (idleSince ${result.stampedAt})`);
  t.true(result.sameShape, 'a stamped connection has the same V8 map as an unstamped one');
});
