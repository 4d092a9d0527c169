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
import type { TrafficLine } from '../../src/demo/traffic.ts';
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
    const again = await run(['demo', 'up']); // twice: the second replaces the first
    // The next steps, as the README runs commands.
    t.regex(again.stdout, /Next:\n {2}npx kernmesh demo traffic --seconds 10\n {2}npx kernmesh status\n {2}npx kernmesh demo down\n$/);
    const { stdout } = await run(['demo', 'traffic', '--seconds', '3', '--json']);
    const summary = JSON.parse(stdout) as { seconds: number; services: TrafficLine[] };
    t.is(summary.seconds, 3);
    const row = (name: string) => summary.services.find((s) => s.service === name)!;
    t.true(row('reviews').rps > 10 && row('reviews').expected === 1, stdout);
    // The rules at work, each visible: the 90/10 canary, the rate limit (ratings is sent twice its limit), the deny.
    const versions = row('reviews').versions;
    t.true((versions.v1 ?? 0) > 4 * (versions.v2 ?? 0) && (versions.v2 ?? 0) > 0, `canary: ${JSON.stringify(versions)}`);
    t.true((row('ratings').statuses['429'] ?? 0) > 0 && (row('ratings').statuses['200'] ?? 0) > 0, `ratings: ${JSON.stringify(row('ratings').statuses)}`);
    t.is(row('ratings').expected, 1);
    t.deepEqual(Object.keys(row('reviews DELETE').statuses), ['403']);
    t.is(row('reviews DELETE').expected, 1, 'denied, as expected');

    // Into a pipe: one block per second, no screen codes; the summary says the denied row was denied.
    const live = (await run(['demo', 'traffic', '--seconds', '2'])).stdout;
    t.false(live.includes('\x1b'), 'no escape codes off a terminal');
    t.regex(live, /^second 1:\nSERVICE +RPS +EXPECTED +RESPONSES +VERSIONS +P50 +P99$/m);
    t.regex(live, /over 2 s:\n[\s\S]*^reviews DELETE +[\d.]+ +100\.0% +403 100\.0% +- /m);

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
  t.false(existsSync('/run/kernmesh/kernmesh-demo.lock'), "the agent's lock file");
});
