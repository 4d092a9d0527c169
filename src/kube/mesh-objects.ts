// SPDX-License-Identifier: Apache-2.0
/**
 * Kubernetes Services and EndpointSlices as the mesh's Service and
 * Endpoints objects (pure). Each Service becomes a mesh Service (its DNS
 * name, ClusterIPs, TCP ports with their protocol) and an Endpoints object
 * gathered from every EndpointSlice labelled with its name: address,
 * readiness, node, zone, and the labels of the pod behind it (subsets such
 * as version=v2 select on those).
 *
 * A port's protocol comes from appProtocol, else from Istio's port-name
 * convention (http-…, grpc-…), else it is tcp: a port whose protocol is not
 * declared is passed through as opaque TCP, which never breaks a protocol
 * the proxy would misread.
 */
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { MeshObject } from '../config/objects.ts';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
type Protocol = 'http' | 'http2' | 'grpc' | 'tcp' | 'tls';

const APP_PROTOCOLS: Record<string, Protocol> = {
  http: 'http',
  http2: 'http2',
  h2c: 'http2',
  'kubernetes.io/h2c': 'http2',
  grpc: 'grpc',
  'grpc-web': 'http',
  tcp: 'tcp',
  tls: 'tls',
  https: 'tls',
  'kubernetes.io/ws': 'http',
  'kubernetes.io/wss': 'tls',
};

export function portProtocol(port: { name?: string; appProtocol?: string }): Protocol {
  const app = port.appProtocol?.toLowerCase();
  if (app && APP_PROTOCOLS[app]) return APP_PROTOCOLS[app];
  const prefix = port.name?.toLowerCase().split('-')[0];
  if (prefix && APP_PROTOCOLS[prefix]) return APP_PROTOCOLS[prefix];
  return 'tcp';
}

type PodLabels = (namespace: string, name: string) => Record<string, string> | undefined;

/** The slices that belong to a Service (same namespace, service-name label). */
export function slicesOf(svc: V1Service, slices: readonly V1EndpointSlice[]): V1EndpointSlice[] {
  const ns = svc.metadata?.namespace;
  const name = svc.metadata?.name;
  return slices.filter((s) => s.metadata?.namespace === ns && s.metadata?.labels?.[SERVICE_NAME_LABEL] === name && (s.addressType === 'IPv4' || s.addressType === 'IPv6'));
}

export function meshObjectsFor(svc: V1Service, slices: readonly V1EndpointSlice[], podLabels: PodLabels = () => undefined): MeshObject[] {
  const name = svc.metadata?.name ?? '';
  const namespace = svc.metadata?.namespace ?? 'default';
  // ExternalName services are DNS aliases: nothing to route to.
  if (svc.spec?.type === 'ExternalName') return [];
  const mine = slicesOf(svc, slices);
  const tcpPorts = (svc.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP');
  if (tcpPorts.length === 0) return [];
  const slicePort = (portName: string | undefined): number | undefined => {
    for (const s of mine) for (const p of s.ports ?? []) if ((p.name ?? '') === (portName ?? '') && p.port) return p.port;
    return undefined;
  };
  const ports = tcpPorts.map((p) => {
    // A named targetPort is resolved per pod by Kubernetes; the slices carry the number.
    const target = typeof p.targetPort === 'number' ? p.targetPort : /^\d+$/.test(String(p.targetPort ?? '')) ? Number(p.targetPort) : slicePort(p.name);
    return { ...(p.name ? { name: p.name } : {}), port: p.port, ...(target ? { targetPort: target } : {}), protocol: portProtocol(p) };
  });
  const addresses = (svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : [])).filter((a) => a && a !== 'None');

  const single = tcpPorts.length === 1 ? tcpPorts[0] : undefined;
  const seen = new Set<string>();
  const endpoints: Array<Record<string, unknown>> = [];
  for (const s of mine) {
    // With one service port, each slice says which port its endpoints use (it may differ per slice).
    const port = single ? (s.ports ?? []).find((p) => (p.name ?? '') === (single.name ?? ''))?.port : undefined;
    for (const e of s.endpoints ?? []) {
      const labels = e.targetRef?.kind === 'Pod' && e.targetRef.name ? (podLabels(e.targetRef.namespace ?? namespace, e.targetRef.name) ?? {}) : {};
      for (const address of e.addresses ?? []) {
        if (seen.has(address)) continue;
        seen.add(address);
        endpoints.push({
          address,
          ...(port ? { port } : {}),
          ...(e.nodeName ? { node: e.nodeName } : {}),
          ...(e.zone ? { zone: e.zone } : {}),
          labels,
          // Kubernetes: a missing ready condition means ready.
          ready: e.conditions?.ready !== false,
        });
      }
    }
  }
  endpoints.sort((a, b) => String(a.address).localeCompare(String(b.address)));
  return [
    { apiVersion: 'kernmesh.io/v1', kind: 'Service', metadata: { name, namespace }, spec: { hosts: [`${name}.${namespace}.svc.cluster.local`], addresses, ports } },
    { apiVersion: 'kernmesh.io/v1', kind: 'Endpoints', metadata: { name, namespace }, spec: { endpoints } },
  ];
}
