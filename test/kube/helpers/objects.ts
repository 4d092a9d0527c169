// SPDX-License-Identifier: Apache-2.0
/** Kubernetes objects for the fake API server, and a wait helper. */
import { randomUUID } from 'node:crypto';

export function pod(namespace: string, name: string, node: string, extra: { labels?: Record<string, string>; annotations?: Record<string, string>; uid?: string; phase?: string; hostNetwork?: boolean; ip?: string } = {}) {
  return {
    metadata: { name, namespace, uid: extra.uid ?? randomUUID(), labels: extra.labels ?? { app: name }, annotations: extra.annotations ?? {} },
    spec: { nodeName: node, serviceAccountName: name, containers: [{ name: 'app', image: 'app' }], ...(extra.hostNetwork ? { hostNetwork: true } : {}) },
    status: { phase: extra.phase ?? 'Running', ...(extra.ip ? { podIP: extra.ip } : {}) },
  };
}

export function namespace(name: string, captured: boolean) {
  return { metadata: { name, labels: captured ? { 'kubernetes.io/metadata.name': name, 'kernmesh.io/capture': 'enabled' } : { 'kubernetes.io/metadata.name': name } } };
}

export function k8sService(namespace: string, name: string, clusterIP: string, ports: Array<{ name?: string; port: number; targetPort?: number | string; appProtocol?: string; protocol?: string }>) {
  return { metadata: { name, namespace }, spec: { type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], ports: ports.map((p) => ({ protocol: 'TCP', ...p })) } };
}

/** port: the slice's one port, or a list of them (a Service with several ports). */
export function slice(namespace: string, service: string, name: string, port: { name?: string; port: number } | Array<{ name?: string; port: number }>, endpoints: Array<{ ip: string; ready?: boolean; node?: string; zone?: string; pod?: string }>) {
  return {
    metadata: { name, namespace, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    ports: (Array.isArray(port) ? port : [port]).map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), port: p.port, protocol: 'TCP' })),
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true },
      ...(e.node ? { nodeName: e.node } : {}),
      ...(e.zone ? { zone: e.zone } : {}),
      ...(e.pod ? { targetRef: { kind: 'Pod', namespace, name: e.pod } } : {}),
    })),
  };
}

export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}
