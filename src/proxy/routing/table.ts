// SPDX-License-Identifier: Apache-2.0
/**
 * The proxy's routing table, built from a config snapshot in one go and
 * swapped in atomically: services by VIP:port and by host name, their
 * endpoints (ready ones), subsets, and compiled routes.
 */
import { type Claim, claimId, claimLabel, compareClaimants, serviceClaims } from '../../config/claims.ts';
import type { MeshObject } from '../../config/objects.ts';
import type { StoredObject } from '../../config/store.ts';
import { canonicalIp, durationMs, resolveServiceRef } from '../../config/model/common.ts';
import { compileRegex } from '../../config/model/regex.ts';
import { type RetryPolicy, type ServicePolicy, compilePolicy, compileRetry } from './policy.ts';
import type { Authz, CompiledAuthzRule } from '../policy/authz.ts';
import type { LbPolicy, OutlierPolicy } from '../upstream/balancer.ts';
import type { ConnCounts } from '../upstream/waiters.ts';
import type { CompiledFault } from '../policy/fault.ts';
import type { CompiledRateLimit } from '../policy/rate-limit.ts';

export interface EndpointInfo {
  address: string;
  /** Where every service port reaches it, unless ports says otherwise; 0: each port's targetPort. */
  port: number;
  /** Its own port for a service port, by that port's name (a Kubernetes named targetPort, which each pod resolves for itself). */
  ports?: ReadonlyMap<string, number>;
  labels: Record<string, string>;
  weight: number;
  zone?: string;
  /** A Workload's: who it is to authorization policies when it calls. */
  identity?: string;
}

export interface ServicePortInfo {
  /** An endpoint's ports are keyed by it. */
  name?: string;
  port: number;
  targetPort: number;
  protocol: string;
}

export interface ServiceInfo {
  key: string;
  hosts: string[];
  addresses: string[];
  ports: ServicePortInfo[];
  endpoints: EndpointInfo[];
  subsets: ReadonlyMap<string, Record<string, string>>;
  routes: CompiledRule[];
  policy: ServicePolicy;
  lb: LbPolicy;
  outlier?: OutlierPolicy;
  authz?: Authz;
  rateLimits: CompiledRateLimit[];
  /** Live counters for the circuit breaker (they survive a table swap with the service). */
  live: ConnCounts & { active: number; retries: number };
}

export type StringMatcher = (s: string) => boolean;

export interface CompiledMatch {
  path?: StringMatcher;
  /** Set for a prefix path match: what a prefix rewrite replaces. */
  pathPrefix?: string;
  /** An exact path match's path (a prefix rewrite replaces all of it). */
  pathExact?: string;
  method?: string;
  headers: Array<{ name: string; test: (v: string | undefined) => boolean }>;
  query: Array<{ name: string; test: StringMatcher }>;
  host?: StringMatcher;
}

export interface Destination {
  service: string;
  subset?: string;
  port?: number;
  weight: number;
}

export interface CompiledRule {
  name?: string;
  /** The Route's service port: the rule applies to requests sent to that port only. */
  port?: number;
  matches: CompiledMatch[];
  split?: Destination[];
  totalWeight: number;
  redirect?: { host?: string; path?: string; code: number };
  directResponse?: { status: number; body: string };
  rewrite?: { prefix?: string; host?: string };
  timeoutMs?: number;
  retry?: RetryPolicy | null;
  fault?: CompiledFault;
  mirror?: { service: string; percent: number };
}

export interface RoutingTable {
  version: number;
  services: Map<string, ServiceInfo>;
  /** "ip:port" -> service key. */
  byVip: Map<string, string>;
  /** lower-case host -> service key. */
  byHost: Map<string, string>;
  /** For traffic to no mesh service (passthrough): MeshSettings' default timeouts, no retries. */
  defaultPolicy: ServicePolicy;
  /** VIP:ports and hosts two services claim: each routed to the first by namespace/name (compareClaimants), the other one reported. */
  conflicts: ClaimConflict[];
}

export interface ClaimConflict {
  /** "address 10.96.0.1:80" or "host reviews.shop". */
  claim: string;
  /** The service it is routed to, and the one left out ("namespace/name"). */
  kept: string;
  ignored: string;
}

type Spec = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- validated by the config layer

function stringMatcher(m: Spec | undefined): StringMatcher | undefined {
  if (!m) return undefined;
  if ('exact' in m) return (s) => s === m.exact;
  if ('prefix' in m) return (s) => s.startsWith(m.prefix as string);
  const re = compileRegex(m.regex as string);
  return (s) => re.test(s);
}

function compileRule(rule: Spec, ns: string, serviceKey: string, port: number | undefined): CompiledRule {
  const matches: CompiledMatch[] = ((rule.match as Spec[] | undefined) ?? []).map((m) => ({
    ...(m.path ? { path: stringMatcher(m.path)! } : {}),
    ...(m.path && 'prefix' in m.path ? { pathPrefix: m.path.prefix as string } : {}),
    ...(m.path && 'exact' in m.path ? { pathExact: m.path.exact as string } : {}),
    ...(m.method ? { method: m.method as string } : {}),
    ...(m.host ? { host: stringMatcher(m.host)! } : {}),
    headers: Object.entries((m.headers as Record<string, Spec>) ?? {}).map(([name, hm]) => {
      if ('present' in hm) return { name: name.toLowerCase(), test: (v: string | undefined) => (v !== undefined) === hm.present };
      const sm = stringMatcher(hm)!;
      return { name: name.toLowerCase(), test: (v: string | undefined) => v !== undefined && sm(v) };
    }),
    query: Object.entries((m.query as Record<string, Spec>) ?? {}).map(([name, qm]) => ({ name, test: stringMatcher(qm)! })),
  }));
  const action = rule.action as Spec;
  const out: CompiledRule = {
    ...(rule.name ? { name: rule.name as string } : {}),
    ...(port !== undefined ? { port } : {}),
    matches,
    totalWeight: 0,
    ...(rule.rewrite ? { rewrite: rule.rewrite as CompiledRule['rewrite'] } : {}),
    ...(rule.timeout ? { timeoutMs: durationMs(rule.timeout as string) } : {}),
    ...(rule.retries ? { retry: compileRetry(rule.retries as Spec) } : {}),
    ...(rule.fault ? { fault: compileFault(rule.fault as Spec) } : {}),
    ...(rule.mirror ? { mirror: { service: resolveServiceRef((rule.mirror as Spec).service as string, ns), percent: ((rule.mirror as Spec).percent as number) ?? 100 } } : {}),
  };
  if (action.split) {
    out.split = (action.split as Spec[]).map((d) => ({
      service: d.service ? resolveServiceRef(d.service as string, ns) : serviceKey,
      ...(d.subset ? { subset: d.subset as string } : {}),
      ...(d.port ? { port: d.port as number } : {}),
      weight: (d.weight as number) ?? 1,
    }));
    out.totalWeight = out.split.reduce((a, d) => a + d.weight, 0);
  } else if (action.redirect) out.redirect = action.redirect as CompiledRule['redirect'];
  else if (action.directResponse) out.directResponse = action.directResponse as CompiledRule['directResponse'];
  return out;
}

function compileAuthzRule(r: Spec): CompiledAuthzRule {
  const from = (r.from as Spec) ?? {};
  const to = (r.to as Spec) ?? {};
  return {
    ...(from.workloads ? { workloads: new Set(from.workloads as string[]) } : {}),
    ...(from.namespaces ? { namespaces: new Set(from.namespaces as string[]) } : {}),
    ...(from.identities ? { identities: new Set(from.identities as string[]) } : {}),
    ...(to.paths ? { paths: (to.paths as Spec[]).map((p) => stringMatcher(p)!) } : {}),
    ...(to.methods ? { methods: new Set(to.methods as string[]) } : {}),
    ...(to.ports ? { ports: new Set(to.ports as number[]) } : {}),
  };
}

function compileFault(f: Spec): CompiledFault {
  return {
    ...(f.delay ? { delay: { percent: (f.delay as Spec).percent as number, ms: durationMs((f.delay as Spec).fixed as string) } } : {}),
    ...(f.abort ? { abort: { percent: (f.abort as Spec).percent as number, status: (f.abort as Spec).status as number } } : {}),
  };
}

/**
 * What one object compiles to, kept for as long as the object lives. A view
 * replaces an object when it changes and keeps it otherwise, so rebuilding
 * after an endpoint change recompiles that Endpoints object alone: the rest
 * (claims, routes, policies, endpoint lists) is found here. Callers must
 * not change an object in place after handing it to buildTable.
 */
const compiled = new WeakMap<object, unknown>();

function memo<T>(o: object, make: () => T): T {
  let v = compiled.get(o) as T | undefined;
  if (v === undefined) {
    v = make();
    compiled.set(o, v);
  }
  return v;
}

interface ServiceBase {
  /** "namespace/name", made once: a string made afresh on every build would be hashed afresh on every lookup. */
  key: string;
  claims: Claim[];
  hosts: string[];
  addresses: string[];
  ports: ServicePortInfo[];
  selector?: Record<string, string>;
}

function serviceBase(o: MeshObject): ServiceBase {
  const spec = o.spec as Spec;
  return {
    key: `${o.metadata.namespace}/${o.metadata.name}`,
    claims: serviceClaims(o),
    hosts: spec.hosts as string[],
    // Canonical, as a connection's original destination is reported: "fd00:0::1" must route like "fd00::1".
    addresses: (spec.addresses as string[]).map(canonicalIp),
    ports: (spec.ports as Spec[]).map((p) => ({ ...(p.name ? { name: p.name as string } : {}), port: p.port as number, targetPort: (p.targetPort as number) ?? (p.port as number), protocol: (p.protocol as string) ?? 'auto' })),
    // An empty selector selects nothing (as in Kubernetes), not every Workload.
    ...(spec.selector && Object.keys(spec.selector as object).length > 0 ? { selector: spec.selector as Record<string, string> } : {}),
  };
}

interface EndpointsBase {
  /** The service's key ("namespace/name", made once). */
  key: string;
  /** The ready endpoints: the same array from build to build while the object is unchanged, so the balancer's rings and round-robin position keyed on it survive other services' churn. */
  ready: EndpointInfo[];
  /** Every address listed, ready or not: a Workload at one of them does not stand in for it. */
  listed: Set<string>;
}

function readyEndpoint(e: Spec): EndpointInfo {
  const ports = e.ports as Record<string, number> | undefined;
  return {
    address: canonicalIp(e.address as string),
    port: (e.port as number) ?? 0,
    // A Map: names come from the object, and a plain object would answer "constructor" or "__proto__".
    ...(ports && Object.keys(ports).length > 0 ? { ports: new Map(Object.entries(ports)) } : {}),
    labels: (e.labels as Record<string, string>) ?? {},
    weight: (e.weight as number) ?? 1,
    ...(e.zone ? { zone: e.zone as string } : {}),
  };
}

function endpointsBase(o: MeshObject): EndpointsBase {
  const all = (o.spec as Spec).endpoints as Spec[];
  return {
    key: `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`,
    ready: all.filter((e) => e.ready !== false).map(readyEndpoint),
    listed: new Set(all.map((e) => canonicalIp(e.address as string))),
  };
}

interface ClusterPolicyBase {
  mesh: Spec | undefined;
  policy: ServicePolicy;
  lb: LbPolicy;
  outlier?: OutlierPolicy;
}

function clusterPolicyBase(spec: Spec, mesh: Spec | undefined): ClusterPolicyBase {
  const od = spec.outlierDetection as Spec | undefined;
  return {
    mesh,
    policy: compilePolicy(spec, mesh),
    lb: (spec.loadBalancer as LbPolicy | undefined) ?? { type: 'round_robin' },
    ...(od
      ? {
          outlier: {
            consecutive5xx: (od.consecutive5xx as number) ?? 5,
            consecutiveGatewayErrors: (od.consecutiveGatewayErrors as number) ?? 5,
            baseEjectionMs: durationMs((od.baseEjectionTime as string) ?? '30s'),
            maxEjectionMs: durationMs((od.maxEjectionTime as string) ?? '300s'),
            intervalMs: durationMs((od.interval as string) ?? '10s'),
            maxEjectionPercent: (od.maxEjectionPercent as number) ?? 10,
          },
        }
      : {}),
  };
}

/** A Service object with its compiled form, keyed for compareClaimants. */
interface ServiceEntry {
  key: string;
  object: MeshObject;
  base: ServiceBase;
}

/** Most services have no subsets: they share this one (never set; a ClusterPolicy with subsets gives its service a map of its own). */
const NO_SUBSETS: ReadonlyMap<string, Record<string, string>> = new Map();

/** The Service objects a table's claims were settled from, in key order: the next build reuses the claims when they are the same objects. */
const claimedFrom = new WeakMap<RoutingTable, ServiceEntry[]>();

/** A table's Routes, ClusterPolicies and RateLimits in name order (inNameOrder), for the next build to reuse. */
const orderedFrom = new WeakMap<RoutingTable, MeshObject[]>();

/**
 * Builds a table from the objects of a config snapshot. previous, when given,
 * hands each surviving service's live circuit-breaker counters over.
 */
export function buildTable(version: number, objects: Iterable<StoredObject>, previous?: RoutingTable): RoutingTable {
  const services = new Map<string, ServiceInfo>();
  const all: MeshObject[] = [];
  for (const o of objects) all.push(o.object);
  const mesh = all.find((o) => o.kind === 'MeshSettings')?.spec as Spec | undefined;
  const meshPolicy = compilePolicy(undefined, mesh);
  // Selectors by namespace: a Workload is only matched against its own namespace's services.
  const selectors = new Map<string, Array<{ key: string; selector: Record<string, string> }>>();
  const svcObjects: ServiceEntry[] = [];
  for (const o of all) {
    if (o.kind !== 'Service') continue;
    const base = memo(o, () => serviceBase(o));
    svcObjects.push({ key: base.key, object: o, base });
  }
  const claims = settleClaims(svcObjects, previous);
  // Services in key order: the table must not depend on the order objects arrived in (stream or snapshot).
  for (const { key, base } of claims.from) {
    const live = previous?.services.get(key)?.live ?? { active: 0, pending: 0, retries: 0, connections: 0, waiters: null };
    services.set(key, { key, hosts: base.hosts, addresses: base.addresses, ports: base.ports, endpoints: [], subsets: NO_SUBSETS, routes: [], policy: meshPolicy, lb: { type: 'round_robin' }, rateLimits: [], live });
    if (base.selector) {
      const ns = key.slice(0, key.indexOf('/'));
      const inNs = selectors.get(ns);
      if (inNs) inNs.push({ key, selector: base.selector });
      else selectors.set(ns, [{ key, selector: base.selector }]);
    }
  }
  const listed = new Map<string, Set<string>>();
  // Kinds whose order matters in name order too: several Routes for one service are tried in their names'
  // order, and of two ClusterPolicies for one the last by name holds, on every node alike (arrival order
  // differs by node). The rest (Endpoints above all, the most numerous) keep their order: it changes nothing.
  const sorted = inNameOrder(all, previous);
  for (const o of sorted.all) {
    const ns = o.metadata.namespace ?? 'default';
    const spec = o.spec as Spec;
    if (o.kind === 'Endpoints') {
      const base = memo(o, () => endpointsBase(o));
      listed.set(base.key, base.listed);
      const svc = services.get(base.key);
      if (svc) svc.endpoints = base.ready;
    } else if (o.kind === 'ClusterPolicy') {
      const svc = services.get(resolveServiceRef(spec.service as string, ns));
      if (svc) {
        let base = memo(o, () => clusterPolicyBase(spec, mesh));
        // A policy's defaults come from MeshSettings: a new MeshSettings object compiles it again.
        if (base.mesh !== mesh) compiled.set(o, (base = clusterPolicyBase(spec, mesh)));
        if (spec.subsets) svc.subsets = new Map([...svc.subsets, ...(spec.subsets as Spec[]).map((s) => [s.name as string, s.labels as Record<string, string>] as const)]);
        svc.policy = base.policy;
        svc.lb = base.lb;
        svc.outlier = base.outlier;
      }
    } else if (o.kind === 'AuthorizationPolicy') {
      const targets = spec.service ? [services.get(resolveServiceRef(spec.service as string, ns))] : [...services.values()].filter((x) => x.key.startsWith(`${ns}/`));
      const rules = memo(o, () => (spec.rules as Spec[]).map(compileAuthzRule));
      for (const svc of targets) {
        if (!svc) continue;
        svc.authz ??= { deny: [], allow: null };
        if (spec.action === 'DENY') svc.authz.deny.push(...rules);
        else (svc.authz.allow ??= []).push(...rules);
      }
    } else if (o.kind === 'RateLimit') {
      const svc = services.get(resolveServiceRef(spec.service as string, ns));
      if (svc) {
        const key = `${ns}/${o.metadata.name}`;
        // The same RateLimit object keeps its buckets and quota counts across table swaps (endpoint churn
        // rebuilds the table often); a changed object starts afresh only in what it no longer has.
        const before = previous?.services.get(svc.key)?.rateLimits.find((r) => r.key === key);
        svc.rateLimits.push({
          key,
          ...(spec.route ? { route: spec.route as string } : {}),
          maxTokens: spec.maxTokens as number,
          tokensPerFill: (spec.tokensPerFill as number) ?? 1,
          // At least 1 ms: a 0 stored before apply refused it must not divide by zero.
          fillIntervalMs: Math.max(1, durationMs(spec.fillInterval as string)),
          perSource: !!spec.perSource,
          ...(spec.quotas ? { quotas: new Map(Object.entries(spec.quotas as Record<string, number>)) } : {}),
          buckets: before?.buckets ?? new Map(),
          quotaUse: before?.quotaUse ?? new Map(),
        });
      }
    } else if (o.kind === 'Route') {
      const route = memo(o, () => {
        const key = resolveServiceRef(spec.service as string, ns);
        return { key, rules: (spec.rules as Spec[]).map((r) => compileRule(r, ns, key, spec.port as number | undefined)) };
      });
      const svc = services.get(route.key);
      if (svc) svc.routes.push(...route.rules);
    }
  }
  addWorkloads(all, services, selectors, listed);
  const table: RoutingTable = { version, services, byVip: claims.byVip, byHost: claims.byHost, defaultPolicy: meshPolicy, conflicts: claims.conflicts };
  claimedFrom.set(table, claims.from);
  orderedFrom.set(table, sorted.ordered);
  return table;
}

/**
 * Objects whose kind is order-sensitive after the rest, sorted by namespace,
 * then name, then kind. The sorted part is reused from the previous table
 * when it holds the same objects (the common case: only endpoints changed).
 */
function inNameOrder(objects: MeshObject[], previous: RoutingTable | undefined): { all: MeshObject[]; ordered: MeshObject[] } {
  const rest: MeshObject[] = [];
  const unsorted: MeshObject[] = [];
  for (const o of objects) (ORDERED_KINDS.has(o.kind) ? unsorted : rest).push(o);
  let ordered = previous && orderedFrom.get(previous);
  if (!ordered || !sameObjects(ordered, unsorted)) {
    const keyed = unsorted.map((o) => ({ key: `${o.metadata.namespace ?? ''}/${o.metadata.name}/${o.kind}`, o }));
    keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    ordered = keyed.map((k) => k.o);
  }
  for (const o of ordered) rest.push(o);
  return { all: rest, ordered };
}

/** Whether two lists hold the same objects (by identity), in any order. */
function sameObjects(a: readonly MeshObject[], b: readonly MeshObject[]): boolean {
  if (a.length !== b.length) return false;
  const inA = new Set(a);
  return b.every((o) => inA.has(o));
}

/** Kinds whose objects' order changes the table: rules are tried in order, a later policy replaces an earlier, limits are taken from in order. */
const ORDERED_KINDS = new Set(['Route', 'ClusterPolicy', 'RateLimit']);

/**
 * byVip and byHost. A VIP:port or host two services claim (apply refuses
 * that, but older objects or the Kubernetes sync may hold one) goes to the one
 * compareClaimants prefers, on every node alike; the others are returned as
 * conflicts. When the Service objects are the ones the previous table was
 * built from (endpoint churn, a new Route), its maps are reused as they are:
 * tables never change them.
 */
function settleClaims(svcs: ServiceEntry[], previous: RoutingTable | undefined): Pick<RoutingTable, 'byVip' | 'byHost' | 'conflicts'> & { from: typeof svcs } {
  const before = previous && claimedFrom.get(previous);
  if (previous && before && sameObjects(before.map((s) => s.object), svcs.map((s) => s.object))) return { byVip: previous.byVip, byHost: previous.byHost, conflicts: previous.conflicts, from: before };
  svcs.sort(compareClaimants);
  const byVip = new Map<string, string>();
  const byHost = new Map<string, string>();
  const conflicts: ClaimConflict[] = [];
  const seen = new Set<string>();
  // svcs are in key order, which is compareClaimants' order.
  for (const s of svcs) {
    for (const c of s.base.claims) {
      const routes = c.on === 'vip' ? byVip : byHost;
      const kept = routes.get(c.value);
      if (kept === undefined) routes.set(c.value, s.key);
      else if (kept !== s.key && !seen.has(`${claimId(c)}|${s.key}`)) {
        seen.add(`${claimId(c)}|${s.key}`);
        conflicts.push({ claim: claimLabel(c), kept, ignored: s.key });
      }
    }
  }
  return { byVip, byHost, conflicts, from: svcs };
}

/**
 * Workloads outside Kubernetes (VMs, processes) are endpoints of the service
 * they name, and of every service of their namespace whose selector their
 * labels match, as Istio's WorkloadEntry is: on top of what an Endpoints
 * object lists (an address listed there already is not added again).
 */
function addWorkloads(all: MeshObject[], services: Map<string, ServiceInfo>, selectors: Map<string, Array<{ key: string; selector: Record<string, string> }>>, listed: Map<string, Set<string>>): void {
  for (const o of all) {
    if (o.kind !== 'Workload') continue;
    const ns = o.metadata.namespace ?? 'default';
    const w = o.spec as Spec;
    const address = canonicalIp(w.address as string);
    const labels = (w.labels as Record<string, string>) ?? {};
    const targets = new Set<string>();
    if (w.service) targets.add(resolveServiceRef(w.service as string, ns));
    for (const { key, selector } of selectors.get(ns) ?? []) if (Object.entries(selector).every(([k, v]) => labels[k] === v)) targets.add(key);
    for (const key of targets) {
      const svc = services.get(key);
      if (!svc || listed.get(key)?.has(address) || svc.endpoints.some((e) => e.address === address)) continue;
      // A new array: the Endpoints object's own list is shared with other tables.
      svc.endpoints = [...svc.endpoints, { address, port: 0, labels, weight: 1, ...(w.zone ? { zone: w.zone as string } : {}), ...(w.identity ? { identity: w.identity as string } : {}) }];
    }
  }
}

export function emptyTable(): RoutingTable {
  return { version: 0, services: new Map(), byVip: new Map(), byHost: new Map(), defaultPolicy: compilePolicy(undefined, undefined), conflicts: [] };
}
