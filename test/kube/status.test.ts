// SPDX-License-Identifier: Apache-2.0
// `kernmesh status` against a cluster: the agents' reports from Redis, plus
// what the Kubernetes API says should be captured, so a pod on a node
// without an agent (or one its agent has not got to) is listed as a problem.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { MeshStore } from '../../src/config/store.ts';
import type { StatusReport } from '../../src/status/collect.ts';
import { RedisServer } from '../redis/helpers/redis-server.ts';
import { FakeApiServer } from './helpers/fake-apiserver.ts';
import { namespace, pod } from './helpers/objects.ts';

test('status with a kubeconfig counts every pod that should be captured and names the ones no agent reports', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  const redis = await new RedisServer().start();
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-status-'));
  t.teardown(async () => {
    await api.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  api.put('namespaces', namespace('shop', true));
  api.put('namespaces', namespace('empty', true));
  api.put('namespaces', namespace('legacy', false));
  api.put('pods', pod('shop', 'p1', 'node-a'));
  api.put('pods', pod('shop', 'p2', 'node-b'));
  api.put('pods', pod('shop', 'p3', 'node-a', { annotations: { 'kernmesh.io/capture': 'disabled' } }));
  api.put('pods', pod('shop', 'p4', 'node-a'));
  api.put('pods', pod('legacy', 'client', 'node-a'));

  // One agent, on node-a, reporting p1 captured (p4 not yet).
  const store = new MeshStore(redis.client());
  const c = redis.client();
  const now = Date.now();
  await c.hset(store.keys.agents, 'node-a', JSON.stringify({ node: 'node-a', mode: 'ebpf', appliedVersion: 0, reportedAt: now, startedAt: now, lastError: null, counters: {}, workloads: [{ name: 'p1', namespace: 'shop', ok: true }] }));
  await c.set(store.keys.alive('node-a'), '1', 'PX', 10_000);

  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'f', cluster: { server: api.url, 'insecure-skip-tls-verify': true } }], users: [{ name: 'u', user: { token: 't' } }], contexts: [{ name: 'f', context: { cluster: 'f', user: 'u' } }], 'current-context': 'f' }));
  const cli = (...args: string[]) => promisify(execFile)(process.execPath, [new URL('../../src/cli/main.ts', import.meta.url).pathname, 'status', '--redis', redis.url, ...args]).catch((e: { stdout: string; code: number }) => e);

  const r = await cli('-o', 'json', '--kubeconfig', kubeconfig);
  t.is((r as { code?: number }).code, 1, 'pods that should be captured but are not make it fail');
  const report = JSON.parse(r.stdout) as StatusReport;
  t.deepEqual(report.namespaces, [
    { namespace: 'empty', captured: 0, total: 0 },
    { namespace: 'shop', captured: 1, total: 3 },
  ]);
  const missing = Object.fromEntries(report.workloads.filter((w) => !w.captured).map((w) => [w.name, w.reason]));
  t.deepEqual(Object.keys(missing).sort(), ['p2', 'p4']);
  t.regex(missing.p2!, /no agent runs on node node-b/);
  t.regex(missing.p4!, /agent on node-a does not report it/);
  t.true(report.problems.some((p) => p.level === 'error' && p.text.includes('shop/p2')));

  // Without the kubeconfig only the agents' reports count.
  const plain = JSON.parse((await cli('-o', 'json')).stdout) as StatusReport;
  t.deepEqual(plain.namespaces, [{ namespace: 'shop', captured: 1, total: 1 }]);

  // MeshSettings names another capture label: status chooses namespaces as the agents then do.
  await store.write([{ op: 'put', object: { apiVersion: 'kernmesh.io/v1', kind: 'MeshSettings', metadata: { name: 'mesh' }, spec: { capture: { namespaceLabel: 'example.com/mesh' } } } }]);
  api.put('namespaces', { metadata: { name: 'legacy', labels: { 'example.com/mesh': 'enabled' } } });
  const relabelled = JSON.parse((await cli('-o', 'json', '--kubeconfig', kubeconfig)).stdout) as StatusReport;
  t.deepEqual(
    relabelled.workloads.filter((w) => !w.captured).map((w) => `${w.namespace}/${w.name}`),
    ['legacy/client'],
    'only the namespace with the configured label is expected to be captured',
  );

  // The API away: a warning, not a crash.
  await api.close();
  const away = JSON.parse((await cli('-o', 'json', '--kubeconfig', kubeconfig)).stdout) as StatusReport;
  t.true(away.problems.some((p) => p.level === 'warn' && /could not read the Kubernetes API/.test(p.text)));
});
