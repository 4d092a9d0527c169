// SPDX-License-Identifier: Apache-2.0
/** The proxy process of bench:proxy-idle: reports its port, then its memory on request. */
import type { AddressInfo } from 'node:net';
import type { MeshObject } from '../../src/config/objects.ts';
import { ProxyCore } from '../../src/proxy/core.ts';
import { buildTable } from '../../src/proxy/routing/table.ts';
import { ProxyServer } from '../../src/proxy/server.ts';

const backendPort = Number(process.argv[2]);
const objects: MeshObject[] = [
  { apiVersion: 'kernmesh.io/v1', kind: 'Service', metadata: { name: 'backend', namespace: 'bench' }, spec: { hosts: [], addresses: [], ports: [{ port: 80, targetPort: backendPort, protocol: 'http' }] } },
  { apiVersion: 'kernmesh.io/v1', kind: 'Endpoints', metadata: { name: 'backend', namespace: 'bench' }, spec: { endpoints: [{ address: '127.0.0.1', port: backendPort, labels: {}, weight: 1, ready: true }] } },
];
const core = new ProxyCore();
core.setTable(buildTable(1, objects.map((object, i) => ({ version: i + 1, object }))));
const server = new ProxyServer(core);
const s = await server.listen({ port: 0, host: '127.0.0.1' }, { service: 'bench/backend' });
process.send!({ port: (s.address() as AddressInfo).port });
process.on('message', () => {
  globalThis.gc?.();
  const m = process.memoryUsage();
  process.send!({ rss: m.rss, heap: m.heapUsed });
});
process.on('SIGTERM', () => process.exit(0));
