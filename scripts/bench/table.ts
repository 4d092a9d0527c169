// SPDX-License-Identifier: Apache-2.0
/**
 * What one endpoint change costs a node at a mesh's size: the routing table
 * rebuilt from the same view with one Endpoints object replaced (what an
 * agent does on every coalesced change), side by side with a rebuild from
 * objects all new (what every change cost when nothing compiled was kept),
 * and the same through two proxy worker processes (only what changed is
 * sent, against every object sent). CPU time of this process for the
 * builds (process.cpuUsage: other tenants' load does not count), wall time
 * until both workers have the change. The last line is JSON.
 *
 *   npm run bench:table [-- --services 1000,5000,20000 --rounds 10]
 */
import { parseArgs } from 'node:util';
import type { StoredObject } from '../../src/config/store.ts';
import { type RoutingTable, buildTable } from '../../src/proxy/routing/table.ts';
import { ProxyWorkers } from '../../src/proxy/workers.ts';

const { values } = parseArgs({ options: { services: { type: 'string', default: '1000,5000,20000' }, rounds: { type: 'string', default: '10' } } });
const sizes = values.services.split(',').map(Number);
const rounds = Number(values.rounds);

type Obj = StoredObject['object'];
const endpoints = (i: number, gen: number): Obj => ({ apiVersion: 'kernmesh.io/v1', kind: 'Endpoints', metadata: { name: `svc${i}`, namespace: `ns${i % 50}` }, spec: { endpoints: [0, 1, 2].map((k) => ({ address: `10.${1 + (gen & 3)}.${i >> 8}.${(i + k) & 255}`, port: 8080, labels: { app: `svc${i}` }, weight: 1, ready: true })) } });

/** N services with their endpoints and a Route each, a ClusterPolicy for one in ten: the view an agent holds, by field. */
function mesh(n: number): Map<string, StoredObject> {
  const view = new Map<string, StoredObject>();
  const put = (object: Obj) => view.set(`${object.kind}/${object.metadata.namespace}/${object.metadata.name}`, { version: view.size + 1, object });
  for (let i = 0; i < n; i++) {
    const ns = `ns${i % 50}`;
    const name = `svc${i}`;
    put({ apiVersion: 'kernmesh.io/v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { hosts: [`${name}.${ns}.svc.cluster.local`], addresses: [`10.96.${i >> 8}.${i & 255}`], ports: [{ port: 80, targetPort: 8080, protocol: 'http' }, { port: 443, targetPort: 8443, protocol: 'tls' }] } });
    put(endpoints(i, 0));
    put({ apiVersion: 'kernmesh.io/v1', kind: 'Route', metadata: { name, namespace: ns }, spec: { service: name, rules: [{ match: [{ path: { prefix: '/api' } }], action: { split: [{}] } }] } });
    if (i % 10 === 0) put({ apiVersion: 'kernmesh.io/v1', kind: 'ClusterPolicy', metadata: { name, namespace: ns }, spec: { service: name, loadBalancer: { type: 'least_request' } } });
  }
  return view;
}

/** The view after one more endpoint change (round r). */
function change(view: Map<string, StoredObject>, n: number, r: number): void {
  const o = endpoints((r * 7919) % n, r);
  view.set(`Endpoints/${o.metadata.namespace}/${o.metadata.name}`, { version: view.size + r, object: o });
}

/** The same objects as new ones (a deep copy): nothing compiled from them before can be found. */
const fresh = (view: Map<string, StoredObject>) => [...view.values()].map((s) => structuredClone(s));

const cpuMs = (from: NodeJS.CpuUsage) => {
  const c = process.cpuUsage(from);
  return (c.user + c.system) / 1000;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const results: Array<Record<string, number>> = [];
for (const n of sizes) {
  const view = mesh(n);
  let table: RoutingTable = buildTable(1, view.values());
  const kept: number[] = [];
  const anew: number[] = [];
  // Interleaved, a warm-up round first (dropped).
  for (let r = 0; r <= rounds; r++) {
    change(view, n, r + 1);
    let c0 = process.cpuUsage();
    table = buildTable(r + 2, view.values(), table);
    const k = cpuMs(c0);
    const copy = fresh(view);
    c0 = process.cpuUsage();
    buildTable(r + 2, copy, table);
    const a = cpuMs(c0);
    if (r > 0) kept.push(k), anew.push(a);
  }

  const workers = await ProxyWorkers.start(2);
  await workers.setObjects(1, [...view.values()]);
  const wKept: number[] = [];
  const wAnew: number[] = [];
  for (let r = 0; r <= rounds; r++) {
    change(view, n, rounds + r + 2);
    let t0 = performance.now();
    await workers.setObjects(r + 2, [...view.values()]);
    const k = performance.now() - t0;
    const copy = fresh(view);
    t0 = performance.now();
    await workers.setObjects(r + 2, copy);
    const a = performance.now() - t0;
    // Back to the view's own objects for the next round's "one change".
    await workers.setObjects(r + 2, [...view.values()]);
    if (r > 0) wKept.push(k), wAnew.push(a);
  }
  await workers.stop();
  const row = { services: n, rebuild_cpu_ms: median(kept), rebuild_all_new_cpu_ms: median(anew), workers_ms: median(wKept), workers_all_new_ms: median(wAnew) };
  results.push(row);
  console.error(
    `${String(n).padStart(6)} services: rebuild ${row.rebuild_cpu_ms.toFixed(1)} ms CPU (all objects new: ${row.rebuild_all_new_cpu_ms.toFixed(1)}, ${(row.rebuild_all_new_cpu_ms / row.rebuild_cpu_ms).toFixed(1)}x); 2 workers have it in ${row.workers_ms.toFixed(0)} ms (every object sent: ${row.workers_all_new_ms.toFixed(0)}, ${(row.workers_all_new_ms / row.workers_ms).toFixed(1)}x)`,
  );
}
console.log(JSON.stringify({ rounds, results }));
