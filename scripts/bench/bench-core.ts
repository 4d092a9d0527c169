// SPDX-License-Identifier: Apache-2.0
/** The proxy core every proxy benchmark runs: one service, whose one endpoint is the backend. */
import type { MeshObject } from '../../src/config/objects.ts';
import { ProxyCore } from '../../src/proxy/core.ts';
import { buildTable } from '../../src/proxy/routing/table.ts';

export const BENCH_SERVICE = 'bench/backend';

export function benchCore(backendPort: number): ProxyCore {
  const objects: MeshObject[] = [
    { apiVersion: 'kernmesh.io/v1', kind: 'Service', metadata: { name: 'backend', namespace: 'bench' }, spec: { hosts: [], addresses: [], ports: [{ port: 80, targetPort: backendPort, protocol: 'http' }] } },
    { apiVersion: 'kernmesh.io/v1', kind: 'Endpoints', metadata: { name: 'backend', namespace: 'bench' }, spec: { endpoints: [{ address: '127.0.0.1', port: backendPort, labels: {}, weight: 1, ready: true }] } },
  ];
  const core = new ProxyCore();
  core.setTable(buildTable(1, objects.map((object, i) => ({ version: i + 1, object }))));
  return core;
}
