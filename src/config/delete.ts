// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh delete`: an object goes only when nothing left in the mesh
 * still needs it (a Route on a Service, a Route on a ClusterPolicy's
 * subset), or, with cascade, together with everything that does, in one
 * atomic write. A Service's Endpoints (same namespace and name) are part of
 * the Service and go with it, as Kubernetes removes a Service's Endpoints.
 * The plan is made on one snapshot and written only if the mesh is still at
 * its version, as apply does; a mesh that moved is planned again.
 */
import { KmError } from '../errors.ts';
import type { Ref } from './model/kinds.ts';
import { type MeshObject, notFoundMessage, refOf, referencesOf, refString, subsetsByService, subsetUsesOf } from './objects.ts';
import type { MeshStore } from './store.ts';

export interface Deletion {
  ref: Ref;
  /** Why it goes besides the named object: "the endpoints of Service/shop/web", "refers to Service/shop/web". */
  why?: string;
  version?: number;
}

export interface DeletePlan {
  /** In write order: what needs another object before that object, the named one last. */
  deletes: Deletion[];
  /** Without cascade: the objects that would be left needing what goes, each with what it needs. */
  blockers: Array<{ ref: Ref; needs: string[] }>;
}

/**
 * What deleting `target` from `all` takes. Planned on plain data, so the
 * rules are unit-tested without Redis; undefined when target is not in all.
 */
export function planDelete(objects: MeshObject[], target: Ref, options: { cascade?: boolean } = {}): DeletePlan | undefined {
  // In ref order: what is listed, and the order it is deleted in, is the same on every run.
  const all = [...objects].sort((a, b) => (refString(refOf(a)) < refString(refOf(b)) ? -1 : 1));
  const byRef = new Map(all.map((o) => [refString(refOf(o)), o]));
  if (!byRef.has(refString(target))) return undefined;
  const gone = new Map<string, Deletion>([[refString(target), { ref: target }]]);
  const owned: Deletion[] = [];
  const endpoints: Ref = { kind: 'Endpoints', key: target.key };
  if (target.kind === 'Service' && byRef.has(refString(endpoints))) owned.push({ ref: endpoints, why: `the endpoints of ${refString(target)}` });
  for (const d of owned) gone.set(refString(d.ref), d);
  // Subsets are what the mesh has before the delete: a Route that already named a missing one is not held against it.
  const before = subsetsByService(all);
  const blockers: DeletePlan['blockers'] = [];
  // Cascade follows needs to their end (a ClusterPolicy taken with its Service takes the Routes on its subsets).
  const waves: Deletion[][] = [];
  for (;;) {
    const left = all.filter((o) => !gone.has(refString(refOf(o))));
    const after = subsetsByService(left);
    const wave: Deletion[] = [];
    for (const o of left) {
      const needs = needsOf(o, gone, before, after);
      if (needs.length === 0) continue;
      if (!options.cascade) blockers.push({ ref: refOf(o), needs });
      else wave.push({ ref: refOf(o), why: needs.join('; ') });
    }
    if (wave.length === 0) break;
    for (const d of wave) gone.set(refString(d.ref), d);
    waves.push(wave);
  }
  // The last to need something go first: no agent following the stream meets a Route whose Service went before it.
  return { deletes: [...waves.reverse().flat(), ...owned, { ref: target }], blockers };
}

/** What `o` needs of the objects that go: each as a phrase for people. */
function needsOf(o: MeshObject, gone: Map<string, Deletion>, before: Map<string, Map<string, string[]>>, after: Map<string, Map<string, string[]>>): string[] {
  const needs = new Set<string>();
  for (const ref of referencesOf(o)) if (gone.has(refString(ref))) needs.add(`refers to ${refString(ref)}`);
  for (const use of subsetUsesOf(o)) {
    const definers = before.get(use.service)?.get(use.subset);
    if (!definers || after.get(use.service)?.has(use.subset)) continue;
    needs.add(`sends traffic to subset ${use.subset} of Service/${use.service} (at ${use.path}), which ${definers.join(', ')} ${definers.length > 1 ? 'define' : 'defines'}`);
  }
  return [...needs];
}

/** Rounds of plan and write before delete gives up on a mesh that keeps changing under it. */
const DELETE_ATTEMPTS = 5;

export async function deleteObject(store: MeshStore, target: Ref, options: { cascade?: boolean; dryRun?: boolean } = {}): Promise<Deletion[]> {
  for (let attempt = 1; attempt <= DELETE_ATTEMPTS; attempt++) {
    const snap = await store.snapshot();
    const plan = planDelete(
      [...snap.objects.values()].map((s) => s.object),
      target,
      options,
    );
    if (!plan) throw new KmError('KM_ERR_NOT_FOUND', `${notFoundMessage(target, [...snap.objects.values()].map((s) => s.object))}; nothing was deleted`);
    if (plan.blockers.length) {
      const lines = plan.blockers.map((b) => `  ${refString(b.ref)} ${b.needs.join('; ')}`);
      throw new KmError(
        'KM_ERR_INVALID_CONFIG',
        `${refString(target)} is still used by ${plan.blockers.length === 1 ? 'another object' : `${plan.blockers.length} other objects`}; nothing was deleted:\n${lines.join('\n')}\ndelete or change ${plan.blockers.length === 1 ? 'it' : 'them'} first, or pass --cascade to delete ${plan.blockers.length === 1 ? 'it' : 'them'} along with ${refString(target)}`,
      );
    }
    if (options.dryRun) return plan.deletes;
    try {
      const versions = await store.write(
        plan.deletes.map((d) => ({ op: 'delete' as const, ref: d.ref })),
        { expectedVersion: snap.version },
      );
      return plan.deletes.map((d, i) => ({ ...d, version: versions[i]! }));
    } catch (err) {
      if (!(err instanceof KmError && err.code === 'KM_ERR_CONFLICT')) throw err;
    }
  }
  throw new KmError('KM_ERR_CONFLICT', `the mesh changed ${DELETE_ATTEMPTS} times while deleting (other writers got in between its checks and its write); nothing was deleted; try again`);
}
