// SPDX-License-Identifier: Apache-2.0
/** A mesh object as written by users and stored in Redis: a Kubernetes-style envelope. */
import { z } from 'zod';
import { dnsLabel, dnsName, labels } from './model/common.ts';
import { KIND_NAMES, KINDS, type Kind, type Ref } from './model/kinds.ts';

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
  })
  .strict();

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
