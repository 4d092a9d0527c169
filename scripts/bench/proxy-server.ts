// SPDX-License-Identifier: Apache-2.0
/**
 * The kernmesh proxy as the benchmark runs it: one process, one event loop,
 * a listener bound to a service whose one endpoint is the backend.
 * argv: <listen port> <backend port>; prints "ready" when listening.
 */
import type { MeshObject } from '../../src/config/objects.ts';
import { ProxyCore } from '../../src/proxy/core.ts';
import { buildTable } from '../../src/proxy/routing/table.ts';
import { ProxyServer } from '../../src/proxy/server.ts';

const [listenPort, backendPort] = process.argv.slice(2).map(Number);
const objects: MeshObject[] = [
  { apiVersion: 'kernmesh.io/v1', kind: 'Service', metadata: { name: 'backend', namespace: 'bench' }, spec: { hosts: [], addresses: [], ports: [{ port: 80, targetPort: backendPort, protocol: 'http' }] } },
  { apiVersion: 'kernmesh.io/v1', kind: 'Endpoints', metadata: { name: 'backend', namespace: 'bench' }, spec: { endpoints: [{ address: '127.0.0.1', port: backendPort, labels: {}, weight: 1, ready: true }] } },
];
const core = new ProxyCore();
core.setTable(buildTable(1, objects.map((object, i) => ({ version: i + 1, object }))));
const server = new ProxyServer(core);
await server.listen({ port: listenPort!, host: '127.0.0.1' }, { service: 'bench/backend' });
console.log('ready');
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
