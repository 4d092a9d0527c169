// SPDX-License-Identifier: Apache-2.0
// The node agent end to end: the mesh in a real Redis, eBPF interception in a
// scratch pod, the proxy's listener in the pod's netns, curl from the pod.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { StatusReport } from '../../src/status/collect.ts';
import { Agent } from '../../src/agent/agent.ts';
import { readAgents } from '../../src/config/agents.ts';
import { silentLogger } from '../../src/log.ts';
import { freePort } from '../../src/ports.ts';
import { obj } from '../proxy/helpers/fixtures.ts';
import { VIP4 } from './helpers/bed.ts';
import { scratchAgentConfig, withAgentScratch } from './helpers/agent-bed.ts';
import { kernelTest } from './helpers/kernel-test.ts';

kernelTest('the agent routes a pod’s VIP traffic from the mesh in Redis, follows changes, and reports SYNCED', async (t) => {
  await withAgentScratch(t, 'agent', async ({ redis, scratch, app, store, use }) => {
    const agent = new Agent(
      scratchAgentConfig(scratch, redis, {
        workloads: [
          { name: 'productpage', namespace: 'shop', netnsPath: scratch.netnsPath, cgroupPath: app, labels: { app: 'productpage' } },
          // A pod that went away before the agent came up: reported, not fatal.
          { name: 'gone', namespace: 'shop', netnsPath: '/run/netns/kernmesh-no-such-pod', cgroupPath: app },
        ],
      }),
      silentLogger,
    );
    use(agent);
    await agent.start();

    const first = await scratch.run('app', 'curl', ['-sS', '--max-time', '5', `http://${VIP4}/reviews/1`]);
    t.is(first.code, 0, first.stderr);
    t.regex(first.stdout, /"backend":"reviews-v1".*"url":"\/reviews\/1"/);

    // A change in Redis reaches the proxy: now the route answers directly.
    const [v] = await store.write([{ op: 'put', object: obj('Route', 'reviews', 'shop', { service: 'reviews', rules: [{ action: { directResponse: { status: 200, body: 'maintenance' } } }] }) }]);
    await new Promise<void>((resolve) => (agent.core.table.version >= v! ? resolve() : agent.sync.on('change', () => agent.core.table.version >= v! && resolve())));
    const second = await scratch.run('app', 'curl', ['-sS', '--max-time', '5', `http://${VIP4}/reviews/2`]);
    t.is(second.stdout, 'maintenance');

    const metrics = await agent.core.metrics.render();
    t.regex(metrics, /istio_requests_total\{reporter="source",source_workload="productpage",source_workload_namespace="shop"[^}]*destination_service="reviews\.shop\.svc\.cluster\.local"/);
    await agent.sync.report();
    const [status] = await readAgents(redis.client(), store.keys);
    t.like(status, { node: 'node-a', mode: 'ebpf', health: 'SYNCED', appliedVersion: v });

    // A second, stale agent (its report says version 1), as `kernmesh status` must show it.
    const fake = redis.client();
    await fake.hset(store.keys.agents, 'node-b', JSON.stringify({ node: 'node-b', mode: 'iptables', appliedVersion: 1, reportedAt: Date.now(), startedAt: Date.now(), lastError: null, counters: {} }));
    await fake.set(store.keys.alive('node-b'), '1', 'PX', 10_000);

    const cli = await promisify(execFile)(process.execPath, [new URL('../../src/cli/main.ts', import.meta.url).pathname, 'status', '-o', 'json', '--redis', redis.url]).catch((e: { stdout: string; code: number }) => e);
    t.is((cli as { code?: number }).code, 1, 'a × problem makes the exit code non-zero');
    const report = JSON.parse(cli.stdout) as StatusReport;
    t.true(report.controlPlane.redis.reachable);
    t.is(report.controlPlane.meshVersion, v!);
    t.deepEqual(report.agents.map((a) => [a.node, a.health]), [['node-a', 'SYNCED'], ['node-b', 'STALE']]);
    const dp = report.agents[0]!.datapath as { counters: Record<string, number>; maps: Record<string, { entries: number }>; programs: Record<string, number> };
    t.true(dp.counters.connect4_redirected! >= 2 && dp.counters.msg_redirected! > 0 && dp.counters.getsockopt_answered! >= 2, JSON.stringify(dp.counters));
    t.is(dp.maps.km_capture_v1!.entries, 1);
    t.is(Object.keys(dp.programs).length, 6);
    t.deepEqual(report.workloads.map((w) => [w.name, w.captured]), [['productpage', true], ['gone', false]]);
    t.deepEqual(report.namespaces, [{ namespace: 'shop', captured: 1, total: 2 }]);
    t.true(report.traffic.some((x) => x.service === 'reviews.shop.svc.cluster.local' && x.requests >= 2));
    t.true(report.problems.some((p) => p.level === 'error' && /shop\/gone on node-a should be captured but is not: network namespace .* does not exist/.test(p.text)));
    t.true(report.problems.some((p) => p.level === 'warn' && /agent node-b is at version 1/.test(p.text)));
  });
});

kernelTest('with proxy workers, a pod’s connections are served by the workers on its listener, /metrics and the report add them up, and a rate limit holds for the node', async (t) => {
  await withAgentScratch(t, 'agentw', async ({ redis, scratch, app, store, use }) => {
    const adminPort = await freePort();
    // Requests to /limited have 10 tokens in the agent's buckets, whichever process serves them.
    await store.write([
      { op: 'put', object: obj('Route', 'reviews', 'shop', { service: 'reviews', rules: [{ name: 'limited', match: [{ path: { prefix: '/limited' } }], action: { split: [{}] } }, { action: { split: [{}] } }] }) },
      { op: 'put', object: obj('RateLimit', 'reviews', 'shop', { service: 'reviews', route: 'limited', maxTokens: 10, fillInterval: '1h' }) },
    ]);
    const agent = new Agent(
      scratchAgentConfig(scratch, redis, {
        node: 'node-w',
        adminPort,
        proxyWorkers: 2,
        workloads: [{ name: 'productpage', namespace: 'shop', netnsPath: scratch.netnsPath, cgroupPath: app, labels: { app: 'productpage' } }],
      }),
      silentLogger,
    );
    use(agent);
    await agent.start();
    t.is(agent.workers?.pids.length, 2);
    // Each curl is a new connection: 20 of them.
    const N = 20;
    const r = await scratch.run('app', 'sh', ['-c', `for i in $(seq ${N}); do curl -sS -o /dev/null -w '%{http_code}\\n' --max-time 5 http://${VIP4}/r/$i; done`]);
    t.is(r.stdout.trim().split('\n').filter((c) => c === '200').length, N, r.stderr);

    const stats = await agent.workers!.stats();
    const byWorkers = stats.reduce((a, s) => a + s.connectionsTotal, 0);
    t.true(byWorkers > 0, 'the workers took connections');
    t.is(byWorkers + agent.proxy.connectionsTotal, N, JSON.stringify(stats));
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const total = [...metrics.matchAll(/^istio_requests_total\{[^}]*destination_service="reviews\.shop\.svc\.cluster\.local"[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
    t.is(total, N, 'the exposition adds up every worker');
    t.regex(metrics, /^# TYPE istio_request_duration_milliseconds histogram$/m);
    await agent.refreshWorkers();
    const report = (agent as unknown as { statusReport(): { traffic: Array<{ service: string; requests: number }>; proxy: { connectionsTotal: number; workers: number } } }).statusReport();
    t.is(report.traffic.find((x) => x.service === 'reviews.shop.svc.cluster.local')?.requests, N);
    t.like(report.proxy, { connectionsTotal: N, workers: 2 });

    // A worker that dies is replaced, and the replacement serves the pod's listener too.
    const [victim] = agent.workers!.pids;
    process.kill(victim!, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while (agent.workers!.restarts < 1 || agent.workers!.pids.includes(victim!) || !(await agent.workers!.stats().then((s) => s.length === 2, () => false))) {
      if (Date.now() > deadline) throw new Error('the worker was not replaced');
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 200));
    const again = await scratch.run('app', 'sh', ['-c', `for i in $(seq ${N}); do curl -sS -o /dev/null -w '%{http_code}\n' --max-time 5 http://${VIP4}/again/$i; done`]);
    t.is(again.stdout.trim().split('\n').filter((c) => c === '200').length, N, again.stderr);
    const fresh = (await agent.workers!.stats()).find((x) => !stats.some((y) => y.pid === x.pid));
    t.truthy(fresh, 'a new worker');
    t.true(fresh!.connectionsTotal > 0, 'the replacement was handed the pod’s listener and accepts on it');
    // Three processes serve the pod; buckets of their own would have admitted up to three times 10.
    const limited = await scratch.run('app', 'sh', ['-c', `for i in $(seq 16); do curl -sS -o /dev/null -w '%{http_code}\n' --max-time 5 http://${VIP4}/limited/$i; done`]);
    t.deepEqual(limited.stdout.trim().split('\n'), [...Array(10).fill('200'), ...Array(6).fill('429')], limited.stderr);
    const pids = agent.workers!.pids;
    await agent.sync.report();
    t.deepEqual((await readAgents(redis.client(), store.keys)).map((a) => a.node), ['node-w']);
    await agent.stop({ detach: true });
    use(undefined);
    t.deepEqual(await readAgents(redis.client(), store.keys), [], 'an agent that detaches (leaves for good) removes its report');
    for (const pid of pids) t.throws(() => process.kill(pid, 0), undefined, `worker ${pid} stopped`);
  });
});

kernelTest('after `kernmesh drain` the node is reported drained at once: status fails (exit 1), its pod is not captured, and the fix is a restart', async (t) => {
  await withAgentScratch(t, 'agentd', async ({ redis, scratch, app, use }) => {
    const adminPort = await freePort();
    const agent = new Agent(
      scratchAgentConfig(scratch, redis, { adminPort, workloads: [{ name: 'productpage', namespace: 'shop', netnsPath: scratch.netnsPath, cgroupPath: app, labels: { app: 'productpage' } }] }),
      silentLogger,
    );
    use(agent);
    await agent.start();
    const first = await scratch.run('app', 'curl', ['-sS', '--max-time', '5', `http://${VIP4}/reviews/1`]);
    t.is(first.code, 0, first.stderr);
    const cli = new URL('../../src/cli/main.ts', import.meta.url).pathname;
    const status = () => promisify(execFile)(process.execPath, [cli, 'status', '-o', 'json', '--redis', redis.url]).then((ok) => ({ ...ok, code: 0 }), (e: { stdout: string; code: number }) => e);
    await agent.sync.report();
    const before = JSON.parse((await status()).stdout) as StatusReport;
    t.like(before.agents[0], { node: 'node-a', datapathState: 'intercepting' });
    t.deepEqual(before.namespaces, [{ namespace: 'shop', captured: 1, total: 1 }]);

    const drained = await promisify(execFile)(process.execPath, [cli, 'drain', '--admin', `127.0.0.1:${adminPort}`]);
    t.regex(drained.stdout, /^drained: .*\nto intercept again, restart the agent/);
    const after = await status();
    t.is(after.code, 1, 'a drained node is a problem');
    const report = JSON.parse(after.stdout) as StatusReport;
    t.like(report.agents[0], { node: 'node-a', health: 'SYNCED', datapathState: 'drained' });
    t.deepEqual(report.namespaces, [{ namespace: 'shop', captured: 0, total: 1 }]);
    t.deepEqual(report.problems.filter((p) => p.level === 'error').map((p) => p.fix), ['only restarting the agent on node-a undoes a drain: stop its `kernmesh agent` process (SIGTERM) and start it again']);
  });
});
