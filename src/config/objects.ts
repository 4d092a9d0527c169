// SPDX-License-Identifier: Apache-2.0
/** A mesh object as written by users and stored in Redis: a Kubernetes-style envelope. */
import { z } from 'zod';
import { dnsLabel, dnsName, labels } from './model/common.ts';
import { KIND_NAMES, KINDS, type Kind, type Ref, type SubsetUse } from './model/kinds.ts';

export const API_VERSION = 'kernmesh.io/v1';

export const Envelope = z
  .object({
    apiVersion: z.literal(API_VERSION).default(API_VERSION),
    kind: z.enum(KIND_NAMES),
    metadata: z
      .object({
        name: dnsName,
        namespace: dnsLabel.optional(),
        labels: labels.optional(),
      })
      .strict(),
    spec: z.unknown().optional(),
    // What `kernmesh get` prints, so its output applies back: a precondition, as resourceVersion is to kubectl (see apply.ts).
    version: z.number().int().min(1).optional(),
  })
  .strict();

/** Several objects in one document, as `kernmesh get KIND -o yaml|json` prints them (kubectl's List). */
export const LIST_KIND = 'List';

export interface MeshObject<S = Record<string, unknown>> {
  apiVersion: typeof API_VERSION;
  kind: Kind;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: S;
  /** The mesh version that wrote it (set by the store). */
  version?: number;
}

export function namespaceOf(o: Pick<MeshObject, 'kind' | 'metadata'>): string {
  return KINDS[o.kind].namespaced ? (o.metadata.namespace ?? 'default') : '';
}

export function keyOf(o: Pick<MeshObject, 'kind' | 'metadata'>): string {
  return KINDS[o.kind].namespaced ? `${namespaceOf(o)}/${o.metadata.name}` : o.metadata.name;
}

export function refOf(o: Pick<MeshObject, 'kind' | 'metadata'>): Ref {
  return { kind: o.kind, key: keyOf(o) };
}

export function refString(r: Ref): string {
  return `${r.kind}/${r.key}`;
}

/** The objects this one needs to exist. */
export function referencesOf(o: MeshObject): Ref[] {
  return KINDS[o.kind].references(o.spec as never, namespaceOf(o), o.metadata.name);
}

/**
 * "Route/default/web does not exist", and when objects of that kind and name
 * are in other namespaces (a forgotten -n), where.
 */
export function notFoundMessage(ref: Ref, all: Array<Pick<MeshObject, 'kind' | 'metadata'>>): string {
  const name = ref.key.slice(ref.key.indexOf('/') + 1);
  const elsewhere = KINDS[ref.kind].namespaced ? [...new Set(all.filter((o) => o.kind === ref.kind && o.metadata.name === name && keyOf(o) !== ref.key).map((o) => namespaceOf(o)))].sort() : [];
  if (elsewhere.length === 0) return `${refString(ref)} does not exist`;
  return `${refString(ref)} does not exist (found in namespace${elsewhere.length > 1 ? 's' : ''} ${elsewhere.join(', ')}: use -n ${elsewhere.length > 1 ? 'NAMESPACE' : elsewhere[0]})`;
}

/** The subsets this one sends traffic to. */
export function subsetUsesOf(o: MeshObject): SubsetUse[] {
  return KINDS[o.kind].subsetUses?.(o.spec as never, namespaceOf(o)) ?? [];
}

/**
 * Which subsets each Service has once these objects hold: "namespace/name" ->
 * subset -> the ClusterPolicies that define it. Several ClusterPolicies of one
 * service add up (the routing table merges their subsets the same way).
 */
export function subsetsByService(objects: Iterable<MeshObject>): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  for (const o of objects) {
    const d = KINDS[o.kind].subsetsDefined?.(o.spec as never, namespaceOf(o));
    if (!d) continue;
    let subsets = out.get(d.service);
    if (!subsets) out.set(d.service, (subsets = new Map()));
    for (const name of d.subsets) subsets.set(name, [...(subsets.get(name) ?? []), refString(refOf(o))]);
  }
  return out;
}

/**
 * The object as JSON with every object's keys sorted and without the
 * store-assigned version: two objects that mean the same (labels listed in
 * another order, a default namespace spelled out or not) have the same text.
 * Array order is kept: in rules and splits it means something.
 */
export function canonicalJson(o: MeshObject): string {
  const { version: _v, ...rest } = o;
  return JSON.stringify(rest, (_key, value: unknown) =>
    value && typeof value === 'object' && !Array.isArray(value) ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : value,
  );
}
