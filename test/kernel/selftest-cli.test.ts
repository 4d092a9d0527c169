// SPDX-License-Identifier: Apache-2.0
// What a user runs on a node: `kernmesh datapath selftest --json` (built), and the datapath commands'
// refusals: as a user without root, on a directory that is not bpffs, under a lock held by another.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cgroup2Root, defaultLockPath, ensureBpffs, takeLock } from '../../src/datapath/index.ts';
import { lockHeld, releaseLock } from '../../src/datapath/lock.ts';
import { kernelTest } from './helpers/kernel-test.ts';

const cli = new URL('../../dist/cli/main.js', import.meta.url).pathname;
/** The CLI from its sources, for what needs no build. */
const srcCli = new URL('../../src/cli/main.ts', import.meta.url).pathname;
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

// As a user without root: what the host lacks is named, with the host's exit code (6), and nothing is made.
const asNobody = (args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, srcCli, ...args], (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });

kernelTest('without root: check, datapath selftest and demo up exit 6 and say what is missing', async (t) => {
  const check = await asNobody(['check', '--no-redis-check']);
  t.is(check.code, 6, check.stderr);
  t.regex(check.stdout, /× capabilities +missing CAP_BPF/);

  const json = await asNobody(['datapath', 'selftest', '--json']);
  t.is(json.code, 6, json.stderr);
  const report = JSON.parse(json.stdout) as { ok: boolean; error: string; hooks: unknown[] };
  t.false(report.ok);
  t.deepEqual(report.hooks, []);
  t.regex(report.error, /lacks what the datapath needs, so nothing was tried: capabilities \(missing CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN\)/);
  const text = await asNobody(['datapath', 'selftest']);
  t.is(text.code, 6);
  t.notRegex(text.stdout, /see features/);
  t.notRegex(text.stdout, /cleanup/, 'nothing was made, so no cleanup line');
  t.regex(text.stdout, /× error +the host lacks .*capabilities/);

  const parent = mkdtempSync(join(tmpdir(), 'kernmesh-demo-nobody-'));
  t.teardown(() => rmSync(parent, { recursive: true, force: true }));
  const dir = join(parent, 'demo');
  const demo = await asNobody(['demo', 'up', '--dir', dir]);
  t.is(demo.code, 6, demo.stderr);
  t.regex(demo.stderr, /^kernmesh: kernmesh demo up needs root: it makes network namespaces, cgroups and BPF programs \(missing CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN\); run it as root\n$/);
  t.notRegex(demo.stderr, /EACCES/);
  t.false(existsSync(dir), 'nothing was made');
});

const run = (args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [srcCli, ...args], (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });

kernelTest('datapath cleanup: a directory off bpffs is refused (6); on bpffs it cleans; either way no lock file is left, and a held lock is respected', async (t) => {
  const notBpf = mkdtempSync(join(tmpdir(), 'kernmesh-cleanup-'));
  t.teardown(() => rmSync(notBpf, { recursive: true, force: true }));
  const offLock = defaultLockPath(notBpf);
  const off = await run(['datapath', 'cleanup', '--pin-dir', notBpf]);
  t.is(off.code, 6, off.stdout);
  t.regex(off.stderr, /is not on a bpf filesystem.*\[KM_ERR_BPFFS\]/);
  t.false(existsSync(offLock), `${offLock} left behind`);

  const pinDir = join(ensureBpffs(), `kernmesh-cleanup-test-${process.pid}`);
  mkdirSync(pinDir);
  t.teardown(() => rmSync(pinDir, { recursive: true, force: true }));
  const lockPath = defaultLockPath(pinDir);
  const held = takeLock(lockPath, pinDir);
  try {
    const refused = await run(['datapath', 'cleanup', '--pin-dir', pinDir]);
    t.is(refused.code, 6);
    t.regex(refused.stderr, /KM_ERR_AGENT_RUNNING/);
    t.true(existsSync(pinDir), 'nothing pulled from under the holder');
    t.true(existsSync(lockPath), "the holder's lock file stays");
  } finally {
    releaseLock(held, lockPath);
  }
  t.false(existsSync(lockPath), 'released: removed');
  const cleaned = await run(['datapath', 'cleanup', '--pin-dir', pinDir]);
  t.is(cleaned.code, 0, cleaned.stderr);
  t.false(existsSync(pinDir));
  t.false(existsSync(lockPath), `${lockPath} left behind`);
});

kernelTest('the lock excludes under contention although each holder removes its file when it lets go', async (t) => {
  // Processes take and release one lock as fast as they can; while holding it each makes a directory
  // only one may have. A taker that flocked a file its holder had just removed would make a second.
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lock = join(dir, 'contended.lock');
  const inside = join(dir, 'inside');
  // All start together (once loaded), for 2 s.
  const start = Date.now() + 3000;
  const script = `
    const { takeLock, releaseLock } = await import(${JSON.stringify(new URL('../../src/datapath/lock.ts', import.meta.url).pathname)});
    const { mkdirSync, rmdirSync } = await import('node:fs');
    let taken = 0, overlaps = 0;
    while (Date.now() < ${start});
    while (Date.now() < ${start + 2000}) {
      let fd;
      try { fd = takeLock(${JSON.stringify(lock)}, 'test'); } catch (err) { if (err.code === 'KM_ERR_AGENT_RUNNING') continue; throw err; }
      taken++;
      try { mkdirSync(${JSON.stringify(inside)}); rmdirSync(${JSON.stringify(inside)}); } catch { overlaps++; }
      releaseLock(fd, ${JSON.stringify(lock)});
    }
    console.log(JSON.stringify({ taken, overlaps }));`;
  const results = await Promise.all(
    [1, 2, 3, 4].map(
      () =>
        new Promise<{ taken: number; overlaps: number }>((resolve, reject) =>
          execFile(process.execPath, ['--input-type=module', '-e', script], (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout) as { taken: number; overlaps: number }))),
        ),
    ),
  );
  // Without the check that the path still names the locked file, four runs of this found 86 to 137 overlaps each.
  t.true(results.reduce((n, r) => n + r.taken, 0) > 100, JSON.stringify(results));
  t.deepEqual(results.map((r) => r.overlaps), [0, 0, 0, 0], JSON.stringify(results));
  t.false(existsSync(lock), 'the last holder removed it');
  t.false(lockHeld(lock));
});
