// SPDX-License-Identifier: Apache-2.0
import type { MeshObject } from '../../../src/config/objects.ts';

export function service(name: string, namespace = 'shop', port = 80): MeshObject {
  return {
    apiVersion: 'kernmesh.io/v1',
    kind: 'Service',
    metadata: { name, namespace },
    spec: { hosts: [`${name}.${namespace}.svc.cluster.local`], addresses: [], ports: [{ port, protocol: 'http' }] },
  };
}
