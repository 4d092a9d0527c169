// SPDX-License-Identifier: Apache-2.0
// What a user runs on a node: `kernmesh datapath selftest --json`, built.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { cgroup2Root } from '../../src/datapath/index.ts';
import { kernelTest } from './helpers/kernel-test.ts';

const cli = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const ours = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith('kernmesh-selftest-')) : []);

kernelTest('`kernmesh datapath selftest --json` passes every hook with non-zero counters and leaves nothing behind', async (t) => {
  t.true(existsSync(cli), `${cli} is missing: run npm run build`);
  const { stdout } = await promisify(execFile)(process.execPath, [cli, 'datapath', 'selftest', '--json']);
  const report = JSON.parse(stdout) as {
    ok: boolean;
    hooks: Array<{ hook: string; ok: boolean; counters: Record<string, string> }>;
    cleanup: { ok: boolean };
  };
  t.true(report.ok);
  t.deepEqual(report.hooks.map((h) => h.hook), ['connect4', 'connect6', 'sockops', 'sk_msg', 'getsockopt']);
  for (const h of report.hooks) {
    t.true(h.ok, h.hook);
    t.true(Object.values(h.counters).some((v) => BigInt(v) > 0n), `${h.hook} counters: ${JSON.stringify(h.counters)}`);
  }
  t.true(report.cleanup.ok);
  t.deepEqual(ours('/run/netns'), []);
  t.deepEqual(ours('/sys/fs/bpf'), []);
  t.deepEqual(ours(cgroup2Root()), []);
});
