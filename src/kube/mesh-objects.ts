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

/** A targetPort Kubernetes resolves per pod (by container port name), not a number. */
function isNamed(targetPort: number | string | undefined): boolean {
  return typeof targetPort === 'string' && !/^\d+$/.test(targetPort);
}

/**
 * A slice's numbers for the named service ports, by name (undefined when it
 * gives none): all of them, not only those that differ from the Service's
 * targetPort, so an Endpoints object does not change with which slice the
 * Service's numbers came from.
 */
function namedPorts(s: V1EndpointSlice, names: readonly string[]): Record<string, number> | undefined {
  let out: Record<string, number> | undefined;
  for (const name of names) {
    const port = s.ports?.find((p) => p.name === name)?.port;
    if (port) (out ??= {})[name] = port;
  }
  return out;
}

function compareNames(a = '', b = ''): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function meshObjectsFor(svc: V1Service, slices: readonly V1EndpointSlice[], podLabels: PodLabels = () => undefined): MeshObject[] {
  const name = svc.metadata?.name ?? '';
  const namespace = svc.metadata?.namespace ?? 'default';
  // ExternalName services are DNS aliases: nothing to route to.
  if (svc.spec?.type === 'ExternalName') return [];
  // In name order: the first slice to list an address, or to name a port's number, is the same on every run.
  const mine = slicesOf(svc, slices).sort((a, b) => compareNames(a.metadata?.name, b.metadata?.name));
  const tcpPorts = (svc.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP');
  if (tcpPorts.length === 0) return [];
  const slicePort = (portName: string | undefined): number | undefined => {
    for (const s of mine) for (const p of s.ports ?? []) if ((p.name ?? '') === (portName ?? '') && p.port) return p.port;
    return undefined;
  };
  const ports = tcpPorts.map((p) => {
    // A named targetPort is resolved per pod by Kubernetes; the slices carry the number (the first
    // slice's here: with several ports, each endpoint's own ports, below, say where its pod listens).
    const target = typeof p.targetPort === 'number' ? p.targetPort : /^\d+$/.test(String(p.targetPort ?? '')) ? Number(p.targetPort) : slicePort(p.name);
    return { ...(p.name ? { name: p.name } : {}), port: p.port, ...(target ? { targetPort: target } : {}), protocol: portProtocol(p) };
  });
  const addresses = (svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : [])).filter((a) => a && a !== 'None');

  const single = tcpPorts.length === 1 ? tcpPorts[0] : undefined;
  // With several, only the ports whose targetPort is a name can differ between pods.
  const named = single ? [] : tcpPorts.filter((p) => isNamed(p.targetPort) && p.name).map((p) => p.name!);
  const seen = new Set<string>();
  const endpoints: Array<Record<string, unknown>> = [];
  for (const s of mine) {
    // Each slice says which ports its endpoints use (they may differ per slice, as pods of two versions do):
    // with one service port, the endpoint's port; with several, its port for each named targetPort.
    const port = single ? (s.ports ?? []).find((p) => (p.name ?? '') === (single.name ?? ''))?.port : undefined;
    const own = namedPorts(s, named);
    for (const e of s.endpoints ?? []) {
      const labels = e.targetRef?.kind === 'Pod' && e.targetRef.name ? (podLabels(e.targetRef.namespace ?? namespace, e.targetRef.name) ?? {}) : {};
      for (const address of e.addresses ?? []) {
        if (seen.has(address)) continue;
        seen.add(address);
        endpoints.push({
          address,
          ...(port ? { port } : {}),
          ...(own ? { ports: own } : {}),
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
