// SPDX-License-Identifier: Apache-2.0
// `kernmesh status` when one agent's report in Redis cannot be read: the
// other agents are still listed, and the bad one is named as a problem of
// its own, not blamed on Redis.
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MeshStore } from '../../src/config/store.ts';
import type { StatusReport } from '../../src/status/collect.ts';
import { RedisServer } from './helpers/redis-server.ts';

/**
 * `kernmesh status -o json` against a fresh redis-server holding these agent
 * reports (node -> the report's text), every agent alive.
 */
async function statusWith(t: ExecutionContext, reports: (now: number) => Record<string, string>) {
  const redis = await new RedisServer().start();
  t.teardown(() => redis.stop());
  const store = new MeshStore(redis.client());
  const c = redis.client();
  const written = reports(Date.now());
  await c.hset(store.keys.agents, written);
  for (const n of Object.keys(written)) await c.set(store.keys.alive(n), '1', 'PX', 60_000);
  const cli = new URL('../../src/cli/main.ts', import.meta.url).pathname;
  const r = await promisify(execFile)(process.execPath, [cli, 'status', '--redis', redis.url, '-o', 'json']).catch((e: { stdout: string; stderr: string; code: number }) => e);
  return { code: (r as { code?: number }).code, report: JSON.parse(r.stdout) as StatusReport };
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
