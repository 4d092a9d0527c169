// SPDX-License-Identifier: Apache-2.0
/**
 * What a Service claims of the traffic: each of its VIP:port pairs and host
 * names. Two services claiming the same one cannot both be routed to: apply
 * refuses it, and a routing table that still meets it (objects written by an
 * older version, or by the Kubernetes sync) settles it the same way on every
 * node (see compareClaimants).
 */
import { canonicalIp } from './model/common.ts';
import type { MeshObject } from './objects.ts';

export interface Claim {
  on: 'vip' | 'host';
  /** "10.96.0.1:80" (the address in canonicalIp's form), or a lower-case host name. */
  value: string;
  /** Where the object says it: spec.addresses.0, spec.hosts.1, metadata.name (its implicit "name.namespace" host). */
  path: string;
}

/** What two services must not share. */
export const claimId = (c: Claim): string => `${c.on} ${c.value}`;

/** For people: "address 10.96.0.1:80", "host reviews.shop". */
export const claimLabel = (c: Pick<Claim, 'on' | 'value'>): string => `${c.on === 'vip' ? 'address' : 'host'} ${c.value}`;

type ServiceSpec = { hosts?: string[]; addresses?: string[]; ports?: Array<{ port: number }> };

/** A Service's claims: every address (canonical: "fd00:0::1" and "fd00::1" are one) at every port, every host (lower case), and "name.namespace". */
export function serviceClaims(o: Pick<MeshObject, 'metadata' | 'spec'>): Claim[] {
  const spec = o.spec as ServiceSpec;
  const out: Claim[] = [];
  (spec.addresses ?? []).forEach((written, i) => {
    const a = canonicalIp(written);
    for (const p of spec.ports ?? []) out.push({ on: 'vip', value: `${a}:${p.port}`, path: `spec.addresses.${i}` });
  });
  (spec.hosts ?? []).forEach((h, i) => out.push({ on: 'host', value: h.toLowerCase(), path: `spec.hosts.${i}` }));
  out.push({ on: 'host', value: `${o.metadata.name}.${o.metadata.namespace ?? 'default'}`, path: 'metadata.name' });
  return out;
}

/**
 * Which of two services keeps a claim both make (negative: a): the lower
 * "namespace/name". Deterministic (an agent that followed the stream and one
 * that loaded a snapshot agree) and stable: editing either service never moves
 * the claim, as an order by write version would.
 */
export function compareClaimants(a: { key: string }, b: { key: string }): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}
