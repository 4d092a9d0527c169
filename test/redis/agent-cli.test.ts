// SPDX-License-Identifier: Apache-2.0
// `kernmesh agent` with a configuration that cannot work stops before it
// touches anything: no connection to Redis, no report, no cache file, nothing
// in the kernel. A mistake in the file is exit 3 with every problem named; a
// cgroup the file names but the host lacks is exit 6, naming the setting.
// `kernmesh drain` says how to undo it, and the agent reports itself drained
// at once (test/kernel/agent.test.ts does the same with the eBPF datapath).
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent } from '../../src/agent/agent.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import { MeshStore } from '../../src/config/store.ts';
import { cgroup2Root } from '../../src/datapath/host.ts';
import { silentLogger } from '../../src/log.ts';
import { freePort } from '../../src/ports.ts';
import type { StatusReport } from '../../src/status/collect.ts';
import { service } from '../proxy/helpers/fixtures.ts';
import { RedisServer } from './helpers/redis-server.ts';

const cli = new URL('../../src/cli/main.ts', import.meta.url).pathname;

/** Runs `kernmesh agent --config` on this file (YAML lines) against a Redis that holds a mesh; what it left behind. */
async function agentWith(t: ExecutionContext, yaml: (dir: string, redisUrl: string) => string) {
  const redis = await new RedisServer().start();
  t.teardown(() => redis.stop());
  await new MeshStore(redis.client()).write([{ op: 'put', object: service('reviews', 'shop') }]);
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-agent-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, yaml(dir, redis.url));
  const r = await promisify(execFile)(process.execPath, [cli, 'agent', '--config', file], { timeout: 30_000 }).then(
    (ok) => ({ ...ok, code: 0 }),
    (e: { stdout: string; stderr: string; code: number }) => e,
  );
  const store = new MeshStore(redis.client());
  return { ...r, file, cacheWritten: existsSync(join(dir, 'cache.json')), reports: await redis.client().hgetall(store.keys.agents) };
}

test('ebpf mode without attachCgroup, and other mistakes, are named together before anything starts: exit 3', async (t) => {
  const r = await agentWith(t, (dir, url) => `node: node-a\nmode: ebpf\ncachePath: ${dir}/cache.json\nredis:\n  url: ${url}\nadminPort: 15090\nmetricsPort: 15090\nproxyWorkers: lots\n`);
  t.is(r.code, 3, r.stderr);
  const lines = r.stderr.trim().split('\n');
  t.regex(lines[0]!, /^kernmesh: invalid agent configuration \(3 problems\):$/);
  t.true(lines.some((l) => l.includes(`${r.file}: attachCgroup: ebpf mode needs attachCgroup`)), r.stderr);
  t.true(lines.some((l) => l.includes(`${r.file}: metricsPort: is adminPort too (15090)`)), r.stderr);
  t.true(lines.some((l) => l.includes(`${r.file}: proxyWorkers:`)), r.stderr);
  t.regex(r.stderr, /\[KM_ERR_INVALID_CONFIG\]\n$/);
  t.false(r.cacheWritten, 'no cache written');
  t.deepEqual(r.reports, {}, 'nothing reported to Redis');
});

test('ebpf mode without attachCgroup alone is exit 3 before Redis, the cache or the kernel are touched', async (t) => {
  // It used to sync, report and write the cache first, and then fail with exit 6.
  const r = await agentWith(t, (dir, url) => `node: node-a\ncachePath: ${dir}/cache.json\nadminPort: 0\nredis:\n  url: ${url}\n`);
  t.is(r.code, 3, r.stderr);
  t.regex(r.stderr, /^kernmesh: .*agent\.yaml: attachCgroup: ebpf mode needs attachCgroup: .* \[KM_ERR_INVALID_CONFIG\]\n$/);
  t.false(r.cacheWritten, 'no cache written');
  t.deepEqual(r.reports, {}, 'nothing reported to Redis');
});

test('an attachCgroup missing on the host is exit 6, names the setting in the file, and nothing was touched', async (t) => {
  const missing = join(cgroup2Root(), `kernmesh-no-such-cgroup-${process.pid}`);
  const r = await agentWith(t, (dir, url) => `node: node-a\nmode: ebpf\nattachCgroup: ${missing}\ncachePath: ${dir}/cache.json\nadminPort: 0\nredis:\n  url: ${url}\n`);
  t.is(r.code, 6, r.stderr);
  t.is(r.stderr, `kernmesh: cgroup ${missing} does not exist on this host: create it, or set attachCgroup in ${r.file} to the cgroup whose processes are to be intercepted [KM_ERR_CGROUP_NOT_FOUND]\n`);
  t.false(r.cacheWritten, 'no cache written');
  t.deepEqual(r.reports, {}, 'nothing reported to Redis');
});

test('after `kernmesh drain` the agent reports itself drained at once, and status says so (exit 1) and how to undo it', async (t) => {
  const redis = await new RedisServer().start();
  t.teardown(() => redis.stop());
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-agent-drain-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const adminPort = await freePort();
  // Mode off: no kernel here; what a drain does to the report is the same in every mode.
  const agent = new Agent(parseAgentConfig({ node: 'node-a', mode: 'off', adminPort, cachePath: join(dir, 'cache.json'), redis: { url: redis.url } }), silentLogger);
  t.teardown(() => agent.stop());
  await agent.start();
  await agent.sync.report();
  const status = () => promisify(execFile)(process.execPath, [cli, 'status', '-o', 'json', '--redis', redis.url]).then((ok) => ({ ...ok, code: 0 }), (e: { stdout: string; code: number }) => e);
  const before = await status();
  t.is((JSON.parse(before.stdout) as StatusReport).agents[0]?.datapathState, 'off');

  const drained = await promisify(execFile)(process.execPath, [cli, 'drain', '--admin', `127.0.0.1:${adminPort}`]);
  t.is(drained.stdout, 'drained: new connections are no longer intercepted\nto intercept again, restart the agent: on Kubernetes delete its pod (the DaemonSet starts a new one), else stop its `kernmesh agent` process and start it again\n');
  // No wait for the next periodic report: the drain wrote one.
  const after = await status();
  t.is(after.code, 1, after.stdout);
  const report = JSON.parse(after.stdout) as StatusReport;
  t.like(report.agents[0], { node: 'node-a', health: 'SYNCED', datapathState: 'drained', kubernetes: false });
  t.true(report.problems.some((p) => p.level === 'error' && /^agent node-a was drained \d+ s ago/.test(p.text) && p.fix === 'only restarting the agent on node-a undoes a drain: stop its `kernmesh agent` process (SIGTERM) and start it again'), JSON.stringify(report.problems));
});
