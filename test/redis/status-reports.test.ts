// SPDX-License-Identifier: Apache-2.0
// `kernmesh status` when one agent's report in Redis cannot be read: the
// other agents are still listed, and the bad one is named as a problem of
// its own, not blamed on Redis.
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { MeshObject } from '../../src/config/objects.ts';
import { MeshStore } from '../../src/config/store.ts';
import type { StatusReport } from '../../src/status/collect.ts';
import { RedisServer } from './helpers/redis-server.ts';

/**
 * `kernmesh status -o json` against a fresh redis-server holding these agent
 * reports (node -> the report's text), every agent alive, and these mesh
 * objects; the table view too.
 */
async function statusWith(t: ExecutionContext, reports: (now: number) => Record<string, string>, objects: MeshObject[] = []) {
  const redis = await new RedisServer().start();
  t.teardown(() => redis.stop());
  const store = new MeshStore(redis.client());
  if (objects.length) await store.write(objects.map((object) => ({ op: 'put' as const, object })));
  const c = redis.client();
  const written = reports(Date.now());
  if (Object.keys(written).length) await c.hset(store.keys.agents, written);
  for (const n of Object.keys(written)) await c.set(store.keys.alive(n), '1', 'PX', 60_000);
  const cli = new URL('../../src/cli/main.ts', import.meta.url).pathname;
  const run = (...args: string[]) => promisify(execFile)(process.execPath, [cli, 'status', '--redis', redis.url, ...args]).then((ok) => ({ ...ok, code: 0 }), (e: { stdout: string; stderr: string; code: number }) => e);
  const [json, table] = await Promise.all([run('-o', 'json'), run()]);
  t.is(table.code, json.code, 'the same exit code in every format');
  return { code: json.code, report: JSON.parse(json.stdout) as StatusReport, table: table.stdout };
}

test('one unreadable agent report hides no other agent and is named by its node', async (t) => {
  const good = (node: string, now: number) => JSON.stringify({ node, mode: 'ebpf', appliedVersion: 0, reportedAt: now, startedAt: now, lastError: null, counters: {} });
  const { code, report } = await statusWith(t, (now) => ({ 'node-a': good('node-a', now), 'node-b': good('node-b', now), 'node-c': good('node-c', now).slice(0, 40) }));
  t.is(code, 1, 'an unreadable report is an error');
  t.deepEqual(report.agents.map((a) => `${a.node} ${a.health}`), ['node-a SYNCED', 'node-b SYNCED']);
  t.true(report.controlPlane.redis.reachable);
  const texts = report.problems.map((p) => `${p.level} ${p.text}`);
  t.is(texts.filter((p) => p.includes('node-c')).length, 1, texts.join('\n'));
  t.regex(texts.find((p) => p.includes('node-c'))!, /^error agent node-c: its report is unreadable \(not valid JSON/);
  t.false(texts.some((p) => /Redis|reading the mesh state|no agent has reported/.test(p)), texts.join('\n'));
});

test('two services on one VIP:port, as the agents report it, are one warning naming both', async (t) => {
  const conflicts = [{ claim: 'address 10.96.1.1:80', kept: 'shop/a', ignored: 'shop/b' }];
  const report = (node: string, now: number) => JSON.stringify({ node, mode: 'ebpf', appliedVersion: 0, reportedAt: now, startedAt: now, lastError: null, counters: {}, proxy: { conflicts } });
  const { report: status } = await statusWith(t, (now) => ({ 'node-a': report('node-a', now), 'node-b': report('node-b', now) }));
  const clashes = status.problems.filter((p) => p.text.includes('10.96.1.1:80'));
  t.is(clashes.length, 1, 'said once, not once per node');
  t.like(clashes[0], { level: 'warn', text: 'Services shop/a and shop/b both claim address 10.96.1.1:80: it is routed to shop/a (first by namespace/name) and shop/b is not reached there' });
  t.regex(clashes[0]!.fix!, /another address, port or host/);
});

/** An agent's report as the agent writes it, with these fields on top. */
const agentReport = (node: string, now: number, extra: Record<string, unknown> = {}) => JSON.stringify({ node, mode: 'ebpf', appliedVersion: 0, reportedAt: now, startedAt: now - 60_000, lastError: null, counters: {}, ...extra });

test('a drained node is not intercepting: an error (exit 1) that says how to undo it, and its pods are not captured', async (t) => {
  const intercepting = { kubernetes: true, datapath: { mode: 'ebpf', state: 'intercepting', attachCgroup: '/sys/fs/cgroup/kubepods.slice' }, workloads: [{ name: 'p2', namespace: 'shop', ok: true }] };
  // The report of an agent drained 30 s ago; its pods' own entries are not trusted to say so.
  const drained = (now: number) => ({ kubernetes: true, datapath: { mode: 'ebpf', state: 'drained', drainedAt: now - 30_000 }, workloads: [{ name: 'p1', namespace: 'shop' }, { name: 'p3', namespace: 'shop', ok: true }] });
  const { code, report, table } = await statusWith(t, (now) => ({ 'node-a': agentReport('node-a', now, drained(now)), 'node-b': agentReport('node-b', now, intercepting) }));
  t.is(code, 1, 'a drained node is an error');
  t.false(report.ok);
  t.deepEqual(report.agents.map((a) => [a.node, a.health, a.datapathState]), [['node-a', 'SYNCED', 'drained'], ['node-b', 'SYNCED', 'intercepting']]);
  t.deepEqual(report.namespaces, [{ namespace: 'shop', captured: 1, total: 3 }]);
  t.deepEqual(report.workloads.filter((w) => !w.captured).map((w) => `${w.name} ${w.reason}`), ['p1 its node was drained: connections are no longer intercepted', 'p3 its node was drained: connections are no longer intercepted']);
  const errors = report.problems.filter((p) => p.level === 'error');
  t.is(errors.length, 1, 'one problem for the node, not one per pod');
  t.regex(errors[0]!.text, /^agent node-a was drained \d+ s ago: its datapath is detached and the connections of its 2 pods are not intercepted/);
  t.is(errors[0]!.fix, 'only restarting the agent on node-a undoes a drain: kubectl -n kernmesh-system delete pod -l app.kubernetes.io/name=kernmesh-agent --field-selector spec.nodeName=node-a (the DaemonSet starts a new one)');
  t.false(report.problems.some((p) => p.text === 'the mesh is healthy'));
  t.regex(table, /^ {2}node-a +ebpf +SYNCED +drained /m);
  t.regex(table, /^ {2}node-a: ebpf × drained: NOT intercepting/m);
  t.regex(table, /^ {2}node-b: ebpf ✓ intercepting attached to \/sys\/fs\/cgroup\/kubepods\.slice$/m);
  t.regex(table, /× agent node-a was drained/);
});

test('outside Kubernetes the fix names the agent process; a report from before datapath states says nothing of it', async (t) => {
  const { code, report } = await statusWith(t, (now) => ({
    'node-a': agentReport('node-a', now, { kubernetes: false, datapath: { mode: 'ebpf', state: 'drained' } }),
    'node-b': agentReport('node-b', now, { datapath: { mode: 'ebpf' }, workloads: [{ name: 'p', namespace: 'shop', ok: true }] }),
  }));
  t.is(code, 1);
  t.is(report.problems.find((p) => p.level === 'error')?.fix, 'only restarting the agent on node-a undoes a drain: stop its `kernmesh agent` process (SIGTERM) and start it again');
  t.is(report.agents[1]!.datapathState, null);
  t.deepEqual(report.namespaces, [{ namespace: 'shop', captured: 1, total: 1 }]);
});

test('objects that cannot work are one warning each, counted as problems like a clash: not healthy, exit 0', async (t) => {
  const o = (kind: MeshObject['kind'], name: string, spec: Record<string, unknown>): MeshObject => ({ apiVersion: 'kernmesh.io/v1', kind, metadata: { name, namespace: 'shop' }, spec });
  const objects = [
    o('Service', 'reviews', { hosts: [], addresses: [], ports: [{ port: 80 }] }),
    o('ClusterPolicy', 'reviews', { service: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }] }),
    o('Route', 'reviews', { service: 'reviews', rules: [{ action: { split: [{ subset: 'v1', weight: 9 }, { subset: 'v2', weight: 1 }] } }] }),
    o('RateLimit', 'ratings', { service: 'ratings', maxTokens: 10, fillInterval: '1s' }),
  ];
  const { code, report, table } = await statusWith(t, (now) => ({ 'node-a': agentReport('node-a', now, { datapath: { mode: 'ebpf', state: 'intercepting' } }) }), objects);
  t.is(code, 0, 'warnings only');
  t.deepEqual(
    report.problems.filter((p) => !p.text.startsWith('agent ')).map((p) => `${p.level} ${p.text}`),
    [
      'warn RateLimit shop/ratings refers to Service shop/ratings, which does not exist (spec.service): it limits nothing',
      'warn Route shop/reviews sends requests to subset v2 of Service shop/reviews (spec.rules.0.action.split.1.subset), which no ClusterPolicy for shop/reviews defines: every request sent there gets 503 (UH)',
    ],
    'in namespace/name order',
  );
  t.regex(table, /‼ Route shop\/reviews sends requests to subset v2/);
  t.regex(table, /→ define subset v2 in a ClusterPolicy for shop\/reviews/);
  t.notRegex(table, /the mesh is healthy/);
});
