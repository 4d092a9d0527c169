// SPDX-License-Identifier: Apache-2.0
/**
 * Configuration in Redis that cannot work, for `kernmesh status`: objects
 * naming a Service that does not exist, Route destinations naming a subset
 * no ClusterPolicy of their service defines (every request sent there gets
 * 503 UH), and route-scoped RateLimits naming no rule of their service's
 * Routes. `apply` and `delete` refuse to make the first two, but objects
 * written before those checks, by an older version or by the Kubernetes
 * sync can still hold them; `apply` does not check a RateLimit's route.
 * Pure: objects in, one warning per object and missing thing out.
 */
import { resolveServiceRef } from '../config/model/common.ts';
import { type MeshObject, keyOf, referencesOf, subsetUsesOf, subsetsByService } from '../config/objects.ts';
import type { Problem } from './collect.ts';

type Spec = Record<string, unknown>;
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const asSpec = (v: unknown): Spec => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Spec) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);

/** A Service an object names: where, and what its absence does. */
interface ServiceUse {
  service: string;
  path: string;
  effect: string;
}

/** What the proxy does without the Service, by kind and field (see src/proxy/routing/table.ts and route.ts). */
function serviceUses(o: MeshObject): ServiceUse[] {
  const ns = o.metadata.namespace ?? 'default';
  const spec = asSpec(o.spec);
  const named = (path: string, ref: unknown, effect: string): ServiceUse[] => (str(ref) ? [{ service: resolveServiceRef(str(ref)!, ns), path, effect }] : []);
  switch (o.kind) {
    case 'Endpoints':
      return [{ service: keyOf(o), path: 'metadata.name', effect: 'its endpoints are not used' }];
    case 'Workload':
      return named('spec.service', spec.service, 'it is no endpoint of it');
    case 'ClusterPolicy':
      return named('spec.service', spec.service, 'it applies to nothing');
    case 'AuthorizationPolicy':
      return named('spec.service', spec.service, `it ${spec.action === 'DENY' ? 'denies' : 'allows'} nothing`);
    case 'RateLimit':
      return named('spec.service', spec.service, 'it limits nothing');
    case 'Route': {
      const out = named('spec.service', spec.service, 'its rules are never used');
      asArray(spec.rules).forEach((r, i) => {
        const rule = asSpec(r);
        asArray(asSpec(rule.action).split).forEach((d, j) => out.push(...named(`spec.rules.${i}.action.split.${j}.service`, asSpec(d).service, 'every request sent there gets 503 (service not known)')));
        out.push(...named(`spec.rules.${i}.mirror.service`, asSpec(rule.mirror).service, 'nothing is mirrored there'));
      });
      return out;
    }
    default:
      return [];
  }
}

const deleteHint = (o: MeshObject) => `kernmesh delete ${o.kind.toLowerCase()} ${keyOf(o)}`;

/** Every problem of this kind in the mesh's objects, by the objects' namespace/name, then kind. */
export function configProblems(given: readonly MeshObject[]): Problem[] {
  const objects = given
    .map((o) => ({ o, id: `${keyOf(o)}\u0000${o.kind}` }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((x) => x.o);
  const services = new Set(objects.filter((o) => o.kind === 'Service').map(keyOf));
  // Subsets by service, as apply reckons them (every ClusterPolicy for a service adds its own); one too damaged to read defines none.
  const subsets = subsetsByService(objects.filter((o) => o.kind !== 'ClusterPolicy' || readable(() => subsetsByService([o]))));
  // Rule names by service, for route-scoped rate limits (they only see their own service's rules).
  const ruleNames = new Map<string, Set<string>>();
  for (const o of objects) {
    const ns = o.metadata.namespace ?? 'default';
    const spec = asSpec(o.spec);
    const svc = str(spec.service) && resolveServiceRef(str(spec.service)!, ns);
    if (!svc) continue;
    if (o.kind === 'Route') for (const r of asArray(spec.rules)) if (str(asSpec(r).name)) (ruleNames.get(svc) ?? ruleNames.set(svc, new Set()).get(svc)!).add(str(asSpec(r).name)!);
  }

  const out: Problem[] = [];
  for (const o of objects) {
    const what = `${o.kind} ${keyOf(o)}`;
    // Missing services: one line per object and service, naming every field that names it.
    const missing = new Map<string, ServiceUse[]>();
    const uses = serviceUses(o);
    // Whatever references the model declares are covered, also one this table has no words for yet.
    for (const ref of safeReferences(o)) if (ref.kind === 'Service' && !uses.some((u) => u.service === ref.key)) uses.push({ service: ref.key, path: 'spec', effect: 'it does not work' });
    for (const u of uses) if (!services.has(u.service)) missing.set(u.service, [...(missing.get(u.service) ?? []), u]);
    for (const [service, at] of missing) {
      const effects = [...new Set(at.map((u) => u.effect))].join('; ');
      out.push({
        level: 'warn',
        text: `${what} refers to Service ${service}, which does not exist (${at.map((u) => u.path).join(', ')}): ${effects}`,
        fix: o.kind === 'Endpoints' ? `create Service ${service}, or delete the Endpoints (${deleteHint(o)})` : `create Service ${service}, or point the ${o.kind} at an existing one (kernmesh apply), or delete it (${deleteHint(o)})`,
      });
    }
    if (o.kind === 'Route') out.push(...subsetProblems(o, what, services, subsets));
    if (o.kind === 'RateLimit') {
      const spec = asSpec(o.spec);
      const svc = str(spec.service) && resolveServiceRef(str(spec.service)!, o.metadata.namespace ?? 'default');
      const rule = str(spec.route);
      if (svc && rule && services.has(svc) && !ruleNames.get(svc)?.has(rule)) {
        out.push({
          level: 'warn',
          text: `${what} limits requests matched by route rule ${rule} (spec.route), which no Route of Service ${svc} has: it limits nothing`,
          fix: `name a rule of a Route for ${svc} (spec.rules[].name), or leave spec.route out to limit the whole service`,
        });
      }
    }
  }
  return out;
}

/** A Route's destinations whose subset their service's ClusterPolicies do not define. */
function subsetProblems(o: MeshObject, what: string, services: Set<string>, subsets: Map<string, Map<string, string[]>>): Problem[] {
  const missing = new Map<string, { service: string; subset: string; paths: string[] }>();
  let uses: ReturnType<typeof subsetUsesOf> = [];
  readable(() => (uses = subsetUsesOf(o)));
  for (const { service, subset, path } of uses) {
    // A missing service is said once, above; its subsets are moot.
    if (!services.has(service) || subsets.get(service)?.has(subset)) continue;
    const id = `${service} ${subset}`;
    const m = missing.get(id) ?? { service, subset, paths: [] };
    m.paths.push(path);
    missing.set(id, m);
  }
  return [...missing.values()].map((m) => ({
    level: 'warn' as const,
    text: `${what} sends requests to subset ${m.subset} of Service ${m.service} (${m.paths.join(', ')}), which no ClusterPolicy for ${m.service} defines: every request sent there gets 503 (UH)`,
    fix: `define subset ${m.subset} in a ClusterPolicy for ${m.service} (spec.subsets), or change the Route's destination (kernmesh apply)`,
  }));
}

/** The model's references of an object; none for one too malformed to read (an older version's). */
/** Whether read() gets through an object (one too malformed to read, an older version's, throws). */
function readable(read: () => unknown): boolean {
  try {
    read();
    return true;
  } catch {
    return false;
  }
}

function safeReferences(o: MeshObject) {
  try {
    return referencesOf(o);
  } catch {
    return [];
  }
}
