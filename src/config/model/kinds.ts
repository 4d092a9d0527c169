// SPDX-License-Identifier: Apache-2.0
/**
 * The mesh's kinds: for each, its spec schema, what it is for, an example
 * (checked by the tests, shown by `kernmesh schema`), and the objects it
 * refers to (checked at apply time).
 */
import type { z } from 'zod';
import { resolveServiceRef } from './common.ts';
import { AuthorizationPolicySpec, RateLimitSpec } from './policy.ts';
import { MeshSettingsSpec } from './mesh.ts';
import { EndpointsSpec, ServiceSpec, WorkloadSpec } from './service.ts';
import { ClusterPolicySpec, RouteSpec } from './traffic.ts';

export const KIND_NAMES = ['MeshSettings', 'Service', 'Endpoints', 'Workload', 'Route', 'ClusterPolicy', 'AuthorizationPolicy', 'RateLimit'] as const;
export type Kind = (typeof KIND_NAMES)[number];

/** An object's identity: its kind and "namespace/name" (MeshSettings: "mesh"). */
export interface Ref {
  kind: Kind;
  key: string;
}

export interface KindInfo {
  spec: z.ZodType;
  description: string;
  /** Namespaced kinds are keyed "namespace/name"; MeshSettings is the one object "mesh". */
  namespaced: boolean;
  example: { metadata: { name: string; namespace?: string }; spec: unknown };
  references(spec: never, namespace: string, name: string): Ref[];
  /** The subsets it sends traffic to, each with where it names one (checked at apply time, as references are). */
  subsetUses?(spec: never, namespace: string): SubsetUse[];
  /** The subsets it defines, and whose. */
  subsetsDefined?(spec: never, namespace: string): { service: string; subsets: string[] };
}

/** A subset named by an object: of which Service ("namespace/name"), and where in the object ("spec.rules.0.action.split.1.subset"). */
export interface SubsetUse {
  service: string;
  subset: string;
  path: string;
}

const svc = (ref: string, ns: string): Ref => ({ kind: 'Service', key: resolveServiceRef(ref, ns) });

export const KINDS: Record<Kind, KindInfo> = {
  MeshSettings: {
    spec: MeshSettingsSpec,
    namespaced: false,
    description: 'Mesh-wide settings: capture defaults, fail-open or fail-closed, access-log sampling. One object, named "mesh".',
    example: { metadata: { name: 'mesh' }, spec: { failMode: 'open', capture: { excludedPorts: [22] }, accessLog: { sampling: 0.1 } } },
    references: () => [],
  },
  Service: {
    spec: ServiceSpec,
    namespaced: true,
    description: 'A service: its names, virtual IPs and ports (with their protocol), and how its endpoints are selected.',
    example: {
      metadata: { name: 'reviews', namespace: 'shop' },
      spec: { hosts: ['reviews.shop.svc.cluster.local'], addresses: ['10.96.0.20'], ports: [{ port: 80, targetPort: 9080, protocol: 'http' }], selector: { app: 'reviews' } },
    },
    references: () => [],
  },
  Endpoints: {
    spec: EndpointsSpec,
    namespaced: true,
    description:
      "The endpoints of the Service with the same namespace and name: address, port, node, zone, labels, weight, readiness. An endpoint's port, when given, is where every port of the service reaches it; leave it out for a service with several ports, and each port's targetPort is used, unless the endpoint's ports names its own number for that port (as the Kubernetes sync does for a named targetPort, which each pod resolves for itself).",
    example: {
      metadata: { name: 'reviews', namespace: 'shop' },
      spec: { endpoints: [{ address: '10.244.1.7', port: 9080, node: 'node-a', zone: 'z1', labels: { version: 'v1' }, ready: true }] },
    },
    references: (_spec, ns, name) => [{ kind: 'Service', key: `${ns}/${name}` }],
  },
  Workload: {
    spec: WorkloadSpec,
    namespaced: true,
    description: 'A process or VM outside Kubernetes that registers itself, optionally as an endpoint of a service.',
    // Of the Service the other examples use, so that `kernmesh schema --example` applies as it is.
    example: { metadata: { name: 'reviews-vm-1', namespace: 'shop' }, spec: { address: '192.0.2.10', ports: [9080], labels: { app: 'reviews', version: 'v2' }, service: 'reviews' } },
    references: (spec: { service?: string }, ns) => (spec.service ? [svc(spec.service, ns)] : []),
  },
  Route: {
    spec: RouteSpec,
    namespaced: true,
    description: "How a service's requests are routed: matches on host, path, method, headers and query; weighted splits, rewrites, redirects, direct responses; per-rule timeouts, retries, fault injection and mirroring.",
    example: {
      metadata: { name: 'reviews-canary', namespace: 'shop' },
      spec: {
        service: 'reviews',
        rules: [
          { match: [{ headers: { 'x-canary': { exact: 'yes' } } }], action: { split: [{ subset: 'v2' }] } },
          { action: { split: [{ subset: 'v1', weight: 99 }, { subset: 'v2', weight: 1 }] }, timeout: '2s', retries: { attempts: 2, retryOn: ['5xx', 'connect-failure'] } },
        ],
      },
    },
    references: (spec: { service: string; rules: Array<{ action: { split?: Array<{ service?: string }> }; mirror?: { service: string } }> }, ns) => [
      svc(spec.service, ns),
      ...spec.rules.flatMap((r) => [...(r.action.split ?? []).flatMap((d) => (d.service ? [svc(d.service, ns)] : [])), ...(r.mirror ? [svc(r.mirror.service, ns)] : [])]),
    ],
    // Only a split destination names a subset (a mirror takes the whole service).
    subsetUses: (spec: { service: string; rules: Array<{ action: { split?: Array<{ service?: string; subset?: string }> } }> }, ns) =>
      spec.rules.flatMap((r, i) =>
        (r.action.split ?? []).flatMap((d, j) => (d.subset ? [{ service: resolveServiceRef(d.service ?? spec.service, ns), subset: d.subset, path: `spec.rules.${i}.action.split.${j}.subset` }] : [])),
      ),
  },
  ClusterPolicy: {
    spec: ClusterPolicySpec,
    namespaced: true,
    description: "How a service's endpoints are used: subsets, load balancing, connection pool and circuit breaking, outlier detection, timeouts, retries and the retry budget.",
    example: {
      metadata: { name: 'reviews', namespace: 'shop' },
      spec: {
        service: 'reviews',
        subsets: [
          { name: 'v1', labels: { version: 'v1' } },
          { name: 'v2', labels: { version: 'v2' } },
        ],
        loadBalancer: { type: 'least_request' },
        connectionPool: { maxConnections: 100, maxPendingRequests: 50 },
        outlierDetection: { consecutive5xx: 3, baseEjectionTime: '30s', maxEjectionPercent: 50 },
      },
    },
    references: (spec: { service: string }, ns) => [svc(spec.service, ns)],
    subsetsDefined: (spec: { service: string; subsets?: Array<{ name: string }> }, ns) => ({ service: resolveServiceRef(spec.service, ns), subsets: (spec.subsets ?? []).map((s) => s.name) }),
  },
  AuthorizationPolicy: {
    spec: AuthorizationPolicySpec,
    namespaced: true,
    description: "Allow or deny requests to a service by source workload, namespace or identity, and by path, method and port. It also holds for requests that reach the service through another service's route (a split).",
    example: {
      metadata: { name: 'deny-delete', namespace: 'shop' },
      spec: { service: 'reviews', action: 'DENY', rules: [{ to: { methods: ['DELETE'] } }] },
    },
    references: (spec: { service?: string }, ns) => (spec.service ? [svc(spec.service, ns)] : []),
  },
  RateLimit: {
    spec: RateLimitSpec,
    namespaced: true,
    description: "A local token-bucket rate limit on a service (or one of its routes), optionally per source; excess answered 429. A service-wide limit also counts requests that reach the service through another service's route (a split). Local means per node: each node's proxy enforces the limit for the traffic it carries, however many worker processes it runs, and a retry is not counted again.",
    example: { metadata: { name: 'reviews', namespace: 'shop' }, spec: { service: 'reviews', maxTokens: 100, tokensPerFill: 100, fillInterval: '1s' } },
    references: (spec: { service: string }, ns) => [svc(spec.service, ns)],
  },
};

export function isKind(s: string): s is Kind {
  return (KIND_NAMES as readonly string[]).includes(s);
}

const SHORT_NAMES: Record<string, Kind> = { svc: 'Service', ep: 'Endpoints', wl: 'Workload', cp: 'ClusterPolicy', authz: 'AuthorizationPolicy', rl: 'RateLimit', mesh: 'MeshSettings' };

/** Accepts "route", "routes", "Route", short names like "svc", and the like. */
export function kindFromUser(s: string): Kind | undefined {
  const short = SHORT_NAMES[s.toLowerCase()];
  if (short) return short;
  const want = s.toLowerCase().replace(/s$/, '').replace(/ie$/, 'y');
  return KIND_NAMES.find((k) => k.toLowerCase() === want || k.toLowerCase() === s.toLowerCase());
}
