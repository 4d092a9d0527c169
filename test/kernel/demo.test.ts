// SPDX-License-Identifier: Apache-2.0
// The newcomer's path: demo up, traffic, status, down, through the CLI as a person runs it.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cgroup2Root } from '../../src/datapath/index.ts';
import { Redis } from 'ioredis';
import { MeshStore } from '../../src/config/store.ts';
import { DEFAULT_DEMO_DIR, readState } from '../../src/demo/state.ts';
import type { StatusReport } from '../../src/status/collect.ts';
import { kernelTest } from './helpers/kernel-test.ts';

// Through a bin link, as npx runs it (a symlink to dist/cli/main.js): scripts must not be found from argv.
const cli = join(mkdtempSync(join(tmpdir(), 'kernmesh-bin-')), 'kernmesh');
symlinkSync(new URL('../../dist/cli/main.js', import.meta.url).pathname, cli);
// As a person runs it: no REDIS_URL, so status finds the demo's own Redis.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REDIS_')));
const run = (args: string[]) => promisify(execFile)(process.execPath, [cli, ...args], { env });

kernelTest('demo up, traffic and status show the mesh at work; down leaves nothing behind', async (t) => {
  const dir = DEFAULT_DEMO_DIR;
  try {
    await run(['demo', 'up']);
    await run(['demo', 'up']); // twice: the second replaces the first
    const { stdout } = await run(['demo', 'traffic', '--seconds', '3', '--json']);
    const summary = JSON.parse(stdout) as { services: Array<{ service: string; rps: number; success: number }> };
    t.true(summary.services.some((s) => s.service === 'reviews' && s.rps > 10 && s.success === 1), stdout);

    const status = JSON.parse((await run(['status', '-o', 'json'])).stdout) as StatusReport;
    t.true(status.ok);
    t.is(status.controlPlane.controller.leader, 'demo-controller');
    t.deepEqual(status.agents.map((a) => [a.node, a.health]), [['demo-node', 'SYNCED']]);
    const c = (status.agents[0]!.datapath as { counters: Record<string, number> }).counters;
    t.true(c.connect4_redirected! > 10 && c.msg_redirected! > 10 && c.getsockopt_answered! > 10, 'traffic went through the eBPF path');
    t.deepEqual(status.workloads.map((w) => [`${w.namespace}/${w.name}`, w.captured]), [['shop/productpage', true]]);
    const reviews = status.traffic.find((x) => x.service === 'reviews.shop.svc.cluster.local');
    t.true((reviews?.requests ?? 0) > 10, 'and through the proxy');

    // A second node whose agent is behind, with a pod it could not enrol: status says so, field by field.
    const redis = new Redis({ path: readState(dir)!.redisSocket, lazyConnect: true });
    await redis.connect();
    try {
      const keys = new MeshStore(redis).keys;
      const now = Date.now();
      await redis.hset(keys.agents, 'node-b', JSON.stringify({ node: 'node-b', mode: 'ebpf', appliedVersion: 1, reportedAt: now, startedAt: now - 60_000, lastError: null, counters: {}, workloads: [{ name: 'broken', namespace: 'shop', ok: false, reason: 'network namespace /proc/4242/ns/net does not exist' }] }));
      await redis.set(keys.alive('node-b'), '1', 'PX', 30_000);
    } finally {
      redis.disconnect();
    }
    const failed = await run(['status', '-o', 'json']).catch((e: { stdout: string; code: number }) => e);
    t.is((failed as { code?: number }).code, 1, 'a pod that should be captured but is not makes status fail');
    const bad = JSON.parse(failed.stdout) as StatusReport;
    t.false(bad.ok);
    t.deepEqual(bad.agents.map((a) => [a.node, a.health]), [['demo-node', 'SYNCED'], ['node-b', 'STALE']]);
    t.like(bad.agents[1], { appliedVersion: 1, meshVersion: status.controlPlane.meshVersion! });
    t.deepEqual(bad.workloads.map((w) => [w.node, `${w.namespace}/${w.name}`, w.captured, w.reason ?? null]), [
      ['demo-node', 'shop/productpage', true, null],
      ['node-b', 'shop/broken', false, 'network namespace /proc/4242/ns/net does not exist'],
    ]);
    t.deepEqual(bad.namespaces, [{ namespace: 'shop', captured: 1, total: 2 }]);
    t.true(bad.problems.some((p) => p.level === 'warn' && /agent node-b is at version 1 of/.test(p.text)));
    t.true(bad.problems.some((p) => p.level === 'error' && /shop\/broken on node-b should be captured but is not/.test(p.text) && !!p.fix));
  } finally {
    await run(['demo', 'down']);
  }
  t.false(existsSync(dir));
  t.deepEqual(readdirSync('/run/netns').filter((n) => n.startsWith('kmdemo-')), []);
  t.false(existsSync(join(cgroup2Root(), 'kmdemo')));
  t.false(existsSync('/sys/fs/bpf/kernmesh-demo'));
});
