// SPDX-License-Identifier: Apache-2.0
/**
 * The proxy's routing table, built from a config snapshot in one go and
 * swapped in atomically: services by VIP:port and by host name, their
 * endpoints (ready ones), subsets, and compiled routes.
 */
import { claimId, claimLabel, compareClaimants, serviceClaims } from '../../config/claims.ts';
import type { StoredObject } from '../../config/store.ts';
import { durationMs, resolveServiceRef } from '../../config/model/common.ts';
import { type RetryPolicy, type ServicePolicy, compilePolicy, compileRetry } from './policy.ts';
import type { Authz, CompiledAuthzRule } from '../policy/authz.ts';
import type { LbPolicy, OutlierPolicy } from '../upstream/balancer.ts';
import type { CompiledFault } from '../policy/fault.ts';
import type { CompiledRateLimit } from '../policy/rate-limit.ts';

export interface EndpointInfo {
  address: string;
  port: number;
  labels: Record<string, string>;
  weight: number;
  zone?: string;
  /** A Workload's: who it is to authorization policies when it calls. */
  identity?: string;
}

export interface ServicePortInfo {
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
  subsets: Map<string, Record<string, string>>;
  routes: CompiledRule[];
  policy: ServicePolicy;
  lb: LbPolicy;
  outlier?: OutlierPolicy;
  authz?: Authz;
  rateLimits: CompiledRateLimit[];
  /** Live counters for the circuit breaker (they survive a table swap with the service). */
  live: { active: number; pending: number; retries: number; connections: number };
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
  const re = new RegExp(`^(?:${m.regex as string})$`);
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
 * Builds a table from the objects of a config snapshot. previous, when given,
 * hands each surviving service's live circuit-breaker counters over.
 */
export function buildTable(version: number, objects: Iterable<StoredObject>, previous?: RoutingTable): RoutingTable {
  const services = new Map<string, ServiceInfo>();
  const byVip = new Map<string, string>();
  const byHost = new Map<string, string>();
  const all = [...objects].map((o) => o.object);
  const mesh = all.find((o) => o.kind === 'MeshSettings')?.spec as Spec | undefined;
  const meshPolicy = compilePolicy(undefined, mesh);
  const selectors = new Map<string, Record<string, string>>();
  const listed = new Set<string>();
  // Services in key order: the table must not depend on the order objects arrived in (stream or snapshot).
  const svcObjects = all.filter((o) => o.kind === 'Service').map((o) => ({ key: `${o.metadata.namespace}/${o.metadata.name}`, object: o }));
  svcObjects.sort(compareClaimants);
  for (const { key, object: o } of svcObjects) {
    const spec = o.spec as Spec;
    const ports: ServicePortInfo[] = (spec.ports as Spec[]).map((p) => ({ port: p.port as number, targetPort: (p.targetPort as number) ?? (p.port as number), protocol: (p.protocol as string) ?? 'auto' }));
    const live = previous?.services.get(key)?.live ?? { active: 0, pending: 0, retries: 0, connections: 0 };
    services.set(key, { key, hosts: spec.hosts as string[], addresses: spec.addresses as string[], ports, endpoints: [], subsets: new Map(), routes: [], policy: meshPolicy, lb: { type: 'round_robin' }, rateLimits: [], live });
    // An empty selector selects nothing (as in Kubernetes), not every Workload.
    if (spec.selector && Object.keys(spec.selector as object).length > 0) selectors.set(key, spec.selector as Record<string, string>);
  }
  const conflicts = claimRoutes(svcObjects, byVip, byHost);
  // Kinds whose order matters in name order too: several Routes for one service are tried in their names'
  // order, and of two ClusterPolicies for one the last by name holds, on every node alike (arrival order
  // differs by node). The rest (Endpoints above all, the most numerous) keep their order: it changes nothing.
  for (const o of inNameOrder(all)) {
    const ns = o.metadata.namespace ?? 'default';
    const spec = o.spec as Spec;
    if (o.kind === 'Endpoints') {
      const svc = services.get(`${ns}/${o.metadata.name}`);
      // Every address listed, ready or not: a Workload at one of them does not stand in for it.
      for (const e of spec.endpoints as Spec[]) listed.add(`${ns}/${o.metadata.name}|${e.address as string}`);
      if (svc) svc.endpoints = (spec.endpoints as Spec[]).filter((e) => e.ready !== false).map((e) => ({ address: e.address as string, port: (e.port as number) ?? 0, labels: (e.labels as Record<string, string>) ?? {}, weight: (e.weight as number) ?? 1, ...(e.zone ? { zone: e.zone as string } : {}) }));
    } else if (o.kind === 'ClusterPolicy') {
      const svc = services.get(resolveServiceRef(spec.service as string, ns));
      if (svc) {
        for (const s of (spec.subsets as Spec[]) ?? []) svc.subsets.set(s.name as string, s.labels as Record<string, string>);
        svc.policy = compilePolicy(spec, mesh);
        svc.lb = (spec.loadBalancer as LbPolicy | undefined) ?? { type: 'round_robin' };
        const od = spec.outlierDetection as Spec | undefined;
        if (od) {
          svc.outlier = {
            consecutive5xx: (od.consecutive5xx as number) ?? 5,
            consecutiveGatewayErrors: (od.consecutiveGatewayErrors as number) ?? 5,
            baseEjectionMs: durationMs((od.baseEjectionTime as string) ?? '30s'),
            maxEjectionMs: durationMs((od.maxEjectionTime as string) ?? '300s'),
            intervalMs: durationMs((od.interval as string) ?? '10s'),
            maxEjectionPercent: (od.maxEjectionPercent as number) ?? 10,
          };
        }
      }
    } else if (o.kind === 'AuthorizationPolicy') {
      const targets = spec.service ? [services.get(resolveServiceRef(spec.service as string, ns))] : [...services.values()].filter((x) => x.key.startsWith(`${ns}/`));
      const rules = (spec.rules as Spec[]).map(compileAuthzRule);
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
      const key = resolveServiceRef(spec.service as string, ns);
      const svc = services.get(key);
      if (svc) svc.routes.push(...(spec.rules as Spec[]).map((r) => compileRule(r, ns, key, spec.port as number | undefined)));
    }
  }
  addWorkloads(all, services, selectors, listed);
  return { version, services, byVip, byHost, defaultPolicy: meshPolicy, conflicts };
}

/** Objects whose kind is order-sensitive after the rest, sorted by namespace, then name, then kind. */
function inNameOrder<T extends { kind: string; metadata: { name: string; namespace?: string | undefined } }>(objects: T[]): T[] {
  const rest: T[] = [];
  const keyed: Array<{ key: string; o: T }> = [];
  for (const o of objects) {
    if (ORDERED_KINDS.has(o.kind)) keyed.push({ key: `${o.metadata.namespace ?? ''}/${o.metadata.name}/${o.kind}`, o });
    else rest.push(o);
  }
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const k of keyed) rest.push(k.o);
  return rest;
}

/** Kinds whose objects' order changes the table: rules are tried in order, a later policy replaces an earlier, limits are taken from in order. */
const ORDERED_KINDS = new Set(['Route', 'ClusterPolicy', 'RateLimit']);

/**
 * Fills byVip and byHost. A VIP:port or host two services claim (apply
 * refuses that, but older objects or the Kubernetes sync may hold one) goes
 * to the one compareClaimants prefers, on every node alike; the others are returned.
 */
function claimRoutes(svcs: Array<{ key: string; object: StoredObject['object'] }>, byVip: Map<string, string>, byHost: Map<string, string>): ClaimConflict[] {
  const conflicts: ClaimConflict[] = [];
  const seen = new Set<string>();
  // svcs come in key order, which is compareClaimants' order.
  for (const s of svcs) {
    for (const c of serviceClaims(s.object)) {
      const routes = c.on === 'vip' ? byVip : byHost;
      const kept = routes.get(c.value);
      if (kept === undefined) routes.set(c.value, s.key);
      else if (kept !== s.key && !seen.has(`${claimId(c)}|${s.key}`)) {
        seen.add(`${claimId(c)}|${s.key}`);
        conflicts.push({ claim: claimLabel(c), kept, ignored: s.key });
      }
    }
  }
  return conflicts;
}

/**
 * Workloads outside Kubernetes (VMs, processes) are endpoints of the service
 * they name, and of every service of their namespace whose selector their
 * labels match, as Istio's WorkloadEntry is: on top of what an Endpoints
 * object lists (an address listed there already is not added again).
 */
function addWorkloads(all: Array<{ kind: string; metadata: { name: string; namespace?: string }; spec: unknown }>, services: Map<string, ServiceInfo>, selectors: Map<string, Record<string, string>>, listed: Set<string>): void {
  for (const o of all) {
    if (o.kind !== 'Workload') continue;
    const ns = o.metadata.namespace ?? 'default';
    const w = o.spec as Spec;
    const labels = (w.labels as Record<string, string>) ?? {};
    const named = w.service ? resolveServiceRef(w.service as string, ns) : undefined;
    for (const svc of services.values()) {
      const selector = svc.key.startsWith(`${ns}/`) ? selectors.get(svc.key) : undefined;
      const selected = selector !== undefined && Object.entries(selector).every(([k, v]) => labels[k] === v);
      if (svc.key !== named && !selected) continue;
      if (listed.has(`${svc.key}|${w.address as string}`) || svc.endpoints.some((e) => e.address === w.address)) continue;
      svc.endpoints = [...svc.endpoints, { address: w.address as string, port: 0, labels, weight: 1, ...(w.zone ? { zone: w.zone as string } : {}), ...(w.identity ? { identity: w.identity as string } : {}) }];
    }
  }
}

export function emptyTable(): RoutingTable {
  return { version: 0, services: new Map(), byVip: new Map(), byHost: new Map(), defaultPolicy: compilePolicy(undefined, undefined), conflicts: [] };
}
