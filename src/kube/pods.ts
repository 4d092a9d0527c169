// SPDX-License-Identifier: Apache-2.0
/**
 * Which pods on this node the mesh captures, and why not the others: a pure
 * function of the namespaces and pods the informers hold. A namespace is
 * captured when labelled kernmesh.io/capture=enabled; a pod in it opts out
 * with the annotation kernmesh.io/capture: disabled. Annotations add
 * excluded outbound ports and CIDRs and name the inbound ports. A bad
 * annotation keeps the pod out of the mesh with the reason, rather than
 * capturing it with half its settings.
 */
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';
import { parseCidr } from '../datapath/index.ts';

export const CAPTURE_LABEL = 'kernmesh.io/capture';
export const ANNOTATIONS = {
  capture: 'kernmesh.io/capture',
  excludePorts: 'kernmesh.io/exclude-outbound-ports',
  excludeCidrs: 'kernmesh.io/exclude-outbound-cidrs',
  inboundPorts: 'kernmesh.io/inbound-ports',
} as const;

export interface PodDecision {
  namespace: string;
  name: string;
  uid: string;
  capture: boolean;
  /** Why the pod is not captured (capture false). */
  reason?: string;
  labels: Record<string, string>;
  serviceAccount: string;
  excludedPorts: number[];
  excludedCidrs: string[];
  inboundPorts: number[];
  /** The pod's IPs (status.podIPs). */
  addresses: string[];
}

function ports(value: string | undefined, what: string): number[] {
  if (!value?.trim()) return [];
  return value.split(',').map((p) => {
    const n = Number(p.trim());
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`annotation ${what}: "${p.trim()}" is not a port (1-65535); write a comma-separated list like "5432,6379"`);
    return n;
  });
}

function cidrs(value: string | undefined, what: string): string[] {
  if (!value?.trim()) return [];
  return value.split(',').map((c) => {
    try {
      parseCidr(c.trim());
    } catch {
      throw new Error(`annotation ${what}: "${c.trim()}" is not a CIDR; write a comma-separated list like "10.0.0.0/8,fd00::/8"`);
    }
    return c.trim();
  });
}

/** MeshSettings.capture, as far as choosing pods goes. */
export interface CaptureSettings {
  /** Namespaces with this label set to "enabled" are captured. */
  namespaceLabel: string;
  /** The inbound ports of a pod without the inbound-ports annotation. */
  inboundPorts: number[];
}

export const DEFAULT_CAPTURE: CaptureSettings = { namespaceLabel: CAPTURE_LABEL, inboundPorts: [] };

/** MeshSettings' spec (or none) to what choosing pods needs, defaults filled in. */
export function captureSettings(meshSpec: { capture?: { namespaceLabel?: string; inboundPorts?: number[] } } | undefined): CaptureSettings {
  const c = meshSpec?.capture;
  return { namespaceLabel: c?.namespaceLabel ?? DEFAULT_CAPTURE.namespaceLabel, inboundPorts: c?.inboundPorts ?? DEFAULT_CAPTURE.inboundPorts };
}

export function namespaceCaptured(ns: V1Namespace | undefined, label = CAPTURE_LABEL): boolean {
  return ns?.metadata?.labels?.[label] === 'enabled';
}

/** Decisions for the pods of this node that live in captured namespaces (others are not the mesh's business). */
export function decidePods(namespaces: readonly V1Namespace[], pods: readonly V1Pod[], node: string, capture: CaptureSettings = DEFAULT_CAPTURE): PodDecision[] {
  const captured = new Set(namespaces.filter((n) => namespaceCaptured(n, capture.namespaceLabel)).map((n) => n.metadata!.name!));
  const out: PodDecision[] = [];
  for (const pod of pods) {
    const meta = pod.metadata ?? {};
    const namespace = meta.namespace ?? 'default';
    if (!captured.has(namespace) || pod.spec?.nodeName !== node) continue;
    const a = meta.annotations ?? {};
    const d: PodDecision = {
      namespace,
      name: meta.name ?? '',
      uid: meta.uid ?? '',
      capture: false,
      labels: meta.labels ?? {},
      serviceAccount: pod.spec?.serviceAccountName ?? 'default',
      excludedPorts: [],
      excludedCidrs: [],
      inboundPorts: [],
      addresses: (pod.status?.podIPs ?? []).map((p) => p.ip).filter(Boolean).concat(pod.status?.podIPs?.length ? [] : pod.status?.podIP ? [pod.status.podIP] : []),
    };
    out.push(d);
    const phase = pod.status?.phase;
    if (a[ANNOTATIONS.capture] === 'disabled' || a[ANNOTATIONS.capture] === 'false') d.reason = `opted out (annotation ${ANNOTATIONS.capture}: ${a[ANNOTATIONS.capture]})`;
    else if (pod.spec?.hostNetwork) d.reason = 'hostNetwork pod: it shares the node\'s network namespace, which is never captured';
    else if (phase === 'Succeeded' || phase === 'Failed') d.reason = `pod has ended (${phase})`;
    else if (!d.uid) d.reason = 'pod has no uid yet';
    if (d.reason) continue;
    try {
      d.excludedPorts = ports(a[ANNOTATIONS.excludePorts], ANNOTATIONS.excludePorts);
      d.excludedCidrs = cidrs(a[ANNOTATIONS.excludeCidrs], ANNOTATIONS.excludeCidrs);
      d.inboundPorts = a[ANNOTATIONS.inboundPorts] === undefined ? [...capture.inboundPorts] : ports(a[ANNOTATIONS.inboundPorts], ANNOTATIONS.inboundPorts);
      d.capture = true;
    } catch (err) {
      d.reason = (err as Error).message;
    }
  }
  return out;
}
