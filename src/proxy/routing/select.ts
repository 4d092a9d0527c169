// SPDX-License-Identifier: Apache-2.0
/** Per request: which service, which rule, which endpoint. */
import type { Head } from '../http1/parse.ts';
import { header } from '../http1/parse.ts';
import type { Peer } from '../telemetry/metrics.ts';
import type { CompiledRule, Destination, EndpointInfo, RoutingTable, ServiceInfo, ServicePortInfo } from './table.ts';

export function serviceFor(table: RoutingTable, origDst: { address: string; port: number } | null, host: string | null): ServiceInfo | undefined {
  if (origDst) {
    const key = table.byVip.get(`${origDst.address}:${origDst.port}`);
    if (key) return table.services.get(key);
  }
  if (host) {
    const key = table.byHost.get(hostName(host));
    if (key) return table.services.get(key);
  }
  return undefined;
}

/** A Host header's name: lower case, without its port ("Web.Shop:8080" is "web.shop"). */
export function hostName(host: string): string {
  const colon = host.lastIndexOf(':');
  return (colon > 0 && !host.endsWith(']') ? host.slice(0, colon) : host).toLowerCase();
}

/** The port a Host header names, if it names one. */
function hostPort(host: string | null): number | undefined {
  if (!host) return undefined;
  const colon = host.lastIndexOf(':');
  if (colon < 0 || host.endsWith(']')) return undefined;
  const n = Number(host.slice(colon + 1));
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * The service port a request was sent to: where the client connected when
 * intercepted, else the Host header's port, else the service's only port.
 */
export function requestPort(svc: ServiceInfo, origDst: { port: number } | null, head: Head): number | undefined {
  return origDst?.port ?? hostPort(head.host) ?? (svc.ports.length === 1 ? svc.ports[0]!.port : undefined);
}

function queryOf(target: string): URLSearchParams | null {
  const q = target.indexOf('?');
  return q < 0 ? null : new URLSearchParams(target.slice(q + 1));
}

export function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

/**
 * The first rule whose any match matches (an empty match list matches
 * everything), among the rules for the port the request was sent to (a
 * Route with a port applies to that service port only).
 */
export function matchRule(svc: ServiceInfo, head: Head, port?: number): CompiledRule | undefined {
  const path = pathOf(head.target);
  let query: URLSearchParams | null | undefined;
  for (const rule of svc.routes) {
    if (rule.port !== undefined && rule.port !== port) continue;
    if (rule.matches.length === 0) return rule;
    for (const m of rule.matches) {
      if (m.method && m.method !== head.method) continue;
      if (m.path && !m.path(path)) continue;
      if (m.host && !m.host(head.host ? hostName(head.host) : '')) continue;
      if (m.headers.some((h) => !h.test(header(head, h.name)))) continue;
      if (m.query.length) {
        query ??= queryOf(head.target);
        if (m.query.some((q) => !queryMatches(query, q))) continue;
      }
      return rule;
    }
  }
  return undefined;
}

/** A parameter the request does not carry matches nothing (as in Envoy). */
function queryMatches(query: URLSearchParams | null | undefined, q: { name: string; test: (v: string) => boolean }): boolean {
  const v = query?.get(q.name);
  return v !== null && v !== undefined && q.test(v);
}

/** Weighted choice among a rule's destinations (Math.random: canaries need no stronger randomness). */
export function pickDestination(rule: CompiledRule): Destination {
  const split = rule.split!;
  if (split.length === 1) return split[0]!;
  let r = Math.random() * rule.totalWeight;
  for (const d of split) {
    r -= d.weight;
    if (r < 0) return d;
  }
  return split[split.length - 1]!;
}

/** Endpoints of a service, narrowed to a subset's labels. */
export function endpointsOf(svc: ServiceInfo, subset: string | undefined): EndpointInfo[] {
  if (!subset) return svc.endpoints;
  // One list per subset while the service's endpoints stay the same: the balancer keeps round-robin and
  // ring state by list, and a fresh list per request would send every request to the subset's first endpoint.
  let cache = subsetLists.get(svc);
  if (cache?.from !== svc.endpoints) subsetLists.set(svc, (cache = { from: svc.endpoints, lists: new Map() }));
  let list = cache.lists.get(subset);
  if (list === undefined) {
    const labels = svc.subsets.get(subset);
    const want = labels ? Object.entries(labels) : null;
    list = want ? svc.endpoints.filter((e) => want.every(([k, v]) => e.labels[k] === v)) : [];
    cache.lists.set(subset, list);
  }
  return list;
}

const subsetLists = new WeakMap<ServiceInfo, { from: EndpointInfo[]; lists: Map<string, EndpointInfo[]> }>();

/**
 * Every endpoint of every service by address, built on first use for each
 * table: the inbound side asks per request (who the caller is, which of the
 * pod's services it reached), and a scan of every endpoint made that cost
 * grow with the mesh (60 000 comparisons per request at 20 000 services).
 * In service order, then endpoint order, as the scan found them.
 */
const byAddress = new WeakMap<RoutingTable, Map<string, Array<{ svc: ServiceInfo; e: EndpointInfo }>>>();

function atAddress(table: RoutingTable, address: string): Array<{ svc: ServiceInfo; e: EndpointInfo }> {
  let index = byAddress.get(table);
  if (!index) {
    index = new Map();
    for (const svc of table.services.values()) {
      for (const e of svc.endpoints) {
        const list = index.get(e.address);
        if (list) list.push({ svc, e });
        else index.set(e.address, [{ svc, e }]);
      }
    }
    byAddress.set(table, index);
  }
  return index.get(address) ?? [];
}

/**
 * The service one of whose endpoints is this address (and port, when the
 * endpoint or the service says which): the inbound side's destination
 * service.
 */
export function serviceByEndpoint(table: RoutingTable, address: string, port: number): ServiceInfo | undefined {
  return servicesByEndpoint(table, address, port)[0];
}

/** Every service that has this address and port as an endpoint (a pod may back several). */
export function servicesByEndpoint(table: RoutingTable, address: string, port: number): ServiceInfo[] {
  const out: ServiceInfo[] = [];
  for (const { svc, e } of atAddress(table, address)) {
    if (out.at(-1) === svc) continue;
    if (portAtEndpoint(svc, e, port)) out.push(svc);
  }
  return out;
}

/**
 * The port to dial for service port p of endpoint e: its own number for p
 * (Endpoint.ports), else its port, else p's targetPort; 0 when neither e nor
 * p says (p unknown).
 */
export function endpointPort(e: EndpointInfo, p: ServicePortInfo | undefined): number {
  return (e.ports !== undefined && p?.name !== undefined ? e.ports.get(p.name) : undefined) || e.port || (p?.targetPort ?? 0);
}

/**
 * The service port of svc that a connection to this address and (pod-local)
 * port was sent to: inbound authorization names service ports, and the
 * application's port is not one. The endpoint's own number counts first:
 * with named targetPorts, one pod's port for "http" may be another's for
 * "metrics", and the targetPort (one pod's numbers) would name the wrong one.
 */
export function servicePortAt(table: RoutingTable, svc: ServiceInfo, address: string, port: number): ServicePortInfo | undefined {
  for (const { svc: s, e } of atAddress(table, address)) {
    if (s !== svc) continue;
    const p = portAtEndpoint(svc, e, port);
    if (p) return p;
  }
  return undefined;
}

/**
 * The service port endpoint e serves at port, else the one whose targetPort
 * port is (as every endpoint was matched before endpoints had numbers of
 * their own: the address backs the service there too).
 */
function portAtEndpoint(svc: ServiceInfo, e: EndpointInfo, port: number): ServicePortInfo | undefined {
  for (const p of svc.ports) if (endpointPort(e, p) === port) return p;
  for (const p of svc.ports) if (p.targetPort === port) return p;
  return undefined;
}

/** Who a connecting address is, when it is an endpoint of some service (its labels say app and version). */
export function peerOf(table: RoutingTable, address: string): Peer | null {
  const found = atAddress(table, address)[0];
  if (!found) return null;
  const { svc, e } = found;
  const [ns = 'unknown'] = svc.key.split('/');
  const app = e.labels.app ?? svc.key.split('/')[1] ?? 'unknown';
  return { workload: app, namespace: ns, app, ...(e.labels.version ? { version: e.labels.version } : {}), ...(e.identity ? { identity: e.identity } : {}) };
}
