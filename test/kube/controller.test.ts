// SPDX-License-Identifier: Apache-2.0
// The controller on Kubernetes: a fake API server (real list/watch, Lease
// get/create/replace with conflicts) and a real redis-server. Services and
// EndpointSlices reach Redis as mesh objects; churn is coalesced; a deleted
// Service goes; one of two replicas writes; a replica that loses its lease
// stops writing at once; the other takes over.
import test, { type ExecutionContext } from 'ava';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { freePort } from '../../src/ports.ts';
import { MeshStore } from '../../src/config/store.ts';
import { KubeController } from '../../src/controller/kube.ts';
import { kubeConfigFor } from '../../src/kube/client.ts';
import { silentLogger } from '../../src/log.ts';
import { RedisServer } from '../redis/helpers/redis-server.ts';
import { FakeApiServer } from './helpers/fake-apiserver.ts';
import { k8sService, pod, slice, until } from './helpers/objects.ts';

type Eps = { endpoints: Array<{ address: string; port?: number; ports?: Record<string, number>; ready: boolean; node?: string; zone?: string; labels: Record<string, string> }> };
const LEASE = { leaseDurationMs: 1000, renewDeadlineMs: 700, retryPeriodMs: 100 };

async function setup(t: ExecutionContext) {
  const api = new FakeApiServer();
  await api.start();
  const redis = await new RedisServer().start();
  const store = new MeshStore(redis.client());
  const made: KubeController[] = [];
  const replica = (id: string) => {
    const c = new KubeController({ kc: kubeConfigFor(api.url), store: new MeshStore(redis.client()), identity: id, leaseNamespace: 'kernmesh-system', log: silentLogger, lease: LEASE, backoff: { initialMs: 50, maxMs: 200 } });
    made.push(c);
    return c;
  };
  t.teardown(async () => {
    for (const c of made) await c.stop();
    await api.close();
    await redis.stop();
  });
  return { api, store, replica, redis };
}

const eps = async (store: MeshStore, key: string) => ((await store.get('Endpoints', key))?.object.spec as Eps | undefined)?.endpoints;

test('Services and EndpointSlices reach Redis with readiness, node, zone and pod labels; churn follows; a deleted Service goes', async (t) => {
  const { api, store, replica } = await setup(t);
  api.put('pods', pod('shop', 'reviews-v1-x', 'node-a', { labels: { app: 'reviews', version: 'v1' } }));
  api.put('pods', pod('shop', 'reviews-v2-y', 'node-b', { labels: { app: 'reviews', version: 'v2' } }));
  api.put('services', k8sService('shop', 'reviews', '10.96.0.20', [{ name: 'http', port: 80, targetPort: 'http' }]));
  api.put('services', k8sService('shop', 'db', '10.96.0.40', [{ name: 'postgres', port: 5432, targetPort: 5432 }, { name: 'dns', port: 53, protocol: 'UDP' }]));
  api.put('endpointslices', slice('shop', 'reviews', 'reviews-abc', { name: 'http', port: 9080 }, [
    { ip: '10.244.1.5', node: 'node-a', zone: 'z1', pod: 'reviews-v1-x' },
    { ip: '10.244.2.7', node: 'node-b', zone: 'z2', pod: 'reviews-v2-y', ready: false },
  ]));
  const c = replica('controller-0');
  c.start();
  await until(async () => (await eps(store, 'shop/reviews'))?.length === 2, 'the endpoints');

  const svc = (await store.get('Service', 'shop/reviews'))!.object;
  t.like(svc.spec, { hosts: ['reviews.shop.svc.cluster.local'], addresses: ['10.96.0.20'], ports: [{ name: 'http', port: 80, targetPort: 9080, protocol: 'http' }] });
  t.is(svc.metadata.labels?.['kernmesh.io/owner'], 'kubernetes');
  t.deepEqual(await eps(store, 'shop/reviews'), [
    { address: '10.244.1.5', port: 9080, node: 'node-a', zone: 'z1', labels: { app: 'reviews', version: 'v1' }, ready: true },
    { address: '10.244.2.7', port: 9080, node: 'node-b', zone: 'z2', labels: { app: 'reviews', version: 'v2' }, ready: false },
  ]);
  // An undeclared protocol is opaque TCP; UDP ports are not the mesh's.
  t.like((await store.get('Service', 'shop/db'))!.object.spec, { ports: [{ name: 'postgres', port: 5432, targetPort: 5432, protocol: 'tcp' }] });
  t.is(((await store.get('Service', 'shop/db'))!.object.spec as { ports: unknown[] }).ports.length, 1);

  // Churn: fifty slice updates in a burst end in the last state, in far fewer writes.
  const writesBefore = c.writes;
  for (let i = 0; i < 50; i++) {
    api.put('endpointslices', slice('shop', 'reviews', 'reviews-abc', { name: 'http', port: 9080 }, Array.from({ length: (i % 5) + 1 }, (_, k) => ({ ip: `10.244.3.${k + 1}`, node: 'node-c' }))));
  }
  api.put('endpointslices', slice('shop', 'reviews', 'reviews-def', { name: 'http', port: 9080 }, [{ ip: '10.244.4.1', node: 'node-d', ready: true }]));
  await until(async () => (await eps(store, 'shop/reviews'))?.map((e) => e.address).join() === '10.244.3.1,10.244.3.2,10.244.3.3,10.244.3.4,10.244.3.5,10.244.4.1', 'the churn to settle');
  t.true(c.writes - writesBefore < 50, `coalesced: ${c.writes - writesBefore} writes for 51 changes`);

  // A slice removed takes its endpoints; a Service deleted takes both objects.
  api.remove('endpointslices', 'reviews-abc', 'shop');
  await until(async () => (await eps(store, 'shop/reviews'))?.length === 1, 'the slice removal');
  api.remove('services', 'reviews', 'shop');
  await until(async () => !(await store.get('Service', 'shop/reviews')) && !(await store.get('Endpoints', 'shop/reviews')), 'the service removal');
  t.truthy(await store.get('Service', 'shop/db'), 'other services stay');
  // Objects the controller does not own are left alone.
  t.pass();
});

test('a Service with several named targetPorts: each endpoint is written with its own slice’s numbers, and a rollout moves them', async (t) => {
  const { api, store, replica } = await setup(t);
  api.put('services', k8sService('shop', 'web', '10.96.0.50', [{ name: 'http', port: 80, targetPort: 'web' }, { name: 'metrics', port: 9100, targetPort: 'prom' }]));
  // Pods of two versions name different container ports "web" and "prom" (the slices carry the numbers).
  api.put('endpointslices', slice('shop', 'web', 'web-v1', [{ name: 'http', port: 8080 }, { name: 'metrics', port: 9090 }], [{ ip: '10.244.1.5' }]));
  api.put('endpointslices', slice('shop', 'web', 'web-v2', [{ name: 'http', port: 8081 }, { name: 'metrics', port: 9091 }], [{ ip: '10.244.2.5' }]));
  const c = replica('controller-0');
  c.start();
  await until(async () => (await eps(store, 'shop/web'))?.length === 2, 'the endpoints');
  t.deepEqual(
    (await eps(store, 'shop/web'))!.map((e) => ({ address: e.address, port: e.port, ports: e.ports })),
    [
      { address: '10.244.1.5', port: undefined, ports: { http: 8080, metrics: 9090 } },
      { address: '10.244.2.5', port: undefined, ports: { http: 8081, metrics: 9091 } },
    ],
  );
  // The rollout ends: the v1 slice goes, and the Service's numbers are v2's.
  api.remove('endpointslices', 'web-v1', 'shop');
  await until(async () => (await eps(store, 'shop/web'))?.length === 1, 'the v1 slice to go');
  t.like((await store.get('Service', 'shop/web'))!.object.spec, { ports: [{ name: 'http', targetPort: 8081 }, { name: 'metrics', targetPort: 9091 }] });
  t.deepEqual((await eps(store, 'shop/web'))![0]!.ports, { http: 8081, metrics: 9091 });
});

test('one of two replicas writes; one that loses its lease stops writing at once; the other takes over when the lease runs out', async (t) => {
  const { api, store, replica } = await setup(t);
  api.put('services', k8sService('shop', 'ratings', '10.96.0.30', [{ name: 'http', port: 80, targetPort: 9080 }]));
  api.put('endpointslices', slice('shop', 'ratings', 'ratings-1', { name: 'http', port: 9080 }, [{ ip: '10.244.1.1' }]));
  const a = replica('controller-a');
  a.start();
  await until(() => a.leader.isLeading(), 'a to lead');
  const b = replica('controller-b');
  b.start();
  await until(async () => (await eps(store, 'shop/ratings'))?.length === 1, 'the first write');
  await until(() => b.synced, 'b to list');
  t.false(b.leader.isLeading());
  t.is(api.get('leases', 'kernmesh-controller', 'kernmesh-system')?.spec && (api.get('leases', 'kernmesh-controller', 'kernmesh-system')!.spec as { holderIdentity: string }).holderIdentity, 'controller-a');

  // An intruder takes the lease (as another replica would after a partition): a stops at its next renewal...
  const lease = api.get('leases', 'kernmesh-controller', 'kernmesh-system')!;
  api.put('leases', { ...lease, spec: { ...(lease.spec as object), holderIdentity: 'intruder', renewTime: new Date().toISOString() } });
  await until(() => !a.leader.isLeading(), 'a to stop leading');
  // ...and writes nothing from then on, while the intruder's lease is fresh.
  api.put('endpointslices', slice('shop', 'ratings', 'ratings-1', { name: 'http', port: 9080 }, [{ ip: '10.244.1.1' }, { ip: '10.244.1.2' }]));
  await new Promise((r) => setTimeout(r, 300));
  t.is((await eps(store, 'shop/ratings'))?.length, 1, 'nobody wrote while the lease was someone else’s');
  // The intruder never renews: after the lease duration one replica takes over and writes the change.
  await until(async () => (await eps(store, 'shop/ratings'))?.length === 2, 'a new leader to write', 10_000);
  t.true(a.leader.isLeading() !== b.leader.isLeading(), 'exactly one leads');

  // The leader dies without releasing (a crash): the other takes over after the lease runs out.
  const [leader, other] = a.leader.isLeading() ? [a, b] : [b, a];
  await leader.stop({ release: false });
  await until(() => other.leader.isLeading(), 'the other to lead', 10_000);
  api.put('endpointslices', slice('shop', 'ratings', 'ratings-1', { name: 'http', port: 9080 }, [{ ip: '10.244.1.9' }]));
  await until(async () => (await eps(store, 'shop/ratings'))?.map((e) => e.address).join() === '10.244.1.9', 'the new leader to write');
  const transitions = (api.get('leases', 'kernmesh-controller', 'kernmesh-system')!.spec as { leaseTransitions: number }).leaseTransitions;
  t.true(transitions >= 2, `lease transitions: ${transitions}`);
});

test('a replica that cannot reach the API server to renew stops writing once the renew deadline passes', async (t) => {
  const { api, store, replica } = await setup(t);
  api.put('services', k8sService('shop', 'ratings', '10.96.0.30', [{ name: 'http', port: 80, targetPort: 9080 }]));
  const a = replica('controller-a');
  a.start();
  await until(async () => !!(await store.get('Service', 'shop/ratings')), 'the first write');
  api.failNext('leases', 500, { times: 1000 });
  await until(() => !a.leader.isLeading(), 'a to give up leading', 5000);
  // On a loaded machine the deadline can pass while a round that started before the failures is
  // still finishing (its success clears lastError); the next failed round records the error.
  await until(() => /500|Internal|injected/i.test(a.leader.lastError ?? ''), 'the failed renewal to be recorded', 5000);
  t.false(a.leader.isLeading());
});

test('`kernmesh controller --kubernetes` writes the services, answers its probes, and hands the lease back on SIGTERM', async (t) => {
  const { api, store, redis } = await setup(t);
  api.put('services', k8sService('shop', 'ratings', '10.96.0.30', [{ name: 'http', port: 80, targetPort: 9080 }]));
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-kc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'f', cluster: { server: api.url, 'insecure-skip-tls-verify': true } }], users: [{ name: 'u', user: { token: 't' } }], contexts: [{ name: 'f', context: { cluster: 'f', user: 'u' } }], 'current-context': 'f' }));
  const port = await freePort();
  const child = spawn(process.execPath, [new URL('../../src/cli/main.ts', import.meta.url).pathname, 'controller', '--kubernetes', '--kubeconfig', kubeconfig, '--redis', redis.url, '--id', 'cli-0', '--lease-namespace', 'kernmesh-system', '--health-port', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  await until(async () => !!(await store.get('Service', 'shop/ratings')), 'the service in Redis', 15_000).catch((e) => {
    throw new Error(`${e.message}: ${stderr}`);
  });
  const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
  t.is(ready.status, 200);
  t.like(await ready.json(), { leading: true, synced: true });
  t.is((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  t.is(await exited, 0);
  t.is((api.get('leases', 'kernmesh-controller', 'kernmesh-system')!.spec as { holderIdentity: string }).holderIdentity, '', 'released');
});

test('`kernmesh controller` says where services must come from', async (t) => {
  const r = await promisify(execFile)(process.execPath, [new URL('../../src/cli/main.ts', import.meta.url).pathname, 'controller', '--redis', 'redis://127.0.0.1:1']).catch((e: { code: number; stderr: string }) => e);
  t.is((r as { code: number }).code, 2, "a usage error");
  t.regex((r as { stderr: string }).stderr, /--kubernetes, or --registry FILE/);
});
