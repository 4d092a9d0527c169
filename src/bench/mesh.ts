// SPDX-License-Identifier: Apache-2.0
/**
 * The mesh our proxy serves in the bench: three services on one VIP, each
 * with the server pod as its one endpoint. In L7 mode the ports are declared
 * http and grpc (the bulk port is tcp: iperf3 is not HTTP); in TCP mode every
 * port is declared tcp, so the proxy is an opaque pipe.
 */
import type { MeshObject } from '../config/objects.ts';
import type { StoredObject } from '../config/store.ts';
import { ADDR, PORTS } from './testbed.ts';

export type ProxyProtocols = 'l7' | 'tcp';

const obj = (kind: MeshObject['kind'], name: string, spec: Record<string, unknown>): MeshObject => ({ apiVersion: 'kernmesh.io/v1', kind, metadata: { name, namespace: 'bench' }, spec });

export function benchObjects(protocols: ProxyProtocols): StoredObject[] {
  const services = [
    { name: 'http', port: PORTS.http, protocol: protocols === 'l7' ? 'http' : 'tcp' },
    { name: 'grpc', port: PORTS.grpc, protocol: protocols === 'l7' ? 'grpc' : 'tcp' },
    { name: 'bulk', port: PORTS.bulk, protocol: 'tcp' },
  ];
  const objects = services.flatMap((s) => [
    obj('Service', s.name, { hosts: [], addresses: [ADDR.vip], ports: [{ port: s.port, targetPort: s.port, protocol: s.protocol }] }),
    obj('Endpoints', s.name, { endpoints: [{ address: ADDR.server, labels: {}, weight: 1, ready: true }] }),
  ]);
  return objects.map((object, i) => ({ version: i + 1, object }));
}
